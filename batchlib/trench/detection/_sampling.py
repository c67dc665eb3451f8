"""Sampling the rotated frame from band profiles, with a small numba kernel.

``scipy.ndimage.map_coordinates`` costs ~50 ns a point; the detection needs a
few hundred thousand points per frame, so a plain bilinear loop is used.
"""
from __future__ import annotations

import numba
import numpy as np

from ..geometry import frame_center

__all__ = ["rotated_band_image", "rotated_samples"]


@numba.njit(cache=True, nogil=True)
def _rotated_grid(img, rows, cols, cy, cx, ca, sa, y_origin, y_step, out):
    ny, nx = img.shape
    for i in range(rows.size):
        dy = rows[i] - cy
        for j in range(cols.size):
            dx = cols[j] - cx
            # the raw point of the rotated one (the arithmetic of the numpy
            # expressions this replaced, without their frame-sized temporaries)
            y = (cy + ca * dy - sa * dx - y_origin) / y_step
            x = cx + sa * dy + ca * dx
            # a pixel covers +-0.5 around its centre, so clamp there rather than drop
            if not (-0.5 <= y <= ny - 0.5 and -0.5 <= x <= nx - 0.5):
                out[i, j] = np.nan
                continue
            # bilinear, written out here: as a function numba does not inline it
            # and the sampling takes 2.5x as long
            y = min(max(y, 0.0), ny - 1.0)
            x = min(max(x, 0.0), nx - 1.0)
            y0 = max(min(int(y), ny - 2), 0)
            x0 = max(min(int(x), nx - 2), 0)
            y1, x1 = min(y0 + 1, ny - 1), min(x0 + 1, nx - 1)
            fy, fx = y - y0, x - x0
            top = img[y0, x0] * (1.0 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1.0 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1.0 - fy) + bot * fy
    return out


def as_kernel_image(img):
    """``img`` as a C-contiguous array of a type the sampling kernels take (else float64)."""
    img = np.asarray(img)
    if img.dtype not in (np.float64, np.float32, np.uint16, np.uint8):
        img = img.astype(np.float64)
    return np.ascontiguousarray(img)


def _rotated(img, shape, angle_deg, rows_rot, cols_rot, y_origin=0.0, y_step=1.0):
    """Samples of ``img`` at the raw positions of a rotated-frame grid, whose raw
    rows are mapped to ``img``'s rows by ``(y - y_origin) / y_step``."""
    cy, cx = frame_center(shape)
    a = np.deg2rad(angle_deg)
    rows = np.ascontiguousarray(rows_rot, dtype=np.float64)
    cols = np.ascontiguousarray(cols_rot, dtype=np.float64)
    out = np.empty((rows.size, cols.size), dtype=np.float64)
    return _rotated_grid(as_kernel_image(img), rows.ravel(), cols.ravel(), float(cy),
                         float(cx), float(np.cos(a)), float(np.sin(a)), float(y_origin),
                         float(y_step), out)


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
    step = band_y[1] - band_y[0] if len(band_y) > 1 else 1.0
    return _rotated(bands, shape, angle_deg, rows_rot, cols_rot, band_y[0], step)


def rotated_samples(image, shape, angle_deg, rows_rot, cols_rot):
    """Full-resolution samples of ``image`` at a rotated-frame grid (NaN outside).

    ``rows_rot`` and ``cols_rot`` are 1-D; the samples are ``(len(rows_rot), len(cols_rot))``.
    """
    return _rotated(image, shape, angle_deg, rows_rot, cols_rot)
