"""Where the cells are: a lumen changes from frame to frame, a wall does not.

A phase layout's polarity (lumens the bright or the dark stripes) is read from
one frame, and where cells barely show in it (dark lumens, faint cells, a
textured chip: the ``mixed`` family) both readings can look alike; the
self-check then calls the layout undetermined, and it may sit on the walls.
Over a movie the cells grow, divide and move along the lumens while the PDMS
stays put: after aligning the frames on the first (the drift), the
frame-to-frame change relative to the local brightness is far larger on the
lumens' axes than half a pitch beside them. On held-out positions
(1024², 8 frames, `.scratch` run of 2026-12-04) the change on the boxes' axes
over the change between them was 7.6-16 on right layouts (nominal,
dark_lumen, halo_walls 10252; mixed 10247) and 0.18-0.48 on the layouts that
boxed the walls (mixed 10212, 10224, 10226, 10252 pos 1); a layout boxing half
its trenches right gave 1.0.

The same frames check the empty flags where a frame's lumen texture leaves them
unclear (:func:`trench_changes`, :func:`empty_flags_in_time`): an empty lumen
changes by the noise alone, like the walls beside it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["aligned_frames", "temporal_contrast", "trench_changes", "empty_flags_in_time",
           "skipped_change", "flip_thresholds", "FLIP_BELOW", "VERIFIED_ABOVE", "SKIPPED_STILL",
           "UNVERIFIED_FLIP_BELOW", "UNVERIFIED_VERIFIED_ABOVE", "SURE_IN_ONE_FRAME",
           "sure_in_one_frame"]

#: Below this ratio the boxes sit where nothing changes: the walls.
FLIP_BELOW = 0.6
#: From this ratio on, the boxes hold what changes: the lumens.
VERIFIED_ABOVE = 2.0
#: The same two lines for a layout the one-frame self-check left unverified.
UNVERIFIED_FLIP_BELOW = 0.8
UNVERIFIED_VERIFIED_ABOVE = 1.25
#: A layout whose boxes hold this many times the texture between them in one frame, plainly
#: and relative to the brightness (the self-check's log ratios), is not overturned by time.
SURE_IN_ONE_FRAME = float(np.log(10.0))


def flip_thresholds(unverified: bool) -> tuple:
    """``(flip below, verified above)``: the temporal contrast under which a layout's
    polarity is doubted, and the one the other polarity's layout must reach to be taken.

    A layout the one-frame self-check verified needs strong evidence from time to be
    overturned. One it left unverified was chosen on weak evidence, often the
    texture relative to the brightness, which dark stripes inflate: their noise and
    compression artefacts are large against their dim level. The frame-to-frame change
    relative to the brightness is inflated the same way, so where it still favours the
    *other* (brighter) stripes it is the stronger evidence, even when modest: held-out
    mixed 10307 (bright lumens at 3.4x the dark walls, JPEG 48, read noise 16) was
    flipped onto the walls by the relative texture (2.2x), while over time the bright
    stripes changed 1.4x more than the dark ones (the walls' boxes: 0.67-0.72).
    """
    if unverified:
        return UNVERIFIED_FLIP_BELOW, UNVERIFIED_VERIFIED_ABOVE
    return FLIP_BELOW, VERIFIED_ABOVE


def sure_in_one_frame(quality) -> bool:
    """Whether a phase layout's one-frame self-check passed it beyond doubt: its boxes
    hold :data:`SURE_IN_ONE_FRAME` (10x) the texture between them or more, plainly and
    relative to the local brightness (``self_check_log_ratio``,
    ``self_check_relative_log_ratio``).

    Time then does not overturn it. Held-out geometry 10418 pos 0 (thin walls, 10.6 px
    at a 29 px pitch, between lumens that cells fill wall to wall, 16 of 18.7 px): the
    right layout's boxes held 1030x the texture between them (4.2 relative, as a log
    ratio), yet changed 0.29x as much over time as half a pitch beside them, and the
    walls' layout, refused by the self-check (1016x the texture between its boxes),
    changed 4.0x more: every box moved onto a wall, the direction reversed, at
    confidence 0.78. The layouts time rightly overturned were unverified (held-out
    mixed 10212-10251: log ratios 0.1-2.9, self-check 0.5).

    >>> sure_in_one_frame({"self_check": 1.0, "self_check_log_ratio": 6.9,
    ...                    "self_check_relative_log_ratio": 4.2})
    True
    >>> sure_in_one_frame({"self_check": 0.5, "self_check_log_ratio": 2.9,
    ...                    "self_check_relative_log_ratio": 0.3})
    False
    """
    return (quality.get("self_check", 0.0) >= 1.0
            and quality.get("self_check_log_ratio", 0.0) >= SURE_IN_ONE_FRAME
            and quality.get("self_check_relative_log_ratio", 0.0) >= SURE_IN_ONE_FRAME)


def aligned_frames(movie, layout, max_frames: int = 6):
    """``(stack, b, shape)``: up to ``max_frames`` frames from the layout's reference
    frame on, aligned on it (:class:`.drift.DriftEstimator`, bilinear shifts) and
    binned by ``b`` to about 512 px (a lumen stays several pixels wide; at 2048², 6
    frames: 585 -> 199 ms, most of it the drift), and the frames' shape. ``None``
    for fewer than 3 frames.
    """
    from scipy import ndimage

    from .drift import DriftEstimator

    n_t = movie.shape[0]
    start = int(layout.quality.get("reference_frame", 0))
    stop = min(n_t, start + max_frames)
    if stop - start < 3:
        return None
    ref = np.asarray(movie[start], np.float32)
    estimator = DriftEstimator(ref)
    b = max(1, min(ref.shape) // 512)

    def binned(a):
        h, w = (a.shape[0] // b) * b, (a.shape[1] // b) * b
        return a[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))

    frames = [binned(ref)]
    for t in range(start + 1, stop):
        frame = np.asarray(movie[t], np.float32)
        shift = -np.asarray(estimator(frame), float) / b
        frames.append(ndimage.shift(binned(frame), shift, order=1, mode="nearest"))
    return np.stack(frames), b, ref.shape


def _relative_change(stack):
    """The standard deviation of consecutive frames' differences over the mean frame
    (the change over time relative to the local brightness)."""
    return np.std(np.diff(stack, axis=0), axis=0) / np.maximum(np.abs(stack.mean(axis=0)), 1e-6)


def _along_axis(change, b, shape, angle_deg, box, dx, margin, min_rows=3):
    """The map ``change`` (frames of ``shape`` binned by ``b``) sampled along the axis of
    ``box`` (a row of the layout's trenches) moved sideways by ``dx`` (rotated pixels),
    from ``margin`` rows in from its closed end to as far from its open end, closed end
    first; ``None`` for a box of fewer than ``min_rows`` such rows."""
    from scipy import ndimage

    from ..geometry import rotated_to_raw

    n = int(box.height) - 2 * margin
    if n < min_rows:
        return None
    rows = float(box.y_closed) + int(box.direction) * np.arange(margin, margin + n, dtype=float)
    pts = np.stack([rows, np.full(rows.shape, float(box.x_center) + dx)], axis=-1)
    raw = (rotated_to_raw(pts, angle_deg, shape) - 0.5 * (b - 1)) / b
    return ndimage.map_coordinates(change, [raw[:, 0], raw[:, 1]], order=1, mode="nearest")


def _along_boxes(change, b, shape, layout, offsets, margin):
    """Mean of the map ``change`` (frames of ``shape`` binned by ``b``) along every
    box's axis moved sideways by each of ``offsets`` (rotated pixels), ``margin`` rows
    in from both ends: ``(n_boxes, len(offsets))``, NaN rows for boxes too short."""
    tr = layout.trenches
    out = np.full((len(tr), len(offsets)), np.nan)
    for i, r in enumerate(tr.itertuples()):
        for j, dx in enumerate(offsets):
            along = _along_axis(change, b, shape, layout.angle_deg, r, dx, margin)
            if along is None:
                break
            out[i, j] = float(np.mean(along))
    return out


def temporal_contrast(movie, layout, max_frames: int = 6, margin: int = 10,
                      aligned=None) -> float:
    """How much more the image changes over time on the boxes' axes than half a pitch
    beside them (NaN when it cannot be measured).

    Up to ``max_frames`` frames from the layout's reference frame on are aligned on
    it (:func:`aligned_frames`, or ``aligned``, its result); the change is the
    standard deviation of the differences between consecutive frames over the mean
    frame, sampled along every box's axis (``margin`` rows in from both ends) and
    along the line half a pitch beside it; the ratio of the two medians over the boxes.

    Examples
    --------
    >>> import pandas as pd
    >>> from batchlib.trench.detection.trench_array import TrenchLayout
    >>> rng = np.random.default_rng(0)
    >>> movie = np.full((4, 120, 120), 100.0) + rng.normal(0, 1, (4, 120, 120))
    >>> movie[:, :, 28:36] += rng.normal(0, 30, (4, 120, 8))   # something lives at x = 31.5
    >>> boxes = pd.DataFrame({"x_center": [31.5], "y_closed": [5.0], "direction": [1],
    ...                       "height": [100]})
    >>> lay = TrenchLayout(0.0, 40.0, pd.DataFrame(), boxes, {}, (120, 120))
    >>> bool(temporal_contrast(movie, lay) > 5)
    True
    """
    aligned = aligned if aligned is not None else aligned_frames(movie, layout, max_frames)
    if aligned is None or len(layout.trenches) == 0:
        return float("nan")
    stack, b, shape = aligned
    along = _along_boxes(_relative_change(stack), b, shape, layout,
                         (0.0, 0.5 * float(layout.pitch)), margin)
    along = along[np.isfinite(along).all(axis=1)]
    if not len(along):
        return float("nan")
    return float(np.median(along[:, 0]) / max(float(np.median(along[:, 1])), 1e-12))


#: A layout at a multiple of the first pitch skips lumens when the lines it skips change
#: this much of what its boxes change, or more, in a tenth of the places (see
#: :func:`skipped_change`).
SKIPPED_STILL = 0.5


def skipped_change(movie, layout, multiple: int, max_frames: int = 6, margin: int = 10,
                   aligned=None) -> float:
    """The 90th percentile of the change over time along the lines ``k / multiple`` of
    a pitch beside the boxes (``k = 1 .. multiple - 1``, both sides), over the median
    change along the boxes' axes (NaN when not measured).

    A layout found at ``multiple`` times a first pitch boxes either the lumens the
    first layout's boxes missed (it stood on lumens and walls alike: those lines
    are walls, and walls never change) or every ``multiple``-th lumen (the first
    was right: those lines are lumens, and where they hold cells they change as
    much as the boxes). Held-out mixed 10233 at twice the pitch: 0.12 (right);
    independent seed 1067 (a third of the lumens empty, the first layout right but
    unsure, 0.28) at 2x and 3x: 1.15 and 1.17, where the boxes' own contrast over
    time had risen to 28 and 24 from 13 and the multiple had been taken. The
    90th percentile, not the median: where most skipped lumens are empty, the
    others still change.
    """
    aligned = aligned if aligned is not None else aligned_frames(movie, layout, max_frames)
    if aligned is None or len(layout.trenches) == 0 or multiple < 2:
        return float("nan")
    stack, b, shape = aligned
    step = float(layout.pitch) / multiple
    offsets = (0.0, *(side * k * step for k in range(1, multiple) for side in (1, -1)))
    along = _along_boxes(_relative_change(stack), b, shape, layout, offsets, margin)
    along = along[np.isfinite(along).all(axis=1)]
    if not len(along):
        return float("nan")
    return float(np.percentile(along[:, 1:], 90) / max(float(np.median(along[:, 0])), 1e-12))


def trench_changes(movie, layout, max_frames: int = 6, margin: int = 10, aligned=None):
    """Per box: how much the image changes over time along its axis over how much it
    changes along the walls half a pitch to either side (NaN where not measured).

    The change is the standard deviation of the differences between consecutive
    aligned frames (:func:`aligned_frames`), in grey levels: an empty lumen, like
    the PDMS beside it, changes by the noise alone (ratios 0.9-1.2 on the
    independent simulator's optics, 0.5-3 on the generator's, where lumens and
    walls differ in brightness and so in shot noise), a lumen whose cells grow and
    move by far more (5-27 on the independent simulator, its first 6 frames). See
    :func:`empty_flags_in_time`.
    """
    aligned = aligned if aligned is not None else aligned_frames(movie, layout, max_frames)
    if aligned is None or len(layout.trenches) == 0:
        return np.full(len(layout.trenches), np.nan)
    stack, b, shape = aligned
    return _changes_over_walls(_change(stack), b, shape, layout, margin)


def _change(stack):
    """The standard deviation of consecutive frames' differences (grey levels)."""
    return np.std(np.diff(stack, axis=0), axis=0)


