"""Trench angle: the rotation that makes the trenches vertical.

Method (projection sharpness by shift-and-add): the frame is reduced to column
profiles of horizontal bands. A trench tilted by ``a`` crosses band ``k``
(centre row ``y_k``) at ``x0 + (y_k - cy) tan a``, so shifting every band
profile back by that amount and summing gives the sharpest cross profile at
``a``. The shifts are applied as Fourier phases and only frequencies around
the harmonics of the pitch are kept, which makes each trial angle cost a few
thousand complex products and ignores non-periodic structure (feeding channel
edges, debris). A coarse grid on the fundamental alone (a smooth, single-peaked
criterion) is followed by a grid and a bounded scalar search with harmonics on
thinner bands. A lattice whose fundamental is weak (a lumen about a third of
the pitch wide) leaves that coarse criterion flat: a second coarse grid on the
first four harmonics, four times finer, is refined as well when it lands
elsewhere, and the sharper answer kept.

Refining instead from the lean of the straightened profile between the top
and the bottom of a set was tried and dropped: the cells (tilted, jittered)
bias it by up to 0.1 deg, against 0.003 deg median for the shift-and-add.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from scipy import fft, optimize

from ..geometry import frame_center
from ._common import as_image2d, band_profiles, nanmean
from .pitch import estimate_pitch

__all__ = ["estimate_angle", "angle_from_bands"]


def _harmonic_bins(freq, f0, n_harmonics, width):
    keep = np.zeros(freq.shape, bool)
    for n in range(1, n_harmonics + 1):
        if n * f0 > 0.45:
            break
        half = 2.5 / width + 0.015 * n * f0
        keep |= np.abs(freq - n * f0) <= half
    return keep


@numba.njit(cache=True, nogil=True)
def _sharpness_kernel(spec_re, spec_im, freq, dy, tans, out):
    n_bands, n_freq = spec_re.shape
    # equally spaced bands (always, but for a set's masked bands with gaps): the
    # phase factor of band k+1 is that of band k times a fixed one, which saves
    # a cosine and a sine per band; refreshed every 16 bands against drift
    uniform = n_bands > 1
    d = dy[1] - dy[0] if n_bands > 1 else 0.0
    for k in range(1, n_bands):
        if abs(dy[k] - dy[0] - k * d) > 1e-9 * (abs(dy[0]) + abs(d) * n_bands):
            uniform = False
            break
    for a in range(tans.size):
        total = 0.0
        for j in range(n_freq):
            w = 2.0 * np.pi * tans[a] * freq[j]
            re, im = 0.0, 0.0
            cd, sd = math.cos(w * d), math.sin(w * d)
            c, s = 1.0, 0.0
            for k in range(n_bands):
                if not uniform or k % 16 == 0:
                    c, s = math.cos(w * dy[k]), math.sin(w * dy[k])
                re += spec_re[k, j] * c - spec_im[k, j] * s
                im += spec_re[k, j] * s + spec_im[k, j] * c
                c, s = c * cd - s * sd, s * cd + c * sd
            total += re * re + im * im
        out[a] = total
    return out


def _sharpness(spec, freq, dy, angles_rad):
    """Power of the band spectra summed after shifting band ``k`` by ``dy[k] tan a``,
    for every angle ``a``: ``sum_f |sum_k spec[k, f] exp(2 pi i tan(a) dy[k] f)|^2``.

    A numba loop: numpy's complex exponential over (angles, bands, frequencies)
    cost 50 ms of a 2048^2 frame's detection."""
    tans = np.tan(np.atleast_1d(np.asarray(angles_rad, float)))
    return _sharpness_kernel(np.ascontiguousarray(spec.real), np.ascontiguousarray(spec.imag),
                             np.ascontiguousarray(freq, dtype=float),
                             np.ascontiguousarray(dy, dtype=float), tans, np.empty(tans.size))


def _band_spectra(bands, nfft):
    p = bands - nanmean(bands, axis=1, keepdims=True)
    np.copyto(p, 0.0, where=np.isnan(p))  # bands are finite or NaN (outside the frame)
    p *= np.hanning(bands.shape[1])
    return fft.rfft(p, nfft, axis=1)


