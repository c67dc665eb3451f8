"""Trench centres along a set's cross profile.

The cross profile of a set is periodic and every period is mirror-symmetric
about two axes half a pitch apart: the lumen axis and the wall axis. The
phase of the fundamental gives both axes at once (which one is the lumen is
decided by the caller from other cues). The pitch is refined by maximising the
harmonic power, a template is folded from all periods and every lattice site
is refined to sub-pixel precision by matching that template locally.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from scipy import optimize

from ._common import nanmean, over_local_mean
from .pitch import fit_lattice, parabolic_peak

__all__ = ["refine_pitch", "fundamental_axis", "symmetry_axis", "fold_template", "match_template",
           "locate_centres", "stripe_widths", "column_texture",
           "relative_column_texture", "strip_mean"]


def _clean(profile):
    p = np.asarray(profile, dtype=float)
    valid = np.isfinite(p)
    x = np.flatnonzero(valid).astype(float)
    v = p[valid] - p[valid].mean()
    return x, v * np.hanning(v.size)


@numba.njit(cache=True, nogil=True)
def _harmonic_power_kernel(x, v, f, n_harmonics):
    total = 0.0
    for n in range(1, n_harmonics + 1):
        w = -2.0 * np.pi * f * n
        cd, sd = math.cos(w), math.sin(w)
        re, im, c, s = 0.0, 0.0, 1.0, 0.0
        for k in range(x.size):
            # the samples are whole columns: from one to the next the phase
            # factor turns by a fixed step (exact values after a gap, every 16)
            if k % 16 == 0 or x[k] != x[k - 1] + 1.0:
                c, s = math.cos(w * x[k]), math.sin(w * x[k])
            re += v[k] * c
            im += v[k] * s
            c, s = c * cd - s * sd, s * cd + c * sd
        total += re * re + im * im
    return total


def _harmonic_power(x, v, f, n_harmonics):
    """``sum_n |sum_x v(x) exp(-2 pi i f n x)|^2`` over the first ``n_harmonics``."""
    return float(_harmonic_power_kernel(x, v, float(f), int(n_harmonics)))


#: The harmonics' optimum is kept where the fundamental keeps this share of its own
#: optimum's power there (see :func:`refine_pitch`).
FUNDAMENTAL_KEEP = 0.95


def refine_pitch(profile, pitch, n_harmonics=3, rel_range=0.04):
    """Pitch that maximises the power of the first harmonics of ``profile``.

    ``pitch`` must already be within ``rel_range`` (relative) of the answer.
    Where the fundamental alone loses more than ``1 - FUNDAMENTAL_KEEP`` of its power
    at the harmonics' optimum, and its own optimum lies nearer ``pitch`` (the
    autocorrelation's estimate), the harmonics follow something else than the lattice
    and the fundamental's optimum is returned: lumens 17 px wide between bright
    edge lines (independent simulator 1170, pitch 82 px, 12 periods in the frame) put
    the third harmonic's peak at 79 px, the sum of the three went there (78.6 px,
    against 81.9 from the autocorrelation), and the lattice drifted 7 px off the lumens
    within a few periods, every box on an edge line; the fundamental peaked at 82. (The
    fundamental alone can be the one off: independent 1015, 79.3 against 77.8 from
    the harmonics and the estimate, true 77.75.)

    Examples
    --------
    >>> x = np.arange(1024.0)
    >>> d = (x - 30) % 82.0
    >>> d = np.where(d > 41, d - 82, d)                  # lumens every 82 px
    >>> lattice = -np.exp(-d ** 2 / 20) + 0.4 * np.exp(-(np.abs(d) - 12) ** 2 / 4)
    >>> round(refine_pitch(lattice, 81.0), 2)
    82.0
    >>> stripes = 0.5 * np.sin(2 * np.pi * x / 26.3)     # and something else at 26.3 px
    >>> round(refine_pitch(lattice + stripes, 81.0), 2)  # three harmonics alone: 79.41
    82.0
    """
    x, v = _clean(profile)
    if v.size < 3 * pitch:
        return float(pitch)
    nh = max(1, min(n_harmonics, int(0.45 * pitch)))
    f = _power_optimum(x, v, 1.0 / pitch, rel_range, nh)
    if nh > 1:
        fundamental = _power_optimum(x, v, 1.0 / pitch, rel_range, 1)
        if (_harmonic_power(x, v, f, 1) < FUNDAMENTAL_KEEP * _harmonic_power(x, v, fundamental, 1)
                and abs(1.0 / fundamental - pitch) < abs(1.0 / f - pitch)):
            f = fundamental
    return float(1.0 / f)


def _power_optimum(x, v, f0, rel_range, nh):
    """The frequency within ``rel_range`` of ``f0`` where the first ``nh`` harmonics'
    power is highest (a grid, then a bounded search about its best point)."""
    grid = f0 * (1 + np.linspace(-rel_range, rel_range, 17))
    vals = [_harmonic_power(x, v, f, nh) for f in grid]
    i = int(np.argmax(vals))
    step = grid[1] - grid[0]
    res = optimize.minimize_scalar(lambda f: -_harmonic_power(x, v, f, nh),
                                   bounds=(grid[i] - step, grid[i] + step), method="bounded",
                                   options={"xatol": 1e-7 * f0})
    return float(res.x if res.success and -res.fun >= vals[i] else grid[i])


def fundamental_axis(profile, pitch):
    """Column (in ``[0, pitch)``) of the symmetry axis brighter at the fundamental.

    The other axis of the same period lies half a pitch away.

    Returns
    -------
    axis : float
    amplitude : float
        Magnitude of the fundamental (profile units).
    """
    x, v = _clean(profile)
    z = np.exp(-2j * np.pi * x / pitch) @ v
    axis = (-np.angle(z) * pitch / (2 * np.pi)) % pitch
    return float(axis), float(2 * np.abs(z) / max(np.hanning(v.size).sum(), 1e-9))


def symmetry_axis(profile, pitch, start, step=0.1):
    """The mirror axis of the periodic ``profile`` nearest ``start`` (within a quarter pitch).

    Every period of a trench set's cross profile is mirror-symmetric about the
    lumen's axis and the wall's. The profile folded about each candidate axis
    (the mean of its windows one pitch wide) is compared with its own mirror
    image; the axis is where they differ least relative to the template's
    contrast: candidates half a pixel apart, then ``step`` apart around the
    best, refined by a parabola.

    Examples
    --------
    >>> x = np.arange(400.0)
    >>> d = (x - 13.3 + 20) % 40 - 20                       # axis at 13.3, pitch 40
    >>> prof = np.exp(-d ** 2 / 8) - 0.6 * np.exp(-(np.abs(d) - 6) ** 2 / 2)
    >>> round(symmetry_axis(prof, 40.0, 16.0), 1)
    13.3
    """
    p = np.asarray(profile, float)
    valid = np.flatnonzero(np.isfinite(p))
    if valid.size < 2 * pitch:
        return float(start)
    half = int(np.ceil(0.5 * pitch))
    offsets = np.arange(-half, half + 1, dtype=float)
    # whole periods inside the valid columns for every candidate
    m = np.arange(np.ceil((valid[0] + half - start + 0.25 * pitch) / pitch),
                  np.floor((valid[-1] - half - start - 0.25 * pitch) / pitch) + 1)
    if m.size == 0:
        return float(start)

    def asymmetry(cands):
        xs = cands[:, None, None] + m[None, :, None] * pitch + offsets
        win = np.interp(xs, np.arange(p.size), np.nan_to_num(p), left=np.nan, right=np.nan)
        ok = np.isfinite(p[np.clip(np.rint(xs).astype(int), 0, p.size - 1)]).all(axis=2)
        t = np.where(ok[..., None], win, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)[:, None]
        contrast = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(contrast > 0, np.sum((t - t[:, ::-1]) ** 2, axis=1) / contrast, np.inf)

    coarse = start + np.arange(-0.25 * pitch, 0.25 * pitch + 0.25, 0.5)
    score = asymmetry(coarse)
    if not np.isfinite(score).any():
        return float(start)
    fine = coarse[int(np.argmin(score))] + np.arange(-0.5, 0.5 + step / 2, step)
    score = asymmetry(fine)
    k = int(np.argmin(score))
    off = 0.0
    if 0 < k < fine.size - 1 and np.isfinite(score[k - 1:k + 2]).all():
        off = parabolic_peak(-score[k - 1], -score[k], -score[k + 1])
    return float(fine[k] + off * step)


def _windows(profile, positions, offsets):
    p = np.asarray(profile, dtype=float)
    xs = np.asarray(positions, float)[..., None] + offsets
    return np.interp(xs, np.arange(p.size), p, left=np.nan, right=np.nan)


def fold_template(profile, sites, half):
    """Mean of the profile around ``sites`` over ``[-half, half]``, made symmetric.

    Returns
    -------
    offsets : ndarray, shape (2 * half + 1,)
    template : ndarray, same shape
    """
    offsets = np.arange(-half, half + 1, dtype=float)
    win = _windows(profile, sites, offsets)
    good = np.all(np.isfinite(win), axis=1)
    if not good.any():
        return offsets, np.full(offsets.shape, np.nan)
    t = win[good].mean(axis=0)
    return offsets, 0.5 * (t + t[::-1])


def match_template(profile, sites, offsets, template, search, min_valid=0.6):
    """Refine every site to the position where the template correlates best.

    Parameters
    ----------
    search : float
        Largest displacement tried, in pixels.
    min_valid : float
        Fraction of the window that must lie inside the profile (sites near
        the image edge are matched on the part that is inside).

    Returns
    -------
    positions : ndarray
        Sub-pixel positions (the site itself where no match is possible).
    ncc : ndarray
        Normalised correlation at the best position (NaN where no match).
    """
    sites = np.asarray(sites, float)
    shifts = np.arange(-np.ceil(search), np.ceil(search) + 0.5, 0.5)
    win = _windows(profile, sites[:, None] + shifts[None, :], offsets)
    m = np.isfinite(win)
    n = m.sum(axis=-1)
    w = np.where(m, win, 0.0)
    t = np.where(m, template, 0.0)
    nn = np.maximum(n, 1)
    wc = np.where(m, w - (w.sum(-1) / nn)[..., None], 0.0)
    tc = np.where(m, t - (t.sum(-1) / nn)[..., None], 0.0)
    den = np.sqrt((wc ** 2).sum(-1) * (tc ** 2).sum(-1)) + 1e-12
    ncc = (wc * tc).sum(-1) / den
    ncc = np.where(n >= min_valid * offsets.size, ncc, -np.inf)
    best = np.argmax(ncc, axis=1)
    pos, score = sites.copy(), np.full(sites.shape, np.nan)
    for i, b in enumerate(best):
        if not np.isfinite(ncc[i, b]):
            continue
        score[i] = ncc[i, b]
        off = 0.0
        if 0 < b < len(shifts) - 1 and np.isfinite(ncc[i, b - 1]) and np.isfinite(ncc[i, b + 1]):
            off = parabolic_peak(ncc[i, b - 1], ncc[i, b], ncc[i, b + 1])
        pos[i] = sites[i] + shifts[b] + off * (shifts[1] - shifts[0])
    return pos, score


def stripe_widths(offsets, template, pitch):
    """Widths of the stripe centred on the template axis and of the other one.

    The boundary between the two stripes is where the template is steepest.
    """
    half = offsets >= 0
    u, t = offsets[half], template[half]
    grad = np.abs(np.gradient(t, u))
    inner = (u > 0.5) & (u < 0.5 * pitch - 0.5)
    if not inner.any():
        return 0.5 * pitch, 0.5 * pitch
    edge = u[inner][np.argmax(grad[inner])]
    return float(2 * edge), float(pitch - 2 * edge)


def column_texture(rot_rows, sigma_rows=2.0):
    """Per-column variance along rows after removing slow trends (cells, debris)."""
    from scipy import ndimage

    r = np.asarray(rot_rows, float)
    filled = np.where(np.isfinite(r), r, np.nan_to_num(nanmean(r, axis=0, keepdims=True)))
    hp = filled - ndimage.gaussian_filter1d(filled, sigma_rows, axis=0, mode="nearest")
    return nanmean(np.where(np.isfinite(r), hp * hp, np.nan), axis=0)


def relative_column_texture(rot_rows, sigma_rows=2.0, window_rows=9):
    """:func:`column_texture` of the image over its local mean along the rows.

    Texture that scales with the brightness (illumination speckle and
    fringes, which multiply the image) is then the same in a bright lumen as
    on darker walls; cells' edges and septa, short along the rows, remain.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> speckle = 1 + 0.05 * rng.standard_normal((64, 2))
    >>> img = speckle * np.array([100.0, 400.0])  # a dim wall, a bright empty lumen
    >>> ratio = column_texture(img)[1] / column_texture(img)[0]
    >>> rel = relative_column_texture(img)[1] / relative_column_texture(img)[0]
    >>> bool(ratio > 10), bool(0.5 < rel < 2)
    (True, True)
    """
    return column_texture(over_local_mean(rot_rows, window_rows), sigma_rows)


def strip_mean(values, centres, half_width):
    """Mean of a column quantity over ``centres +- half_width``, per centre.

    ``values`` is 1-D (one value per column) or 2-D (rows x columns); the
    result has one entry per centre (per row and centre for 2-D input).
    """
    v = np.asarray(values, float)
    off = np.arange(-np.floor(half_width), np.floor(half_width) + 1)
    idx = np.rint(np.asarray(centres, float)[:, None] + off).astype(int)
    ok = (idx >= 0) & (idx < v.shape[-1])
    vals = np.where(ok, v[..., np.clip(idx, 0, v.shape[-1] - 1)], np.nan)
    return nanmean(vals, axis=-1)


def _holds_cells(texture, centres, pitch, factor=10.0):
    """Sites whose lumen texture is ``factor`` times the median texture of the walls."""
    strip = max(1.0, np.floor(0.125 * pitch))
    lumen = strip_mean(texture, centres, strip)
    walls = np.concatenate([strip_mean(texture, centres - 0.5 * pitch, strip),
                            strip_mean(texture, centres + 0.5 * pitch, strip)])
    walls = walls[np.isfinite(walls)]
    if not walls.size:
        return np.zeros(len(centres), bool)
    return np.nan_to_num(lumen) > factor * max(float(np.median(walls)), 1e-12)


def _amplitude(prof, centres, offsets, tmpl):
    """The template's scale in the profile's window at every centre: the least-squares
    slope of the window on the template (NaN where under 60 % of it is inside)."""
    win = _windows(prof, np.asarray(centres, float)[:, None], offsets)[:, 0]
    m = np.isfinite(win)
    n = np.maximum(m.sum(axis=-1), 1)
    w = np.where(m, win, 0.0)
    t = np.where(m, tmpl, 0.0)
    wc = np.where(m, w - (w.sum(-1) / n)[:, None], 0.0)
    tc = np.where(m, t - (t.sum(-1) / n)[:, None], 0.0)
    slope = (wc * tc).sum(-1) / np.maximum((tc * tc).sum(-1), 1e-12)
    return np.where(m.sum(axis=-1) >= 0.6 * len(offsets), slope, np.nan)


def _lumen_minus_walls(prof, centres, pitch):
    """The profile's mean over a tenth of the pitch about every centre minus its mean
    over the same strips half a pitch to either side (the walls)."""
    q = max(1.0, 0.1 * pitch)
    centres = np.asarray(centres, float)
    lum = strip_mean(prof, centres, q)
    wal = nanmean(np.stack([strip_mean(prof, centres - 0.5 * pitch, q),
                            strip_mean(prof, centres + 0.5 * pitch, q)]), axis=0)
    return lum - wal


def _contrast_ratio(prof, centres, offsets, tmpl, pitch):
    """Lumen-minus-wall contrast at every centre relative to the template's."""
    q = max(1.0, 0.1 * pitch)
    t_lumen = tmpl[np.abs(offsets) <= q].mean()
    t_wall = tmpl[np.abs(offsets) >= offsets.max() - q].mean()
    den = t_lumen - t_wall
    return (np.nan_to_num(_lumen_minus_walls(prof, centres, pitch) / den) if den != 0
            else np.zeros(len(centres)))


