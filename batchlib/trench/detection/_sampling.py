"""Sampling the rotated frame from band profiles, with a small numba kernel.

``scipy.ndimage.map_coordinates`` costs ~50 ns a point; the detection needs a
few hundred thousand points per frame, so a plain bilinear loop is used.
"""
from __future__ import annotations

import numba
import numpy as np

from ..geometry import frame_center

__all__ = ["bilinear", "rotated_band_image", "rotated_samples"]


@numba.njit(cache=True, nogil=True)
def _bilinear(img, ys, xs, out):
    ny, nx = img.shape
    for i in range(ys.size):
        y, x = ys.flat[i], xs.flat[i]
        # a pixel covers +-0.5 around its centre, so clamp there rather than drop
        if not (-0.5 <= y <= ny - 0.5 and -0.5 <= x <= nx - 0.5):
            out.flat[i] = np.nan
            continue
        y = min(max(y, 0.0), ny - 1.0)
        x = min(max(x, 0.0), nx - 1.0)
        y0 = min(int(y), ny - 2) if ny > 1 else 0
        x0 = min(int(x), nx - 2) if nx > 1 else 0
        fy, fx = y - y0, x - x0
        y1, x1 = min(y0 + 1, ny - 1), min(x0 + 1, nx - 1)
        top = float(img[y0, x0]) * (1.0 - fx) + float(img[y0, x1]) * fx
        bot = float(img[y1, x0]) * (1.0 - fx) + float(img[y1, x1]) * fx
        out.flat[i] = top * (1.0 - fy) + bot * fy
    return out


def bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` at ``(ys, xs)``; NaN outside the image."""
    ys, xs = np.broadcast_arrays(np.asarray(ys, np.float64), np.asarray(xs, np.float64))
    out = np.empty(ys.shape, dtype=np.float64)
    img = np.asarray(img)
    if img.dtype not in (np.float64, np.float32, np.uint16, np.uint8):
        img = img.astype(np.float64)
    return _bilinear(np.ascontiguousarray(img), np.ascontiguousarray(ys),
                     np.ascontiguousarray(xs), out)


def rotated_band_image(bands, band_y, shape, angle_deg, rows_rot, cols_rot=None):
    """Rotated-frame image sampled from the band profiles of a raw frame.

    Parameters
    ----------
    bands : ndarray, shape (K, W)
        Band profiles (see :func:`band_profiles`); band ``k`` is centred on raw
        row ``band_y[k]`` (equally spaced).
    shape : tuple
        Raw frame shape, which fixes the centre of rotation.
    rows_rot, cols_rot : ndarray
        Rotated-frame rows and columns to sample (columns default to all).

    Returns
    -------
    ndarray, shape (len(rows_rot), len(cols_rot)); NaN where outside the frame.
    """
    if cols_rot is None:
        cols_rot = np.arange(shape[1], dtype=float)
    cy, cx = frame_center(shape)
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    dy = np.asarray(rows_rot, float)[:, None] - cy
    dx = np.asarray(cols_rot, float)[None, :] - cx
    y_raw = cy + ca * dy - sa * dx
    x_raw = cx + sa * dy + ca * dx
    step = band_y[1] - band_y[0] if len(band_y) > 1 else 1.0
    return bilinear(bands, (y_raw - band_y[0]) / step, x_raw)


def rotated_samples(image, shape, angle_deg, rows_rot, cols_rot):
    """Full-resolution samples of ``image`` at a rotated-frame grid (NaN outside)."""
    cy, cx = frame_center(shape)
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    dy = np.asarray(rows_rot, float)[..., :, None] - cy
    dx = np.asarray(cols_rot, float)[..., None, :] - cx
    return bilinear(image, cy + ca * dy - sa * dx, cx + sa * dy + ca * dx)