def _changes_over_walls(change, b, shape, layout, margin):
    """:func:`trench_changes` from the map ``change`` (:func:`_change`)."""
    half = 0.5 * float(layout.pitch)
    along = _along_boxes(change, b, shape, layout, (0.0, -half, half), margin)
    return along[:, 0] / np.maximum(0.5 * (along[:, 1] + along[:, 2]), 1e-12)


#: The factor by which the trenches' changes over time must split (the largest gap
#: between them, in log space), as for the lumens' texture (:func:`.quality.empty_flags_clear`).
CLEAR_GAP = 2.5


def empty_flags_in_time(changes, empty, min_empty: int = 2, texture_clear: bool = True):
    """``(empty, confirmed, gap)``: the empty flags checked against the trenches'
    change over time (:func:`trench_changes`).

    Where the lumens' texture in one frame does not separate empty trenches from
    filled ones by a clear gap, time may: an empty lumen changes from frame to
    frame by the noise alone, one with cells by their growth and movement. When
    the changes split by a gap of :data:`CLEAR_GAP` or more, a flagged trench on
    the changing side holds cells (its flag is dropped: the direction that costs
    no cells), and the flags are confirmed when at least ``min_empty`` flagged
    trenches stay on the still side and make at least half of it (texture and
    time then agree on what is empty; still trenches the texture calls filled
    keep that call: a cell that does not grow is still a cell). ``gap`` is the
    split's factor (1.0 where fewer than four trenches were measured).

    ``texture_clear=False``: the flags come from a texture that could not tell empty
    lumens from filled ones, and its "filled" is no evidence either. A still trench
    is then empty too, when at least one flagged trench is still (they look alike)
    and the still trenches are at most half of those measured (most trenches grow).
    Independent simulator 1096: 2 still trenches (0.84-0.91 times their walls' change,
    the others 4.5-15), one flagged; the texture called the other filled, and without
    the two as Segment's reference the U-Net gave both a cell in almost every frame
    (empty trench-frames clean 0.06). Of the 15 positions of 1000-1107 whose flags
    were unclear and split over time, still trenches the texture called filled were
    empty every time (1030, 1096).

    Examples
    --------
    >>> changes = [1.0, 0.9, 1.1, 12.0, 9.0, 15.0, 11.0, 10.5]
    >>> flags = [True, True, False, True, False, False, False, False]
    >>> empty, confirmed, gap = empty_flags_in_time(changes, flags)
    >>> empty.tolist(), confirmed, round(gap, 1)
    ([True, True, False, False, False, False, False, False], True, 8.2)
    >>> empty_flags_in_time([1.0, 1.2, 1.5, 1.9, 2.2, 2.6], [True] * 3 + [False] * 3)[1]
    False
    >>> flags = [True, False, False, False, False, False]      # unclear texture
    >>> empty, confirmed, _ = empty_flags_in_time([0.9, 0.8, 12.0, 9.0, 15.0, 11.0], flags,
    ...                                           texture_clear=False)
    >>> empty.tolist(), confirmed
    ([True, True, False, False, False, False], True)
    """
    from .quality import _largest_gap

    empty = np.asarray(empty, bool).copy()
    changes = np.asarray(changes, float)
    measured = np.isfinite(changes)
    gap, threshold = _largest_gap(changes[measured])
    if not gap > CLEAR_GAP:
        return empty, False, gap
    still = measured & (changes < threshold)
    empty &= ~(measured & ~still)
    if not texture_clear and (empty & still).any() and 2 * int(still.sum()) <= int(measured.sum()):
        empty |= still
    kept = int(np.sum(empty & still))
    return empty, bool(kept >= min_empty and 2 * kept >= int(still.sum())), gap