def _masked_fit(a, b, min_share=0.6):
    """``(ncc, slope)`` of window ``a`` on window ``b`` over the samples both hold, each
    less its mean there; NaN for both under ``min_share`` of the window or without
    variation.

    >>> x = np.array([0.0, 1.0, 3.0, 1.0, np.nan])
    >>> [round(float(v), 3) for v in _masked_fit(2 * x + 5, x)]
    [1.0, 2.0]
    >>> [float(v) for v in _masked_fit(x, x, min_share=0.9)]
    [nan, nan]
    """
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < min_share * a.size:
        return np.nan, np.nan
    x = a[ok] - a[ok].mean()
    y = b[ok] - b[ok].mean()
    xy, xx, yy = (x * y).sum(), (x * x).sum(), (y * y).sum()
    if not xx * yy > 0:
        return np.nan, np.nan
    return float(xy / np.sqrt(xx * yy)), float(xy / yy)


def _mirror_ncc(window):
    """Normalised correlation of a window with its own mirror image (NaN: left out)."""
    return _masked_fit(window, window[::-1])[0]


def _mean_shape(windows):
    """The mean of ``windows`` (rows), each less its own mean."""
    return nanmean(windows - nanmean(windows, axis=1)[:, None], axis=0)


#: An edge site this symmetric about its lattice position is an empty lumen with a tenth
#: of the template's contrast (:func:`_with_empty_edge_lumens`).
CLEAR_MIRROR = 0.95


