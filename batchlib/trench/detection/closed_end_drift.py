"""Drift along the trenches of a fluorescence movie, from the mother cells' closed-end tips.

In fluorescence only the cells are seen, and they grow and move along the
trenches between frames, so a whole-frame cross-correlation is unreliable
along the trench axis (2-4 px wrong on synthetic movies) although it is good
across it (the trenches' columns). The one thing that stays put is the outer
tip of every mother cell, pressed against the closed end of its trench. Its
position in a frame, relative to the reference, is the stage drift along the
trench.
"""
from __future__ import annotations

import numpy as np

from ._sampling import rotated_samples
from .ends import CELL_REACH, outer_foot, smooth_columns

__all__ = ["closed_end_positions", "along_trench_drift", "fluorescence_drift", "tip_scatter",
           "across_trenches", "set_shifts_to_frame"]


def closed_end_positions(image, trenches, angle_deg, across=0.0, reach=40, half_width=2,
                         outermost=False):
    """Rotated row of the outer foot of the cell at the closed end of every box.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    trenches : DataFrame
        Boxes (``x_center, y_closed, direction``), e.g. ``layout.trenches``.
    angle_deg : float
    across : float
        Shift of the image's content across the trenches (rotated columns),
        e.g. from a cross-correlation, which is reliable in that direction.
    reach : int
        Rows searched on either side of each box's closed end (larger than
        the drift along the trench).
    outermost : bool
        The foot of the outermost cell (:func:`.ends.outer_foot` with ``reach``)
        rather than of the brightest one walked out: a dim mother under a
        daughter four times as bright is walked through from the brightest
        peak, its foot found in the mother's tail, a few pixels off; the line
        through the tips (the angle's lean) is steadier for it. The drift keeps
        the brightest cell's: from frame to frame it is the steadier of the two
        (a generated 4-frame movie: 0.46 against 0.14 px off along the trench).

    Returns
    -------
    ndarray, shape (n,)
        NaN where no cell is seen at the closed end.
    """
    x = trenches["x_center"].to_numpy(float)
    y = trenches["y_closed"].to_numpy(float)
    d = trenches["direction"].to_numpy(float)
    out = np.full(len(x), np.nan)
    offs = np.arange(-reach, reach + 1, dtype=float)
    cols = np.arange(-half_width, half_width + 1, dtype=float)
    for i in range(len(x)):
        rows = y[i] + offs
        s = rotated_samples(image, image.shape, angle_deg, rows, x[i] + across + cols)
        seen = np.flatnonzero(np.isfinite(s).any(axis=1))
        # near the image's edge only part of the window is inside: the rows seen,
        # if they reach from a few rows beyond the closed end to well inside it
        if seen.size < reach or seen[-1] - seen[0] + 1 != seen.size:
            continue
        rows = rows[seen[0]:seen[-1] + 1]
        prof = np.nanmean(s[seen[0]:seen[-1] + 1], axis=1)
        # beyond the closed end lies dark PDMS: the profile's floor
        prof = smooth_columns((prof - np.percentile(prof, 10))[:, None], 1.0)[:, 0]
        foot = outer_foot(rows, prof, y[i], int(d[i]), reach=CELL_REACH if outermost else None)
        # a foot on the last row seen is where the image ends, not the cell
        out[i] = foot if rows[0] < foot < rows[-1] else np.nan
    return out


def along_trench_drift(reference, frame, trenches, angle_deg, across=0.0, min_trenches=3,
                       max_spread=1.5, reference_tips=None):
    """Displacement along the trenches (rotated rows) of ``frame``'s mother tips.

    The median, over the boxes whose mother tip is seen in both images, of
    the tip's displacement; ``None`` when fewer than ``min_trenches`` tips are
    seen in both, or when they scatter by more than ``max_spread`` px (robust
    sigma), as they do when the end is not a closed end. ``reference_tips``
    (:func:`closed_end_positions` of ``reference``) saves measuring the
    reference again for every frame.
    """
    if reference_tips is None:
        reference_tips = closed_end_positions(reference, trenches, angle_deg)
    delta = closed_end_positions(frame, trenches, angle_deg, across) - reference_tips
    shift, spread = _median_and_spread(delta, min_trenches)
    # the tips of one frame move together; scattered ones are no closed end
    return None if not spread <= max_spread else shift


def _median_and_spread(delta, min_count=3):
    """Median and robust sigma of the finite ``delta``; NaN for fewer than ``min_count``."""
    d = np.asarray(delta, float)
    d = d[np.isfinite(d)]
    if d.size < min_count:
        return float("nan"), float("nan")
    med = float(np.median(d))
    return med, float(1.4826 * np.median(np.abs(d - med)))


def tip_scatter(reference, frames, trenches, angle_deg):
    """How much the closed-end tips of the boxes scatter between frames (px, median).

    At a real closed end the mother cells' tips stay put, so all boxes' tips
    move together (by the drift) and their scatter is small; at an open end,
    where cells come and go, it is large. NaN when too few tips are seen.
    Only the boxes not flagged empty count, where three or more are filled: an
    empty box has no mother, and what its window holds (noise, debris, a cell
    floating by) jumps from frame to frame whichever end is closed.
    """
    if "empty" in trenches:
        filled = trenches[~trenches["empty"].to_numpy(bool)]
        trenches = filled if len(filled) >= 3 else trenches
    ref = closed_end_positions(reference, trenches, angle_deg)
    spreads = [_median_and_spread(closed_end_positions(np.asarray(f, np.float32), trenches,
                                                       angle_deg) - ref)[1] for f in frames]
    spreads = [v for v in spreads if np.isfinite(v)]
    return float(np.median(spreads)) if spreads else float("nan")