def open_end_change(movie, layout, max_frames: int = 6, margin: int = 10, min_change=3.0,
                    aligned=None) -> float:
    """How much more the filled trenches change over time in the third of each box at
    its open end than in the third at its closed end: the median over the boxes of
    the log of that ratio (NaN when no filled box is measured).

    Cells grow from the closed end towards the open one, so a cell moves the
    further per frame the further it lies from the closed end, and the mother at
    the closed end the least: positive for boxes that face the right way. A box is
    filled where it changes ``min_change`` times what its walls do
    (:func:`trench_changes`). Of the independent simulator's 132 single-set phase
    positions (seeds 1000-1211), the 131 detected facing the right way gave -0.13
    or more, the one facing the wrong way (1205) -0.68.

    Examples
    --------
    >>> import pandas as pd
    >>> from batchlib.trench.detection.trench_array import TrenchLayout
    >>> rng = np.random.default_rng(0)
    >>> movie = np.full((5, 200, 120), 100.0) + rng.normal(0, 1, (5, 200, 120))
    >>> rows = np.linspace(1, 40, 180)[None, :, None]          # the change grows down
    >>> movie[:, 10:190, 28:36] += rng.normal(0, 1, (5, 180, 8)) * rows
    >>> boxes = pd.DataFrame({"x_center": [31.5], "y_closed": [10.0], "direction": [1],
    ...                       "height": [180]})
    >>> lay = TrenchLayout(0.0, 40.0, pd.DataFrame(), boxes, {}, (200, 120))
    >>> bool(open_end_change(movie, lay) > 1)
    True
    """
    aligned = aligned if aligned is not None else aligned_frames(movie, layout, max_frames)
    if aligned is None or len(layout.trenches) == 0:
        return float("nan")
    stack, b, shape = aligned
    change = _change(stack)
    filled = np.nan_to_num(_changes_over_walls(change, b, shape, layout, margin)) >= min_change
    ratios = []
    for i, r in enumerate(layout.trenches.itertuples()):
        along = _along_axis(change, b, shape, layout.angle_deg, r, 0.0, margin, min_rows=9) \
            if filled[i] else None
        if along is None:
            continue
        third = along.size // 3
        ratios.append(np.log(max(float(np.mean(along[-third:])), 1e-12)
                             / max(float(np.mean(along[:third])), 1e-12)))
    return float(np.median(ratios)) if ratios else float("nan")
