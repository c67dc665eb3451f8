"""Phase-contrast image formation from first principles (Zernike, partially coherent).

The generator's default cell term (:func:`.cells.phase_term`) is an empirical
model: the blurred optical path minus a Gaussian-blurred copy of it. Real phase
contrast forms the image differently: the cells' field ``exp(i phi)`` passes an
objective aperture holding a phase ring, under illumination from a condenser
annulus, and the camera records the intensity. Halos, shade-off, ringing near
edges and where along the intensity profile the true cell edge lies all follow
from the aperture, the ring and the focus, not from one fitted width. This
module computes that image the Abbe way: for each illumination point ``s`` on
the annulus the coherent image ``|IFFT(FFT(field) * P(k + s))|^2``, averaged
over the points, where ``P`` is the aperture (a disc of radius ``cutoff`` in
cycles per pixel) times the ring (amplitude ``sqrt(transmission)``, phase
shifted by a quarter wave, ``exp(-i pi / 2)``: positive phase contrast, cells
dark; on the annulus ``radius * cutoff`` wide ``width * cutoff``) times the defocus ``exp(2 pi i w (k / cutoff)^2)``.

The field is sampled on a grid finer than the pixels (``supersample``), and the
intensity is averaged over each pixel, as a camera does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ZernikeOptics", "zernike_intensity", "zernike_log_factor"]


@dataclass(frozen=True)
class ZernikeOptics:
    """An objective with a phase ring and its condenser annulus, in pixel units.

    Parameters
    ----------
    cutoff : float
        Objective ``NA * pixel / wavelength``, cycles per (camera) pixel:
        0.19 for NA 1.3 at 0.55 µm with 0.08 µm pixels.
    ring_radius, ring_width : float
        Radius and width of the phase ring (and of the annulus it images) as
        fractions of ``cutoff``.
    ring_transmission : float
        Intensity transmission of the ring (the direct light is attenuated and
        shifted by a quarter wave).
    defocus_waves : float
        Defocus as the wavefront error at the aperture's rim, in waves
        (either sign).
    n_points : int
        Illumination points on the annulus.
    """

    cutoff: float = 0.22
    ring_radius: float = 0.35
    ring_width: float = 0.18
    ring_transmission: float = 0.2
    defocus_waves: float = 0.0
    n_points: int = 12

    def pupils(self, shape, supersample):
        """Complex pupils ``(n_points, *shape)`` on the FFT grid of a field sampled
        ``supersample`` times per pixel, one per illumination point (shifted by it)."""
        fy = np.fft.fftfreq(shape[0])[:, None] * supersample
        fx = np.fft.fftfreq(shape[1])[None, :] * supersample
        c = self.cutoff
        rc, half = self.ring_radius * c, self.ring_width * c / 2
        ring = math.sqrt(self.ring_transmission) * np.exp(-0.5j * np.pi)
        out = np.empty((self.n_points,) + tuple(shape), np.complex64)
        for i in range(self.n_points):
            a = 2 * np.pi * (i + 0.5) / self.n_points
            ky, kx = fy + rc * math.sin(a), fx + rc * math.cos(a)
            rho = np.hypot(ky, kx)
            p = np.where(np.abs(rho - rc) <= half, ring, 1.0 + 0j)
            p = p * np.exp(2j * np.pi * self.defocus_waves * (rho / c) ** 2)
            out[i] = np.where(rho <= c, p, 0.0)
        return out


def zernike_intensity(phase, optics: ZernikeOptics, supersample: int = 2):
    """Phase-contrast intensity of a phase map, relative to empty medium (1.0).

    Parameters
    ----------
    phase : ndarray (..., H * supersample, W * supersample)
        Optical path in radians on the fine grid; planes are imaged one by one.
        Periodic at its borders (pad it).
    optics : ZernikeOptics
    supersample : int
        Fine samples per pixel along each axis.

    Returns
    -------
    ndarray (..., H, W) float32
        Intensity averaged over each pixel.

    Examples
    --------
    A thick spot is dark (positive phase contrast) inside a bright halo:

    >>> yy, xx = np.mgrid[:64, :64]
    >>> spot = 0.6 * ((yy - 32) ** 2 + (xx - 32) ** 2 < 8 ** 2)
    >>> img = zernike_intensity(spot, ZernikeOptics(), supersample=1)
    >>> bool(img[32, 32] < 0.8), bool(img[32, 44] > 1.0), bool(abs(img[0, 0] - 1) < 0.2)
    (True, True, True)
    """
    phase = np.asarray(phase, np.float32)
    lead, (h, w) = phase.shape[:-2], phase.shape[-2:]
    planes = phase.reshape(-1, h, w)
    pupils = optics.pupils((h, w), supersample)
    out = np.zeros(planes.shape, np.float32)
    for k, plane in enumerate(planes):
        spectrum = np.fft.fft2(np.exp(1j * plane.astype(np.float64)).astype(np.complex64))
        for p in pupils:
            out[k] += np.abs(np.fft.ifft2(spectrum * p)) ** 2
    out /= optics.n_points * optics.ring_transmission
    s = int(supersample)
    out = out.reshape(-1, h // s, s, w // s, s).mean(axis=(2, 4))
    return out.reshape(*lead, h // s, w // s)


def zernike_log_factor(phase, optics: ZernikeOptics, supersample: int = 2, pad: int = 24):
    """``log`` of :func:`zernike_intensity`, computed on a copy padded with empty
    medium by ``pad`` pixels all round (so the periodic transform does not wrap),
    floored at 1 % of the medium. The generator multiplies its scene by ``exp``
    of this, as it does with :func:`.cells.phase_term`.

    >>> yy, xx = np.mgrid[:40, :40]
    >>> term = zernike_log_factor(0.5 * ((yy - 20) ** 2 + (xx - 20) ** 2 < 36), ZernikeOptics(),
    ...                           supersample=1, pad=8)
    >>> term.shape, bool(term[20, 20] < 0)
    ((40, 40), True)
    """
    phase = np.asarray(phase, np.float32)
    s, e = int(supersample), int(pad) * int(supersample)
    widths = [(0, 0)] * (phase.ndim - 2) + [(e, e), (e, e)]
    img = zernike_intensity(np.pad(phase, widths), optics, s)
    return np.log(np.maximum(img[..., pad:img.shape[-2] - pad, pad:img.shape[-1] - pad],
                             0.01)).astype(np.float32)
