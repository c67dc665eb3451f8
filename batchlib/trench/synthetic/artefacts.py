"""Degradations applied to rendered frames: a wide PSF tail and JPEG-like blocks.

Both are off by default (see ``SyntheticConfig.psf_tail_weight`` and
``jpeg_quality``) and never change the ground truth.
"""
from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

__all__ = ["psf_tail", "jpeg_like", "JPEG_LUMA_TABLE"]

# The luminance quantisation table of the JPEG standard (ITU T.81, Annex K).
JPEG_LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)


def psf_tail(planes, weight, sigma):
    """Mix ``weight`` of a wide Gaussian (``sigma``) into each plane of ``(n, H, W)``.

    A Gaussian core plus a wide tail stands for a real objective's PSF (an Airy
    pattern with aberrations) better than the core alone. Edges are reflected,
    so the tail does not darken the frame border.
    """
    planes = np.asarray(planes, np.float32)
    if weight <= 0:
        return planes
    wide = ndimage.gaussian_filter(planes, (0, sigma, sigma), mode="reflect", truncate=3.0)
    return ((1 - weight) * planes + weight * wide).astype(np.float32)


def _quant_table(quality: int) -> np.ndarray:
    """The IJG scaling of the standard table for ``quality`` in 1-100."""
    q = int(np.clip(quality, 1, 100))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return np.clip(np.floor((JPEG_LUMA_TABLE * scale + 50) / 100), 1, 255)


def jpeg_like(frame, quality: int) -> np.ndarray:
    """JPEG-like compression of one uint16 frame: 8-bit rescale, 8 x 8 DCT quantisation.

    The frame is mapped linearly from its own range to 0-255 (as an export to an
    8-bit JPEG would), every 8 x 8 block is transformed, quantised with the
    standard luminance table scaled for ``quality`` and transformed back, and
    the result is mapped back to the original range. The output thus carries
    both the 8-bit banding and the block artefacts; chroma subsampling and
    entropy coding (lossless) are left out.

    Parameters
    ----------
    frame : ndarray (H, W), integer
    quality : int
        1 (worst) to 100 (best).

    Returns
    -------
    ndarray (H, W), same dtype as ``frame``
    """
    frame = np.asarray(frame)
    lo, hi = float(frame.min()), float(frame.max())
    if hi <= lo:
        return frame.copy()
    H, W = frame.shape
    ph, pw = -H % 8, -W % 8
    x = np.pad((frame.astype(np.float64) - lo) * (255.0 / (hi - lo)), ((0, ph), (0, pw)),
               mode="edge") - 128.0
    blocks = x.reshape(x.shape[0] // 8, 8, x.shape[1] // 8, 8)
    coef = fft.dctn(blocks, axes=(1, 3), norm="ortho")
    # norm="ortho" matches the JPEG DCT scaling for which the table is defined.
    q = _quant_table(quality)[None, :, None, :]
    blocks = fft.idctn(np.round(coef / q) * q, axes=(1, 3), norm="ortho")
    y = np.clip(np.round(blocks.reshape(x.shape)[:H, :W] + 128.0), 0, 255)
    info = np.iinfo(frame.dtype) if np.issubdtype(frame.dtype, np.integer) else None
    out = lo + y * ((hi - lo) / 255.0)
    if info is not None:
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(frame.dtype)
