"""Detection on a whole movie: the reference image, the layout and the drift of every frame.

The TrenchDetection job and the benchmarks use these, so what is measured is
what the workflow does.

>>> import numpy as np
>>> from batchlib.trench.synthetic import SyntheticConfig, simulate_position
>>> pos = simulate_position(SyntheticConfig(height=256, width=256, n_timepoints=3,
...                                         channels=("phase",), n_sets=1, seed=3), 0)
>>> movie = pos.movies["phase"]
>>> layout, reference = detect_in_movie(movie, "phase")
>>> drift = movie_drift(movie, reference, layout, "phase")
>>> drift.shape
(3, 2)
"""
from __future__ import annotations

import numpy as np

from ._common import TrenchDetectionError
from .closed_end_drift import (across_trenches, closed_end_positions, fluorescence_drift,
                               orient_by_tips, set_shifts_to_frame)
from .drift import DriftEstimator
from .profile_drift import closed_end_profiles, phase_drift
from .layout_checks import LOW_PHASE_CONFIDENCE, lumens_are_bright, warn_tip_push
from .trench_array import detect_trenches

__all__ = ["reference_image", "detect_in_movie", "movie_drift"]


def reference_image(movie, kind):
    """Frame 0 (phase), or the maximum projection over time (fluorescence: only
    filled trenches show, and a cell seen once marks its trench), as float32."""
    if kind == "phase":
        return np.asarray(movie[0], dtype=np.float32)
    ref = np.asarray(movie[0], dtype=np.float32)
    for t in range(1, movie.shape[0]):  # streamed: one frame in memory at a time
        np.maximum(ref, movie[t], out=ref)
    return ref


def detect_in_movie(movie, kind, **detect_kwargs):
    """Layout of a movie (``(T, H, W)``, any array with ``shape`` and frame indexing).

    Returns ``(layout, reference)``. For fluorescence a single set's direction
    is checked on three frames (:func:`.closed_end_drift.orient_by_tips`), and
    every set's closed ends are put on frame 0's mother tips
    (:func:`.closed_end_drift.set_shifts_to_frame`): the projection holds each
    set's tips at their outermost over the movie.
    """
    reference = reference_image(movie, kind)
    detect_kwargs = dict(detect_kwargs)
    forced = detect_kwargs.pop("direction", None)

    def detect(direction=forced):
        return detect_trenches(reference, kind=kind, direction=direction, **detect_kwargs)

    try:
        layout = detect()
    except TrenchDetectionError as error:
        if kind != "phase":
            raise
        layout, reference = _from_another_frame(movie, error, detect_kwargs, forced)
    # a check over time below may find the layout again on the same reference frame;
    # the warning that frame 0 failed must survive it
    fallback = [w for w in layout.warnings if w.startswith(NO_ARRAY_ON_FRAME_0)]
    n_t = movie.shape[0]
    aligned = _aligned_once(movie)  # the checks over time share the frames' alignment
    if kind == "phase" and detect_kwargs.get("lumen", "auto") == "auto" and n_t >= 3:
        layout = _checked_in_time(movie, layout, reference, detect_kwargs, forced, aligned)
    if kind == "phase" and detect_kwargs.get("pitch") is None and n_t >= 3 \
            and layout.quality["confidence"] < LOW_PHASE_CONFIDENCE:
        layout = _multiple_pitch_in_time(movie, layout, reference, detect_kwargs, forced,
                                         aligned)
    if kind == "phase" and forced is None and n_t >= 3 and layout.sets is not None \
            and len(layout.sets) == 1 \
            and layout.quality.get("direction_confidence", 1.0) < UNSURE_DIRECTION:
        layout = _direction_checked_in_time(movie, layout, detect, aligned, detect_kwargs)
    if kind == "phase" and not layout.quality.get("empty_flags_clear", 1.0) and n_t >= 3:
        layout = _empty_flags_checked_in_time(movie, layout, reference, aligned)
    elif kind == "phase" and n_t >= 3 and "empty_unclear" in layout.trenches \
            and layout.trenches["empty_unclear"].any():
        layout = _unclear_sets_checked_in_time(movie, layout, reference, aligned)
    if kind == "fluorescence" and forced is None:
        picks = np.unique(np.linspace(0, n_t - 1, min(n_t, 3)).round().astype(int))
        layout = orient_by_tips(reference, [np.asarray(movie[t], np.float32) for t in picks],
                                layout, detect)
    if kind == "fluorescence":
        layout = _closed_ends_on_frame(layout, reference, np.asarray(movie[0], np.float32))
    layout.warnings[:0] = [w for w in fallback if w not in layout.warnings]
    return warn_tip_push(layout), reference


