"""``detect_trenches``: angle, sets and boxes of the trench array of one image.

The steps (each in its own module) are:

1. pitch from the band profiles' autocorrelation (:mod:`.pitch`);
2. angle by shift-and-add projection sharpness (:mod:`.rotation`);
3. the image is straightened at low row resolution from 8-row band profiles
   and the periodic rows are grouped into sets (:mod:`.trench_sets`);
4. the angle is refined from the residual lean inside the sets, and in
   fluorescence from the lean of the sets' closed-end lines (:mod:`.end_line`);
5. per set, the lumen axis and sub-pixel centres along the cross profile
   (:mod:`.centres`), the ends at full resolution and the direction
   (:mod:`.ends`);
6. boxes, the ``empty`` flag and the quality metrics (:mod:`.quality`).

Elsewhere: the angle's refinements (:mod:`.angle_refinement`), the detection found
again where its first answer is unsure (:mod:`.retries`), the self-check and the
warnings (:mod:`.layout_checks`), and the :class:`TrenchLayout` it returns
(:mod:`.trench_layout`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..geometry import box_corners, frame_center, rotated_to_raw
from ._common import TrenchDetectionError, as_image2d, band_profiles, nanmean
from ._sampling import rotated_band_image
from .angle_refinement import (END_LINE, MIN_FULL_EXTENT_CORRECTION_DEG, full_extent_angle,
                               per_set_angle, with_search_facts)
from .centres import column_texture, like_other_empty_lumens, locate_centres, refine_pitch
from .direction import assign_directions
from .ends import set_ends
from .filled_ends import clear_closed_end
from .layout_checks import (LOW_PHASE_CONFIDENCE, apply_self_check, doubt_gaps_in_stacks,
                            warn_cleared_end, warn_halo_beyond, warn_low_confidence,
                            warn_readings_differ)
from .lumen import lumen_axis
from .orientation import detect_oriented
from .pitch import estimate_pitch
from .quality import (empty_flags, empty_flags_clear, fluorescence_filled_over, image_noise,
                      layout_quality, open_end_only, phase_filled_over)
from .retries import (SAME_PITCH, at_finer_lattice, at_fractions, at_multiple, edges_disagree,
                      most_confident, phase_retry_acceptable, with_longer_sets,
                      with_more_trenches)
from .rotation import angle_from_bands
from .tilt import detect_any_tilt
from .trench_layout import (SET_COLUMNS, TRENCH_COLUMNS, TrenchLayout, boxes_on_frame,
                           holds_cells_at_edge)
from .trench_sets import sets_at

__all__ = ["TrenchLayout", "detect_trenches"]

#: Widest angle search (degrees) a found angle near the edge of a narrower one widens to;
#: beyond 45 degrees the trenches run left-right (see :mod:`.orientation`).
MAX_ANGLE_RANGE_DEG = 45.0


#: Pixels of PDMS before the closed end in a phase box by default. The U-Net
#: reads the lumen start off the empty trenches, which needs a row or two of
#: PDMS to show the step (tuning seeds 10-12, mother length within 5 %: margin
#: 1 px 0.95 / 0.79, 1.5 px 0.93 / 0.88 for nominal / defocus; dark_lumen and
#: low_snr 0.97 / 0.94 against 1.00 / 1.00).
PHASE_CLOSED_END_MARGIN = 1.5
#: The same for fluorescence, where the end is the outer foot of the outermost
#: cell. 1 px rather than 0.5 (tuning seeds 4-7 of every family, detected boxes,
#: U-Net): mean IoU 0.911 -> 0.921 (median of families; every family the same or
#: better), mothers within 5 % 0.990 -> 0.996 (defocus 0.969 -> 0.945, the one
#: family worse; seeds 8-15 of defocus, low_snr, nominal, geometry: defocus 0.934
#: -> 0.929, the others 0.945-0.991 -> 0.952-0.996), and half a pixel more between
#: the box and a mother whose foot was found inside it (held-out mixed 10269: two
#: boxes 0.2 px into their mothers). 0.75 and 1.5 px gave mean IoU 0.915 and 0.911,
#: mothers 0.988 and 0.991 (why 1 px suits the network best was not worked out).
FLUORESCENCE_CLOSED_END_MARGIN = 1.0


def _finite(image):
    img = np.asarray(image)
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        finite = np.isfinite(img)
        if not finite.any():
            raise TrenchDetectionError("the image has no finite pixel")
        img = np.where(finite, img, np.median(img[finite]))
    return img


def _rows_inside(row_y, y0, y1, margin):
    sel = (row_y >= y0 + margin) & (row_y <= y1 - margin)
    if sel.sum() < 2:
        sel = (row_y >= y0) & (row_y <= y1)
    return sel


def detect_trenches(image, kind: str = "phase", box_width: int | None = 32,
                    box_height: int | None = None, pitch: float | None = None,
                    angle_range_deg: float = 5.0, n_sets: int | None = None,
                    min_trenches: int = 3, *, min_pitch: float = 6.0,
                    max_pitch: float | None = None, lumen: str = "auto",
                    direction: int | None = None,
                    closed_end_margin: float | None = None, self_check: bool = True,
                    angle_deg: float | None = None, orientation: str = "auto",
                    _rows: str = "periodic") -> TrenchLayout:
    """Find the trench array of a mother-machine image.

    Parameters
    ----------
    image : array_like, shape (H, W)
        A phase-contrast frame (all trenches visible), or for ``kind =
        "fluorescence"`` preferably a maximum projection over time (only
        trenches holding cells are visible).
    kind : {"phase", "fluorescence"}
    box_width : int, optional
        Crop width in pixels (default 32; ``None``: the lumen width plus 8 px).
    box_height : int, optional
        Crop height; default the trench length found (shortest set).
    pitch : float, optional
        Trench spacing in pixels, estimated when omitted.
    angle_range_deg : float
        Largest absolute trench angle searched.
    n_sets : int, optional
        Number of trench sets; found from the image when omitted (the two
        strongest, and more only where they are as long and as periodic: two
        feeding channels in view give four). Three or more alternate their
        directions down the frame (:func:`.direction.assign_directions`).
    min_trenches : int
        A set with fewer trenches is dropped; no set left is a failure.
    min_pitch, max_pitch : float
        Pitch search range in pixels (default 6 px to a third of the width).
    lumen : {"auto", "bright", "dark"}
        Whether the lumens are the brighter stripes of the cross profile;
        "auto" decides from the cell texture and the stripe widths (phase) and
        uses "bright" for fluorescence.
    direction : {+1, -1}, optional
        Force the direction of a single set (closed end at the top: +1).
    closed_end_margin : float, optional
        Pixels of PDMS kept before the closed end in every box, so that the
        box starts just outside the trench and never inside the mother cell.
        Default ``PHASE_CLOSED_END_MARGIN`` for phase (the end line is the
        empty lumens' half level, at the lumen's first row within a few
        tenths of a pixel) and ``FLUORESCENCE_CLOSED_END_MARGIN`` (1 px) for
        fluorescence (measured from the outer foot of the outermost cell).
        Recorded as ``closed_end_margin_px`` in the layout's quality:
        segmentation reads the lumen from that row on when no empty trench
        shows where it starts.
    self_check : bool
        Check that the boxes hold the cells (:func:`.selfcheck.check_layout`):
        a layout whose boxes sit on the walls is an error; one that cannot be
        checked (no cells seen) has its confidence halved and a warning.
    angle_deg : float, optional
        The trench angle, when known; searched when omitted. In fluorescence
        the searched angle is then corrected by the lean of the closed-end
        line (:mod:`.end_line`) and the layout found again at it.
    orientation : {"auto", "vertical", "horizontal"}
        Whether the trenches run top-bottom or left-right in the image
        (:mod:`.orientation`): "auto" looks for them top-bottom, and only
        when none are found there, in the image turned a quarter. A layout
        found turned has an angle near -90° and
        ``quality["turned_quarter"] = 1``; crops are upright either way.

    _rows : {"periodic", "weak", "edges"}
        Internal (retries of the pitch check below): which rows make a set.
        ``"weak"``: phase rows periodic at :data:`PHASE_WEAK_RATIO` count without a
        strictly periodic row beside them; ``"edges"``: the rows' periodicity is
        that of their edges' magnitude (lumens of either look, see
        :func:`sets_at`).

    Returns
    -------
    TrenchLayout

    Raises
    ------
    TrenchDetectionError
        When no trench array is found, with the reason.
    """
    return detect_oriented(
        _detect_any_tilt, image, orientation, angle_deg, kind=kind, box_width=box_width,
        box_height=box_height, pitch=pitch, angle_range_deg=angle_range_deg, n_sets=n_sets,
        min_trenches=min_trenches, min_pitch=min_pitch, max_pitch=max_pitch, lumen=lumen,
        direction=direction, closed_end_margin=closed_end_margin, self_check=self_check,
        _rows=_rows)


def _detect_any_tilt(image, **kwargs):
    """:func:`_detect_vertical`, searched wider where the spectrum says the chip is
    turned beyond ``angle_range_deg`` (:mod:`.tilt`)."""
    return detect_any_tilt(_detect_vertical, image, **kwargs)


def _detect_vertical(image, kind, box_width, box_height, pitch, angle_range_deg, n_sets,
                     min_trenches, *, min_pitch, max_pitch, lumen, direction,
                     closed_end_margin, self_check, angle_deg, _rows):
    """:func:`detect_trenches` of trenches running top-bottom (within ``angle_range_deg``)."""
    if kind not in ("phase", "fluorescence"):
        raise ValueError(f"kind must be 'phase' or 'fluorescence', got {kind!r}")
    if lumen not in ("auto", "bright", "dark"):
        raise ValueError("lumen must be 'auto', 'bright' or 'dark'")
    img = _finite(as_image2d(image))
    shape = img.shape
    H, W = shape
    sample = np.asarray(img[:: max(1, H // 256), :: max(1, W // 256)], dtype=float)
    if not np.ptp(sample) > 0:
        raise TrenchDetectionError("blank image: the intensity is constant")

    step, bands8, y8, bands32, y32 = _band_rows(img)
    pitch_given = pitch is not None
    arguments = dict(kind=kind, box_width=box_width, box_height=box_height, pitch=pitch,
                     angle_range_deg=angle_range_deg, n_sets=n_sets, min_trenches=min_trenches,
                     min_pitch=min_pitch, max_pitch=max_pitch, lumen=lumen, direction=direction,
                     closed_end_margin=closed_end_margin, self_check=self_check,
                     angle_deg=angle_deg, _rows=_rows)

    def again(**changed):
        """The whole detection again with some arguments changed. A retry gives what it
        changes (a pitch, a polarity), so it never retries the same thing."""
        return _detect_vertical(image, **{**arguments, **changed})

    if pitch is None:
        pitch = _estimated_pitch(bands32, kind, min_pitch, max_pitch, W, img)
    pitch = float(pitch)
    if angle_deg is None:
        angle, gain = angle_from_bands(bands32, y32, frame_center(shape)[0], pitch,
                                       angle_range_deg, fine_bands=bands8, fine_y=y8)
        whole_frame_angle = angle
        angle, per_set, spread, (rot, power, ratio, runs) = per_set_angle(
            bands8, y8, bands32, y32, shape, angle, pitch, kind, n_sets, angle_range_deg, step,
            _rows)
    else:
        angle = whole_frame_angle = float(angle_deg)
        gain, per_set, spread = float("nan"), np.zeros(0), 0.0
        rot, power, ratio, runs = sets_at(bands8, y8, shape, angle, pitch, kind, n_sets,
                                           _rows)
    if angle_deg is None and abs(angle) > 0.8 * angle_range_deg \
            and angle_range_deg < MAX_ANGLE_RANGE_DEG:
        # the best angle at the edge of the search, or refined past it: the chip is
        # turned further than searched (a camera mounted askew). At 12 deg with the
        # default 5 the search stopped at 8.9 deg, every box 3 deg off its trench,
        # at confidence 0.49 and without a warning.
        return again(angle_range_deg=min(MAX_ANGLE_RANGE_DEG, 3.0 * angle_range_deg))
    widest = max_pitch or W / 3.0  # the longest pitch the search may take
    double = 2 * pitch <= widest
    if not runs and not pitch_given and kind == "fluorescence":
        # a multiple of the pitch taken for it (see at_fractions), or a harmonic
        retried = at_fractions(again, pitch, min_pitch, double)
        if retried is not None:
            return retried
    elif not runs and not pitch_given and double:
        # a harmonic taken for the pitch: bright halos in the middle of the walls
        # repeat at half of it, and at a quarter when the multiple won (held-out
        # halo_walls 10065: 24.5 px for 48.1), but no run of rows is periodic there.
        # Or the pitch is right and the cells' halos put so much power between its
        # harmonics that no row is periodic at 3 (held-out halo_walls 10217: 1.2-2.6,
        # with 100 times the PDMS's periodic power; at twice the pitch the layout
        # was wrong). Or filled lumens (dark between bright rims) and empty ones (the
        # inverse) mix so that the power lies half-way between the harmonics, at
        # this pitch or, where that made twice the pitch the strongest period, at
        # half of it: their edges repeat at the pitch whatever the lumens hold
        # (independent simulator 11: 5 of 12 trenches boxed at twice the pitch;
        # held-out mixed 10370 pos 1: 163 px estimated for 81.5, the position
        # failed). All are tried, the more confident acceptable layout kept.
        # Or the third harmonic won: bright rims on both sides of every lumen, a third
        # of the pitch apart, and low light (independent simulator 1098: 10.8 px for
        # 34.1, the position failed; at three times 10.8 no row is periodic either, the
        # lattice's phase slips by a pitch across the frame: the period near it is
        # measured again).
        changes = [dict(pitch=2 * pitch), dict(pitch=pitch, _rows="weak"),
                   dict(pitch=pitch, _rows="edges")]
        if pitch / 2 >= min_pitch:
            changes.append(dict(pitch=pitch / 2, _rows="edges"))
        if 3 * pitch <= widest:
            try:
                third = _estimated_pitch(bands32, kind, 2.5 * pitch, min(3.5 * pitch, widest),
                                         W, img)
            except TrenchDetectionError:
                third = 3 * pitch
            changes.append(dict(pitch=third))
        # Or the plain rows' strongest period is no harmonic at all: filled and empty
        # lumens at random, faint walls (independent simulator 1176, wall phase 0.13
        # rad: 17.0 px for 47.3 over the frame, 189 px, four pitches, in the trench
        # rows alone; the position failed). Their edges' magnitude repeats at the pitch
        # whatever the lumens hold (47.3 px there).
        edge_pitch = _edge_pitch(bands32, min_pitch, widest)
        if edge_pitch is not None and not any(abs(edge_pitch / c["pitch"] - 1) < SAME_PITCH
                                              for c in changes if c.get("_rows") == "edges"):
            changes.append(dict(pitch=edge_pitch, _rows="edges"))
        retried = most_confident(again, changes, accept=phase_retry_acceptable)
        if retried is not None:
            return retried
    if not runs:
        raise TrenchDetectionError(
            f"no rows with trenches: no run of rows is periodic at the pitch {pitch:.1f} px "
            f"({_periodic_rows_said(ratio, y8, pitch)})")

    # cross profile of every set; the pitch is shared (one chip), refined on all
    profiles, pitches, lengths = [], [], []
    for y0, y1, _ in runs:
        sel = _rows_inside(y8, y0, y1, step)
        prof = nanmean(rot[sel], axis=0)
        profiles.append((prof, sel))
        pitches.append(refine_pitch(prof, pitch))
        lengths.append(sel.sum())
    pitch = float(np.average(pitches, weights=lengths))

    noise = image_noise(img)
    found = []
    for (prof, sel), (y0, y1, _) in zip(profiles, runs):
        rot_set, offset = _set_canvas(bands8, y8, sel, shape, angle, rot)
        res = _locate_set(img, rot_set, nanmean(rot_set, axis=0) if offset else prof, pitch,
                          kind, lumen, angle, y0, y1, step, noise, offset)
        if res is not None:
            res["run"] = (y0, y1)
            found.append(res)
    if not found and kind == "fluorescence" and not pitch_given:
        retried = at_fractions(again, pitch, min_pitch)
        if retried is not None:
            return retried
    if not found:
        raise TrenchDetectionError(
            "no trench set could be resolved into trenches: rows with trench-like structure "
            "were found, but no regularly spaced trenches in them (debris or too few trenches?)")

    if kind == "fluorescence" and not pitch_given:
        finer = at_finer_lattice(found, pitch, min_pitch, again)
        if finer is not None:
            return finer
    assign_directions(found, kind, direction)
    if kind == "fluorescence":
        for f in found:
            # a cell floating past the open end is no lineage: the mother sits at the closed end
            closed, open_ = (f["y_top"], f["y_bottom"])[::f["direction"]]
            f["empty"] = open_end_only(f["excess"], f["rows"], closed, open_, f["empty"],
                                       f["signal"], max(1, int(np.floor(0.25 * f["lumen_width"]))),
                                       noise, step)
    flags_clear, unclear_sets = _empty_flags_by_set(found, kind)
    extra = dict(angle_gain=gain, whole_frame_angle_deg=whole_frame_angle,
                 set_angle_spread_deg=spread,
                 empty_flags_clear=float(flags_clear),
                 empty_flags_unclear_sets=float(unclear_sets),
                 empty_flags_disputed=float(sum(f["disputed"] for f in found)))
    extra.update({f"set{i}_angle_deg": a for i, a in enumerate(per_set)})
    if closed_end_margin is None:
        closed_end_margin = PHASE_CLOSED_END_MARGIN if kind == "phase" else FLUORESCENCE_CLOSED_END_MARGIN
    extra["closed_end_margin_px"] = float(closed_end_margin)
    layout = _assemble(found, shape, angle, pitch, kind, box_width, box_height, min_trenches,
                       closed_end_margin, noise, extra,
                       dict(row_y=y8, row_ratio=ratio, row_power=power))
    if kind == "phase" and angle_deg is None:
        extended = full_extent_angle(bands8, y8, bands32, y32, shape, angle, pitch, found,
                                      angle_range_deg, step, whole_frame_angle)
        if abs(extended - angle) > MIN_FULL_EXTENT_CORRECTION_DEG:
            return with_search_facts(again(angle_deg=extended), gain, whole_frame_angle,
                                      spread, per_set,
                                      full_extent_correction_deg=extended - angle)
    if angle_deg is None:
        # the lean of the closed-end lines: the mothers' tips (fluorescence), the lumens'
        # ends (phase); the layout is found again at the corrected angle
        measure, sigmas, least = END_LINE[kind]
        error, stderr = measure(img, layout)
        if abs(error) > max(sigmas * stderr, least):
            return with_search_facts(again(angle_deg=angle - error), gain, whole_frame_angle,
                                      spread, per_set, end_line_correction_deg=-error,
                                      end_line_stderr_deg=stderr)
        layout.quality.update(end_line_correction_deg=0.0,
                              end_line_stderr_deg=float(np.nan_to_num(stderr, nan=-1.0)))
    if self_check:
        def with_lumen(other):
            return again(lumen=other, self_check=False)

        layout = apply_self_check(img, layout, noise, with_lumen if kind == "phase"
                                   and lumen == "auto" else None)
        if kind == "fluorescence":
            doubt_gaps_in_stacks(img, layout, noise)
    if kind == "phase" and self_check and not pitch_given \
            and layout.quality["confidence"] < LOW_PHASE_CONFIDENCE:
        # (not in the self-check's own retries, which compare polarities at one pitch)
        edge_pitch = _edge_pitch(bands32, min_pitch, widest)
        unsure = layout
        layout = at_multiple(again, layout, widest, edge_pitch)
        layout = with_more_trenches(again, layout, edge_pitch)
        # an unsure layout's sets may also be cut short (its rows' edges are checked
        # below for sure ones): independent simulator 1457, a set of mostly filled
        # lumens at a wide pitch whose periodic rows stopped 80 px short of the closed
        # end, every box inside the mothers (83 % cut) at confidence 0.27
        if layout is unsure and n_sets is None and _rows == "periodic" \
                and edges_disagree(rot, y8, layout) == "longer":
            layout = with_longer_sets(again, layout)
    elif kind == "phase" and self_check and not pitch_given and n_sets is None \
            and _rows == "periodic":
        said = edges_disagree(rot, y8, layout)
        if said == "another set":
            layout = with_more_trenches(again, layout)
        elif said == "longer":
            layout = with_longer_sets(again, layout)
    warn_low_confidence(layout)
    warn_cleared_end(layout)
    warn_readings_differ(layout)
    warn_halo_beyond(layout)
    return layout


#: empty trenches a position's clear sets must flag to be its reference alone (the
#: Segment job's empty-trench median, ``threshold.empty_background``, needs two)
MIN_REFERENCE_EMPTY = 2


def _empty_flags_by_set(found, kind):
    """``(clear, n_unclear)``: whether the position's empty flags can serve as Segment's
    reference, judged per set (two sets' texture scales differ), and how many sets
    were unclear (:func:`.quality.empty_flags_clear`).

    A set whose flags are unclear keeps none when the clear sets flag at least
    :data:`MIN_REFERENCE_EMPTY` empty lumens: its trenches count as filled (the direction
    that costs no cells), and the clear sets' empty lumens are the reference. With one
    unclear set the whole position had none (independent simulator seed 5: partly
    filled trenches blurred one set's texture gap, and every empty trench-frame got two
    cells at the lumen's shaded ends). Clear sets with too few empty lumens leave the
    position unclear, and Segment says so (tuning mixed 7: faint cells, the clear set
    all filled). Changes ``found``'s ``empty`` flags in place; the texture's flags of a
    set cleared so are kept as its ``empty_unclear`` (the boxes' column of that name),
    which a movie's frames may confirm (:func:`.movie.detect_in_movie`).
    """
    clear = [empty_flags_clear(kind, f["signal"]) for f in found]
    n_unclear = sum(not ok for ok in clear)
    for f, ok in zip(found, clear):
        f["empty_unclear"] = np.zeros(len(f["empty"]), bool)
        f["empty_flags_clear"] = ok
    if n_unclear and sum(int(np.sum(f["empty"])) for f, ok in zip(found, clear)
                         if ok) >= MIN_REFERENCE_EMPTY:
        for f, ok in zip(found, clear):
            if not ok:
                # kept for a movie, whose frames can confirm them (movie.py)
                f["empty_unclear"] = np.asarray(f["empty"], bool).copy()
                f["empty"] = np.zeros_like(f["empty"])
        return True, n_unclear
    return not n_unclear, n_unclear


def _periodic_rows_said(ratio, row_y, pitch, min_ratio=3.0) -> str:
    """Why no set was found, for the error: the strongest row's periodicity ratio and, when
    rows reach ``min_ratio``, how far their longest run spans against the one pitch a set
    needs (a strongest row at 10 read as a contradiction without it).

    >>> said = _periodic_rows_said(np.array([1.0, 10.4, 2.0]), np.array([0.0, 8.0, 16.0]), 60.0)
    >>> said.split(", but ")[1]
    'rows at 3 or more span 8 px at most, where a set needs one pitch (60 px)'
    """
    r = np.nan_to_num(np.asarray(ratio, float))
    said = f"the strongest row's periodicity ratio is {r.max():.1f}"
    high = r >= min_ratio
    if not high.any():
        return said + f"; a set needs a run of rows at {min_ratio:g} or more"
    step = float(np.median(np.diff(row_y))) if len(row_y) > 1 else 1.0
    edges = np.diff(np.concatenate([[0], high.astype(int), [0]]))
    longest = int(np.max(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)))
    return (said + f", but rows at {min_ratio:g} or more span {longest * step:.0f} px at most, "
            f"where a set needs one pitch ({pitch:.0f} px)")


def _band_rows(img):
    """``(step, bands8, y8, bands32, y32)``: row-band profiles of ``step`` rows (8 for
    frames of 256 rows or more) and of about 32 rows, with their centre rows."""
    H, W = img.shape
    step = 8 if H >= 256 else max(2, H // 32)
    bands8, y8 = band_profiles(img, step)
    k = max(1, 32 // step)
    n32 = len(y8) // k
    bands32 = bands8[: n32 * k].reshape(n32, k, W).mean(axis=1)
    y32 = y8[: n32 * k].reshape(n32, k).mean(axis=1)
    return step, bands8, y8, bands32, y32


def _estimated_pitch(bands32, kind, min_pitch, max_pitch, width, img=None) -> float:
    """The trench pitch from the band profiles; :class:`TrenchDetectionError` when none is periodic.

    In fluorescence the profiles down bands of 32 columns of ``img`` tell the
    pixel grid's periods (JPEG blocks) from the chip's (see ``estimate_pitch``).
    """
    along = None
    if kind == "fluorescence" and img is not None and img.shape[1] >= 64:
        n = img.shape[1] // 32
        along = img[:, : n * 32].reshape(img.shape[0], n, 32).mean(axis=2, dtype=np.float64).T
    pitch, periodicity = estimate_pitch(bands32, min_pitch=min_pitch, max_pitch=max_pitch,
                                        sparse=kind == "fluorescence", along=along)
    # empty trenches are dark in fluorescence, which weakens the periodicity;
    # the set and trench checks further down still reject debris there
    floor = 0.2 if kind == "phase" else 0.1
    if not np.isfinite(pitch) or periodicity < floor:
        raise TrenchDetectionError(
            "no periodic trench pattern: the column profiles show no repeating spacing "
            f"between {min_pitch:g} and {max_pitch or width / 3:g} px (periodicity "
            f"{periodicity:.2f} < {floor}); blank, debris-only or out-of-focus image?")
    return pitch


def _edge_pitch(bands32, min_pitch, max_pitch) -> float | None:
    """The period of the band profiles' edges' magnitude (the absolute difference of
    neighbouring columns), or ``None`` where they are not periodic enough (the phase
    floor of :func:`_estimated_pitch`)."""
    pitch, periodicity = estimate_pitch(np.abs(np.diff(bands32, axis=1)),
                                        min_pitch=min_pitch, max_pitch=max_pitch)
    return float(pitch) if np.isfinite(pitch) and periodicity >= 0.2 else None


def _set_canvas(bands8, y8, sel, shape, angle, rot):
    """The rotated rows ``sel`` of a set, widened to every column the raw frame
    reaches at those rows, and the column of rotated ``x = 0`` in it.

    The rotated frame has the raw frame's columns: at rows far from the centre of
    rotation the raw frame reaches past them, by ``|y - cy| tan(angle)``. A trench
    whose lumen lies in the raw frame there was cut at the canvas's side and
    dropped (independent simulator: a trench at the side edge of 14 of 280
    positions, 1272 at 1.9 degrees: raw x 20-30, rotated x 4.7). Of the columns
    added, only those the raw frame holds at every row of the set are kept: a
    site seen on a few rows has a partial texture, between the empty lumens' and
    the filled ones' (independent 1111: the set's empty flags turned unclear).
    """
    cy, _ = frame_center(shape)
    reach = float(np.max(np.abs(y8[sel] - cy))) * abs(np.tan(np.deg2rad(angle)))
    offset = int(np.ceil(reach))
    if offset == 0:
        return rot[sel], 0
    cols = np.arange(-offset, shape[1] + offset, dtype=float)
    wide = rotated_band_image(bands8, y8, shape, angle, y8[sel], cols)
    added = (cols < 0) | (cols > shape[1] - 1)
    wide[:, added & ~np.isfinite(wide).all(axis=0)] = np.nan
    return wide, offset


def _locate_set(img, rot_set, prof, pitch, kind, lumen, angle, y0, y1, step, noise, offset=0):
    """Centres, empty flags and ends of one set; ``None`` if it holds no trench.

    ``rot_set`` and ``prof`` may reach ``offset`` columns past the rotated frame on
    either side (:func:`_set_canvas`); the centres and profile returned are the
    rotated frame's.
    """
    valid = np.flatnonzero(np.isfinite(prof))
    if valid.size < 2 * pitch:
        return None
    axis, lumen_width, lumen_conf = lumen_axis(prof, rot_set, pitch, kind, lumen,
                                               4.0 * noise ** 2 / step)
    texture = column_texture(rot_set) if kind == "phase" else None
    c = locate_centres(prof, pitch, axis, valid[0], valid[-1], kind, texture, lumen_width)
    if c is None:
        return None
    centres, lattice, residual, ncc, use_own = (c["centres"], c["lattice"], c["residual"],
                                                c["ncc"], c["use_own"])
    strip = max(1, int(np.floor(0.25 * lumen_width)))
    walls = np.concatenate([centres - 0.5 * pitch, centres[-1:] + 0.5 * pitch])
    empty, signal, disputed = empty_flags(kind, rot_set, prof, centres, walls, strip, noise, step,
                                          texture)
    if kind == "fluorescence":
        filled = ~empty
        # cells sit on the lattice and look alike; debris that passed so far does not
        regular = filled & (ncc >= 0.7) & (np.abs(residual) <= 0.1 * pitch)
        if not filled.any() or regular.sum() < max(2.0, 0.7 * filled.sum()):
            return None
        # an empty trench is invisible: its own match is noise, the lattice knows better
        centres = np.where(empty, lattice, centres)
        use_own = use_own & ~empty
        empty, signal = _filled_over_whole_set(img, angle, y0, y1, step, centres - offset,
                                               pitch, strip, empty, signal, noise)
        filled = ~empty
        # only the span of visible trenches is trusted; gaps inside it are empty trenches
        lo, hi = np.flatnonzero(filled)[[0, -1]]
        span = slice(lo, hi + 1)
        centres, ncc, empty, signal, residual, use_own = (
            centres[span], ncc[span], empty[span], signal[span], residual[span], use_own[span])
        walls = np.concatenate([centres - 0.5 * pitch, centres[-1:] + 0.5 * pitch])

    # from here on the rotated frame's columns
    centres, walls = centres - offset, walls - offset
    prof = prof[offset:prof.size - offset]
    ends = set_ends(img, angle, y0, y1, step, centres, walls, strip, pitch, ~empty, kind)
    if kind == "phase":
        # the set's periodic rows may miss the closed end, and a trench holding only
        # a mother there: checked over the lumens' whole length, then the ends again
        refilled = phase_filled_over(ends["excess"], empty)
        if (refilled != empty).any():
            empty = refilled
            ends = set_ends(img, angle, y0, y1, step, centres, walls, strip, pitch, ~empty, kind)
    periodicity = estimate_pitch(prof, max(2.0, 0.5 * pitch), min(1.5 * pitch, prof.size / 2.5),
                                 sparse=kind == "fluorescence")[1]
    return dict(centres=centres, ncc=ncc, empty=empty, signal=signal, disputed=disputed,
                residual=residual[use_own], lumen_conf=lumen_conf, lumen_width=lumen_width,
                template=c["template"], profile=prof, periodicity=periodicity, **ends)


def _filled_over_whole_set(img, angle, y0, y1, step, centres, pitch, strip, empty, signal, noise):
    """Fluorescence empty flags checked from end to end of the set (see
    :func:`.quality.fluorescence_filled_over`: a trench holding only a mother
    has its cells in rows the periodic run may leave out)."""
    if not empty.any():
        return empty, signal
    walls = np.concatenate([centres - 0.5 * pitch, centres[-1:] + 0.5 * pitch])
    ends = set_ends(img, angle, y0, y1, step, centres, walls, strip, pitch, ~empty, "fluorescence")
    rows = ends["rows"]
    over = (rows >= ends["y_top"]) & (rows <= ends["y_bottom"])
    return fluorescence_filled_over(ends["excess"][over], empty, signal, strip, noise, step)


def _assemble(found, shape, angle, pitch, kind, box_width, box_height, min_trenches,
              closed_end_margin, noise,
              extra_quality, row_profiles):
    H, W = shape
    if kind == "phase":
        # too few empty lumens to draw the closed end: the cells' contrast can put
        # it inside the mother; the contrast's rise from the PDMS beyond does not
        moved = [clear_closed_end(s) for s in found]
        extra_quality = {**extra_quality, "closed_end_cleared_px": float(max(moved, default=0.0))}
        for key in ("closed_end_readings_differ_px", "closed_end_halo_beyond_px",
                    "closed_end_pole_halo_px"):
            extra_quality[key] = float(max((s.get(key, 0.0) for s in found), default=0.0))
    if kind == "fluorescence":
        # from the boxes' closed ends (the trenches' own) to the set's reach (see
        # set_ends): the median of the cells' ends can lie 15 px inside either end
        # where most trenches hold a few small cells
        for s in found:
            if s["direction"] == 1:
                s["y_top"] = float(np.nanmedian(s["top_each"]))
                s["y_bottom"] = max(s["y_bottom"], s["reach"][1])
            else:
                s["y_top"] = min(s["y_top"], s["reach"][0])
                s["y_bottom"] = float(np.nanmedian(s["bottom_each"]))
    lengths = [s["y_bottom"] - s["y_top"] for s in found]
    if box_height is None:
        box_height = int(np.rint(min(lengths)))
    box_height = int(box_height)
    if box_width is None:
        lumen = np.median([s["lumen_width"] for s in found])
        box_width = int(2 * np.ceil((lumen + 8) / 2))
    box_width = int(box_width)
    if box_height < 2 or box_width < 2:
        raise TrenchDetectionError(f"trench box too small ({box_height} x {box_width} px)")
    # set 0 = the set whose closed end has the smaller row
    for s in found:
        s["y_closed"] = s["y_top"] + 0.5 if s["direction"] == 1 else s["y_bottom"] - 0.5
        s["y_open"] = s["y_bottom"] - 0.5 if s["direction"] == 1 else s["y_top"] + 0.5
    found = sorted(found, key=lambda s: s["y_closed"])

    rows, set_rows, kept, unclear, known = [], [], [], [], []
    for s in found:
        n = len(s["centres"])
        d = s["direction"]
        # per trench: the first lumen row, moved out by the margin
        closed = (s["top_each"] + 0.5 if d == 1 else s["bottom_each"] - 0.5) - d * closed_end_margin
        corners = np.stack([box_corners(x, y, d, box_height, box_width)
                            for x, y in zip(s["centres"], closed)]) if n else np.zeros((0, 4, 2))
        raw = rotated_to_raw(corners, angle, shape)
        like = like_other_empty_lumens(s["profile"], s["centres"], s["empty"], pitch) \
            | holds_cells_at_edge(s["ncc"], s["signal"], s["empty"], s["empty_flags_clear"]) \
            if kind == "phase" else None
        inside = boxes_on_frame(raw, shape, s["lumen_width"], box_width, s["ncc"], like)
        if inside.sum() < min_trenches:
            continue
        set_id = len(set_rows)
        order = np.argsort(s["centres"][inside])
        for j, i in enumerate(np.flatnonzero(inside)[order]):
            rows.append([set_id, j, float(s["centres"][i]), float(closed[i]),
                         int(s["direction"]), box_height, box_width, bool(s["empty"][i]),
                         float(s["ncc"][i]), *corners[i, :, 0], *corners[i, :, 1],
                         *raw[i, :, 0], *raw[i, :, 1]])
            unclear.append(bool(s["empty_unclear"][i]))  # set by _empty_flags_by_set
            known.append(like is not None and bool(like[i]))
        set_rows.append([set_id, float(s["y_closed"]), float(s["y_open"]), int(s["direction"])])
        kept.append(s)
    if not kept:
        n_max = max(len(s["centres"]) for s in found)
        raise TrenchDetectionError(
            f"too few trenches: fewer than min_trenches={min_trenches} boxes of "
            f"{box_height} x {box_width} px fit inside the image in any set (best set: {n_max} "
            "trench positions before the frame check)")
    trenches = pd.DataFrame(rows, columns=TRENCH_COLUMNS).astype(
        {"set": int, "trench": int, "direction": int, "height": int, "width": int,
         "empty": bool})
    trenches["empty_unclear"] = np.array(unclear, bool)
    trenches["lumen_like"] = np.array(known, bool)
    sets = pd.DataFrame(set_rows, columns=SET_COLUMNS).astype({"set": int, "direction": int})
    quality = layout_quality(kept, trenches, pitch, noise, kind, extra_quality)
    # Segmentation restricts cells to the lumen: hand it the width measured here.
    quality["lumen_width_px"] = float(np.median([s["lumen_width"] for s in kept]))
    profiles = dict(row_profiles)
    profiles["sets"] = [dict(profile=s["profile"], centres=s["centres"], template=s["template"],
                             y_top=s["y_top"], y_bottom=s["y_bottom"]) for s in kept]
    return TrenchLayout(float(angle), float(pitch), sets, trenches, quality, (H, W), kind,
                        profiles)
