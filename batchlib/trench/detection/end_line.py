"""Trench angle from the line of the closed ends (fluorescence, and phase as a check).

In fluorescence only the cells show, so the shift-and-add search
(:mod:`.rotation`) reads the angle from the lean of the cell columns. The cells
tilt and jitter inside their lumens, and a short set holds few of them: 0.1-0.2
deg off at the 95th percentile of held-out positions, up to 1.8 deg on sets of
130 px. The closed ends of one set lie on a straight line at right angles to
the trenches (one edge of the chip's lithography), and the mother cells' outer
tips sit against it. In the frame straightened at the current estimate, that
line leans by the estimate's error; a straight line through the tips across
the set (hundreds of pixels) measures it to a few hundredths of a degree.
"""
from __future__ import annotations

import numpy as np

__all__ = ["end_line_lean", "closed_end_angle_error", "phase_closed_ends",
           "empty_end_shifts"]


def end_line_lean(x, tips, min_tips=5, max_scatter_px=1.0, n_rounds=4, outlier_scatter_px=0.1,
                  residual_floor_px=None):
    """Lean (degrees) of a straight line through the closed-end tips of one set.

    A least-squares line, refitted without the tips more than three robust
    sigmas off it (a trench whose mother is missing or dividing), from a
    Theil-Sen start.

    Parameters
    ----------
    x : array_like, shape (n,)
        Rotated column of every trench.
    tips : array_like, shape (n,)
        Rotated row of every trench's tip (NaN where none was seen).
    min_tips : int
        Fewer tips left give no answer.
    max_scatter_px : float
        Tips scattering more about the line (robust sigma) give no answer:
        that end is no straight closed end (an open end, a wrong box).
    outlier_scatter_px : float
        The least robust sigma the outliers are judged by (three of them): tips
        are found to about a tenth of a pixel, but a mother's gap to the end
        varies more than that from trench to trench.
    residual_floor_px : float, optional
        Take the standard error from the least-squares residuals of the tips
        kept, with at least this scatter, rather than from the robust sigma:
        over five to ten tips the robust sigma often comes out a fraction of
        the tips' true scatter.

    Returns
    -------
    lean_deg : float
        ``atan`` of the line's slope (rows per column), NaN without an answer.
    stderr_deg : float
        Its standard error from the scatter about the line.
    n : int
        Tips on the line.

    Examples
    --------
    >>> x = np.arange(0.0, 800.0, 50.0)
    >>> tips = 100.0 + np.tan(np.deg2rad(0.3)) * x
    >>> tips[3] += 12.0                      # one mother missing: an outlier
    >>> lean, err, n = end_line_lean(x, tips)
    >>> round(lean, 4), n
    (0.3, 15)
    """
    x = np.asarray(x, float)
    y = np.asarray(tips, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    nan = (float("nan"), float("nan"), int(x.size))
    if x.size < min_tips or np.ptp(x) <= 0:
        return nan
    # a robust start (Theil-Sen): a third of the tips may be off the line
    i, j = np.triu_indices(x.size, 1)
    dx = x[j] - x[i]
    slope = float(np.median((y[j] - y[i])[dx != 0] / dx[dx != 0]))
    keep = np.ones(x.size, bool)
    for round_ in range(n_rounds):
        resid = y - slope * x
        resid -= np.median(resid[keep])
        sigma = max(1.4826 * float(np.median(np.abs(resid[keep]))), outlier_scatter_px)
        new_keep = np.abs(resid) <= 3.0 * sigma
        if new_keep.sum() < min_tips:
            return nan
        if round_ > 0 and np.array_equal(new_keep, keep):
            break  # the least-squares line of these tips is already fitted
        keep = new_keep
        xc = x[keep] - x[keep].mean()
        slope = float(np.sum(xc * (y[keep] - y[keep].mean())) / np.sum(xc * xc))
    x, y = x[keep], y[keep]
    if x.size < min_tips or sigma > max_scatter_px:
        return nan
    xc = x - x.mean()
    if residual_floor_px is not None:
        resid = y - y.mean() - slope * xc
        sigma = max(float(np.sqrt(np.sum(resid ** 2) / (x.size - 2))), residual_floor_px)
    stderr = sigma / np.sqrt(np.sum(xc * xc))
    return (float(np.rad2deg(np.arctan(slope))), float(np.rad2deg(stderr)), int(x.size))


def closed_end_angle_error(x, tips, sets, **lean_options):
    """Error of the angle a layout was straightened at, from its sets' closed-end lines.

    Parameters
    ----------
    x, tips : array_like, shape (n,)
        Rotated column and closed-end tip row of every box.
    sets : array_like, shape (n,)
        Set of every box; each set has its own line, all lean alike.
    **lean_options
        Passed to :func:`end_line_lean` (``max_scatter_px``, ...).

    Returns
    -------
    error_deg : float
        Weighted mean lean of the sets' lines: subtract it from the angle.
        NaN when no set gives an answer.
    stderr_deg : float
    n : int
        Tips on the lines.

    Examples
    --------
    >>> x = np.tile(np.arange(0.0, 800.0, 50.0), 2)
    >>> lean = np.tan(np.deg2rad(-0.2)) * x
    >>> tips = np.r_[100.0 + lean[:16], 700.0 + lean[16:]]
    >>> err, _, n = closed_end_angle_error(x, tips, np.repeat([0, 1], 16))
    >>> round(err, 4), n
    (-0.2, 32)
    """
    x, tips, sets = np.asarray(x, float), np.asarray(tips, float), np.asarray(sets)
    leans, weights, n = [], [], 0
    for s in np.unique(sets):
        m = sets == s
        lean, err, k = end_line_lean(x[m], tips[m], **lean_options)
        if np.isfinite(lean):
            leans.append(lean)
            weights.append(1.0 / err ** 2)
            n += k
    if not leans:
        return float("nan"), float("nan"), n
    w = np.asarray(weights)
    return float(np.average(leans, weights=w)), float(1.0 / np.sqrt(w.sum())), n


def phase_closed_ends(image, trenches, angle_deg, pitch, half_width, reach=24, far=6.0):
    """Rotated row of every phase trench's closed end: where its lumen's contrast to the
    walls on both sides falls to half (NaN where not seen within ``far`` px of the
    layout's line).

    Unlike a fluorescence mother's tip, the lumen's end is the chip's own edge in empty
    and filled trenches alike; a mother against it moves the crossing by the same
    amount in every filled trench, so lines are fitted to the filled and the empty
    trenches apart (:func:`closed_end_angle_error` with one group each).
    """
    from .ends import half_level_crossings, smooth_columns, strip_profiles

    out = np.full(len(trenches), np.nan)
    for _, g in trenches.groupby("set", sort=False):
        d = int(g["direction"].iloc[0])
        x = g["x_center"].to_numpy(float)
        line = g["y_closed"].to_numpy(float)
        mid = float(np.median(line))
        rows = np.arange(np.floor(line.min()) - reach, np.ceil(line.max()) + reach + 1)
        walls = np.concatenate([x - 0.5 * pitch, x + 0.5 * pitch])
        lum, wal = strip_profiles(image, angle_deg, rows, x, walls, half_width)
        excess = lum - 0.5 * (wal[:, : len(x)] + wal[:, len(x):])
        into = (rows - mid) * d
        inside = (into >= 6) & (into <= reach)
        if inside.sum() < 3:
            continue
        ends = half_level_crossings(rows, smooth_columns(excess, 1.0), inside, -d)
        ends[np.abs(ends - line) > far] = np.nan
        out[trenches.index.get_indexer(g.index)] = ends
    return out


#: Where a set's line sits inside its empty lumens' half-level ends when detection drew
#: it from them (independent simulator 1025, 1032, 1056 set 0: 0.2-0.7 px, median 0.45).
EMPTY_END_OFFSET = 0.5
#: A set's empty lumens must end this much further out than that for its boxes to move.
EMPTY_END_SLACK = 0.5


def empty_end_shifts(image, trenches, angle_deg, pitch, half_width, margin, min_empty=1,
                     max_spread=1.0):
    """Per set, how far (rotated rows, :meth:`~.trench_array.TrenchLayout.moved_along`)
    its boxes must move out for its line to sit as far inside its empty lumens' closed
    ends (:func:`phase_closed_ends`) as detection puts it when it draws the line from
    them (:data:`EMPTY_END_OFFSET`); only sets with at least ``min_empty`` empty
    trenches whose ends agree within ``max_spread`` px and lie more than
    :data:`EMPTY_END_SLACK` beyond that. ``trenches``: a layout's boxes (``y_closed``
    is the box start, ``margin`` px outside the line). One empty lumen suffices, as one
    bounds a line in :func:`.ends.set_ends` (``_beyond_empty_ends``): independent
    simulator 1128, a line drawn from ten lumens of which time left one empty lay 2.6 px
    inside the closed end under the halos that reach over the mothers' tips (boxes in
    31 % of them at confidence 0.81, unwarned).

    For a movie whose empty flags the lumens' texture left unclear and time confirmed
    (:mod:`.temporal`): its lines were drawn with the unverified flags, and filled
    trenches among them put a line at the mothers' tips (independent simulator 1056:
    7 of 19 flagged trenches held cells; one set's line 2.3 px inside its closed
    ends, boxes up to 1.15 px into 17 of 38 mothers, confidence 0.57 unwarned; its 7
    empty lumens ended 1.9-2.5 px beyond the line).
    """
    ends = phase_closed_ends(image, trenches, angle_deg, pitch, half_width)
    shifts = {}
    for k, g in trenches.groupby("set", sort=False):
        idx = trenches.index.get_indexer(g.index)
        empty = g["empty"].to_numpy(bool)
        d = int(g["direction"].iloc[0])
        line = g["y_closed"].to_numpy(float) + d * margin
        beyond = ((line - ends[idx]) * d)[empty]
        beyond = beyond[np.isfinite(beyond)]
        if beyond.size < min_empty or np.ptp(beyond) > max_spread:
            continue
        move = float(np.median(beyond)) - EMPTY_END_OFFSET
        if move > EMPTY_END_SLACK:
            shifts[int(k)] = -d * move
    return shifts