#: An edge site whose window correlates this well with the mean window of the run's own
#: empty lumens is one of them (:func:`_with_empty_edge_lumens`) ...
EMPTY_LIKE_MATCH = 0.9
#: ... at this share of their scale or more, and at most its inverse.
EMPTY_LIKE_SCALE = 0.6
#: The run's own empty lumens: its sites matching the template this much under the
#: median of its sites ...
EMPTY_LIKE_GAP = 0.2
#: ... or at under this share of the median site's scale of the template: empty lumens
#: shaped like the filled ones, faint (independent simulator 1009: three empty lumens
#: matching at 0.84-0.86 where the run's median is 0.99, at 0.21 of its scale; the
#: filled sites 0.53 and more of it over independent 1009's two sets).
EMPTY_LIKE_AMPLITUDE = 0.4
#: Where the run holds a single empty lumen, an edge site must correlate this well with
#: its window (one window is noisier than a mean of several; independent simulator 1386:
#: the set's last trench, empty, its box leaving the frame, 1.00 with the one other).
EMPTY_LIKE_ONE_MATCH = 0.95


def _run_empties_window(profile, pos, ncc, offsets, offset, pitch, amplitude):
    """``(mean, n)``: the mean window (each window's mean removed) at the lattice
    positions of the run's ``n`` sites that match the template :data:`EMPTY_LIKE_GAP`
    under the run's median match, or whose ``amplitude`` (the template's scale in them)
    is under :data:`EMPTY_LIKE_AMPLITUDE` of the run's median: the run's own empty
    lumens where its filled ones set the template; ``(None, 0)`` where none is."""
    ncc = np.nan_to_num(np.asarray(ncc, float))
    faint = ncc < float(np.median(ncc)) - EMPTY_LIKE_GAP
    amplitude = np.asarray(amplitude, float)
    if np.isfinite(amplitude).any():
        faint |= np.nan_to_num(amplitude, nan=np.inf) \
            < EMPTY_LIKE_AMPLITUDE * float(np.nanmedian(amplitude))
    weak = np.asarray(pos, float)[faint]
    if weak.size == 0:
        return None, 0
    at = offset + np.rint((weak - offset) / pitch) * pitch
    mean = _mean_shape(_windows(profile, at[:, None], offsets)[:, 0])
    return (mean, weak.size) if np.isfinite(mean).all() and np.ptp(mean) > 0 else (None, 0)


