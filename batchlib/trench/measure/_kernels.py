"""Numba kernels for per-group reductions that numpy's ``bincount`` cannot do.

Groups are compact integer ids ``0..n_groups-1`` (one per cell of a whole stack,
or one per crop), so every kernel is a single pass over the pixels plus, for
order statistics, a sort of each (small) group.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def group_extents(flat_idx, gid, n_groups, height, width):
    """Row and column extent of each group from flat ``(M, H, W)`` pixel indices."""
    ymin = np.full(n_groups, height, np.int64)
    ymax = np.full(n_groups, -1, np.int64)
    xmin = np.full(n_groups, width, np.int64)
    xmax = np.full(n_groups, -1, np.int64)
    for i in range(flat_idx.size):
        p = flat_idx[i]
        x = p % width
        y = (p // width) % height
        g = gid[i]
        if y < ymin[g]:
            ymin[g] = y
        if y > ymax[g]:
            ymax[g] = y
        if x < xmin[g]:
            xmin[g] = x
        if x > xmax[g]:
            xmax[g] = x
    return ymin, ymax, xmin, xmax


@nb.njit(cache=True)
def group_row_counts(flat_idx, gid, n_groups, height, width):
    """Pixel count of each group in each of its rows, as ``(group, count)`` pairs.

    ``flat_idx`` is increasing, so the rows of a group arrive in order and one
    running counter per group suffices.
    """
    cur_row = np.full(n_groups, -1, np.int64)
    cur_count = np.zeros(n_groups, np.int64)
    out_g = np.empty(flat_idx.size, np.int64)
    out_c = np.empty(flat_idx.size, np.float64)
    k = 0
    for i in range(flat_idx.size):
        g = gid[i]
        row = flat_idx[i] // width        # row of the whole stack: crop * height + y
        if row != cur_row[g]:
            if cur_row[g] >= 0:
                out_g[k] = g
                out_c[k] = cur_count[g]
                k += 1
            cur_row[g] = row
            cur_count[g] = 0
        cur_count[g] += 1
    for g in range(n_groups):
        if cur_row[g] >= 0:
            out_g[k] = g
            out_c[k] = cur_count[g]
            k += 1
    return out_g[:k], out_c[:k]


@nb.njit(cache=True)
def group_order(gid, n_groups):
    """Counting-sort permutation putting pixels of the same group together.

    Returns ``order`` and ``starts`` (``n_groups + 1``): group ``g`` owns
    ``order[starts[g]:starts[g + 1]]``.
    """
    starts = np.zeros(n_groups + 1, np.int64)
    for i in range(gid.size):
        starts[gid[i] + 1] += 1
    for g in range(n_groups):
        starts[g + 1] += starts[g]
    pos = starts[:-1].copy()
    order = np.empty(gid.size, np.int64)
    for i in range(gid.size):
        g = gid[i]
        order[pos[g]] = i
        pos[g] += 1
    return order, starts


@nb.njit(cache=True)
def group_percentile(values, order, starts, q):
    """``np.percentile(..., q)`` (linear interpolation) of each group."""
    n_groups = starts.size - 1
    out = np.full(n_groups, np.nan)
    for g in range(n_groups):
        n = starts[g + 1] - starts[g]
        if n == 0:
            continue
        seg = np.empty(n, np.float64)
        for k in range(n):
            seg[k] = values[order[starts[g] + k]]
        seg.sort()
        pos = q / 100.0 * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        out[g] = seg[lo] + (seg[hi] - seg[lo]) * (pos - lo)
    return out


@nb.njit(cache=True)
def masked_median_rows(values, mask):
    """Median and count of ``values[m][mask[m]]`` for each row ``m`` of 2-D arrays."""
    n_rows, n_cols = values.shape
    med = np.full(n_rows, np.nan)
    count = np.zeros(n_rows, np.int64)
    buf = np.empty(n_cols, np.float64)
    for m in range(n_rows):
        k = 0
        for j in range(n_cols):
            if mask[m, j]:
                buf[k] = values[m, j]
                k += 1
        count[m] = k
        if k > 0:
            med[m] = np.median(buf[:k])
    return med, count