def angle_from_bands(bands, band_y, center_y, pitch, angle_range_deg=5.0, n_harmonics=None,
                     fine_bands=None, fine_y=None):
    """Angle (degrees) that best aligns the band profiles, see the module docstring.

    Parameters
    ----------
    bands : ndarray, shape (K, W)
        Column profiles of equally spaced horizontal bands.
    band_y : ndarray, shape (K,)
        Raw row of each band's centre.
    center_y : float
        Row of the centre of rotation.
    pitch : float
        Trench pitch in pixels.
    n_harmonics : int, optional
        Harmonics of the pitch used by the fine search; default every one up
        to 0.2 cycles per pixel (at least 4). The walls' edges carry the
        angle in the high harmonics; four harmonics of a wide pitch (80 px)
        see mostly the cells, whose jitter then biases short sets by
        0.1-0.3 deg (tuning seeds, geometry and mixed families).
    fine_bands, fine_y : ndarray, optional
        Thinner bands for the final search (less smear within a band, hence
        less bias from the tilted ends of the sets); default ``bands``.

    Returns
    -------
    angle_deg : float
    gain : float
        Sharpness at the best angle relative to the median over the searched
        range (about 1 when nothing periodic aligns).
    """
    width = bands.shape[1]
    nfft = fft.next_fast_len(width)
    spec_all = _band_spectra(bands, nfft)
    freq_all = fft.rfftfreq(nfft)
    dy = np.asarray(band_y, float) - center_y
    extent = max(float(np.ptp(band_y)), 1.0)
    f0 = 1.0 / pitch

    keep1 = _harmonic_bins(freq_all, f0, 1, width)
    step = np.arctan(0.12 * pitch / extent)
    lim = np.deg2rad(angle_range_deg) + step
    grid = np.arange(-lim, lim + step / 2, step)
    s1 = _sharpness(spec_all[:, keep1], freq_all[keep1], dy, grid)
    gain = float(s1.max() / max(np.median(s1), 1e-300))
    if n_harmonics is None:
        n_harmonics = max(4, int(0.2 * pitch))
    # The first harmonic alone can carry almost none of the lattice's power (a lumen
    # about a third of the pitch wide between halos: held-out halo_walls 10198, flat to
    # 1.11 of its median, 1.3 deg off); the first four, on a grid four times finer,
    # then find the angle. Both starts are refined and the sharper answer kept.
    keep4 = _harmonic_bins(freq_all, f0, min(4, n_harmonics), width)
    grid4 = np.arange(-lim, lim + step / 8, step / 4)
    s4 = _sharpness(spec_all[:, keep4], freq_all[keep4], dy, grid4)
    starts = [grid[np.argmax(s1)]]
    if abs(grid4[np.argmax(s4)] - starts[0]) > step:
        starts.append(grid4[np.argmax(s4)])

    keep = _harmonic_bins(freq_all, f0, n_harmonics, width)
    if fine_bands is not None:
        spec_all = _band_spectra(fine_bands, nfft)
        dy = np.asarray(fine_y, float) - center_y
    spec, freq = spec_all[:, keep], freq_all[keep]
    best, best_score = starts[0], -np.inf
    for coarse in starts:
        fine = coarse + np.linspace(-1.5 * step, 1.5 * step, 31)
        sf = _sharpness(spec, freq, dy, fine)
        centre = fine[np.argmax(sf)]
        half = 3.0 * step / 30
        res = optimize.minimize_scalar(lambda a: -_sharpness(spec, freq, dy, a)[0],
                                       bounds=(centre - half, centre + half), method="bounded",
                                       options={"xatol": 1e-6})
        found, score = (res.x, -res.fun) if res.success and -res.fun >= sf.max() \
            else (centre, sf.max())
        if score > best_score:
            best, best_score = found, score
    return float(np.rad2deg(best)), gain


