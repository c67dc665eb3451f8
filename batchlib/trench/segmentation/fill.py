"""How much of the trenches the segmented cells fill: a warning sign.

Cells in a mother machine grow until they fill their trench and are pushed
out of its open end, so the cells found in a trench cover most of its
length: 0.92-0.97 of the crop's rows on generated positions segmented well,
0.59-0.82 on the real label stacks in ``../shared/data``. A segmentation that
finds the mother but misses the cells below it covers far less (0.10 on
held-out mixed seed 10023, phase: F1 0.08, which no other check flagged).
"""
from __future__ import annotations

import numpy as np

__all__ = ["trench_fill", "spanning_counts", "LOW_FILL", "SPANNING", "MOSTLY_SPANNING"]

#: Below this median fill Segment warns (see the module docstring).
LOW_FILL = 0.3

#: One object over this fraction of a crop's rows spans the whole trench. On the real
#: label stacks in ``../shared/data`` the longest object covers at most 0.77 of its
#: crop (bacmman, 985 crop-frames; delta 0.38 and 0.51), 0.19-0.26 in the median.
SPANNING = 0.9
#: Segment warns when at least this share of the crop-frames holding cells hold an
#: object spanning the whole trench: the lumen taken for one cell (tuning mixed
#: 202, faint cells in dark lumens under JPEG: one object per trench and frame
#: covering 0.996 of it, F1 0.00, which the fill check takes for a full trench).
MOSTLY_SPANNING = 0.5


def trench_fill(labels) -> float:
    """Median fraction of a crop's rows that hold a cell, over the crops holding any.

    Parameters
    ----------
    labels : array_like, shape (..., H, W)

    Returns
    -------
    float
        NaN when no crop holds a cell.

    Examples
    --------
    >>> labels = np.zeros((3, 100, 8), int)
    >>> labels[0, 0:90, 2:6] = 1; labels[1, 0:20, 2:6] = 1   # the third crop is empty
    >>> trench_fill(labels)
    0.55
    """
    lab = np.asarray(labels)
    rows = (lab > 0).any(axis=-1).reshape(-1, lab.shape[-2])
    held = rows.any(axis=1)
    if not held.any():
        return float("nan")
    return float(np.median(rows[held].mean(axis=1)))


def spanning_counts(labels, span=SPANNING) -> tuple[int, int]:
    """``(spanning, holding)``: crop-frames where one object covers at least ``span`` of
    the rows, and crop-frames holding any cell.

    Parameters
    ----------
    labels : array_like, shape (..., H, W)

    Examples
    --------
    >>> labels = np.zeros((3, 100, 8), int)
    >>> labels[0, 2:98, 2:6] = 1                         # one object, the whole lumen
    >>> labels[1, 0:45, 2:6] = 1; labels[1, 47:95, 2:6] = 2  # two cells filling it
    >>> spanning_counts(labels)
    (1, 2)
    """
    lab = np.asarray(labels)
    h = lab.shape[-2]
    # the label of each row (the larger where two meet on a row): cells stack along it
    rows = lab.max(axis=-1).reshape(-1, h).astype(np.int64)
    crop, row = np.nonzero(rows)
    if not crop.size:
        return 0, 0
    # rows per (crop, label) pair, then the longest object of every crop
    base = int(rows.max()) + 1
    pairs, n_rows = np.unique(crop * base + rows[crop, row], return_counts=True)
    longest = np.zeros(rows.shape[0], np.int64)
    np.maximum.at(longest, pairs // base, n_rows)
    return int(np.sum(longest >= span * h)), int(np.count_nonzero(longest))
