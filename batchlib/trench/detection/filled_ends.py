"""The closed end of a phase-contrast set whose trenches are (almost) all filled.

The lumen-minus-wall contrast of an *empty* lumen fades cleanly at the closed
end, and with three or more empty trenches those draw the set's end line
(:func:`.ends.set_ends`). In a well-loaded chip there are fewer. A filled
lumen's contrast is that of its cells: as bright as the walls, darker or
brighter, with bright halos between them, so its "inside level" is small or
of either sign, and the half-level crossing searched from inside the set
outwards can stop inside the mother (tuning seeds of halo_walls with no empty
trench: 9 of 24 positions had boxes starting 4.5-11.5 px inside the trench).

What holds in any polarity: beyond the closed end lies PDMS, where the
lumen's column looks like the walls' (contrast ~0); at the closed end the
trench begins, with its cells and halos. :func:`outermost_rise` follows the
magnitude of the contrast from the outside in and finds where it first
rises to half its level inside the set; :func:`clear_closed_end` moves a
set's closed-end line out to that row when it lies further in.
"""
from __future__ import annotations

import warnings

import numpy as np

from ._common import nanmean
from .ends import smooth, smooth_columns

__all__ = ["outermost_rise", "clear_closed_end", "opposite_halo_beyond", "pole_halo_beyond",
           "MIN_EMPTY"]

#: With at least this many empty trenches in a set their lumens draw its ends.
MIN_EMPTY = 3
#: The filled lumens' mean contrast under this share of their own median magnitude (both
#: inside the set) says they cancel: the magnitude is followed instead.
CANCELLED = 0.5
#: The mean contrast read again, less smoothed (Gaussian sigma, rows), for a bright halo
#: right at the closed end that the usual smoothing blends into the cells' dark contrast.
FINE_SIGMA = 0.5
#: A halo of the sign opposite to the filled lumens' contrast, beyond the closed-end line,
#: at this share of their level or more, is recorded as ``closed_end_halo_beyond_px``
#: (:func:`opposite_halo_beyond`) ...
OPPOSITE_HALO = 0.25
#: ... where it peaks within this many rows of the line.
OPPOSITE_HALO_REACH = 6.0
#: Such a halo that falls under half its peak within this many rows further out is the
#: mothers' poles' (:func:`pole_halo_beyond`): the line moves out to its peak.
POLE_HALO_FALL = 4.0


def outermost_rise(rows, profile, inside_rows, outward, fraction=0.5, outside_rows=10):
    """Row where ``|profile|``, followed from the outside in, first reaches ``fraction``
    of the way from its outside level to its inside level.

    Parameters
    ----------
    rows : ndarray
        Rows of ``profile`` (ascending, step 1).
    profile : ndarray
        Lumen-minus-wall contrast along the set, smoothed (NaN: outside the frame).
    inside_rows : ndarray of bool
        Rows surely inside the set.
    outward : {+1, -1}
        Direction (in rows) from the inside towards the end looked for.
    fraction : float
        Share of the way from the outside level to the inside level.
    outside_rows : int
        The outermost rows that give the outside level.

    Returns
    -------
    float
        The row (interpolated), or NaN when the profile has no quiet outside
        (the level there is not under half the inside level) or never rises.

    Examples
    --------
    >>> rows = np.arange(100)
    >>> p = np.where(rows >= 30, 200.0, 0.0)        # the trench from row 30 on
    >>> p[30:] *= np.where((rows[30:] - 30) % 25 < 3, 8.0, -0.2)  # dark cells, bright gaps
    >>> round(outermost_rise(rows, p, rows >= 50, -1), 1)
    29.0
    """
    a = np.abs(np.nan_to_num(np.asarray(profile, float)))
    inside = np.flatnonzero(inside_rows)
    if inside.size == 0:
        return float("nan")
    level = float(np.median(a[inside]))
    if outward < 0:
        scan = np.arange(0, inside[0])
        base = float(np.median(a[:outside_rows]))
    else:
        scan = np.arange(len(a) - 1, inside[-1], -1)
        base = float(np.median(a[-outside_rows:]))
    if scan.size < 2 or not level > 2.0 * base:
        return float("nan")
    threshold = base + fraction * (level - base)
    hit = np.flatnonzero(a[scan] >= threshold)
    if hit.size == 0 or hit[0] == 0:
        return float("nan")
    i0, i1 = scan[hit[0] - 1], scan[hit[0]]
    frac = (threshold - a[i0]) / (a[i1] - a[i0]) if a[i1] != a[i0] else 0.5
    return float(rows[i0] + frac * (rows[i1] - rows[i0]))