def _like_run_empties(window, empties, n=2, min_share=0.6) -> bool:
    """Whether ``window`` correlates with the mean window of ``n`` empty lumens of the
    run (:func:`_run_empties_window`) at :data:`EMPTY_LIKE_MATCH` or more
    (:data:`EMPTY_LIKE_ONE_MATCH` against a single one), at a scale within
    :data:`EMPTY_LIKE_SCALE` of theirs (on ``min_share`` of the window or more)."""
    if empties is None or n < 1:
        return False
    match, scale = _masked_fit(window, empties, min_share)
    return bool(match >= (EMPTY_LIKE_MATCH if n >= 2 else EMPTY_LIKE_ONE_MATCH)
                and EMPTY_LIKE_SCALE <= scale <= 1.0 / EMPTY_LIKE_SCALE)


#: An empty lumen whose box leaves the frame's side is compared with its set's others on
#: this share of its window or more (:func:`like_other_empty_lumens`): its own lumen and
#: the wall on its inner side.
EDGE_WINDOW_SHARE = 0.5


def like_other_empty_lumens(profile, centres, empty, pitch) -> np.ndarray:
    """Per site of a set: whether it is flagged ``empty`` and its window (a pitch wide,
    half of it or more in the profile, :data:`EDGE_WINDOW_SHARE`) looks like the mean
    window of the set's other empty lumens whose windows lie wholly in the profile, one
    or more (:func:`_like_run_empties`).

    An empty lumen at the frame's side edge whose box leaves the frame is kept on
    this evidence, where a filled one needs to match the template closely
    (:data:`~.trench_layout.EDGE_MATCH`): where the template is the filled lumens',
    an empty one matches it at 0.5-0.65 (independent simulator 1413, 1418: the last
    and the first trench of a set, empty, dropped unwarned). Half the window suffices:
    independent 1321's last trench, empty, at 1.9° (the set's profile ends where the
    turned frame leaves the raw one), had 57 % of its window in the profile, correlating
    0.997 with the set's six other empty lumens', and was dropped unwarned under the 60 %
    that sites beyond a run need.
    """
    half = int(np.ceil(0.5 * pitch))
    offsets = np.arange(-half, half + 1, dtype=float)
    centres, empty = np.asarray(centres, float), np.asarray(empty, bool)
    wins = _windows(profile, centres[:, None], offsets)[:, 0]
    whole = np.isfinite(wins).all(axis=1)
    like = np.zeros(len(centres), bool)
    for i in np.flatnonzero(empty):
        others = empty & whole
        others[i] = False
        if others.any():
            like[i] = _like_run_empties(wins[i], _mean_shape(wins[others]), int(others.sum()),
                                        EDGE_WINDOW_SHARE)
    return like


