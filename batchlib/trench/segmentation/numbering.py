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