def estimate_angle(image, angle_range_deg: float = 5.0, pitch: float | None = None,
                   band_rows: int = 32, min_pitch: float = 6.0) -> float:
    """Estimate the angle (degrees) by which the trenches are rotated in ``image``.

    The sign follows :mod:`batchlib.trench.geometry`: a trench runs along the
    raw-frame direction ``(cos a, sin a)`` in ``(y, x)``, i.e. its column grows
    by ``tan a`` per row.

    Parameters
    ----------
    image : array_like, shape (H, W)
    angle_range_deg : float
        Largest absolute angle searched.
    pitch : float, optional
        Trench pitch in pixels; estimated when omitted.
    band_rows : int
        Rows per band of the coarse search (the final search uses bands a
        quarter as tall); the smear ``band_rows * tan(angle)`` should stay
        well below the trench width.

    Returns
    -------
    float
    """
    image = as_image2d(image)
    band_rows = max(1, min(band_rows, image.shape[0] // 8))
    bands, band_y = band_profiles(image, band_rows)
    if pitch is None:
        pitch, _ = estimate_pitch(bands, min_pitch=min_pitch)
        if not np.isfinite(pitch):
            return float("nan")
    fine, fine_y = band_profiles(image, max(1, band_rows // 4))
    angle, _ = angle_from_bands(bands, band_y, frame_center(image.shape)[0], pitch,
                                angle_range_deg, fine_bands=fine, fine_y=fine_y)
    return angle



def set_band_mask(band_y, shape, angle_deg, y0, y1):
    """Which band pixels fall inside the rotated rows ``[y0, y1]`` of one trench set.

    Parameters
    ----------
    band_y : ndarray, shape (K,)
        Raw row of each band's centre.
    shape : tuple
        Raw frame shape (fixes the centre of rotation).
    angle_deg : float
        Current angle estimate.
    y0, y1 : float
        Rotated-frame rows bounding the set.

    Returns
    -------
    ndarray of bool, shape (K, W)
    """
    cy, cx = frame_center(shape)
    a = np.deg2rad(angle_deg)
    x = np.arange(shape[1], dtype=float) - cx
    # rotated row of the raw point (y, x): cy + cos(a) (y - cy) + sin(a) (x - cx)
    along = cy + np.cos(a) * (np.asarray(band_y, float) - cy)
    return _between(along, np.sin(a) * x, float(y0), float(y1),
                    np.empty((along.size, x.size), bool))


@numba.njit(cache=True, nogil=True)
def _between(along, across, y0, y1, out):
    # (along[k] + across[j]) in [y0, y1], without the (K, W) temporaries
    for k in range(along.size):
        for j in range(across.size):
            y = along[k] + across[j]
            out[k, j] = y0 <= y <= y1
    return out


def set_angles(bands, band_y, fine_bands, fine_y, shape, angle_deg, runs, pitch,
               angle_range_deg=5.0, margin=0.0):
    """Angle of every trench set on its own.

    One shift-and-add search over the whole frame mixes the sets' lattices:
    when the two sets of a chip are offset sideways, aligning their trenches
    tilts the angle by most of the angle that would line the two lattices up
    (degrees on a 1024 px frame). Searching the pixels of each set alone gives
    each set's own angle. The band pixels outside a set are set to the band's
    mean over its pixels inside, which carries no periodic signal.

    Parameters
    ----------
    bands, band_y, fine_bands, fine_y : ndarray
        Coarse and fine band profiles of the raw frame and their centre rows.
    shape : tuple
        Raw frame shape.
    angle_deg : float
        Current angle estimate, which places the sets in the raw frame.
    runs : list of (y0, y1, strength)
        Rotated-frame row ranges of the sets (:func:`~.trench_sets.find_sets`).
    margin : float
        Rows dropped at both ends of every set (room for the error of
        ``angle_deg`` across the frame).

    Returns
    -------
    angles : ndarray, shape (n_sets,)
        NaN where a set has too few rows left.
    gains : ndarray, shape (n_sets,)
        Sharpness gain of each set's search (see :func:`angle_from_bands`).
    """
    angles, gains = [], []
    cy = frame_center(shape)[0]
    for y0, y1, _ in runs:
        lo, hi = y0 + margin, y1 - margin
        if hi - lo < max(0.5 * (y1 - y0), 24.0):
            # too short to shrink: keep the middle half
            mid, half = 0.5 * (y0 + y1), max(0.25 * (y1 - y0), 4.0)
            lo, hi = mid - half, mid + half
        fine = _masked(fine_bands, fine_y, shape, angle_deg, lo, hi)
        # a short set (geometry family: 130 px trenches) spans too few coarse
        # bands: its thin bands serve for both searches
        coarse = _masked(bands, band_y, shape, angle_deg, lo, hi) or fine
        if coarse is None or fine is None:
            angles.append(np.nan)
            gains.append(0.0)
            continue
        a, g = angle_from_bands(coarse[0], coarse[1], cy, pitch, angle_range_deg,
                                fine_bands=fine[0], fine_y=fine[1])
        angles.append(a)
        gains.append(g)
    return np.asarray(angles, float), np.asarray(gains, float)


def _masked(bands, band_y, shape, angle_deg, lo, hi):
    inside = set_band_mask(band_y, shape, angle_deg, lo, hi)
    rows = inside.sum(axis=1) >= 0.25 * shape[1]
    if rows.sum() < 3:
        return None
    b = np.where(inside[rows], bands[rows], np.nan)
    return b, np.asarray(band_y)[rows]


def combine_set_angles(angles, weights, whole_frame=None, tolerance_deg=0.05):
    """One angle for the chip from the per-set angles, and their disagreement.

    The sets of one chip share its angle. When the whole-frame estimate lies
    within the per-set estimates (give or take ``tolerance_deg``), the sets'
    lattices line up and the whole-frame search, whose lever arm spans all
    sets, is unbiased and the most precise: it is returned. Otherwise (sets
    offset sideways, which biases it) the weighted mean of the per-set angles.

    Parameters
    ----------
    angles, weights : array_like, shape (n_sets,)
    whole_frame : float, optional
    tolerance_deg : float

    Returns
    -------
    angle : float
    spread : float
        Largest difference between the per-set angles (0 for one set).

    Examples
    --------
    >>> combine_set_angles([1.02, 0.98], [1, 1], whole_frame=1.0)
    (1.0, 0.040000000000000036)
    >>> combine_set_angles([1.02, 0.98], [1, 3], whole_frame=2.5)[0]
    0.99
    """
    a = np.asarray(angles, float)
    w = np.asarray(weights, float)
    ok = np.isfinite(a) & (w > 0)
    if not ok.any():
        return float("nan"), float("nan")
    a, w = a[ok], w[ok]
    spread = float(np.ptp(a)) if a.size > 1 else 0.0
    if (whole_frame is not None and a.size > 1 and np.isfinite(whole_frame)
            and a.min() - tolerance_deg <= whole_frame <= a.max() + tolerance_deg):
        return float(whole_frame), spread
    return float(np.average(a, weights=w)), spread
