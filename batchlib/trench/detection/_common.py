"""Shared helpers of the detection modules: the error type and cheap image reductions."""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["TrenchDetectionError", "as_image2d", "band_profiles", "block_mean", "nanmean",
           "over_local_mean"]


class TrenchDetectionError(RuntimeError):
    """No trench array could be found; ``reason`` says why in plain words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def as_image2d(image) -> np.ndarray:
    """Validate a 2-D image without copying it."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise TrenchDetectionError(f"image {image.shape} is too small to hold trenches")
    return image


def band_profiles(image: np.ndarray, rows: int):
    """Column profiles of horizontal bands of ``rows`` rows.

    Summing bands (rather than rotating the image) keeps the cost to one pass
    over the pixels; rows left over at the bottom are ignored.

    Returns
    -------
    profiles : ndarray, shape (n_bands, W), float64
        Mean of each band.
    band_y : ndarray, shape (n_bands,)
        Row coordinate of each band's centre.
    """
    n = image.shape[0] // rows
    if n == 0:
        raise ValueError("band taller than the image")
    sums = np.add.reduce(image[: n * rows].reshape(n, rows, image.shape[1]), axis=1,
                         dtype=np.float64)
    band_y = np.arange(n) * rows + (rows - 1) / 2.0
    return sums / rows, band_y


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (float32); ragged edges are dropped."""
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    ny, nx = image.shape[0] // factor, image.shape[1] // factor
    rows = np.add.reduce(image[: ny * factor, : nx * factor].reshape(ny, factor, nx * factor),
                         axis=1, dtype=np.float32)
    out = rows[:, 0::factor].copy()
    for k in range(1, factor):
        out += rows[:, k::factor]
    out /= factor * factor
    return out


def nanmean(a, axis=None, keepdims=False):
    """Mean ignoring NaN; NaN (without a warning) where nothing is finite.

    Rotated images have NaN outside the frame, so all-NaN slices are normal.
    ``axis`` is None or one axis. One pass in numba: the numpy expression
    (mask, zero-fill, two sums) cost a tenth of a 2048^2 frame's detection.

    >>> nanmean(np.array([[1.0, np.nan], [3.0, np.nan]]), axis=0)
    array([ 2., nan])
    """
    a = np.asarray(a, dtype=float)
    if axis is None:
        lead, n, trail = 1, a.size, 1
        out_shape = (1,) * a.ndim if keepdims else ()
    else:
        axis = axis % a.ndim if a.ndim else 0
        lead = int(np.prod(a.shape[:axis]))
        n, trail = a.shape[axis], int(np.prod(a.shape[axis + 1:]))
        out_shape = (a.shape[:axis] + ((1,) if keepdims else ()) + a.shape[axis + 1:])
    out = _nanmean_kernel(np.ascontiguousarray(a).reshape(lead, n, trail),
                          np.empty((lead, trail)))
    return out.reshape(out_shape)


@numba.njit(cache=True, nogil=True)
def _nanmean_kernel(a, out):
    lead, n, trail = a.shape
    count = np.empty(trail)
    for i in range(lead):
        if trail == 1:  # along the last axis: keep the sums in registers
            total, c = 0.0, 0
            for k in range(n):
                v = a[i, k, 0]
                if v - v == 0.0:  # finite
                    total += v
                    c += 1
            out[i, 0] = total / c if c > 0 else np.nan
            continue
        out[i] = 0.0
        count[:] = 0.0
        for k in range(n):
            for j in range(trail):
                v = a[i, k, j]
                if v - v == 0.0:
                    out[i, j] += v
                    count[j] += 1.0
        for j in range(trail):
            out[i, j] = out[i, j] / count[j] if count[j] > 0 else np.nan
    return out


def over_local_mean(rows, window_rows=9):
    """``rows`` (rows along the trenches x columns) over their running mean along the rows.

    Texture that scales with the brightness (illumination speckle and fringes
    multiply the image) is then as strong on a bright stripe as on a dark one.
    NaN stays NaN; the mean is held above a millionth of the median, for dark
    lumens near zero.

    >>> over_local_mean(np.array([[2.0, 10.0], [2.0, 10.0], [2.0, 10.0]]), 3)
    array([[1., 1.],
           [1., 1.],
           [1., 1.]])
    """
    from scipy import ndimage

    r = np.asarray(rows, float)
    finite = np.isfinite(r)
    level = float(np.median(r[finite])) if finite.any() else 0.0
    local = ndimage.uniform_filter1d(np.where(finite, r, level), int(window_rows), axis=0,
                                     mode="nearest")
    return r / np.maximum(local, 1e-6 * abs(level) + 1e-12)
