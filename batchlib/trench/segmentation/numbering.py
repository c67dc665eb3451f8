"""Numbering of cells from the closed end, for any method's labels."""
from __future__ import annotations

import numpy as np


def relabel_from_closed_end(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels of every 2-D crop 1..k by centroid row (row 0 first).

    Vectorised over the whole stack: each crop's labels get an offset so the
    stack is one label image, centroids come from ``bincount`` and ranks from
    one ``lexsort``. Any non-negative label values are accepted.

    Parameters
    ----------
    labels : ndarray of int, shape (..., H, W)

    Returns
    -------
    int32 ndarray of the same shape
    """
    labels = np.asarray(labels)
    h, w = labels.shape[-2:]
    flat = labels.reshape(-1)
    idx = np.flatnonzero(flat)
    out = np.zeros(flat.shape, np.int32)
    if idx.size == 0:
        return out.reshape(labels.shape)
    lab = flat[idx].astype(np.int64)
    n_lab = int(lab.max()) + 1
    crop = idx // (h * w)
    # Compact ids of the (crop, label) pairs, then centroid rows by bincount.
    present, gid = np.unique(crop * n_lab + lab, return_inverse=True)
    counts = np.bincount(gid)
    cy = np.bincount(gid, weights=(idx // w) % h) / counts
    pcrop = present // n_lab
    order = np.lexsort((present, cy, pcrop))
    first = np.r_[0, np.flatnonzero(np.diff(pcrop[order])) + 1]
    rank = np.arange(order.size) - np.repeat(first, np.diff(np.r_[first, order.size]))
    new = np.empty(present.size, np.int32)
    new[order] = rank + 1
    out[idx] = new[gid]
    return out.reshape(labels.shape)


def drop_slivers(labels: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """Remove objects shorter along the trench than ``ratio`` of their width, renumbered.

    A rod-shaped cell is at least as long as it is wide, a newborn too; an
    object of a few rows across the lumen is the edge of the closed end or a
    halo band, not a cell (the U-Net's one false cell in held-out empty
    trenches: 3 rows by 11 columns at the lumen start). Objects touching the
    crop's last row are kept: a cell leaving through the open end is cut
    there.

    Parameters
    ----------
    labels : ndarray of int, shape (..., H, W)
        Labels numbered 1..k per crop.
    ratio : float

    Returns
    -------
    int32 ndarray of the same shape, numbered 1..k from the closed end

    Examples
    --------
    >>> lab = np.zeros((20, 12), np.int32)
    >>> lab[2:5, 1:11] = 1          # 3 rows across the lumen: an edge
    >>> lab[6:16, 3:9] = 2          # a rod
    >>> np.unique(drop_slivers(lab)).tolist()
    [0, 1]
    """
    from .label_stats import label_stats  # numba: loaded where used

    labels = np.asarray(labels)
    h, w = labels.shape[-2:]
    flat = labels.reshape(-1, h, w)
    _, _, bottom, length, width = label_stats(flat)
    sliver = (length > 0) & (length < ratio * width) & (bottom != h - 1)
    sliver[:, 0] = False
    keep = ~sliver
    if keep.all():
        return labels.astype(np.int32, copy=False)
    kept = np.take_along_axis(keep, flat.reshape(flat.shape[0], -1), axis=1)
    out = np.where(kept.reshape(flat.shape), flat, 0)
    return relabel_from_closed_end(out).reshape(labels.shape)


def remove_objects(crop: np.ndarray, gone: np.ndarray) -> np.ndarray:
    """``crop`` (labels 1..k) without the labels where ``gone[label]`` is true, the rest
    renumbered 1..k' in their order from the closed end (``gone[0]`` is ignored).

    Examples
    --------
    >>> remove_objects(np.array([[1, 1, 0, 2, 3]]), np.array([False, False, True, False])).tolist()
    [[1, 1, 0, 0, 2]]
    """
    kept = ~np.asarray(gone, bool)
    kept[0] = False
    new_id = np.cumsum(kept) * kept
    return new_id[crop].astype(crop.dtype)
