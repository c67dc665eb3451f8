"""Where each cell's free poles lie within their pixels, from the network's P(cell).

A label's row extent counts whole pixels: a cell 20.4 px long spans 20 or 21
rows, and at 0.1 µm pixels a mother of 25 px has a 5 % tolerance of 1.25 px,
most of which rounding takes. The U-Net's P(cell) falls across a free pole
(one with no other cell beyond it) over a pixel or two; where it crosses the
threshold the mask was cut at, between the pole's last row inside and the
first outside, is the pole's position to a fraction of a pixel.

:func:`pole_fractions` records, per crop and row, how far beyond the centre of
the first (top) and last (bottom) row of the label that starts or ends there
its pole lies: ``(N, T, H, 2)`` uint8, 0 where nothing is known (a pole
against another cell, at the crop's edge, or where P(cell) does not cross the
threshold between the two rows); else ``1 + round(254 f)`` for a fraction
``f`` in [0, 1]. :func:`decode_fractions` turns the codes back into fractions,
0.5 (the pixel's edge: the row extent) where nothing is known. Measure's
``length_px`` is then ``bottom - top + f_top + f_bottom`` (row extent:
``f = 0.5`` at both ends).

Mothers within 5 % of their true length, whole rows -> pole to pole (the
workflow's calls on detected boxes): independent simulator, phase, seeds
1000-1171, median 0.948 -> 0.983, under 0.9 on 34 -> 10 of 172 positions;
generator tuning seeds, median of families 0.978 -> 0.992 (docs/benchmarks.md,
"Fifteenth session"). A position whose masks are a pixel long stays so: the
rounding goes, not the network's bias.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["pole_fractions", "decode_fractions", "UNKNOWN"]

#: The code of a pole whose position within its pixel is not known.
UNKNOWN = 0


def pole_fractions(labels, cell_probability, threshold: float = 0.5) -> np.ndarray:
    """Codes of the free poles' positions within their pixels, by row (see the module).

    Parameters
    ----------
    labels : ndarray of int, shape (..., H, W)
        Cells numbered 1..k in each crop.
    cell_probability : ndarray of float, same shape
        The network's P(cell) (1 - P(background)) the labels were cut from.
    threshold : float
        The P(cell) the mask was cut at.

    Returns
    -------
    ndarray of uint8, shape (..., H, 2)
        ``[..., r, 0]``: code of the top pole of the label whose first row is
        ``r``; ``[..., r, 1]``: of the bottom pole of the label whose last row is
        ``r``; 0 where unknown, or where two labels start (end) on one row.

    Examples
    --------
    >>> lab = np.zeros((8, 3), np.int32)
    >>> lab[2:6] = 1
    >>> p = np.zeros((8, 3))
    >>> p[1], p[2:6], p[6] = 0.2, 1.0, 0.375   # 0.5 crossed 0.625 px beyond row 2's centre
    >>> codes = pole_fractions(lab, p, 0.5)
    >>> decode_fractions(codes)[[2, 5]].round(2).tolist()  # rows 2 (top) and 5 (bottom)
    [[0.63, 0.5], [0.5, 0.8]]
    >>> 5 - 2 + 0.625 + 0.8                          # the cell's length, not 4 rows
    4.425
    """
    labels = np.asarray(labels)
    prob = np.asarray(cell_probability, np.float32)
    if prob.shape != labels.shape:
        raise ValueError(f"cell_probability {prob.shape} and labels {labels.shape} differ")
    h, w = labels.shape[-2:]
    # any integer type as it comes (the kernel compiles for it): no int64 copy of the stack
    flat = np.ascontiguousarray(labels.reshape(-1, h, w))
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be non-negative")
    out = _pole_codes(flat, np.ascontiguousarray(prob.reshape(-1, h, w)),
                      int(flat.max(initial=0)) + 1, float(threshold))
    return out.reshape(*labels.shape[:-1], 2)


def decode_fractions(codes) -> np.ndarray:
    """Fractions of a pixel (0.5: the pixel's edge, where the code is :data:`UNKNOWN`)."""
    codes = np.asarray(codes)
    return np.where(codes == UNKNOWN, 0.5, (codes.astype(np.float64) - 1.0) / 254.0)


@nb.njit(cache=True)
def _pole_codes(labels, prob, n_labels, threshold):  # pragma: no cover - compiled
    m_crops, h, w = labels.shape
    out = np.zeros((m_crops, h, 2), np.uint8)
    top = np.empty(n_labels, np.int64)
    bottom = np.empty(n_labels, np.int64)
    left = np.empty(n_labels, np.int64)
    right = np.empty(n_labels, np.int64)
    starts = np.zeros(h, np.int64)
    ends = np.zeros(h, np.int64)
    for m in range(m_crops):
        top[:] = h
        bottom[:] = -1
        left[:] = w
        right[:] = -1
        for r in range(h):
            for c in range(w):
                k = labels[m, r, c]
                if k > 0:
                    top[k] = min(top[k], r)
                    bottom[k] = max(bottom[k], r)
                    left[k] = min(left[k], c)
                    right[k] = max(right[k], c)
        starts[:] = 0
        ends[:] = 0
        for k in range(1, n_labels):
            if bottom[k] >= 0:
                starts[top[k]] += 1
                ends[bottom[k]] += 1
        for k in range(1, n_labels):
            if bottom[k] < 0:
                continue
            for side in range(2):
                r_in = top[k] if side == 0 else bottom[k]
                r_out = r_in - 1 if side == 0 else r_in + 1
                shared = starts[r_in] if side == 0 else ends[r_in]
                if r_out < 0 or r_out >= h or shared != 1:
                    continue
                free = True
                p_in = 0.0
                p_out = 0.0
                for c in range(left[k], right[k] + 1):
                    if labels[m, r_out, c] != 0:
                        free = False
                    if labels[m, r_in, c] == k:
                        p_in = max(p_in, prob[m, r_in, c])
                    p_out = max(p_out, prob[m, r_out, c])
                if not free or not (p_out < threshold <= p_in) or p_in <= p_out:
                    continue
                f = (p_in - threshold) / (p_in - p_out)
                out[m, r_in, side] = np.uint8(1 + int(round(254.0 * min(max(f, 0.0), 1.0))))
    return out
