"""The angle refined after the whole-frame search: per set (:func:`per_set_angle`), over
the sets' whole length (:func:`full_extent_angle`), and from the lean of the closed-end
lines (:data:`END_LINE`)."""
from __future__ import annotations

import numpy as np

from ._sampling import rotated_band_image
from .closed_end_drift import closed_end_positions
from .end_line import closed_end_angle_error, phase_closed_ends
from .quality import set_angle_spread_factor
from .rotation import combine_set_angles, set_angles
from .trench_sets import sets_at


def with_search_facts(refined, gain, whole_frame_angle, spread, per_set, **correction):
    """``refined`` (found again at a corrected angle) with the facts of the search that
    gave the first angle, and ``correction``, in its quality.

    The retry, at a given angle, had no set angles to disagree: the search's
    disagreement still lowers the confidence (:func:`.quality.layout_quality`).
    """
    searched = dict(angle_gain=gain, whole_frame_angle_deg=whole_frame_angle,
                    set_angle_spread_deg=spread, **correction)
    searched.update({f"set{i}_angle_deg": a for i, a in enumerate(per_set)})
    q = refined.quality
    q.update({k: float(np.nan_to_num(v)) for k, v in searched.items()})
    q["confidence"] *= set_angle_spread_factor(spread)
    return refined


def _fine_margin(width, step) -> float:
    """Rows dropped at both ends of a set for a per-set search near the final angle
    (room for 0.2 deg across half the frame)."""
    return 0.5 * width * np.tan(np.deg2rad(0.2)) + step


#: smallest change (degrees) of a phase angle, searched again over whole sets, worth
#: finding the layout again for
MIN_FULL_EXTENT_CORRECTION_DEG = 0.02
#: a set whose periodic rows cover less than this fraction of it has its angle searched
#: again over its whole length
SHORT_RUN_FRACTION = 0.6


def full_extent_angle(bands8, y8, bands32, y32, shape, angle, pitch, found, angle_range_deg,
                       step, whole_frame_angle):
    """The phase angle searched again over the whole length of every set, when the periodic
    rows that gave it cover less than :data:`SHORT_RUN_FRACTION` of some set; else ``angle``.

    Wide halos weaken the periodicity near a set's closed end: the periodic rows of
    held-out halo_walls 10146 at 768² covered rows 323-411 of a set spanning 212-440,
    and the angle read off them was 0.19 deg off (0.06 over the whole set). The set's
    ends, found at full resolution, bound the rows searched now.
    """
    lengths = [s["y_bottom"] - s["y_top"] for s in found]
    runs = [s["run"][1] - s["run"][0] for s in found]
    if not any(r < SHORT_RUN_FRACTION * n for r, n in zip(runs, lengths) if n > 0):
        return angle
    sets = [(s["y_top"], s["y_bottom"], 1.0) for s in found]
    angles, _ = set_angles(bands32, y32, bands8, y8, shape, angle, sets, pitch, angle_range_deg,
                           _fine_margin(shape[1], step))
    combined, _ = combine_set_angles(angles, lengths, whole_frame_angle)
    return float(combined) if np.isfinite(combined) else angle


#: smallest closed-end line lean (degrees) worth finding the layout again for
MIN_END_LINE_CORRECTION_DEG = 0.01
#: the mothers' tips may scatter this much (robust sigma, px) about a set's closed-end
#: line: they sit against the end only about as well as a pixel (independent simulator
#: 1372: 1.10 px over 13 tips, a lean of 0.229 +- 0.058 deg refused at 1.0, the angle
#: left 0.215 deg off, unwarned); an open end's tips scatter 8-22 px
MOTHER_TIP_SCATTER_PX = 1.5
#: a mother's gap to the closed end varies from trench to trench (a few tenths of a pixel
#: to a pixel): no tip within three times this (px) of the line is an outlier, and a set's
#: standard error comes from the least-squares scatter of the tips kept (at least the
#: second). The robust sigma of five to ten tips, floored at a tenth of a pixel, made
#: both too small: independent simulator 1528, whose upper set's tips bulge by a pixel,
#: kept six of seven and said -0.168 +- 0.010 deg; the angle, 0.03 deg off, was moved
#: 0.136 deg off, unwarned. Over tips without a lean it claimed one beyond two standard
#: errors in a quarter of the sets (Student's t allows a tenth for so few); now a tenth.
MOTHER_TIP_OUTLIER_SCATTER_PX = 0.5
MOTHER_TIP_MIN_RESIDUAL_PX = 0.1
#: how a fluorescence set's line is fitted through its mothers' tips
MOTHER_TIP_LINE = dict(max_scatter_px=MOTHER_TIP_SCATTER_PX,
                       outlier_scatter_px=MOTHER_TIP_OUTLIER_SCATTER_PX,
                       residual_floor_px=MOTHER_TIP_MIN_RESIDUAL_PX)


