"""Label cells in trench crops from a candidate mask, splitting touching cells.

Cells stand end to end along the trench axis (rows), so a septum or a gap
between two touching cells shows as a dip of the cell signal summed across each
row of the object: its width narrows and its signal drops. Each connected
candidate object is cut at the deepest such dip, recursively, as long as the
dip is deep enough and both pieces are at least a cell long. The numba kernel
loops over crops, so a whole stack is labelled in one call.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .cleanup import axis_runs, fill_holes


@nb.njit(cache=True)
def _components(cand, comp, order, starts):
    """4-connected components of ``cand`` by flood fill.

    Writes the component id (1..K) of each pixel into ``comp``; the pixels of
    component ``k`` are ``order[starts[k - 1]:starts[k]]`` (flat indices).
    Returns K.
    """
    h, w = cand.shape
    comp[:, :] = 0
    n_comp = 0
    top = 0
    for y0 in range(h):
        for x0 in range(w):
            if not cand[y0, x0] or comp[y0, x0] != 0:
                continue
            n_comp += 1
            begin = top
            comp[y0, x0] = n_comp
            order[top] = y0 * w + x0
            top += 1
            head = begin
            while head < top:
                p = order[head]
                head += 1
                y, x = p // w, p % w
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and cand[yy, xx] and comp[yy, xx] == 0:
                        comp[yy, xx] = n_comp
                        order[top] = yy * w + xx
                        top += 1
            starts[n_comp] = top
    return n_comp


@nb.njit(cache=True)
def split_profile(profile, lo, hi, depth, min_length, cuts, min_dip=0.0):
    """Cut rows of ``profile[lo:hi]`` at dips, appended to ``cuts``; returns their count.

    A row ``i`` is a cut when it is a local minimum whose depth below the lower
    of the highest values on either side, relative to that value, is at least
    ``depth``, and both pieces ``[lo, i)`` and ``[i, hi)`` are at least
    ``min_length`` rows. The deepest cut is taken first, then both pieces are
    searched again. ``min_dip`` is the smallest depth in absolute units: dips
    that noise alone makes in a dim cell's profile do not split it.
    """
    n_cuts = 0
    stack_lo = np.empty(64, np.int64)
    stack_hi = np.empty(64, np.int64)
    stack_lo[0], stack_hi[0] = lo, hi
    top = 1
    while top > 0:
        top -= 1
        a, b = stack_lo[top], stack_hi[top]
        if b - a < 2 * min_length:
            continue
        left = np.empty(b - a)
        right = np.empty(b - a)
        run = -np.inf
        for i in range(a, b):
            run = max(run, profile[i])
            left[i - a] = run
        run = -np.inf
        for i in range(b - 1, a - 1, -1):
            run = max(run, profile[i])
            right[i - a] = run
        best, best_i = depth, -1
        for i in range(a + min_length, b - min_length + 1):
            v = profile[i]
            if v > profile[i - 1] or (i + 1 < b and v > profile[i + 1]):
                continue
            peak = min(left[i - a], right[i - a])
            if peak <= 0:
                continue
            ratio = (peak - v) / peak
            if ratio >= best and peak - v >= min_dip:
                best, best_i = ratio, i
        if best_i < 0:
            continue
        # The dip row itself goes to whichever neighbour it resembles more.
        after = profile[best_i + 1] if best_i + 1 < b else -np.inf
        cut = best_i + 1 if profile[best_i - 1] >= after else best_i
        cut = min(max(cut, a + min_length), b - min_length)
        cuts[n_cuts] = cut
        n_cuts += 1
        if top + 2 <= stack_lo.size:
            stack_lo[top], stack_hi[top] = a, cut
            stack_lo[top + 1], stack_hi[top + 1] = cut, b
            top += 2
    return n_cuts


@nb.njit(cache=True)
def _split_components(s, n_comp, order, starts, obj, profile, cuts, depth, min_length,
                      min_dip=0.0):
    """Object id of each candidate pixel after cutting components at profile dips."""
    h, w = s.shape
    obj[:, :] = 0
    n_obj = 0
    for k in range(1, n_comp + 1):
        y0, y1 = h, -1
        for j in range(starts[k - 1], starts[k]):
            y = order[j] // w
            y0 = min(y0, y)
            y1 = max(y1, y)
        profile[y0:y1 + 1] = 0.0
        for j in range(starts[k - 1], starts[k]):
            p = order[j]
            v = s[p // w, p % w]
            if v > 0:
                profile[p // w] += v
        n_cuts = split_profile(profile, y0, y1 + 1, depth, min_length, cuts, min_dip)
        bounds = np.sort(cuts[:n_cuts])
        for j in range(starts[k - 1], starts[k]):
            p = order[j]
            y = p // w
            piece = 0
            while piece < n_cuts and y >= bounds[piece]:
                piece += 1
            obj[y, p % w] = n_obj + 1 + piece
        n_obj += n_cuts + 1
    return n_obj


def label_crops(signal, contour, cand, level, min_peak, axis, max_offset, depth, min_length,
                min_area, drop_open_end, clean, min_dip=None):
    """Label the cells of every crop of a ``(M, H, W)`` stack.

    Parameters
    ----------
    signal : float32 (M, H, W)
        Background-corrected signal, cells positive: splits objects and
        decides, by its peak, whether an object is a cell.
    contour : float32 (M, H, W)
        Signal whose level sets the edge of each object (may be ``signal``).
    cand : bool (M, H, W)
        Candidate cell pixels (detection threshold, lumen only).
    level : float
        After splitting, each object keeps its pixels with
        ``contour >= level * max(contour over the object)``: an edge relative to
        each cell's own peak, so it does not depend on the cell's brightness.
    min_peak : float64 (M,)
        Objects of crop ``m`` whose peak ``signal`` is below ``min_peak[m]`` are dropped.
    axis : float64 (M,)
        Column of the trench axis in each crop.
    max_offset : float
        Objects whose centroid column is farther than this from the axis are
        dropped (cells stand in single file on the axis; wall blur does not).
    depth, min_length : float, int
        Splitting parameters, see :func:`split_profile`.
    min_area : int
        Smaller objects are dropped.
    drop_open_end : bool
        Drop objects touching the last row (cells cut by the crop's open end).
    clean : bool
        Fill holes and keep, in every row, only each object's run through its
        axis (rod cells are convex across the trench).

    min_dip : float64 (M,), optional
        Smallest absolute depth of a split, per crop, in units of the row
        sums of ``signal`` (default 0: ``depth`` alone decides).

    Returns
    -------
    int32 (M, H, W)
        Labels numbered 1..k from the closed end (row 0) in every crop.
    """
    if min_dip is None:
        min_dip = np.zeros(signal.shape[0])
    return _label_crops(signal, contour, cand, level, min_peak, axis, max_offset, depth,
                        min_length, min_area, drop_open_end, clean,
                        np.ascontiguousarray(min_dip, np.float64))


@nb.njit(cache=True)
def _label_crops(signal, contour, cand, level, min_peak, axis, max_offset, depth, min_length,
                 min_area, drop_open_end, clean, min_dip):
    m_crops, h, w = signal.shape
    out = np.zeros((m_crops, h, w), np.int32)
    comp = np.zeros((h, w), np.int32)
    order = np.empty(h * w, np.int64)
    starts = np.zeros(h * w + 1, np.int64)
    obj = np.zeros((h, w), np.int32)
    reached = np.zeros((h, w), np.bool_)
    profile = np.zeros(h)
    cuts = np.empty(h, np.int64)
    obj_max = np.empty(h * w)
    obj_cmax = np.empty(h * w)
    obj_area = np.empty(h * w, np.int64)
    obj_ysum = np.empty(h * w)
    obj_ymax = np.empty(h * w, np.int64)
    obj_xsum = np.empty(h * w)
    for m in range(m_crops):
        s = signal[m]
        n_comp = _components(cand[m], comp, order, starts)
        n_obj = _split_components(s, n_comp, order, starts, obj, profile, cuts, depth, min_length,
                                  min_dip[m])
        _trim_to_contour(s, contour[m], obj, n_obj, level, obj_max, obj_cmax)
        if clean:
            fill_holes(obj, reached, order)
            axis_runs(obj, n_obj, obj_ysum, obj_area, obj_ymax)
        _object_moments(obj, n_obj, obj_area, obj_ysum, obj_xsum, obj_ymax)
        _number_kept(obj, n_obj, obj_area, obj_max, obj_ysum, obj_xsum, obj_ymax, min_area,
                     min_peak[m], axis[m], max_offset, drop_open_end, out[m])
    return out


@nb.njit(cache=True)
def _trim_to_contour(s, c, obj, n_obj, level, obj_max, obj_cmax):
    """Each object's peak signal (``obj_max``); its pixels whose contour signal is below
    ``level`` times the object's contour peak leave it."""
    h, w = obj.shape
    obj_max[:n_obj] = -np.inf
    obj_cmax[:n_obj] = -np.inf
    for y in range(h):
        for x in range(w):
            o = obj[y, x] - 1
            if o >= 0:
                obj_max[o] = max(obj_max[o], s[y, x])
                obj_cmax[o] = max(obj_cmax[o], c[y, x])
    for y in range(h):
        for x in range(w):
            o = obj[y, x]
            if o > 0 and c[y, x] < level * obj_cmax[o - 1]:
                obj[y, x] = 0


@nb.njit(cache=True)
def _object_moments(obj, n_obj, obj_area, obj_ysum, obj_xsum, obj_ymax):
    """Area, sums of rows and columns, and last row of every object."""
    h, w = obj.shape
    obj_area[:n_obj] = 0
    obj_ysum[:n_obj] = 0.0
    obj_ymax[:n_obj] = -1
    obj_xsum[:n_obj] = 0.0
    for y in range(h):
        for x in range(w):
            o = obj[y, x] - 1
            if o >= 0:
                obj_area[o] += 1
                obj_ysum[o] += y
                obj_xsum[o] += x
                obj_ymax[o] = y


@nb.njit(cache=True)
def _number_kept(obj, n_obj, obj_area, obj_max, obj_ysum, obj_xsum, obj_ymax, min_area, min_peak,
                 axis, max_offset, drop_open_end, out):
    """Write into ``out`` the objects that pass the filters, numbered 1..k from the closed end."""
    h, w = obj.shape
    keys = np.full(n_obj, np.inf)
    for i in range(n_obj):
        if (obj_area[i] < min_area or obj_max[i] < min_peak
                or abs(obj_xsum[i] / obj_area[i] - axis) > max_offset
                or (drop_open_end and obj_ymax[i] == h - 1)):
            continue
        keys[i] = obj_ysum[i] / obj_area[i]
    rank = np.argsort(keys, kind="mergesort")
    new_id = np.zeros(n_obj + 1, np.int32)
    for r in range(n_obj):
        i = rank[r]
        if keys[i] == np.inf:
            break
        new_id[i + 1] = r + 1
    for y in range(h):
        for x in range(w):
            out[y, x] = new_id[obj[y, x]]
