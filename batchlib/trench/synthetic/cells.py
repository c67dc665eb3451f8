"""Rasterising rod-shaped cells (spherocylinders) and the optical terms they add.

A cell is drawn as its normalised thickness ``sqrt(1 - d^2 / r^2)`` (``d`` the
distance to the rod's axis segment, ``r`` its radius): the optical path of a
rod for the phase channels and the projected amount of fluorophore for the
fluorescence channels. Its label mask is ``d <= r`` at pixel centres.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["rod", "phase_term", "blur", "halo_blur"]


def rod(shape, cy, cx, length, width, tilt, curvature=0.0, taper=0.0):
    """Thickness of one rod on a grid, evaluated only in its bounding box.

    Parameters
    ----------
    shape : (int, int)
        Grid shape.
    cy, cx : float
        Centre in grid coordinates.
    length, width : float
        Tip-to-tip length and diameter.
    tilt : float
        Angle of the axis from the grid's row axis, radians.
    curvature : float
        Curvature of the axis (1/px): the axis bends to the parabola
        ``c / 2 * (a^2 - h^2 / 3)`` across it (``a`` along it, ``h`` half the
        straight part), whose mean offset is zero.
    taper : float
        Relative radius change along the axis: the radius is
        ``r * (1 + taper * a / h)``, wider at one pole than at the other.

    Returns
    -------
    window : (slice, slice) or None
        Bounding box inside the grid (None if the rod misses the grid).
    thickness : ndarray
        Normalised thickness in the window, 0 outside the rod.
    inside : ndarray of bool
        Pixel centres inside the rod.
    """
    r = width / 2.0
    h = max(length - width, 0.0) / 2.0
    uy, ux = math.cos(tilt), math.sin(tilt)
    if curvature or taper:
        return _bent_rod(shape, cy, cx, r, h, uy, ux, float(curvature), float(taper))
    ey, ex = h * abs(uy) + r + 1, h * abs(ux) + r + 1
    y0, y1 = max(int(math.floor(cy - ey)), 0), min(int(math.ceil(cy + ey)) + 1, shape[0])
    x0, x1 = max(int(math.floor(cx - ex)), 0), min(int(math.ceil(cx + ex)) + 1, shape[1])
    if y1 <= y0 or x1 <= x0:
        return None, None, None
    vy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    vx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    along = np.clip(vy * uy + vx * ux, -h, h)
    d2 = (vy - along * uy) ** 2 + (vx - along * ux) ** 2
    inside = d2 <= r * r
    thickness = np.sqrt(np.clip(1.0 - d2 / (r * r), 0.0, None)).astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), thickness, inside


def _window(shape, cy, cx, ey, ex):
    y0, y1 = max(int(math.floor(cy - ey)), 0), min(int(math.ceil(cy + ey)) + 1, shape[0])
    x0, x1 = max(int(math.floor(cx - ex)), 0), min(int(math.ceil(cx + ex)) + 1, shape[1])
    return y0, y1, x0, x1


def _bent_rod(shape, cy, cx, r, h, uy, ux, curvature, taper):
    """:func:`rod` with a curved axis and a tapered radius (small-curvature approximation)."""
    rmax = r * (1 + abs(taper))
    sag = abs(curvature) * h * h / 2
    ey = h * abs(uy) + (rmax + sag) * abs(ux) + rmax + 1
    ex = h * abs(ux) + (rmax + sag) * abs(uy) + rmax + 1
    y0, y1, x0, x1 = _window(shape, cy, cx, ey, ex)
    if y1 <= y0 or x1 <= x0:
        return None, None, None
    vy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    vx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    along = vy * uy + vx * ux
    across = vx * uy - vy * ux
    a = np.clip(along, -h, h)
    # Distance to the bent axis, measured across it: exact for a straight axis,
    # within a few percent for the sagittas drawn (a pixel or two).
    d2 = (along - a) ** 2 + (across - curvature / 2 * (a * a - h * h / 3)) ** 2
    rr = r * (1 + taper * a / h) if h > 0 else np.full_like(a, r)
    inside = d2 <= rr * rr
    thickness = np.sqrt(np.clip(1.0 - d2 / (rr * rr), 0.0, None)).astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), thickness, inside


def _box_widths(sigma, n=3):
    """Odd widths of ``n`` box filters whose cascade has standard deviation ~``sigma``."""
    ideal = math.sqrt(12 * sigma ** 2 / n + 1)
    lo = int(ideal) - (1 - int(ideal) % 2)
    m = round((12 * sigma ** 2 - n * lo ** 2 - 4 * n * lo - 3 * n) / (-4 * lo - 4))
    return [lo if i < m else lo + 2 for i in range(n)]


def blur(arr, sigma, axes=(-2, -1)):
    """Gaussian blur over the last two axes (stacks are blurred plane by plane).

    Wide blurs (the phase halos) use three box filters, whose cost does not grow
    with ``sigma`` and whose kernel differs from a Gaussian by a few percent.
    """
    if sigma <= 0:
        return arr
    if sigma <= 3.0:
        sig = [0.0] * arr.ndim
        for a in axes:
            sig[a] = sigma
        return ndimage.gaussian_filter(arr, sig, mode="constant", truncate=3.5)
    out = np.asarray(arr, np.float32)
    for a in axes:
        for w in _box_widths(sigma):
            out = ndimage.uniform_filter1d(out, w, axis=a, mode="constant")
    return out


# Weights and relative widths of the Gaussians whose sum stands for a
# heavier-tailed (roughly exponential) halo kernel of the alternative optics.
_EXPONENTIAL_HALO = ((0.45, 0.4), (0.35, 1.0), (0.20, 2.2))


def halo_blur(arr, sigma, model="gaussian", psf_sigma=0.0):
    """Blur by a halo kernel of scale ``sigma`` convolved with a Gaussian PSF.

    ``model="gaussian"``: one Gaussian of ``sqrt(psf^2 + sigma^2)`` (the default
    optics); ``"exponential"``: a mixture of three (see ``_EXPONENTIAL_HALO``).
    """
    if model == "gaussian":
        return blur(arr, math.sqrt(psf_sigma ** 2 + sigma ** 2))
    out = 0.0
    for weight, scale in _EXPONENTIAL_HALO:
        out = out + weight * blur(arr, math.sqrt(psf_sigma ** 2 + (scale * sigma) ** 2))
    return out


def phase_term(thickness, contrast, psf_sigma, halo_sigma, sharp=None, halo_model="gaussian",
               focus_rim=0.0):
    """Log-factor by which cells of the given thickness modulate a phase image.

    Phase contrast shows an object as its optical path minus a low-passed copy
    of it: dark inside, with a bright halo around (``halo_sigma``), all blurred by
    the PSF. The scene is multiplied by ``exp(term)``, so cells darken the bright
    trench lumen and the grey feeding channel alike, stay positive, and factors
    of overlapping canvases compose exactly. ``sharp`` is the PSF-blurred
    thickness when the caller already has it.

    ``focus_rim`` (px²) adds the defocus term of the transport-of-intensity
    equation, ``-contrast * focus_rim * laplacian(sharp)``: a focal plane a
    fraction of a micrometre off brightens the rim just inside every cell edge
    and darkens the medium just outside it (``focus_rim > 0``: the dark core
    looks narrower than the cell), or the other way round (``< 0``).
    Physically ``focus_rim`` is about ``dz * wavelength / (4 pi)`` in pixels
    squared: 1.1 px² for 0.25 µm at 0.55 µm and 0.1 µm pixels.
    """
    if sharp is None:
        sharp = blur(thickness, psf_sigma)
    term = (-contrast) * (sharp - halo_blur(thickness, halo_sigma, halo_model, psf_sigma))
    if focus_rim:
        term -= (contrast * focus_rim) * laplacian_2d(sharp)
    return term


def laplacian_2d(a) -> np.ndarray:
    """Discrete 5-point Laplacian over the last two axes (edges repeated)."""
    a = np.asarray(a, np.float32)
    return (ndimage.correlate1d(a, [1.0, -2.0, 1.0], axis=-1, mode="nearest")
            + ndimage.correlate1d(a, [1.0, -2.0, 1.0], axis=-2, mode="nearest"))
