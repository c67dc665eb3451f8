"""Numba clean-up of labelled rod cells: hole filling and side-protrusion removal."""
from __future__ import annotations

import numba as nb


@nb.njit(cache=True)
def fill_holes(obj, reached, queue):
    """Give background pixels not connected to the crop border a neighbouring object's id.

    ``reached`` (bool, shape of ``obj``) and ``queue`` (``obj.size`` ints) are scratch.
    """
    h, w = obj.shape
    reached[:, :] = False
    top = 0
    for y in range(h):
        for x in range(w):
            if (y == 0 or x == 0 or y == h - 1 or x == w - 1) and obj[y, x] == 0:
                reached[y, x] = True
                queue[top] = y * w + x
                top += 1
    head = 0
    while head < top:
        p = queue[head]
        head += 1
        y, x = p // w, p % w
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and obj[yy, xx] == 0 and not reached[yy, xx]:
                reached[yy, xx] = True
                queue[top] = yy * w + xx
                top += 1
    for y in range(h):
        last = 0
        for x in range(w):
            if obj[y, x] == 0 and not reached[y, x]:
                obj[y, x] = last
            last = obj[y, x] if obj[y, x] > 0 else last
        for x in range(w - 1, -1, -1):
            if obj[y, x] == 0 and not reached[y, x]:
                obj[y, x] = last
            last = obj[y, x] if obj[y, x] > 0 else last


@nb.njit(cache=True)
def axis_runs(obj, n_obj, xsum, count, best):
    """In every row keep, of each object, only its run of pixels through (or nearest) its axis.

    A rod cell is convex across the trench, so pixels separated from its main
    run (blur of a dark wall at the lumen edge, debris) are dropped.
    ``xsum`` (float), ``count`` and ``best`` (int, ``n_obj`` long) are scratch.
    """
    h, w = obj.shape
    xsum[:n_obj] = 0.0
    count[:n_obj] = 0
    for y in range(h):
        for x in range(w):
            o = obj[y, x] - 1
            if o >= 0:
                xsum[o] += x
                count[o] += 1
    for y in range(h):
        # best[o] packs (distance to the axis, start column) of o's best run in this row.
        best[:n_obj] = -1
        for clear in (False, True):
            x = 0
            while x < w:
                o = obj[y, x] - 1
                if o < 0:
                    x += 1
                    continue
                end = x
                while end + 1 < w and obj[y, end + 1] == o + 1:
                    end += 1
                if clear:
                    if best[o] % w != x:
                        obj[y, x:end + 1] = 0
                else:
                    axis = int(round(xsum[o] / count[o]))
                    d = 0 if x <= axis <= end else min(abs(x - axis), abs(end - axis))
                    if best[o] < 0 or d < best[o] // w:
                        best[o] = d * w + x
                x = end + 1