def across_trenches(shift_yx, angle_deg) -> float:
    """The component of a raw-frame shift ``(dy, dx)`` across the trenches (rotated columns)."""
    a = np.deg2rad(angle_deg)
    # raw (dy, dx) -> rotated (along, across): R(-a)
    return float(-np.sin(a) * shift_yx[0] + np.cos(a) * shift_yx[1])


def set_shifts_to_frame(reference, frame, layout, across=0.0, min_tips=3, max_spread=1.5):
    """Rows by which each set's boxes move to put their closed ends on ``frame``'s mother tips.

    A maximum projection over a drifting movie holds every mother tip at its
    outermost position over all frames. The sets' closed ends face opposite
    ways, so each set's boxes sit out in the PDMS by the drift range towards
    its own closed end (held-out nominal 10102: one set 2.8 px out for a
    drift of 2.5 px), and no single drift per frame fits both sets. Moved by
    these shifts, every set's boxes are where ``frame``'s cells are.

    Parameters
    ----------
    reference : ndarray
        The image the layout was found on (the maximum projection).
    frame : ndarray
        The frame to move to (frame 0 of the movie).
    layout : TrenchLayout
    across : float
        ``frame``'s shift across the trenches relative to ``reference``.
    min_tips, max_spread : int, float
        A set needs ``min_tips`` tips seen in both images, moving together
        (robust sigma at most ``max_spread`` px).

    Returns
    -------
    dict
        ``set -> shift`` in rotated rows; sets without a clear answer are left out.
    """
    tr = layout.trenches
    filled = tr[~tr["empty"].to_numpy(bool)]
    if filled.empty:
        return {}
    delta = (closed_end_positions(frame, filled, layout.angle_deg, across)
             - closed_end_positions(reference, filled, layout.angle_deg))
    shifts = {}
    for k in np.unique(filled["set"]):
        shift, spread = _median_and_spread(delta[(filled["set"] == k).to_numpy()], min_tips)
        if np.isfinite(shift) and spread <= max_spread:
            shifts[int(k)] = shift
    return shifts


def fluorescence_drift(reference, frame, trenches, angle_deg, cross_yx, reference_tips=None):
    """Raw-frame drift of a fluorescence frame: across the trenches from the
    cross-correlation ``cross_yx``, along them from the mother tips.

    Returns
    -------
    (dy, dx) : floats
        ``cross_yx`` unchanged when too few tips are seen.
    """
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    across = across_trenches(cross_yx, angle_deg)
    along = along_trench_drift(reference, frame, trenches, angle_deg, across,
                               reference_tips=reference_tips)
    if along is None:
        return float(cross_yx[0]), float(cross_yx[1])
    return float(ca * along - sa * across), float(sa * along + ca * across)


def orient_by_tips(reference, frames, layout, detect, max_frames=3):
    """Check, and if need be flip, the direction of a single fluorescence trench set.

    A maximum projection says little about which end of a single set is
    closed; the frames do: the mother cells' tips stay put at the closed end
    (they scatter by less than a pixel between frames, measured 0.1-0.8 px on
    synthetic movies) while cells come and go at the open end (8-22 px). The
    layout is found again with the other direction (``detect(direction=...)``)
    and kept if its tips scatter less than half as much.

    Parameters
    ----------
    reference : ndarray
        The image the layout was found on.
    frames : sequence of ndarray
        A few frames of the movie (evenly spread).
    layout : TrenchLayout
    detect : callable
        ``detect(direction=+1|-1) -> TrenchLayout`` on ``reference``.

    Returns
    -------
    layout : TrenchLayout
        ``layout`` or the flipped one; ``quality["tip_scatter_px"]`` records
        the scatter at the chosen closed end.
    """
    if len(layout.sets) != 1 or len(frames) < 2:
        return layout
    frames = list(frames)[:max_frames]
    here = tip_scatter(reference, frames, layout.trenches, layout.angle_deg)
    d = int(layout.trenches["direction"].iloc[0])
    try:
        other = detect(direction=-d)
    except Exception:  # noqa: BLE001 - the other direction may not even be detectable
        other = None
    there = (tip_scatter(reference, frames, other.trenches, other.angle_deg)
             if other is not None else float("nan"))
    chosen, scatter = layout, here
    if np.isfinite(there) and (not np.isfinite(here) or there < 0.5 * here):
        chosen, scatter = other, there
    if np.isfinite(here) and np.isfinite(there):
        # a clear difference makes the direction certain
        chosen.quality["direction_confidence"] = float(
            np.clip(1.0 - min(here, there) / max(here, there, 1e-9), 0.0, 1.0))
    chosen.quality["tip_scatter_px"] = float(scatter) if np.isfinite(scatter) else -1.0
    return chosen
