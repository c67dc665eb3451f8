"""Size and extent of every label of every crop of a stack, in one compiled pass.

What :func:`~.numbering.drop_slivers`, :func:`~.fragments.merge_fragments` and
:func:`~.empty_trenches.drop_fragments` judge objects by; one pass over the
stack instead of a pass per label or numpy calls per crop.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["label_stats", "highest_labels", "column_sums"]


def label_stats(labels):
    """Area, first and last row, rows and columns spanned of labels ``0..K`` of each crop.

    Parameters
    ----------
    labels : ndarray of int, shape (..., H, W)
        Non-negative labels, numbered 1..k in each crop as every method's are
        once the Segment job has them (the arrays hold a column per label
        value up to the largest, so ids unique over a whole stack would make
        them large).

    Returns
    -------
    area, top, bottom, n_rows, n_cols : int64 ndarrays, shape (M, K + 1)
        For crop ``m`` of the ``M`` crops (the leading axes flattened) and
        label ``k``: its pixel count, first and last row (-1 where the label
        has no pixel), and how many rows and columns hold at least one of its
        pixels. Column 0 describes the background.

    Examples
    --------
    >>> lab = np.zeros((1, 6, 5), np.int32)
    >>> lab[0, 1:4, 1:3] = 1
    >>> lab[0, 5, 0:5] = 2
    >>> area, top, bottom, n_rows, n_cols = label_stats(lab)
    >>> area[0, 1:].tolist(), top[0, 1:].tolist(), bottom[0, 1:].tolist()
    ([6, 5], [1, 5], [3, 5])
    >>> n_rows[0, 1:].tolist(), n_cols[0, 1:].tolist()
    ([3, 1], [2, 5])
    """
    labels = np.asarray(labels)
    h, w = labels.shape[-2:]
    flat = np.ascontiguousarray(labels.reshape(-1, h, w))
    n_labels = int(flat.max(initial=0)) + 1
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be non-negative")
    return _label_stats(flat, n_labels)


def highest_labels(area) -> np.ndarray:
    """The largest label present in each crop (0 in an empty one), from :func:`label_stats`'s
    ``area``: a crop's labels are ``1..k`` with ``k`` this, gaps included, as
    ``crop.max()`` gives it."""
    present = area[:, 1:] > 0
    k = np.arange(1, area.shape[1])
    return np.where(present, k, 0).max(axis=1, initial=0)


@nb.njit(cache=True)
def _label_stats(flat, n_labels):
    m_crops, h, w = flat.shape
    area = np.zeros((m_crops, n_labels), np.int64)
    top = np.full((m_crops, n_labels), -1, np.int64)
    bottom = np.full((m_crops, n_labels), -1, np.int64)
    n_rows = np.zeros((m_crops, n_labels), np.int64)
    n_cols = np.zeros((m_crops, n_labels), np.int64)
    col_seen = np.zeros((n_labels, w), np.bool_)
    for m in range(m_crops):
        col_seen[:] = False
        for y in range(h):
            for x in range(w):
                k = flat[m, y, x]
                area[m, k] += 1
                if bottom[m, k] != y:  # the label's first pixel in this row
                    if top[m, k] < 0:
                        top[m, k] = y
                    bottom[m, k] = y
                    n_rows[m, k] += 1
                if not col_seen[k, x]:
                    col_seen[k, x] = True
                    n_cols[m, k] += 1
    return area, top, bottom, n_rows, n_cols


def column_sums(labels, n_labels=None) -> np.ndarray:
    """Sum of the column index of every pixel of labels ``0..K`` of each crop: ``(M, K + 1)``
    float64 (over the area, a label's mean column), in one compiled pass like
    :func:`label_stats`.

    Examples
    --------
    >>> lab = np.zeros((1, 2, 5), np.int32)
    >>> lab[0, :, 1:3] = 1
    >>> column_sums(lab)[0, 1:].tolist()
    [6.0]
    """
    labels = np.asarray(labels)
    h, w = labels.shape[-2:]
    flat = np.ascontiguousarray(labels.reshape(-1, h, w))
    k = int(flat.max(initial=0)) + 1 if n_labels is None else int(n_labels)
    return _column_sums(flat, k)


@nb.njit(cache=True)
def _column_sums(flat, n_labels):
    m_crops, h, w = flat.shape
    out = np.zeros((m_crops, n_labels), np.float64)
    for m in range(m_crops):
        for y in range(h):
            for x in range(w):
                out[m, flat[m, y, x]] += x
    return out
