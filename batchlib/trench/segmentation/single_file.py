"""Cells in a trench lie in single file: a smaller object beside a cell is not a cell.

A mother-machine lumen is about one cell wide, so its cells follow each other
along the axis and two of them never share the same rows. Under optics the
U-Net was not trained on, it can find objects in the wall's halo beside the
cells (independent simulator, seed 1051: 0.138 µm pixels, cells 6.2 px wide,
NA 0.97 and a small phase ring; 161 objects beside cells, 7-8 px off the
axis, in 113 of its 152 trench-frames; the cells themselves lie within
1.2 px of it). An object that shares more than half of its rows with a larger
one and lies further from the crop's axis is dropped. On the generator's 15
families (tuning seeds 4-7, phase, detected boxes: 50,895 cells matched) and
the independent simulator's seeds 1024-1059 (49,616) no matched cell meets
the rule; besides 1051 it removes 2 objects each from 1041 and 1042, none of
them a cell.

Many such objects say the crops look unlike what the method knows, so the
Segment job warns when they turn up in :data:`SIDE_SHARE` of the
trench-frames or more (:mod:`.doubts`): 1051 0.74, every other position of
both sets 0.016 or less. 1051's came from crops resized to 33 columns and
padded to 40 for the network; cut to the trained width (``scale.TRAINED_WIDTH_PX``)
they are almost gone, and the rule stays for optics that still make them.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["SIDE_SHARE", "side_objects", "drop_side_objects"]

#: Share of a position's trench-frames with an object dropped beside a cell from
#: which Segment warns (see the module docstring).
SIDE_SHARE = 0.1


def side_objects(labels, overlap=0.5, smaller=0.7) -> np.ndarray:
    """Which labels of each crop lie beside a larger object.

    Parameters
    ----------
    labels : array_like of int, shape (..., H, W)
        Labels numbered 1..k in every crop, the trench axis along the rows.
    overlap : float
        Share of the shorter object's rows that the two must share.
    smaller : float
        The object beside is under this share of the other's area.

    Returns
    -------
    ndarray of bool, shape (M, K + 1)
        For crop ``m`` (the leading axes flattened) and label ``k``: whether it
        lies beside a larger object and further from the crop's axis (the
        mean column of all its labelled pixels). Column 0 is ``False``.

    Examples
    --------
    >>> lab = np.zeros((1, 40, 16), np.int32)
    >>> lab[0, 2:20, 4:10], lab[0, 21:38, 4:10] = 1, 2     # two cells in file
    >>> lab[0, 6:14, 11:14] = 3                             # a blob beside the first
    >>> side_objects(lab)[0].tolist()
    [False, False, False, True]
    """
    from .label_stats import column_sums, label_stats  # numba: loaded where used

    labels = np.asarray(labels)
    flat = np.ascontiguousarray(labels.reshape(-1, *labels.shape[-2:]))
    area, top, bottom, _, _ = label_stats(flat)
    col_sum = column_sums(flat, area.shape[1])
    return _beside(area, top, bottom, col_sum, float(overlap), float(smaller))


@nb.njit(cache=True)
def _beside(area, top, bottom, col_sum, overlap, smaller):
    m_crops, k = area.shape
    out = np.zeros((m_crops, k), np.bool_)
    for m in range(m_crops):
        total = 0
        weighted = 0.0
        for i in range(1, k):
            total += area[m, i]
            weighted += col_sum[m, i]
        if total == 0:
            continue
        axis = weighted / total
        for i in range(1, k):
            if area[m, i] == 0:
                continue
            off_i = abs(col_sum[m, i] / area[m, i] - axis)
            rows_i = bottom[m, i] - top[m, i] + 1
            for j in range(1, k):
                if j == i or area[m, j] == 0 or area[m, i] >= smaller * area[m, j]:
                    continue
                shared = min(bottom[m, i], bottom[m, j]) - max(top[m, i], top[m, j]) + 1
                shorter = min(rows_i, bottom[m, j] - top[m, j] + 1)
                if shared > overlap * shorter and off_i > abs(col_sum[m, j] / area[m, j] - axis):
                    out[m, i] = True
                    break
    return out


def drop_side_objects(labels, overlap=0.5, smaller=0.7) -> tuple:
    """``labels`` without the objects :func:`side_objects` finds, and in how many crops.

    Returns
    -------
    labels : ndarray
        Renumbered 1..k from the closed end where an object went; the input
        itself (not a copy) where none did.
    n_crops : int
        Crops (trench-frames) that lost an object.

    Examples
    --------
    >>> lab = np.zeros((2, 40, 16), np.int32)
    >>> lab[:, 2:20, 4:10], lab[:, 21:38, 4:10] = 1, 2
    >>> lab[1, 22:30, 11:14] = 3                            # beside the second cell
    >>> out, n = drop_side_objects(lab)
    >>> [int(c.max()) for c in out], n
    ([2, 2], 1)
    """
    from .numbering import remove_objects

    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.max(initial=0) == 0:
        return labels, 0
    side = side_objects(labels, overlap, smaller)
    hit = np.flatnonzero(side.any(axis=1))
    if not hit.size:
        return labels, 0
    flat = labels.reshape(-1, *labels.shape[-2:])
    out = flat.copy()
    for m in hit:
        out[m] = remove_objects(flat[m], side[m])
    return out.reshape(labels.shape), int(hit.size)