def _with_empty_edge_lumens(profile, site, offsets, tmpl, pos, ncc, offset, pitch,
                            min_mirror=0.8, min_contrast=0.5):
    """Phase sites beyond the run of kept trenches that hold an empty lumen, added.

    Where most trenches are full of cells the template is theirs (dark cells between
    bright halo rims), and an empty lumen does not match it: two empty trenches at the
    frame's edge were dropped (held-out halo_walls 10217, 11 of 13), and with one empty
    trench left the cells' tips could not be compared with an empty lumen, so every box
    started 1.4-1.9 px inside its mother. An empty lumen is a stripe symmetric about its
    lattice position (mirror correlation at least ``min_mirror``) whose contrast to the
    walls half a pitch away is at least ``min_contrast`` of the template's range, or a
    tenth of it (:data:`WEAK_LUMEN_RATIO`) where the stripe is as symmetric as a filled
    lumen (:data:`CLEAR_MIRROR`; independent simulator 1287: an eighth, mirror 0.98); a
    halo beyond the last trench falls off to one side. Or it looks like the run's own
    empty lumens (:func:`_like_run_empties`): independent simulator 1389, the first two
    trenches of a set, empty, a third of the template's contrast, missed unwarned
    (their windows correlate 0.97 with the run's four empty lumens', the filled ones'
    0.1); 1376, two empty trenches whose lumens are lopsided (mirror 0.57-0.71) as the
    run's own five (0.98; the filled ones' 0.6). Sites are taken outwards from the run,
    and the first that fails ends it.
    """
    if not np.isfinite(tmpl).all() or pos.size == 0:
        return pos, ncc
    kept = np.rint((pos - offset) / pitch)                    # lattice indices
    m_all = np.rint((np.asarray(site, float) - offset) / pitch)
    scale = float(np.ptp(tmpl))
    empties, n_empties = _run_empties_window(profile, pos, ncc, offsets, offset, pitch,
                                             _amplitude(profile, pos, offsets, tmpl))
    add = []
    for step, start in ((-1, kept.min()), (+1, kept.max())):
        m = start + step
        while np.any(m_all == m):
            at = offset + m * pitch
            win = _windows(profile, [at], offsets)[0]
            contrast = abs(float(_lumen_minus_walls(profile, [at], pitch)[0]))
            mirror = _mirror_ncc(win)
            if not ((mirror >= min_mirror and contrast >= min_contrast * scale)
                    or (mirror >= CLEAR_MIRROR and contrast >= WEAK_LUMEN_RATIO * scale)
                    or _like_run_empties(win, empties, n_empties)):
                break
            add.append(at)
            m += step
    if not add:
        return pos, ncc
    # their correlation with the (full trenches') template, at most half a pixel off
    own = match_template(profile, np.array(add), offsets, tmpl, 0.5)[1]
    pos = np.concatenate([pos, add])
    ncc = np.concatenate([ncc, own])
    order = np.argsort(pos)
    return pos[order], ncc[order]


