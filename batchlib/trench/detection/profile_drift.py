"""Drift along the trenches of a phase-contrast movie, from the closed ends' profiles.

The whole-frame cross-correlation (:mod:`.drift`) is good across the trenches,
where the walls repeat, but along them it also follows the cells, which grow
and move towards the open ends between frames: on the independent simulator
(``benchmarks/independent_sim.py``) it was up to 2.8 px off along the trenches
in single frames (1041, 1103; 0.8-1.0 px on 1003 and 1022) while within 0.01 px
across them, and 2 px lost at the closed end cut the mothers of that frame or
moved the lumen's start the Segment job reads. What stays put is a short stretch
of every box about its closed end: the PDMS beyond it, the lumen's end and the
mother's old pole pressed against it. Each box's profile along that stretch in a
frame is matched to the reference's; the median over the boxes is the drift
along the trenches (1041 2.80 -> 0.02 px, 1103 2.25 -> 0.15 px at worst).
"""
from __future__ import annotations

import numpy as np

from ._sampling import rotated_samples
from .closed_end_drift import across_trenches

__all__ = ["closed_end_profiles", "closed_end_shift", "phase_drift"]

#: Rows on either side of a box's closed end whose profile is matched.
HALF_LENGTH = 12
#: Columns on either side of the box's axis averaged into the profile.
HALF_WIDTH = 6
#: Shifts searched about the cross-correlation's answer (px) and their step.
SEARCH_PX = 3.0
STEP_PX = 0.1
#: The boxes' shifts must agree (robust sigma, px) for the median to be taken.
MAX_SPREAD_PX = 1.0
MIN_BOXES = 3


def closed_end_profiles(reference, trenches, angle_deg):
    """Every box's profile along the trench about its closed end in ``reference``
    (``2 * HALF_LENGTH + 1`` rows, about its own mean; NaN where the stretch leaves
    the image): what :func:`closed_end_shift` matches a frame's against. One movie
    needs them once (:func:`~.movie.movie_drift`)."""
    reference = np.asarray(reference, np.float32)
    x = trenches["x_center"].to_numpy(float)
    y = trenches["y_closed"].to_numpy(float)
    offs = np.arange(-HALF_LENGTH, HALF_LENGTH + 1, dtype=float)
    cols = np.arange(-HALF_WIDTH, HALF_WIDTH + 1, dtype=float)
    out = np.full((len(x), len(offs)), np.nan)
    for i in range(len(x)):
        ref = rotated_samples(reference, reference.shape, angle_deg, y[i] + offs, x[i] + cols)
        if np.isfinite(ref).all():
            ref = ref.mean(axis=1)
            out[i] = ref - ref.mean()
    return out


def closed_end_shift(reference, frame, trenches, angle_deg, along=0.0, across=0.0,
                     reference_profiles=None):
    """Per box, how far ``frame``'s profile about the closed end lies beyond
    ``along`` (rotated rows) from ``reference``'s.

    Parameters
    ----------
    reference, frame : ndarray, shape (H, W)
    trenches : DataFrame
        Boxes (``x_center, y_closed``) in ``reference``'s rotated coordinates.
    angle_deg : float
    along, across : float
        The shift of ``frame``'s content to start from, along and across the trenches.
    reference_profiles : ndarray, optional
        :func:`closed_end_profiles` of ``reference`` (saves sampling it again for every
        frame; ``reference`` is then not read).

    Returns
    -------
    ndarray, shape (n,)
        The residual shift of each box (px, within :data:`SEARCH_PX`); NaN where
        the stretch leaves either image or the best match lies on the search's edge.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> yy, xx = np.mgrid[0:120, 0:100].astype(float)
    >>> def chip(shift):   # lumens (x 20, 50, 80) whose blurred end lies at row 40 + shift
    ...     lumens = np.abs(((xx - 5) % 30) - 15) < 5
    ...     return 100.0 + 100.0 * lumens / (1 + np.exp(-(yy - 40 - shift) / 1.5))
    >>> boxes = pd.DataFrame({"x_center": [20.0, 50.0, 80.0], "y_closed": [38.0] * 3})
    >>> np.round(closed_end_shift(chip(0.0), chip(1.5), boxes, 0.0), 1).tolist()
    [1.5, 1.5, 1.5]
    """
    if reference_profiles is None:
        reference_profiles = closed_end_profiles(reference, trenches, angle_deg)
    x = trenches["x_center"].to_numpy(float)
    y = trenches["y_closed"].to_numpy(float)
    offs = np.arange(-HALF_LENGTH, HALF_LENGTH + 1, dtype=float)
    cols = np.arange(-HALF_WIDTH, HALF_WIDTH + 1, dtype=float)
    per_px = int(round(1 / STEP_PX))
    n_shifts = 2 * int(round(SEARCH_PX * per_px)) + 1
    shifts = (np.arange(n_shifts) - n_shifts // 2) / per_px
    # the frame sampled once on a fine grid; the profile shifted by shifts[j] is every
    # per_px-th fine row from j on
    fine = np.arange(n_shifts + per_px * (len(offs) - 1)) / per_px - SEARCH_PX - HALF_LENGTH
    windows = np.arange(n_shifts)[:, None] + per_px * np.arange(len(offs))[None, :]
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        ref = reference_profiles[i]
        if not np.isfinite(ref).all():
            continue
        here = rotated_samples(frame, frame.shape, angle_deg, y[i] + along + fine, x[i] + across + cols)
        if not np.isfinite(here).all():
            continue
        here = here.mean(axis=1)[windows]
        # levels differ between frames (illumination): profiles about their means
        cost = (((here - here.mean(axis=1, keepdims=True)) - ref) ** 2).sum(axis=1)
        j = int(np.argmin(cost))
        if not 0 < j < n_shifts - 1:
            continue
        curve = cost[j - 1] - 2 * cost[j] + cost[j + 1]
        sub = 0.5 * (cost[j - 1] - cost[j + 1]) / curve if curve > 0 else 0.0
        out[i] = shifts[j] + sub * STEP_PX
    return out


def phase_drift(reference, frame, trenches, angle_deg, cross_yx, reference_profiles=None):
    """Raw-frame drift ``(dy, dx)`` of a phase frame: across the trenches from the
    cross-correlation ``cross_yx``, along them from the closed ends' profiles
    (:func:`closed_end_shift`; ``reference_profiles``, :func:`closed_end_profiles` of
    ``reference``, where the caller has them); ``cross_yx`` unchanged where fewer than
    :data:`MIN_BOXES` boxes answer or they disagree by more than :data:`MAX_SPREAD_PX`.
    """
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    across = across_trenches(cross_yx, angle_deg)
    along = ca * cross_yx[0] + sa * cross_yx[1]
    frame = np.asarray(frame, np.float32)
    shift = closed_end_shift(reference, frame, trenches, angle_deg, along, across,
                             reference_profiles)
    shift = shift[np.isfinite(shift)]
    if shift.size < MIN_BOXES:
        return float(cross_yx[0]), float(cross_yx[1])
    median = float(np.median(shift))
    if 1.4826 * float(np.median(np.abs(shift - median))) > MAX_SPREAD_PX:
        return float(cross_yx[0]), float(cross_yx[1])
    along += median
    return float(ca * along - sa * across), float(sa * along + ca * across)