def clear_closed_end(s, tolerance=1.0, inset=10.0) -> float:
    """Move the closed-end line of set ``s`` (a dict of :func:`.trench_array` with
    ``direction``, ``rows``, ``excess``, ``empty``, ``y_top``, ``y_bottom``,
    ``top_each``, ``bottom_each``) out to :func:`outermost_rise` of its filled
    lumens' mean contrast (of their median magnitude where their signs cancel in the
    mean: :data:`CANCELLED`) where it lies more than ``tolerance`` px further in.

    A narrow halo of the opposite sign peaking more than ``tolerance`` px beyond the line
    is the mothers' poles': the line then moves out to its peak
    (:func:`pole_halo_beyond`; recorded in ``s["closed_end_pole_halo_px"]``).

    Records ``s["closed_end_halo_beyond_px"]``: how far beyond the line (as moved) the
    mean contrast, less smoothed (:data:`FINE_SIGMA`), rises, or a fainter halo of the
    opposite sign peaks (:func:`opposite_halo_beyond`): a halo beyond the trench's end
    (independent simulator 1206, the boxes right) or the mothers' poles' halo that
    :func:`pole_halo_beyond` did not take as one (it stayed up further out).

    Returns the distance moved (0.0 if not moved). Sets with :data:`MIN_EMPTY`
    or more empty trenches are left alone, and so are sets whose empty lumens drew
    the end lines (``ends_from_empty``: two that agree, see :func:`.ends.set_ends`).
    """
    empty = np.asarray(s["empty"], bool)
    if empty.sum() >= MIN_EMPTY or empty.all() or s.get("ends_from_empty", False):
        return 0.0
    rows = np.asarray(s["rows"], float)
    excess = np.asarray(s["excess"])[:, ~empty]
    mean = nanmean(excess, axis=1)
    profile = smooth(mean, 1.0)
    inside = (rows >= s["y_top"] + inset) & (rows <= s["y_bottom"] - inset)
    magnitude = _median_magnitude(excess)
    d = s["direction"]
    s["closed_end_readings_differ_px"] = s["closed_end_halo_beyond_px"] = 0.0
    s["closed_end_pole_halo_px"] = 0.0
    move = _move(s, outermost_rise(rows, profile, inside, -d))
    cancelled = np.nanmedian(np.abs(profile[inside])) < CANCELLED * np.nanmedian(
        magnitude[inside])
    if not cancelled:
        fine_mean = smooth(mean, FINE_SIGMA)
        fine = _move(s, outermost_rise(rows, fine_mean, inside, -d))
        s["closed_end_halo_beyond_px"] = max(0.0, fine - (move if move > tolerance else 0.0))
    else:
        # lumens of both signs (dark cells, bright lumens the texture called filled)
        # cancel in the mean, and at half of what is left a faint band in the PDMS
        # counts as the end (independent 1140: |mean| 0.22 of the lumens' own
        # magnitude, the line moved 12.6 px out, every box of the set 12 px in the
        # PDMS); each lumen's own magnitude does not cancel. Where the lumens agree
        # (0.64-0.88 on the positions the move fired on) the mean stays: the median
        # magnitude rose inside the mothers on 1051 and 1058 (95-100 % of them cut).
        # How far the two readings' moves differ says how unsure the end is (1089:
        # 3.3 px, every box 3.5 px out with the magnitude's, 6.8 with the mean's)
        by_magnitude = _move(s, outermost_rise(rows, magnitude, inside, -d))
        s["closed_end_readings_differ_px"] = abs(move - by_magnitude)
        move = by_magnitude
    if move > tolerance:
        _move_out(s, move)
    if not cancelled:
        # the mothers' poles' bright halo beyond a line drawn at their dark bodies
        # (independent simulator 1455: every box 2-4.5 px inside, 79 % of the mothers
        # cut); a halo beyond the trench's end stays up further out (1009 and 1206, 5
        # and 3 px out: still 0.8 and 0.7 of its peak 4 rows beyond it)
        pole = pole_halo_beyond(rows, fine_mean, inside, _line(s), -d)
        if pole > tolerance:
            _move_out(s, pole)
            s["closed_end_pole_halo_px"] = pole
            s["closed_end_halo_beyond_px"] = max(0.0, s["closed_end_halo_beyond_px"] - pole)
        s["closed_end_halo_beyond_px"] = max(
            s["closed_end_halo_beyond_px"],
            opposite_halo_beyond(rows, fine_mean, inside, _line(s), -d))
    return move if move > tolerance else 0.0


def _line(s) -> float:
    """Set ``s``'s closed-end line: the median of its trenches' closed-end rows."""
    return float(np.nanmedian(s["top_each"] if s["direction"] == 1 else s["bottom_each"]))


def _move_out(s, by):
    """Move set ``s``'s trenches' closed ends (and its edge there) out by ``by`` px."""
    if s["direction"] == 1:
        s["top_each"] = np.asarray(s["top_each"]) - by
        s["y_top"] = min(s["y_top"], float(np.nanmedian(s["top_each"])))
    else:
        s["bottom_each"] = np.asarray(s["bottom_each"]) + by
        s["y_bottom"] = max(s["y_bottom"], float(np.nanmedian(s["bottom_each"])))


