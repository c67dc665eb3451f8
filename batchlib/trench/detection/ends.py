"""Closed and open ends of a trench set, and which way its trenches point.

Along a trench, the lumen columns (L) and the wall columns (W) behave
differently at the two ends: at the closed end the lumen stops (L changes,
the wall continues into the PDMS beyond), at the open end the walls stop (W
changes, the lumen continues into the feeding channel). The lumen-minus-wall
contrast ``L - W`` therefore fades at both ends; its half-level crossing gives
each end to sub-pixel precision, from full-resolution samples.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ._common import nanmean
from ._sampling import rotated_samples

# Fluorescence: a set's boxes reach no further than this percentile of its
# filled trenches' cells (see set_ends).
REACH_PERCENTILE = 90.0

__all__ = ["set_ends", "strip_profiles", "signal_extents", "half_level_crossing", "end_cues",
           "smooth", "fit_end_line", "outer_foot"]


def strip_profiles(image, angle_deg, rows, lumen_x, wall_x, half_width):
    """Intensity along rotated rows, averaged over the strip of each lumen and wall.

    Returns
    -------
    lumen : ndarray, shape (len(rows), n_lumen)
    wall : ndarray, shape (len(rows), n_wall)
    """
    off = np.arange(-half_width, half_width + 1, dtype=float)
    lx = (np.asarray(lumen_x, float)[:, None] + off).ravel()
    wx = (np.asarray(wall_x, float)[:, None] + off).ravel()
    samples = rotated_samples(image, image.shape, angle_deg, rows, np.concatenate([lx, wx]))
    n = len(rows)
    lum = nanmean(samples[:, : lx.size].reshape(n, len(lumen_x), off.size), axis=2)
    wal = nanmean(samples[:, lx.size:].reshape(n, len(wall_x), off.size), axis=2)
    return lum, wal


def signal_extents(rows, profiles, inside_rows, fraction=0.5):
    """First and last row (sub-pixel) where each column of ``profiles`` (rows x n)
    exceeds ``fraction`` of its high level.

    The high level is the 90th percentile inside the set, so a trench holding
    cells only near one end still has that end found. A low ``fraction``
    gives the outer foot of a blurred object rather than its half-level edge.

    Returns
    -------
    ndarray, shape (n, 2)
        First and last row of every column; NaN where its high level is not
        above zero.
    """
    p = np.nan_to_num(np.asarray(profiles, float))
    rows = np.asarray(rows, float)
    out = np.full((p.shape[1], 2), np.nan)
    if not inside_rows.any() or p.shape[1] == 0:
        return out
    level = np.percentile(p[inside_rows], 90, axis=0)
    good = level > 0
    thr = fraction * level
    above = p > thr
    i0 = np.argmax(above, axis=0)
    i1 = p.shape[0] - 1 - np.argmax(above[::-1], axis=0)
    cols = np.arange(p.shape[1])
    for k, (i, j) in enumerate(((i0, i0 - 1), (i1, i1 + 1))):
        outside = (j < 0) | (j >= p.shape[0])
        jj = np.clip(j, 0, p.shape[0] - 1)
        pi, pj = p[i, cols], p[jj, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(pi != pj, (pi - thr) / (pi - pj), 0.5)
        out[:, k] = np.where(outside, rows[i], rows[i] + f * (rows[jj] - rows[i]))
    out[~good] = np.nan
    return out


def half_level_crossing(rows, profile, inside_rows, outward):
    """Sub-pixel row where ``profile`` first falls to half its inside level.

    Parameters
    ----------
    rows : ndarray
        Rotated rows of ``profile`` (ascending, step 1).
    profile : ndarray
        A contrast that is non-zero inside the set and about zero outside.
    inside_rows : ndarray of bool
        Where to measure the inside level.
    outward : {+1, -1}
        Direction (in rows) from inside to outside.

    Returns
    -------
    float
        The crossing, or NaN if the profile never falls to half.
    """
    p = np.nan_to_num(np.asarray(profile, float))
    level = np.median(p[inside_rows]) if inside_rows.any() else np.nan
    if not np.isfinite(level) or level == 0:
        return np.nan
    rel = p / level
    inside_idx = np.flatnonzero(inside_rows)
    start = inside_idx[-1] if outward > 0 else inside_idx[0]
    idx = np.arange(start, len(p)) if outward > 0 else np.arange(start, -1, -1)
    below = np.flatnonzero(rel[idx] < 0.5)
    if below.size == 0:
        return np.nan
    k = below[0]
    if k == 0:
        return float(rows[idx[0]])
    i0, i1 = idx[k - 1], idx[k]
    r0, r1 = rel[i0], rel[i1]
    frac = (r0 - 0.5) / (r0 - r1) if r0 != r1 else 0.5
    return float(rows[i0] + frac * (rows[i1] - rows[i0]))


def smooth_columns(profiles, sigma):
    """:func:`smooth` of every column of ``profiles`` (rows x n) at once."""
    p = np.asarray(profiles, float)
    ok = np.isfinite(p)
    num = ndimage.gaussian_filter1d(np.where(ok, p, 0.0), sigma, axis=0, mode="nearest")
    den = ndimage.gaussian_filter1d(ok.astype(float), sigma, axis=0, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def half_level_crossings(rows, profiles, inside_rows, outward):
    """:func:`half_level_crossing` of every column of ``profiles`` (rows x n) at once."""
    p = np.nan_to_num(np.asarray(profiles, float))
    n = p.shape[1]
    out = np.full(n, np.nan)
    if not inside_rows.any():
        return out
    level = np.median(p[inside_rows], axis=0)
    good = np.isfinite(level) & (level != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = p / np.where(good, level, 1.0)
    inside_idx = np.flatnonzero(inside_rows)
    start = inside_idx[-1] if outward > 0 else inside_idx[0]
    idx = np.arange(start, len(rows)) if outward > 0 else np.arange(start, -1, -1)
    below = rel[idx] < 0.5                                   # (len(idx), n)
    found = below.any(axis=0) & good
    k = np.argmax(below, axis=0)
    cols = np.flatnonzero(found)
    at_start = cols[k[cols] == 0]
    out[at_start] = rows[idx[0]]
    cols = cols[k[cols] > 0]
    i0, i1 = idx[k[cols] - 1], idx[k[cols]]
    r0, r1 = rel[i0, cols], rel[i1, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(r0 != r1, (r0 - 0.5) / (r0 - r1), 0.5)
    out[cols] = rows[i0] + frac * (rows[i1] - rows[i0])
    return out


def end_cues(rows, lumen, wall, edge, outward, reach):
    """How much the lumen and the wall profiles change across one end.

    Returns ``(change_lumen, change_wall)``: absolute differences of the mean
    levels between ``reach`` rows inside and ``reach`` rows outside the edge
    (a few rows next to the edge are skipped to stay clear of the blur).
    """
    d = (rows - edge) * outward
    inside = (d < -3) & (d >= -3 - reach)
    outside = (d > 3) & (d <= 3 + reach)
    if not inside.any() or not outside.any():
        return np.nan, np.nan
    dl = abs(nanmean(lumen[outside]) - nanmean(lumen[inside]))
    dw = abs(nanmean(wall[outside]) - nanmean(wall[inside]))
    return float(dl), float(dw)


def smooth(profile, sigma):
    """Gaussian smoothing that ignores NaN."""
    p = np.asarray(profile, float)
    ok = np.isfinite(p)
    num = ndimage.gaussian_filter1d(np.where(ok, p, 0.0), sigma, mode="nearest")
    den = ndimage.gaussian_filter1d(ok.astype(float), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def outer_foot(rows, profile, edge, inward, window=40, fraction=0.2, reach=None):
    """Row where the outermost object near ``edge`` fades to ``fraction`` of its level.

    In fluorescence the end of a trench is where its outermost cell ends. The
    walk goes out from a peak while the profile stays above ``fraction`` of
    that peak's level. With ``reach=None`` the peak is the brightest point
    within ``window`` rows inside the edge. A dim mother touching a bright
    daughter is then walked through when its level is just above a fifth of
    the daughter's, and the foot lands inside it; or the walk stops in the dip
    between them and says nothing about the mother (held-out curved_cells
    10167: a box 0.6 px into its mother). With ``reach`` the peak is the
    outermost object's: the first row, from the outside in, standing five
    robust sigmas above the profile beyond the end, and the highest of the
    ``reach`` rows from there (shorter than a cell, longer than a blurred
    end's rise); with too little profile beyond the end, the brightest point.
    :func:`_trench_ends` draws the closed-end line through the brightest-peak
    feet and lets the outermost-object feet push single boxes out.

    Parameters
    ----------
    rows : ndarray
        Rotated rows of ``profile`` (ascending, step 1).
    profile : ndarray
        Signal above the walls' level along the trench.
    edge : float
        Approximate end (the set's).
    inward : {+1, -1}
        Direction (in rows) from the end into the trench.

    Returns
    -------
    float
        NaN when no object lies near the end.

    Examples
    --------
    A dim mother (rows 20-49, level 160) touching a bright daughter (level 660):

    >>> from scipy import ndimage
    >>> p = np.zeros(100); p[20:50] = 160; p[50:80] = 660
    >>> p = ndimage.gaussian_filter1d(p, 1.5)
    >>> round(outer_foot(np.arange(100.0), p, 21.0, +1), 1)  # inside the mother
    20.9
    >>> round(outer_foot(np.arange(100.0), p, 21.0, +1, reach=12), 1)  # in its own tail
    18.2
    """
    p = np.nan_to_num(np.asarray(profile, float))
    d = (rows - edge) * inward
    near = np.flatnonzero((d >= -window / 2) & (d <= window))
    if near.size == 0:
        return np.nan
    peak_i = near[np.argmax(p[near])]
    if not p[peak_i] > 0:
        return np.nan
    step = -int(inward)                 # from the peak outwards
    if reach:
        start = _outermost_object(p, d, near, reach)
        if start is not None:
            peak_i = start
    i, level = peak_i, p[peak_i]
    while 0 <= i + step < p.size and p[i + step] > fraction * level:
        i += step
    j = i + step
    if not 0 <= j < p.size:
        return float(rows[i])
    f = (p[i] - fraction * level) / (p[i] - p[j]) if p[i] != p[j] else 0.5
    return float(rows[i] + f * (rows[j] - rows[i]))


def _outermost_object(p, d, near, reach, k=5.0):
    """Index of the peak of the outermost object of profile ``p`` near an end: the first
    row, from the outside in, standing ``k`` robust sigmas above the profile beyond the end
    (``d`` of the rows of ``near`` down to -4), and the highest of the ``reach`` rows from there on.
    ``None`` when too little of the profile lies beyond the end to tell."""
    outside = near[d[near] <= -4]
    if outside.size < 6:
        return None
    base = np.median(p[outside])
    sd = 1.4826 * np.median(np.abs(p[outside] - base))
    order = near[np.argsort(d[near])]   # from the outside in
    above = (p[order] > base + k * max(sd, 1e-9)) & (d[order] > -4)
    if not above.any():
        return None
    first = int(np.argmax(above))
    span = order[first: first + reach]
    return int(span[np.argmax(p[span])])


#: Rows from a fluorescence trench's outermost object's first row among which its peak is
#: sought (:func:`outer_foot`): shorter than a cell, longer than a blurred end's rise.
CELL_REACH = 12


def fit_end_line(x, ends, fallback, max_residual=None, max_slope=0.002):
    """Robust straight line through the per-trench ends of one set, evaluated at every trench.

    The closed ends of a chip are drawn on one straight line by lithography;
    a line through many trenches is far less noisy than any one of them, and
    its slope absorbs a small residual error of the angle.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Trench axes (rotated columns).
    ends : ndarray, shape (n,)
        Per-trench end rows; NaN where not measured.
    fallback : float
        Used when fewer than three ends are measured.
    max_residual : float, optional
        Ends further than this from the line are outliers (default: 3 robust
        sigmas, at least 1 px).
    max_slope : float
        Largest slope (rows per column) allowed: what the error of the angle
        can leave. Ends that differ between filled and empty trenches would
        otherwise tilt the line across the frame.

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(10.0) * 40
    >>> ends = 100 + 0.001 * x
    >>> ends[3] = 140                                   # a cell sticking out
    >>> np.round(fit_end_line(x, ends, 100.0), 2)[:4]
    array([100.  , 100.04, 100.08, 100.12])
    """
    x = np.asarray(x, float)
    e = np.asarray(ends, float)
    ok = np.isfinite(e)
    if ok.sum() < 3:
        med = float(np.nanmedian(e)) if ok.any() else float(fallback)
        return np.full(x.shape, med)
    keep = ok.copy()
    coef = np.array([0.0, float(np.median(e[ok]))])
    for _ in range(4):
        if keep.sum() < 3:
            break
        xm = x[keep].mean()
        slope = float(np.clip(np.polyfit(x[keep] - xm, e[keep], 1)[0], -max_slope, max_slope))
        coef = np.array([slope, float(np.median(e[keep] - slope * (x[keep] - xm))) - slope * xm])
        res = e - np.polyval(coef, x)
        sigma = 1.4826 * np.median(np.abs(res[keep]))
        limit = max(3.0 * sigma, 1.0) if max_residual is None else max_residual
        new = ok & (np.abs(res) <= limit)
        if np.array_equal(new, keep):
            break
        keep = new
    return np.polyval(coef, x)


def _end_spreads(extents):
    """The scatter (median absolute deviation) of per-trench ``extents`` ``(n, 2)`` at
    the top and at the bottom; NaN where fewer than three are known."""
    return [float(np.nanmedian(np.abs(e - np.nanmedian(e)))) if np.isfinite(e).sum() >= 3
            else np.nan for e in np.asarray(extents, float).T]


def set_ends(image, angle_deg, y0, y1, step, centres, walls, strip, pitch, filled, kind):
    """Top and bottom edges of a set and the cues for its direction.

    Parameters
    ----------
    image : ndarray
        Raw frame (sampled at full resolution).
    y0, y1 : float
        Coarse first and last rows of the set (rotated frame).
    step : int
        Row resolution of the coarse rows.
    centres, walls : ndarray
        Lumen axes and the wall axes around them (``len(centres) + 1``).
    strip : int
        Half width of the strips averaged along each lumen and wall.
    filled : ndarray of bool
        Trenches holding cells.

    Returns
    -------
    dict
        ``y_top, y_bottom`` (edges, i.e. pixel boundaries, in rotated rows),
        ``reach`` (fluorescence: the outer top and bottom rows of the set, from
        its periodic rows and the fuller trenches' cells; else the edges),
        ``cues`` (lumen and wall level changes at the top and bottom ends,
        see :func:`end_cues`), ``spread`` (scatter of the per-trench signal
        ends at the top and bottom), ``dark_spread`` (phase: the same of the
        filled trenches' dark signal, their cells), ``spill`` (mean lumen signal beyond
        each end, above the walls' level), ``rows`` and ``excess`` (the lumens'
        level over their walls on those rows, rows x trenches).
    """
    reach = int(max(3 * step, 40))
    for attempt in range(3):
        rows = np.arange(np.floor(y0 - reach), np.ceil(y1 + reach) + 1)
        lum, wal = strip_profiles(image, angle_deg, rows, centres, walls, strip)
        each = lum - 0.5 * (wal[:, :-1] + wal[:, 1:])
        inside = (rows >= y0 + step) & (rows <= y1 - step)
        if inside.sum() < 3:
            inside = (rows >= y0) & (rows <= y1)
        if kind == "phase" and (~filled).sum() >= 3:
            # empty lumens show the set's extent cleanly; dark cells in filled
            # ones flatten or turn over their contrast, and its half level can
            # then fall far inside the set (60 px with wide halos)
            use = ~filled
        else:
            use = filled if filled.any() else np.ones(filled.shape, bool)
        contrast = smooth(nanmean(each[:, use], axis=1), 1.0)
        found = [half_level_crossing(rows, contrast, inside, outward) for outward in (-1, 1)]
        if all(np.isfinite(found)):
            break
        # the coarse rows stopped short of an end (a wide halo weakens the
        # periodicity there): look further out rather than guess the end
        reach *= 2
    edges = [float(edge) if np.isfinite(edge) else coarse + 0.5 * step * outward
             for edge, coarse, outward in zip(found, (y0, y1), (-1, 1))]
    # per-trench extents of the signal: cells always touch the closed end, while
    # at the open end they stop early (few cells) or spill out
    ext = signal_extents(rows, smooth_columns(each[:, filled], 1.0), inside)
    spread = _end_spreads(ext)
    # phase lumens full of dark cells stay under the walls' level: no positive signal
    # to read their extents from, but the cells' own (dark) extents show the same
    dark_spread = (_end_spreads(signal_extents(rows, smooth_columns(-each[:, filled], 1.0),
                                               inside))
                   if kind == "phase" else [np.nan, np.nan])
    reach = None
    if kind == "fluorescence" and np.isfinite(ext).sum(axis=0).min() >= 3:
        # walls are dark: the cells' own ends are the only edges to see
        edges = [float(np.nanmedian(ext[:, 0])) - 0.5, float(np.nanmedian(ext[:, 1])) + 0.5]
        # where most trenches hold a few cells, the median stops far short of the
        # open end (100 px of a 230 px trench) and boxes cut that short lose the
        # cells beyond: the set reaches as far as its rows are periodic (within
        # ~6 px of the open end), though no further than the fuller trenches' cells
        outer = (float(np.nanpercentile(ext[:, 0], 100 - REACH_PERCENTILE)) - 0.5,
                 float(np.nanpercentile(ext[:, 1], REACH_PERCENTILE)) + 0.5)
        reach = [min(edges[0], max(y0 - 0.5 * step, outer[0])),
                 max(edges[1], min(y1 + 0.5 * step, outer[1]))]
    per_trench = _trench_ends(rows, each, inside, filled, centres, edges, kind)
    lum_mean, wal_mean = smooth(nanmean(lum, axis=1), 1.0), smooth(nanmean(wal, axis=1), 1.0)
    cues = [end_cues(rows, lum_mean, wal_mean, e, o, int(min(0.5 * pitch, 30)))
            for e, o in zip(edges, (-1, 1))]
    # signal beyond each end above the walls' level: cells spill out of the open
    # end into the feeding channel (fluorescence), nothing lies beyond the closed end
    background = np.nanmedian(wal[inside]) if np.isfinite(wal[inside]).any() else 0.0
    spill = [float(np.nan_to_num(nanmean(lum[(rows - e) * o > 3])) - background)
             for e, o in zip(edges, (-1, 1))]
    return dict(y_top=edges[0], y_bottom=edges[1], reach=edges if reach is None else reach,
                cues=cues, spread=spread, dark_spread=dark_spread, spill=spill,
                top_each=per_trench[0], bottom_each=per_trench[1], pushed=per_trench[2],
                ends_from_empty=per_trench[3], tip_push=per_trench[4], rows=rows, excess=each)


def _trench_ends(rows, each, inside, filled, centres, edges, kind):
    """Edge rows of both ends of every trench: a line through the trenches' own ends.

    Phase contrast: every lumen, empty or not, ends where its contrast to the
    walls fades. Fluorescence: only cells are seen, so the end of a filled
    trench is the outer foot (a fifth of the level) of its signal, and each
    box is pushed out to clear its measured cells: that foot's and its
    outermost cell's own (:func:`outer_foot` with ``reach``).
    """
    n = len(centres)
    ends = np.full((n, 2), np.nan)
    from_empty = False
    if kind == "fluorescence":
        clear = np.full((n, 2), np.nan)  # the feet at each outermost cell's own level
        profs = {}
        for i in np.flatnonzero(filled):
            prof = profs[i] = smooth(each[:, i], 1.0)
            ends[i] = [outer_foot(rows, prof, edges[0], +1), outer_foot(rows, prof, edges[1], -1)]
            clear[i] = [outer_foot(rows, prof, edges[0], +1, reach=CELL_REACH),
                        outer_foot(rows, prof, edges[1], -1, reach=CELL_REACH)]
        ends[:, 0] -= 0.5
        ends[:, 1] += 0.5
        clear[:, 0] -= 0.5
        clear[:, 1] += 0.5
    else:
        profs = smooth_columns(each, 1.0)
        for k, outward in ((0, -1), (1, +1)):
            ends[:, k] = half_level_crossings(rows, profs, inside, outward)
        # a trench end far from the set's (a smear, a cell crossing the end) is no end
        for k in range(2):
            far = np.abs(ends[:, k] - edges[k]) > 12.0
            ends[far, k] = np.nan
        empty = ~np.asarray(filled, bool)
        from_empty = _empty_ends_agree(ends[empty])
        if from_empty:
            # dark cells lower a filled lumen's inside level, so its half level
            # lies out in the halo's tail (2 px with wide halos, every filled
            # trench alike): the empty lumens draw the line, the cells' tips
            # below keep every box clear of its outermost cell
            ends[~empty] = np.nan
    # the line may lean by what the angle's error can leave: phase angles are good to
    # ~0.02 deg; fluorescence ones, corrected by the lean of the mothers' tips
    # (end_line.py), to under 0.1 deg at p95 in every family. 0.3 deg, from before that
    # correction, let the feet of defocused cells tilt one set's line 0.27 deg and
    # start a box 1.9 px inside its mother (held-out defocus 10113)
    max_slope = np.tan(np.deg2rad(0.05 if kind == "phase" else 0.1))
    top = fit_end_line(centres, ends[:, 0], edges[0], max_slope=max_slope)
    bottom = fit_end_line(centres, ends[:, 1], edges[1], max_slope=max_slope)
    pushed = (0.0, 0.0)
    tip_push = (0.0, 0.0)
    if kind == "fluorescence":
        top = np.fmin(top, np.fmin(ends[:, 0], clear[:, 0]))
        bottom = np.fmax(bottom, np.fmax(ends[:, 1], clear[:, 1]))
        top, bottom = _clear_beyond_line(rows, profs, top, bottom)
    else:
        found = _phase_cell_tips(rows, profs, filled, edges)
        if found is not None:
            # halos can move the lumen's contrast edge inside the trench: never
            # let a box start inside its outermost cell
            tips, against_walls = found
            new_top = np.fmin(top, tips[:, 0] - 1.0)
            new_bottom = np.fmax(bottom, tips[:, 1] + 1.0)
            tip_push = _median_push(top - new_top, new_bottom - bottom, filled)
            if not against_walls:
                # when many boxes need it, the contrast edge itself was wrong (against
                # the walls a dark lumen pushes every box by design: dark_lumen with no
                # empty trench, boxes 2.2 px further out, confidence 0.90 -> 0.54)
                n = max(int(np.sum(filled)), 1)
                pushed = (float(np.sum(top - new_top > 1.5)) / n,
                          float(np.sum(new_bottom - bottom > 1.5)) / n)
            # most of the filled trenches' cells reaching far beyond the line says the
            # line itself is wrong, not the cells: every trench's end moves out with
            # them, the empty lumens' and those whose tips were not seen (independent
            # simulator 1116, rounded closed ends whose empty lumens fade 10 px inside:
            # the empty boxes and an edge trench's 10 px into their lumens / mother)
            line_off = [p if p > LINE_FOLLOWS_TIPS_PX else 0.0 for p in tip_push]
            new_top = np.fmin(new_top, top - line_off[0])
            new_bottom = np.fmax(new_bottom, bottom + line_off[1])
            top, bottom = new_top, new_bottom
        if not from_empty and (~filled).any():
            # too few empty lumens to draw the line, but none of them may end beyond
            # it: where the cells' halos reach over their tips, their dark bodies stop
            # 2-3 px short of them and of the closed end (independent simulator 1026:
            # one empty lumen per set, 84 % of the mothers cut at confidence 0.78;
            # 1021). The line moves out, parallel, to the outermost empty lumen's end;
            # a move of a pixel and a half or more says its edge was wrong
            shift = _beyond_empty_ends(top, bottom, ends, ~filled)
            top, bottom = top - shift[0], bottom + shift[1]
            pushed = tuple(max(p, float(m > 1.5)) for p, m in zip(pushed, shift))
    return top, bottom, pushed, from_empty, tip_push


def _median_push(top_moves, bottom_moves, filled):
    """Median move (px) of the filled trenches' boxes beyond the line at each end."""
    filled = np.asarray(filled, bool)
    if not filled.any():
        return (0.0, 0.0)
    return tuple(float(np.nan_to_num(np.nanmedian(np.asarray(m, float)[filled])))
                 for m in (top_moves, bottom_moves))


#: A median move of the filled trenches' ends beyond their set's phase line (px) past
#: which the whole line follows them (:func:`_trench_ends`).
LINE_FOLLOWS_TIPS_PX = 3.0


#: The farthest (px) the ends of too few empty lumens move a phase set's line out.
EMPTY_END_REACH = 6.0


def _beyond_empty_ends(top, bottom, ends, empty):
    """How far (px, >= 0) the lines ``top`` and ``bottom`` must move out, parallel, for no
    empty lumen's end (``ends``, NaN: none) to lie beyond them; 0 beyond
    :data:`EMPTY_END_REACH` (a smear, not a lumen's end).

    >>> ends = np.array([[100.0, 300.0], [97.5, 303.0], [np.nan, np.nan]])
    >>> line = np.full(3, 100.0), np.full(3, 300.0)
    >>> _beyond_empty_ends(*line, ends, np.array([False, True, True]))
    (2.5, 3.0)
    """
    moves = []
    for line, col, sign in ((top, 0, +1), (bottom, 1, -1)):
        gap = sign * (np.asarray(line) - ends[:, col])[empty]
        gap = gap[np.isfinite(gap)]
        move = float(gap.max()) if gap.size else 0.0
        moves.append(move if 0.0 < move <= EMPTY_END_REACH else 0.0)
    return tuple(moves)


#: How far beyond a fluorescence set's end line a trench's outermost cell may push its box
#: (:func:`_clear_beyond_line`): a tip the line cuts, not a cell in the feeding channel.
LINE_CLEAR_PX = 4.0


def _clear_beyond_line(rows, profs, top, bottom):
    """Fluorescence ends pushed out, at most :data:`LINE_CLEAR_PX`, to clear every filled
    trench's outermost cell as seen from the end line (``profs``: the smoothed profile
    of every filled trench, by index).

    The set's edge (the median half-level extent) can lie far inside its closed end
    where dim mothers sit under bright daughters: the daughters' half level falls at the
    mother. :func:`outer_foot` with ``reach`` then takes the mother, beyond that edge,
    for the profile "beyond the end" and finds no outermost object, and the brightest
    peak's foot stops in the mother's tail where a daughter is four times as bright
    (held-out halo_walls 10312: edge 37 px inside, one box 2.6 px inside its mother's
    foot, 0.04 px into the mother). From the line through the trenches' ends the
    profile beyond the end is the dark chip, and the mother is the outermost object.
    """
    top, bottom = top.copy(), bottom.copy()
    for i, prof in profs.items():
        for end, inward in ((top, +1), (bottom, -1)):
            if not np.isfinite(end[i]):
                continue
            foot = outer_foot(rows, prof, float(end[i]), inward, reach=CELL_REACH)
            if not np.isfinite(foot):
                continue
            foot -= 0.5 * inward  # the edge of the foot's pixel, as the ends above
            beyond = (end[i] - foot) * inward
            if 0 < beyond <= LINE_CLEAR_PX:
                end[i] = foot
    return top, bottom


def _empty_ends_agree(ends, tolerance=1.0) -> bool:
    """Whether a set's empty lumens can draw its end lines: at both ends, three
    found ends, or two within ``tolerance`` px of each other.

    ``ends``: ``(n_empty, 2)`` edge rows (NaN: not found). Two was too few
    before (held-out mixed 10128: two empty lumens, both ends within 0.6 px of
    the truth; the filled lumens' half levels, 4 px out in the halo's tail,
    drew the line and every box of the set started 4.5 px before its closed
    end). Two that agree are two ends of one straight line; two that do not
    say nothing.

    >>> _empty_ends_agree(np.array([[227.5, 430.1], [227.4, 430.6]]))
    True
    >>> _empty_ends_agree(np.array([[227.5, 430.1], [224.0, 430.6]]))
    False
    >>> _empty_ends_agree(np.array([[227.5, 430.1], [np.nan, 430.6], [np.nan, 430.0]]))
    False
    """
    for col in np.asarray(ends, float).T:
        found = col[np.isfinite(col)]
        if not (found.size >= 3 or (found.size == 2 and abs(found[0] - found[1]) <= tolerance)):
            return False
    return True


#: Rows this far beyond a set's ends (px) give the walls' noise (:func:`_phase_cell_tips`):
#: clear of the cells' halos.
WALLS_NOISE_BEYOND = 8.0
#: Empty lumens whose scatter about their median exceeds this many times the walls'
#: noise are no reference for the cells' tips (one of them holds cells).
EMPTY_AGREE = 3.0
#: Against the walls' level a cell is followed outwards while this many sigmas darker...
WALLS_FOLLOW_SIGMAS = 1.0
#: ... and darker by this fraction of its trench's cells (the 95th percentile, as below):
#: a blurred pole falls to a tenth of its cell's darkness 1.3 PSF sigmas beyond it. 0.15
#: moved boxes further in (independent 1009, rounded ends with mothers 2-3 px inside:
#: ends within 2 px 1.00 -> 0.81, against 0.90 with 0.1).
WALLS_FOLLOW_CORE_FRACTION = 0.1
#: Against the walls' level, the outermost cell is a dark run reaching this fraction of
#: its trench's cells' darkness (the 95th percentile of the rows between the set's ends).
CELL_CORE_FRACTION = 0.5


def _mad_sigma(values) -> float:
    """Robust standard deviation (1.4826 x the median absolute deviation; NaN ignored)."""
    v = np.asarray(values, float)
    return 1.4826 * float(np.nanmedian(np.abs(v - np.nanmedian(v))))


def _phase_cell_tips(rows, profs, filled, edges, reach=40, k=5.0):
    """Outer rows of the outermost cells near both ends of every filled phase trench,
    ``(tips, against_walls)``: an ``(N, 2)`` array (NaN: none seen) and whether the
    reference was the walls' level (below) rather than the empty lumens.

    Cells darken the lumen in either polarity, so they lower its contrast to
    the walls below what an empty trench shows at the same row (the median of
    the empty trenches' profiles). Without two empty trenches that agree (their
    scatter within :data:`EMPTY_AGREE` times the walls' noise) the reference is
    the walls' own level, contrast 0, with the noise of the rows beyond the
    set's ends: dark cells, or a lumen darker than its walls, then still show
    where they begin (independent simulator 1009: a set without an empty trench,
    its lumens as bright as the walls beside dark mothers with bright halos, the
    end line 2.7 px inside the closed end, 56 % of the mothers cut; seed 6: a
    filled trench among three flagged empty, the reference between the two and
    its noise 17 times the walls', 25 % cut). ``None`` when no noise level can
    be had, or no reference: without one from empty lumens, a set whose filled
    lumens are not darker than its walls.
    """
    empty = ~np.asarray(filled, bool)
    if not filled.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows outside the frame are all NaN
        beyond = ((rows - edges[0]) < -WALLS_NOISE_BEYOND) | ((rows - edges[1]) > WALLS_NOISE_BEYOND)
        sigma = _mad_sigma(profs[beyond])
        seen = empty & np.isfinite(profs).any(axis=0)
        ref = None
        if seen.sum() >= 2:
            ref = np.nanmedian(profs[:, seen], axis=1)
            sigma_empty = _mad_sigma(profs[:, seen] - ref[:, None])
            if not sigma_empty > EMPTY_AGREE * sigma:
                sigma = sigma_empty
            else:
                ref = None
        if ref is None:
            # the walls' level serves only where the cells darken their lumens below
            # it: a lumen brighter than its walls, dark cells in it or not, shows the
            # walls' halos dark beyond its end (halo_walls 17 with no empty trench:
            # boxes pushed 5 px out)
            within = (rows >= edges[0]) & (rows <= edges[1])
            if not np.nanmedian(profs[within][:, filled]) < -k * sigma:
                return None
            ref = np.zeros(len(rows))
            # against the walls the cell is followed out to where it stops being
            # darker at all, its edge (where a bright halo takes over), 1.5 px
            # beyond the row 5 sigmas dark (1009: with that row, boxes 0.1 px into
            # two mothers and every mother's first row cut by Segment)
            against_walls = True
        else:
            against_walls = False
    if not sigma > 0:
        return None
    darker = ref[:, None] - profs
    cell_floor = k * sigma
    if against_walls:
        # a closed end's own dark rim, a third as dark as the cells and parted from
        # the mother by the end's bright halo, is no cell: followed out against the
        # walls it pushed every box 14 px into the PDMS (independent simulator 1089)
        within = (rows >= edges[0]) & (rows <= edges[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cells = np.nanpercentile(darker[within], 95, axis=0)
        cell_floor = np.fmax(cell_floor, CELL_CORE_FRACTION * np.nan_to_num(cells))
    dark = _held(darker > cell_floor)
    if against_walls:
        # followed out while darker than the walls by a sigma, and by a tenth of the
        # trench's cells: at high SNR a sigma alone follows the blur's tail (held-out
        # mixed 10402, cells 150 sigmas dark: 2 % of them 2.5 px beyond the poles,
        # 11 of 48 boxes 2.5 px out)
        follow = _held(darker > np.fmax(WALLS_FOLLOW_SIGMAS * sigma,
                                        WALLS_FOLLOW_CORE_FRACTION * np.nan_to_num(cells)))
    else:
        follow = dark
    tips = np.full((len(empty), 2), np.nan)
    for i in np.flatnonzero(filled):
        for end, inward in ((0, +1), (1, -1)):
            # the outermost cell seen inside the set, followed outwards while it
            # stays dark: dark rows beyond the end that touch no cell are not one
            d = (rows - edges[end]) * inward
            inside = np.flatnonzero(dark[:, i] & (d >= 0) & (d <= reach))
            if inside.size == 0:
                continue
            j = inside[0] if inward > 0 else inside[-1]
            while 0 <= j - inward < len(rows) and follow[j - inward, i] and \
                    (rows[j - inward] - edges[end]) * inward > -15:
                j -= inward
            tips[i, end] = rows[j]
    return tips, against_walls


def _held(rows_true):
    """Rows (axis 0) true with both neighbours: a cell holds over several rows, single
    rows are noise or a misaligned end."""
    held = rows_true[:-2] & rows_true[1:-1] & rows_true[2:]
    return np.concatenate([held[:1], held, held[-1:]], axis=0)