#: A phase site beyond the run of trenches whose template match reaches this and whose
#: lumen shows cells' texture four times the walls' counts as inside it.
CLOSE_MATCH = 0.9
#: ... and at half the template's scale or more, a trench whatever its contrast
#: (see :func:`locate_centres`)
MATCHED_AMPLITUDE = 0.5
#: A site inside the run of trenches whose template match reaches this at
#: :data:`MATCHED_AMPLITUDE` on its lattice position is a trench, whatever its contrast
INNER_MATCH = 0.7
#: A site beyond the run with cells' texture also counts when its match is within this of
#: the median match of the run's strong sites, where that is under :data:`CLOSE_MATCH`.
RUN_MATCH_SPREAD = 0.05

#: A lattice site inside the run of trenches is an empty lumen when its lumen-minus-walls
#: contrast has the template's sign and this share of its size ...
WEAK_LUMEN_RATIO = 0.1
#: ... and its own template match, within a tenth of the pitch of the site, reaches this.
WEAK_LUMEN_NCC = 0.3


def locate_centres(profile, pitch, axis, first, last, kind="phase", texture=None,
                   lumen_width=None):
    """Sub-pixel trench centres of a set from its cross profile and lumen axis.

    Parameters
    ----------
    profile : ndarray, shape (W,)
    pitch : float
    axis : float
        Lumen axis modulo the pitch (see :func:`lumen.lumen_axis`).
    first, last : int
        First and last valid column of ``profile``.
    kind : {"phase", "fluorescence"}
        Phase trenches must each show the template's contrast (all are
        visible); fluorescence sites are all kept (empty ones are dark).
    texture : ndarray, shape (W,), optional
        Phase: :func:`column_texture` of the set's rows. A weak site beyond
        the run of strong ones is a trench when its lumen holds cells (ten
        times the walls' texture; empty lumens reach five under JPEG
        artefacts), not only a halo of the last trench.
    lumen_width : float, optional
        A trench at the image edge counts when its lumen is inside (its axis
        at least half a lumen plus a pixel from the edge); without the width,
        a quarter of the pitch.

    Returns
    -------
    dict or None
        ``centres`` (the site's own match where it agrees with the lattice,
        else the lattice position), ``lattice``, ``residual`` (own match minus
        lattice), ``ncc``, ``use_own`` and ``template`` (offsets, values).
    """
    half = int(np.ceil(0.5 * pitch))

    def sites(margin):
        m = np.arange(np.ceil((first + margin - axis) / pitch),
                      np.floor((last - margin - axis) / pitch) + 1)
        return axis + m * pitch

    # edge trenches count if their lumen is inside (a quarter pitch dropped whole
    # trenches of wide-pitch chips: geometry held-out seed 10001, 18 px lumens at 89 px);
    # the template needs whole periods
    edge = 0.25 * pitch if lumen_width is None else min(0.25 * pitch, 0.5 * lumen_width + 1.0)
    site = sites(edge)
    if site.size == 0:
        return None
    offsets, tmpl = fold_template(profile, sites(half), half)
    if not np.isfinite(tmpl).all():
        return None
    pos, ncc = match_template(profile, site, offsets, tmpl, 0.25 * pitch)
    keep = np.isfinite(ncc)
    if kind == "phase":
        # A halo next to the last trench can match the template's shape but not
        # its contrast. A trench full of dark cells in a bright lumen keeps a
        # third of an empty lumen's contrast or turns it over (the lumen darker
        # than the walls, down to -2x): a strong contrast of either sign is a
        # trench, and inside the run of such trenches so is a weak one.
        shaped = np.nan_to_num(ncc) >= 0.5
        ratio = _contrast_ratio(profile, pos, offsets, tmpl, pitch)
        # Or it matches the template closely at its scale: lumens wide against the
        # pitch, full of cells dark between bright rims, whose mean over the lumen's
        # middle is the walls' level (independent simulator 1207: 18 px lumens at
        # 63 px, contrast 0.03-0.25 at NCC 0.95-0.97; 7 of 16 trenches of a set
        # dropped, confidence 0.70 without a warning)
        scaled = np.nan_to_num(_amplitude(profile, pos, offsets, tmpl)) >= MATCHED_AMPLITUDE
        matched = (np.nan_to_num(ncc) >= CLOSE_MATCH) & scaled
        strong_site = shaped & ((np.abs(ratio) >= 0.4) | matched)
        strong = np.flatnonzero(strong_site)
        inner = np.zeros(len(pos), bool)
        if strong.size:
            inner[strong[0]:strong[-1] + 1] = True
        if texture is not None and strong.size:
            # trenches full of cells beyond the last empty one (halo_walls held-out
            # seed 10004: five of seventeen dropped) show the cells' texture
            inner |= _holds_cells(texture, pos, pitch)
            # a site beyond an empty lumen the run stopped at, whose match is as close as
            # the run's own and whose lumen shows cells (independent simulator 1049: the
            # last trench, NCC 0.98, 0.2 of the contrast, beyond an empty one the match
            # strayed from; 2 of 13 trenches missed at confidence 0.69, unwarned)
            # As close as the run's own: where its filled lumens match their template
            # loosely (independent simulator 1352: the strong sites' median 0.84, the
            # first two trenches beyond an empty one at 0.82 and 0.71, with 4-5 times
            # the walls' texture; 16 of 18 trenches found), a site within
            # RUN_MATCH_SPREAD of that median counts.
            least = min(CLOSE_MATCH, float(np.median(ncc[strong])) - RUN_MATCH_SPREAD)
            close = (np.nan_to_num(ncc) >= least) & _holds_cells(texture, pos, pitch,
                                                                 factor=4.0)
            if close.any():
                # and the lumens between it and the run are inside the run too
                reach = np.flatnonzero(inner | close)
                inner[reach[0]:reach[-1] + 1] = True
        # A lumen full of dark cells at one end and empty (bright) at the other: its
        # contrast cancels in the mean over the set's rows, its rims still match the
        # template's shape at its scale (independent simulator 1494: ratio -0.09, NCC
        # 0.82, amplitude 0.70 on the lattice; 1 of 39 trenches missed at confidence
        # 0.60, unwarned)
        rims = ((np.nan_to_num(ncc) >= INNER_MATCH) & scaled
                & (np.abs(pos - site) <= 0.1 * pitch))
        keep &= strong_site | (shaped & inner & ((np.abs(ratio) >= 0.1) | rims))
    dropped_inner = ~keep & inner if kind == "phase" else np.zeros(len(pos), bool)
    dropped_ncc = np.nan_to_num(ncc[dropped_inner])
    dropped_pos = pos[dropped_inner]
    pos, ncc = pos[keep], ncc[keep]
    if pos.size == 0:
        return None
    good = ncc >= 0.7
    offset, pitch_fit, _, _ = fit_lattice(pos[good] if good.sum() >= 2 else pos, pitch)
    if dropped_inner.any():
        # Inside the run of trenches every lattice site is one. An empty lumen among
        # full ones does not look like the full ones' template, and its match strays
        # to a halo (held-out mixed 10095: 3 empty trenches of 23 at ncc 0.3, and
        # with none left the set's closed end came from the filled lumens, 3 px
        # inside the mother). Such a site is a trench when its lattice position
        # shows a lumen's contrast, as strong as the strong sites'.
        # Under wide halos a lumen full of cells can lose its contrast altogether
        # (tuning halo_walls 111 and 115: the cells' halos darken it to the walls'
        # level, 13 of 48 and 9 of 21 trenches dropped); its cells' texture still
        # shows it: 5-16 times the walls', where empty lumens had 0.5-0.8. A lattice
        # site inside the run needs less than a site beyond it (10 times).
        at = offset + np.rint((site[dropped_inner] - offset) / pitch_fit) * pitch_fit
        ratio_at = _contrast_ratio(profile, at, offsets, tmpl, pitch)
        lumen_like = np.abs(ratio_at) >= 0.4
        # An empty lumen as bright as the walls beside filled ones whose cells set the
        # template (independent simulator 1020: 16 of 77 trenches dropped, unwarned)
        # keeps a weak contrast of the lumen's sign, 0.17-0.35 of the
        # template's, and a shape that matches it in part (0.39-0.49) right at its
        # lattice position; plain PDMS shows neither.
        lumen_like |= ((ratio_at >= WEAK_LUMEN_RATIO) & (dropped_ncc >= WEAK_LUMEN_NCC)
                       & (np.abs(dropped_pos - at) <= 0.1 * pitch_fit))
        if texture is not None:
            lumen_like |= _holds_cells(texture, at, pitch, factor=4.0)
        apart = np.min(np.abs(at[:, None] - pos[None, :]), axis=1) > 0.5 * pitch_fit
        add = lumen_like & apart
        if add.any():
            pos = np.concatenate([pos, at[add]])
            ncc = np.concatenate([ncc, dropped_ncc[add]])
            order = np.argsort(pos)
            pos, ncc = pos[order], ncc[order]
    if kind == "phase" and strong.size:
        pos, ncc = _with_empty_edge_lumens(profile, site, offsets, tmpl, pos, ncc, offset,
                                           pitch_fit)
    lattice = offset + np.rint((pos - offset) / pitch_fit) * pitch_fit
    residual = pos - lattice
    # a site whose own match strays is more likely disturbed than displaced
    use_own = (np.abs(residual) <= 0.125 * pitch) & (ncc >= 0.5)
    return dict(centres=np.where(use_own, pos, lattice), lattice=lattice, residual=residual,
                ncc=ncc, use_own=use_own, template=(offsets, tmpl))