def opposite_halo_beyond(rows, profile, inside_rows, line, outward) -> float:
    """How far beyond ``line`` (px, towards ``outward``) ``profile`` peaks with the sign
    opposite to its median inside the set, at :data:`OPPOSITE_HALO` of that level or
    more, within :data:`OPPOSITE_HALO_REACH` rows; 0.0 where it does not.

    Phase cells dark in the lumen have a bright halo at their poles, and a mother at
    the closed end puts hers where the trench begins. The half-level rise of the
    contrast's magnitude (:func:`outermost_rise`) then stops at her dark body, inside
    her, where the halo is fainter than half her contrast: independent simulator 1455
    (no empty trench; halo +180 against -540, a third), every box 2-4.5 px inside
    the trenches' ends, 79 % of the mothers cut, at confidence 0.81 without a warning.
    A halo beyond the trench's end can look alike (as for the same-signed halo of
    :func:`clear_closed_end`); a narrow one is the poles' (:func:`pole_halo_beyond`).

    Examples
    --------
    >>> rows = np.arange(60.0)
    >>> p = np.where(rows >= 42, -540.0, 0.0)
    >>> p[37:42] = [60.0, 120.0, 180.0, 120.0, 60.0]              # the halo, peak at row 39
    >>> round(opposite_halo_beyond(rows, p, rows >= 50, 42.0, -1), 1)
    3.0
    >>> opposite_halo_beyond(rows, np.where(rows >= 42, -540.0, 0.0), rows >= 50, 42.0, -1)
    0.0
    """
    return _opposite_halo(rows, profile, inside_rows, line, outward)[0]


def pole_halo_beyond(rows, profile, inside_rows, line, outward) -> float:
    """:func:`opposite_halo_beyond` where the halo, further out than its peak, falls under
    half the peak within :data:`POLE_HALO_FALL` rows (the mothers' poles' halo); else 0.0.

    A bright pole halo is as narrow as the optics' blur; the PDMS beyond a trench's end
    can differ from the walls' level over many rows, and a halo there stays up
    (independent simulator 1009 and 1206, lines right: 0.8 and 0.7 of the peak 4 rows
    further out; 1455 and 1225, lines 3.3 and 1.0 px inside the mothers: 0.3 and 0.2).

    Examples
    --------
    >>> rows = np.arange(60.0)
    >>> p = np.where(rows >= 42, -540.0, 0.0)
    >>> p[37:42] = [60.0, 120.0, 180.0, 120.0, 60.0]              # the halo, peak at row 39
    >>> round(pole_halo_beyond(rows, p, rows >= 50, 42.0, -1), 1)
    3.0
    >>> p[30:39] = 170.0                                           # a plateau beyond it
    >>> pole_halo_beyond(rows, p, rows >= 50, 42.0, -1)
    0.0
    """
    peak_at, opposite, away = _opposite_halo(rows, profile, inside_rows, line, outward)
    if peak_at == 0.0:
        return 0.0
    peak = float(opposite[np.argmin(np.abs(away - peak_at))])
    further = (away > peak_at) & (away <= peak_at + POLE_HALO_FALL) & np.isfinite(opposite)
    return peak_at if further.any() and np.min(opposite[further]) < 0.5 * peak else 0.0


def _opposite_halo(rows, profile, inside_rows, line, outward):
    """:func:`opposite_halo_beyond`'s answer, with ``profile`` signed so that the sign
    opposite to its median inside the set is positive, and each row's distance beyond
    ``line`` towards ``outward``."""
    p = np.asarray(profile, float)
    level = float(np.nanmedian(p[np.asarray(inside_rows, bool)]))
    away = (line - np.asarray(rows, float)) * (-outward)
    opposite = -np.sign(level) * p
    near = (away > 0) & (away <= OPPOSITE_HALO_REACH) & np.isfinite(p)
    if not near.any() or not np.isfinite(level) or level == 0:
        return 0.0, opposite, away
    i = int(np.argmax(opposite[near]))
    peak_at = float(away[near][i]) if opposite[near][i] >= OPPOSITE_HALO * abs(level) else 0.0
    return peak_at, opposite, away


def _move(s, rise) -> float:
    """How far out (px, >= 0) set ``s``'s closed-end line must move to ``rise`` (NaN: 0)."""
    if not np.isfinite(rise):
        return 0.0
    return max(0.0, (_line(s) - rise) * s["direction"])


def _median_magnitude(excess):
    """Median over trenches (columns) of each smoothed profile's magnitude."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows outside the frame: all NaN
        return np.nanmedian(np.abs(smooth_columns(excess, 1.0)), axis=1)