def _closed_end_angle_error(img, layout):
    """``(error, stderr)`` in degrees of a fluorescence layout's angle, from the lean of
    its sets' closed-end lines (:func:`.end_line.closed_end_angle_error`); NaN when no
    set's mother tips lie on a line."""
    tr = layout.trenches
    tr = tr[~tr["empty"].to_numpy(bool)]  # an empty trench has no mother tip
    if tr.empty:
        return float("nan"), float("nan")
    tips = closed_end_positions(img, tr, layout.angle_deg, outermost=True)
    error, stderr, _ = closed_end_angle_error(tr["x_center"], tips, tr["set"], **MOTHER_TIP_LINE)
    return error, stderr


#: smallest lean (degrees) of a phase layout's closed-end lines worth finding it again for,
#: and how many of its standard errors it must be: filled lumens' ends move with their
#: mothers, and at 3 a two-set chip's lines (0.049 +- 0.016 deg) turned an angle 0.007 deg
#: off into 0.042 (independent simulator seed 5)
MIN_PHASE_END_LINE_CORRECTION_DEG = 0.03
PHASE_END_LINE_SIGMAS = 4.0


def _phase_end_line_error(img, layout):
    """``(error, stderr)`` in degrees of a phase layout's angle from the lean of its
    lumens' closed ends (:func:`.end_line.phase_closed_ends`), filled and empty trenches
    of every set on lines of their own; NaN when no line is found.

    The shift-and-add search reads the angle off the whole lattice, cells included:
    where cells tilt and jitter in their lumens and the walls show little contrast,
    it was 0.06-0.37 deg off on the independent simulator (seeds 0-17, Zernike
    optics), both sets of a chip off alike, while the lumens' ends lie on the chip's
    straight edge."""
    tr = layout.trenches
    if len(tr) < 5:
        return float("nan"), float("nan")
    half = max(1, int(np.floor(0.25 * layout.quality.get("lumen_width_px", 8.0))))
    ends = phase_closed_ends(img, tr, layout.angle_deg, layout.pitch, half)
    group = 2 * tr["set"].to_numpy(int) + tr["empty"].to_numpy(int)
    error, stderr, _ = closed_end_angle_error(tr["x_center"], ends, group)
    return error, stderr


#: per kind: how the closed-end lines' lean is measured, how many standard errors and how
#: many degrees it must reach to find the layout again
END_LINE = {"fluorescence": (_closed_end_angle_error, 2.0, MIN_END_LINE_CORRECTION_DEG),
             "phase": (_phase_end_line_error, PHASE_END_LINE_SIGMAS,
                       MIN_PHASE_END_LINE_CORRECTION_DEG)}


def per_set_angle(bands8, y8, bands32, y32, shape, angle, pitch, kind, n_sets, angle_range_deg, step,
                   rows="periodic"):
    """``(angle, per-set angles, their spread, sets)`` refined from each set's own lattice.

    The whole-frame search mixes the sets' lattices (biased by degrees when
    the sets are offset sideways): each set's own angle, twice, the second
    time with the sets placed by the first answer. ``sets`` is what
    :func:`sets_at` returns at the final angle.
    """
    W = shape[1]
    rot, power, ratio, runs = sets_at(bands8, y8, shape, angle, pitch, kind, n_sets, rows)
    whole_frame_angle, per_set, spread = angle, np.full(len(runs), np.nan), 0.0
    margins = (0.5 * W * np.tan(np.deg2rad(angle_range_deg)), _fine_margin(W, step))
    for margin in margins:
        if not runs:
            break
        per_set, _ = set_angles(bands32, y32, bands8, y8, shape, angle, runs, pitch,
                                angle_range_deg, margin)
        combined, spread = combine_set_angles(per_set, [(r[1] - r[0]) * r[2] for r in runs],
                                              whole_frame_angle)
        if not np.isfinite(combined):
            break
        moved = abs(combined - angle)
        angle = combined
        # the sets' rows move by less than a pixel for small changes: keep them
        if moved > 0.02:
            rot, power, ratio, runs = sets_at(bands8, y8, shape, angle, pitch, kind, n_sets,
                                               rows)
        elif moved > 1e-4:
            rot = rotated_band_image(bands8, y8, shape, angle, y8)
    return angle, per_set, spread, (rot, power, ratio, runs)