#: How the warning of :func:`_from_another_frame` begins.
NO_ARRAY_ON_FRAME_0 = "frame 0 gave no trench array"
#: Frames tried, in this order, when a phase movie's frame 0 gives no trench array.
OTHER_REFERENCES = (1, 2, "middle", "last")


def _from_another_frame(movie, error, detect_kwargs, direction):
    """``(layout, reference)`` from the first of :data:`OTHER_REFERENCES` that gives a
    trench array, when frame 0 gave none (a dark first frame: the shutter; focus not
    yet settled): the position is not lost for one frame. The layout records
    ``quality["reference_frame"]``, and a warning says which frame and why."""
    n_t = movie.shape[0]
    picks = []
    for pick in OTHER_REFERENCES:
        t = {"middle": n_t // 2, "last": n_t - 1}.get(pick, pick)
        if 0 < t < n_t and t not in picks:
            picks.append(t)
    for t in picks:
        frame = np.asarray(movie[t], dtype=np.float32)
        try:
            layout = detect_trenches(frame, kind="phase", direction=direction, **detect_kwargs)
        except TrenchDetectionError:
            continue
        layout.quality["reference_frame"] = float(t)
        layout.warnings.append(f"{NO_ARRAY_ON_FRAME_0} ({error}); the boxes and the "
                               f"drift are those of frame {t}: look at frame 0")
        return layout, frame
    tried = f" (nor did frames {', '.join(map(str, picks))})" if picks else ""
    raise TrenchDetectionError(f"{error}{tried}") from error


def _aligned_once(movie):
    """``aligned(layout)``: :func:`.temporal.aligned_frames` of the movie from the
    layout's reference frame, computed once per reference frame (every layout found
    on one reference shares its frames' alignment; about 0.2 s at 2048²)."""
    from .temporal import aligned_frames

    done = {}

    def aligned(layout):
        start = int(layout.quality.get("reference_frame", 0))
        if start not in done:
            done[start] = aligned_frames(movie, layout)
        return done[start]

    return aligned


def _checked_in_time(movie, layout, reference, detect_kwargs, direction, aligned):
    """The phase layout, or the one of the other lumen polarity where the image changes
    over time between the boxes rather than on them (:mod:`.temporal`): the boxes sat
    on the walls. ``quality["temporal_contrast"]`` records the figure."""
    from .temporal import flip_thresholds, sure_in_one_frame, temporal_contrast

    ratio = temporal_contrast(movie, layout, aligned=aligned(layout))
    layout.quality["temporal_contrast"] = ratio
    flip_below, verified_above = flip_thresholds(layout.quality.get("self_check", 1.0) < 1.0)
    if not ratio < flip_below:
        return layout
    if sure_in_one_frame(layout.quality):
        # the frame's cells are beyond doubt in the boxes; the two readings disagree,
        # which a person should know (temporal.sure_in_one_frame)
        layout.warnings.append(
            f"over time the image changes {1 / ratio:.1f}x more between the boxes than on "
            f"them, but in the frame the boxes hold "
            f"{np.exp(layout.quality['self_check_log_ratio']):.0f}x the texture between "
            "them: the boxes were kept on the stripes the frame shows the cells in; check "
            "the QC picture")
        return layout
    other_lumen = "dark" if lumens_are_bright(layout) else "bright"
    kwargs = {**detect_kwargs, "lumen": other_lumen}
    try:
        other = detect_trenches(reference, kind="phase", direction=direction, **kwargs)
    except TrenchDetectionError:
        # textured walls fool the one-frame self-check both ways (held-out mixed 10212,
        # 10226: the right polarity refused as "boxes on the walls"); time decides below
        try:
            other = detect_trenches(reference, kind="phase", direction=direction,
                                    **{**kwargs, "self_check": False})
        except TrenchDetectionError:
            return layout
    if "reference_frame" in layout.quality:
        other.quality["reference_frame"] = layout.quality["reference_frame"]
    other_ratio = temporal_contrast(movie, other, aligned=aligned(other))
    if not other_ratio >= verified_above:
        return layout
    other.quality["temporal_contrast"] = other_ratio
    other.quality["lumen_polarity_flipped"] = 1.0
    other.warnings.append(
        f"the lumens were taken to be the {other_lumen} stripes: the image changes "
        f"{1 / ratio:.1f}x more over time between the first layout's boxes than on them, "
        f"and {other_ratio:.1f}x more on these boxes than between them (cells grow in "
        "lumens, walls stay put); check the QC picture")
    return other


#: Multiples of an unsure phase layout's pitch tried over time.
PITCH_MULTIPLES = (2, 3)


def _multiple_pitch_in_time(movie, layout, reference, detect_kwargs, direction, aligned):
    """An unsure phase layout, or the one found at a multiple of its pitch whose boxes
    hold what changes over time (:func:`.temporal.temporal_contrast` of at least
    :data:`~.temporal.VERIFIED_ABOVE` and 1.5 times the first layout's), the most
    confident of those that are more confident than the first.

    Half the pitch boxes every lumen and every wall alike, and on a textured chip
    (the ``mixed`` family) one frame can neither tell the two apart nor accept
    twice that pitch: the stripes half-way between its boxes, the walls, look as
    structured as the lumens (:func:`.retries.half_way_alike`; held-out mixed
    10233 at 768²: 92 boxes at 15.9 px for 46 trenches at 31.7, confidence 0.08).
    Over time the lumens change and the walls do not: at the true pitch the boxes
    change 9.9x more than half a pitch beside them, at half of it 4.2x (half the
    boxes on walls). Where the half-way
    stripes are lumens too (twice the true pitch), the contrast stays near 1.
    Where many lumens are empty, boxes on every second or third lumen can change
    more against the still empty lumens beside them than the right layout against
    its walls (independent 1067: 28x and 24x against 13x, 14 boxes for 42
    trenches, warned but wrong): the lines the multiple skips must then be as
    still as walls (:func:`.temporal.skipped_change` under
    :data:`~.temporal.SKIPPED_STILL`; 1067: 1.15, 10233: 0.12).
    """
    from .temporal import SKIPPED_STILL, VERIFIED_ABOVE, skipped_change, temporal_contrast

    first = layout.quality.get("temporal_contrast")
    if first is None:
        first = temporal_contrast(movie, layout, aligned=aligned(layout))
    if not np.isfinite(first):
        return layout
    width = reference.shape[1]
    best = None
    for m in PITCH_MULTIPLES:
        pitch = m * float(layout.pitch)
        if pitch > width / 3.0:
            break
        try:
            other = detect_trenches(reference, kind="phase", direction=direction,
                                    **{**detect_kwargs, "pitch": pitch})
        except TrenchDetectionError:
            continue
        if not other.quality["confidence"] > layout.quality["confidence"]:
            continue
        if "reference_frame" in layout.quality:
            other.quality["reference_frame"] = layout.quality["reference_frame"]
        ratio = temporal_contrast(movie, other, aligned=aligned(other))
        if not (ratio >= max(VERIFIED_ABOVE, 1.5 * first) and (
                best is None or other.quality["confidence"] > best.quality["confidence"])):
            continue
        # the lines it skips must be as still as walls: lumens there mean the first
        # pitch was right and this one boxes every m-th trench
        skipped = skipped_change(movie, other, m, aligned=aligned(other))
        if not skipped < SKIPPED_STILL:
            continue
        other.quality["temporal_contrast"] = ratio
        other.quality["pitch_skipped_change"] = skipped
        other.quality["pitch_multiple_in_time"] = float(m)
        other.warnings.append(
            f"the trench pitch was taken as {m} times the first estimate "
            f"({layout.pitch:.1f} -> {pitch:.1f} px): boxes at that pitch change "
            f"{ratio:.1f}x more over time than half a pitch beside them, those at the "
            f"first {first:.1f}x (cells grow in lumens, walls stay put); check the QC "
            "picture")
        best = other
    return layout if best is None else best


#: A single phase set's direction is checked over time under this direction confidence
UNSURE_DIRECTION = 0.5
#: ... and turned over where its open ends change this much less than its closed ends
#: (the log of the ratio, :func:`.temporal.open_end_change`)
WRONG_WAY_CHANGE = -0.3
#: ... or where the frames, this many spread over the movie (the reference among them),
#: found on their own, face the other way on the whole (:func:`_direction_over_frames`)
DIRECTION_FRAMES = 8


def _direction_checked_in_time(movie, layout, detect, aligned, detect_kwargs):
    """The single phase set, or the same found facing the other way where its boxes'
    closed ends change over time more than their open ends (:func:`.temporal.
    open_end_change`): the mother at the closed end moves least; or where the movie's
    frames, each found on its own, face the other way on the whole
    (:func:`_direction_over_frames`).

    A set's structural cues can be near silent (independent simulator 1205: direction
    confidence 0.08, every box's closed end at the feeding channel; its open ends
    changed half as much as its closed ends, log ratio -0.68). Or they vary from frame
    to frame as the cells move, and the reference frame's pointed the wrong way while
    the change over time said little (independent simulator 1390: 0.11 on frame 0,
    the change -0.10; 1261: 0.03 and +0.10; every box's closed end at the feeding
    channel, warned for low confidence only); the frames' own directions, summed
    over the movie, were right on all 13 unsure single sets of 1205-1390 (0.52 and
    0.30 the right way there). Records ``direction_in_time`` and ``direction_over_frames``
    (the figures, for the layout kept) and, turned over, ``direction_turned_in_time``
    1; the turned layout's direction confidence is the figures' larger size (at most
    1), not the forced direction's 1.
    """
    from .temporal import open_end_change

    change = open_end_change(movie, layout, aligned=aligned(layout))
    layout.quality["direction_in_time"] = float(np.nan_to_num(change))
    current = int(layout.sets["direction"].iloc[0])
    over_frames = _direction_over_frames(movie, layout, detect_kwargs)
    layout.quality["direction_over_frames"] = float(np.nan_to_num(over_frames))
    by_change = change < WRONG_WAY_CHANGE
    by_frames = over_frames * current < 0
    if not (by_change or by_frames):
        return layout
    try:
        turned = detect(direction=-current)
    except TrenchDetectionError:
        return layout
    confidence = min(1.0, max(abs(change) if by_change else 0.0,
                              abs(over_frames) if by_frames else 0.0))
    q = turned.quality
    # the forced direction counted as sure (1); the evidence is the movie's
    q["confidence"] *= (0.5 + 0.5 * confidence) / (0.5 + 0.5 * q["direction_confidence"])
    q.update(direction_confidence=confidence, direction_in_time=float(np.nan_to_num(-change)),
             direction_over_frames=float(np.nan_to_num(-over_frames)),
             direction_turned_in_time=1.0)
    for key in ("temporal_contrast", "reference_frame"):
        if key in layout.quality:
            q[key] = layout.quality[key]
    said = []
    if by_change:
        said.append(f"its open ends changed {np.exp(-change):.1f} times less over time")
    if by_frames:
        said.append(f"the movie's frames, each found on its own, face the other way "
                    f"(their signed direction confidences average {abs(over_frames):.2f})")
    turned.warnings.append(
        f"the set's closed ends were at the other end at first (direction confidence "
        f"{layout.quality['direction_confidence']:.2f}); the movie turned it ("
        + "; ".join(said) + "): check the QC picture")
    return turned


def _direction_over_frames(movie, layout, detect_kwargs):
    """The mean over up to :data:`DIRECTION_FRAMES` frames spread over the movie, the
    layout's reference among them, of each frame's single set's direction times its
    direction confidence (:func:`.direction.assign_directions`), every other frame
    found on its own at the layout's pitch; NaN where no other frame gives one set.

    A set's structural cues are read off its cells as well as its walls, and the
    cells move: on independent simulator 1390 the frames' signed confidences were
    +0.11 (the reference), -0.26, -1.0, -0.39, -0.66, -1.0, -0.86, -0.15.
    """
    n_t = movie.shape[0]
    reference = int(layout.quality.get("reference_frame", 0))
    signed = [int(layout.sets["direction"].iloc[0]) * layout.quality["direction_confidence"]]
    kwargs = dict(detect_kwargs, pitch=layout.pitch)
    for t in np.unique(np.linspace(0, n_t - 1, min(n_t, DIRECTION_FRAMES)).round().astype(int)):
        if t == reference:
            continue
        try:
            other = detect_trenches(np.asarray(movie[t], np.float32), kind="phase", **kwargs)
        except TrenchDetectionError:
            continue
        if len(other.sets) == 1:
            signed.append(int(other.sets["direction"].iloc[0])
                          * other.quality["direction_confidence"])
    return float(np.mean(signed)) if len(signed) > 1 else float("nan")


def _empty_flags_checked_in_time(movie, layout, reference, aligned):
    """The phase layout whose empty flags its lumens' texture left unclear, with the
    flags checked against each trench's change over time (:mod:`.temporal`).

    Where the changes split, a flagged trench that changes holds cells (flag
    dropped), and flags that time confirms make the empty lumens Segment's
    reference after all (``empty_flags_clear`` 1). On the independent simulator's
    optics the walls carry the illumination's stripes, and the filled lumens'
    texture was only 1-4 times the walls': 7 of 12 positions (1024-1035) had right
    flags called unclear, and the U-Net, without the empty lumens' reference, gave
    cells to 52-100 % of their empty trench-frames. Their changes over time: 0.9-1.2
    for empty trenches, 5-27 for filled ones. A still trench the unclear texture
    called filled is empty too (``texture_clear=False`` of
    :func:`.temporal.empty_flags_in_time`). Records ``empty_flags_in_time`` (the
    split's factor), ``empty_flags_dropped_in_time`` and ``empty_flags_added_in_time``.
    The sets' closed-end lines were drawn with the unverified flags; confirmed, the
    empty lumens move a set's boxes out where they end beyond its line
    (:func:`.end_line.empty_end_shifts`, ``closed_end_moved_in_time_px``, warned).
    """
    from .temporal import empty_flags_in_time, trench_changes

    trenches = layout.trenches
    flags = trenches["empty"].to_numpy(bool)
    # the texture was unclear: its "filled" is no evidence against a still trench
    empty, confirmed, gap = empty_flags_in_time(
        trench_changes(movie, layout, aligned=aligned(layout)), flags, texture_clear=False)
    layout.quality["empty_flags_in_time"] = float(gap)
    layout.quality["empty_flags_added_in_time"] = float(np.sum(empty & ~flags)) if confirmed \
        else 0.0
    layout.quality["empty_flags_dropped_in_time"] = float(np.sum(flags & ~empty))
    if confirmed:
        layout.quality["empty_flags_clear"] = 1.0
        layout = _with_empty_flags(reference, layout, empty)
    return layout


def _unclear_sets_checked_in_time(movie, layout, reference, aligned):
    """The phase layout with the empty flags of the sets whose lumens' texture was
    unclear confirmed over time, where the trenches' changes agree.

    When one set's texture splits its trenches into empty and filled and another's
    does not, the second set's trenches all count as filled
    (``trench_array._empty_flags_by_set``): Segment then had no empty lumen to tell
    its empty trenches by, and the U-Net took their shaded open ends for cells
    (independent simulator 1006, 1012, 1046: 8, 4 and 2 empty trenches, empty
    trench-frames clean 0.43, 0.56, 0.75). Their texture had flagged exactly those
    trenches (column ``empty_unclear``), with too small a gap to trust; over time they
    changed by 0.75-1.23 times the walls beside them, the filled ones by 3-11. The
    position's flags, the clear sets' and those, are checked together
    (:func:`.temporal.empty_flags_in_time`): when confirmed, the flags that time
    contradicts go and the texture's flags of the unclear sets count; the sets' closed
    ends then go out to their empty lumens where they lie inside them, warned
    (:func:`_ends_at_empty_lumens`). Records ``unclear_sets_flags_in_time`` (the
    split's factor) and ``empty_flags_added_in_time`` (flags taken from the unclear
    sets).
    """
    from .temporal import empty_flags_in_time, trench_changes

    trenches = layout.trenches
    flags = trenches["empty"].to_numpy(bool)
    unclear = trenches["empty_unclear"].to_numpy(bool)
    empty, confirmed, gap = empty_flags_in_time(
        trench_changes(movie, layout, aligned=aligned(layout)), flags | unclear)
    layout.quality["unclear_sets_flags_in_time"] = float(gap)
    added = empty & unclear & ~flags
    layout.quality["empty_flags_added_in_time"] = float(np.sum(added)) if confirmed else 0.0
    if not confirmed or not added.any():
        return layout
    return _with_empty_flags(reference, layout, empty)


def _with_empty_flags(reference, layout, empty):
    """The layout with the ``empty`` flags that time confirmed, its sets' closed ends
    moved out to those empty lumens where they lie inside them (:func:`_ends_at_empty_lumens`)."""
    trenches = layout.trenches.copy()
    trenches["empty"] = empty
    layout.trenches = trenches
    layout.quality["empty_fraction"] = float(np.mean(empty))
    return _ends_at_empty_lumens(reference, layout)


def _ends_at_empty_lumens(reference, layout):
    """The layout with every set moved out to its confirmed empty lumens' closed ends
    (:func:`.end_line.empty_end_shifts`) where its line lies inside them, warned."""
    from .end_line import empty_end_shifts

    q = layout.quality
    half_width = max(1, int(np.floor(0.25 * q.get("lumen_width_px", 4.0))))
    shifts = empty_end_shifts(reference, layout.trenches, layout.angle_deg, layout.pitch,
                              half_width, q.get("closed_end_margin_px", 0.0))
    moved, shifts = _moved_inside(layout, shifts)
    moved.quality["closed_end_moved_in_time_px"] = float(
        max((abs(v) for v in shifts.values()), default=0.0))
    if not shifts:
        return moved
    moved.warnings.append(
        f"the closed ends of {len(shifts)} trench set(s) were moved out by up to "
        f"{moved.quality['closed_end_moved_in_time_px']:.1f} px to their empty lumens' ends: "
        "they had been drawn while the empty flags were unclear (which trenches are empty "
        "was found over time); check the QC picture")
    return moved


def _closed_ends_on_frame(layout, reference, frame):
    """The fluorescence layout with every set moved to ``frame``'s mother tips
    (:func:`.closed_end_drift.set_shifts_to_frame`), except a set whose boxes would
    leave the image; ``quality["closed_end_frame_shift_px"]``, the largest move."""
    moved, shifts = _moved_inside(layout, set_shifts_to_frame(reference, frame, layout))
    moved.quality["closed_end_frame_shift_px"] = float(
        max((abs(v) for v in shifts.values()), default=0.0))
    return moved


def _moved_inside(layout, shifts):
    """``(moved, shifts)``: the layout with its sets moved along the trenches by
    ``shifts`` (:meth:`~.trench_array.TrenchLayout.moved_along`), except the sets whose
    boxes would then leave the image, and the shifts kept."""
    shifts = dict(shifts)
    moved = layout.moved_along(shifts)
    tr = moved.trenches
    outside = ~moved.boxes_inside()
    for k in set(tr.loc[outside, "set"].astype(int)):
        shifts.pop(k, None)
    if outside.any():
        moved = layout.moved_along(shifts)
    return moved, shifts


def movie_drift(movie, reference, layout, kind, start=0, previous=None):
    """``(T, 2)`` drift ``(dy, dx)`` of every frame relative to the boxes' coordinates.

    A phase reference is frame 0 (drift 0 by definition; another frame where
    frame 0 gave no layout, ``quality["reference_frame"]``); a fluorescence
    maximum projection is compared with every frame across the trenches by
    cross-correlation, and along them the mother cells' tips of every frame
    are compared with those of frame 0; a phase frame's drift along the
    trenches is matched at the boxes' closed ends (:func:`.profile_drift.phase_drift`). Frames
    before ``start`` take their rows from ``previous`` (an incremental run).

    The prior of each frame (which of near-equal correlation peaks of a
    periodic array is taken) is the drift of the frame before, read from
    the rows of this table: an incremental run and a run over the whole
    movie therefore decide every frame alike.
    """
    n_t = movie.shape[0]
    out = np.zeros((n_t, 2))
    if start:
        out[:start] = np.asarray(previous, float)[:start]
    trenches = layout.trenches
    # a phase reference is a frame of the movie: its drift is 0 by definition
    reference_frame = int(layout.quality.get("reference_frame", 0))
    first = 1 if kind == "phase" and reference_frame == 0 else 0
    estimator, tips, d0, profiles = None, None, None, None
    if kind == "fluorescence" and n_t > max(start, first):
        # along the trenches, frames are compared with frame 0's mother tips, where
        # detect_in_movie put the boxes (the projection's tips are each set's outermost)
        estimator = DriftEstimator(reference)
        frame0 = np.asarray(movie[0], dtype=np.float32)
        d0 = estimator(frame0, prior=(0.0, 0.0))
        # only filled boxes hold a mother tip: the "tip" found in an empty trench
        # is noise (a turned movie's box 8: 40 or -3 rows), and one flip of it moved
        # the median by 0.3 px
        trenches = trenches[~trenches["empty"].to_numpy(bool)]
        tips = closed_end_positions(frame0, trenches, layout.angle_deg,
                                    across_trenches(d0, layout.angle_deg))
    for t in range(max(start, first), n_t):
        if estimator is None:  # one per movie: the reference is transformed once
            estimator = DriftEstimator(reference)
        frame = np.asarray(movie[t], dtype=np.float32)
        d = d0 if t == 0 and d0 is not None else estimator(
            frame, prior=out[t - 1] if t else (0.0, 0.0))
        if kind == "fluorescence":
            d = fluorescence_drift(reference, frame, trenches, layout.angle_deg, d, tips)
        else:
            if profiles is None:  # the reference's closed ends, sampled once per movie
                profiles = closed_end_profiles(reference, trenches, layout.angle_deg)
            d = phase_drift(reference, frame, trenches, layout.angle_deg, d, profiles)
        out[t] = d
    return out
