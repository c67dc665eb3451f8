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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..geometry import (box_corners, corners_inside, frame_center, lumen_share, raw_to_rotated,
                        rotated_to_raw)
from ._common import TrenchDetectionError, as_image2d, band_profiles, nanmean
from ._sampling import rotated_band_image
from .centres import column_texture, locate_centres, refine_pitch
from .closed_end_drift import closed_end_positions
from .direction import assign_directions
from .end_line import closed_end_angle_error, phase_closed_ends
from .ends import set_ends
from .filled_ends import clear_closed_end
from .lumen import lumen_axis
from .orientation import detect_oriented
from .tilt import detect_any_tilt
from .pitch import estimate_pitch
from .quality import (empty_flags, empty_flags_clear, fluorescence_filled_over, image_noise,
                      layout_quality, open_end_only, phase_filled_over, set_angle_spread_factor)
from .selfcheck import check_layout
from .stack_gap import occupancy_dip
from .rotation import angle_from_bands, combine_set_angles, set_angles
from .trench_sets import find_sets, row_coherence, row_periodicity

__all__ = ["TrenchLayout", "detect_trenches"]

#: Widest angle search (degrees) a found angle near the edge of a narrower one widens to;
#: beyond 45 degrees the trenches run left-right (see :mod:`.orientation`).
MAX_ANGLE_RANGE_DEG = 45.0

_CORNERS = [f"rot_{a}{i}" for a in "yx" for i in range(4)] + \
           [f"raw_{a}{i}" for a in "yx" for i in range(4)]
TRENCH_COLUMNS = ["set", "trench", "x_center", "y_closed", "direction", "height", "width",
                  "empty", "score", *_CORNERS]
#: Columns a detected layout adds (absent from older layouts and the generator's truth).
OPTIONAL_TRENCH_COLUMNS = ["empty_unclear"]
SET_COLUMNS = ["set", "y_closed", "y_open", "direction"]

#: A box that leaves the frame's side (its lumen inside) is kept when its site matches the
#: lumens' template at least this well (the edge sites of independent seeds 1058-1068 that
#: were trenches: 0.98-1.0).
EDGE_MATCH = 0.9


def boxes_on_frame(raw_corners, shape, lumen_width, box_width, score) -> np.ndarray:
    """Per box: whether it lies on the image, or its lumen does and its site matches the
    lumens' template at :data:`EDGE_MATCH` or more (``score``).

    A trench at the frame's side edge whose lumen lies in the frame (with a pixel of
    wall either side, :func:`~batchlib.trench.geometry.lumen_share`) is kept, the
    crop's samples beyond the edge filled (independent simulator 1058: a filled trench
    9 px from the edge, whose 42 px box left the frame, was dropped), where its site
    matches closely: at the edge a site sees part of its neighbourhood only (tuning
    dark_lumen 7 at 512²: plain PDMS matched at 0.65).
    """
    lumen_in = corners_inside(raw_corners, shape, keep=lumen_share(lumen_width, box_width))
    return corners_inside(raw_corners, shape) | (
        lumen_in & (np.asarray(score, float) >= EDGE_MATCH))


@dataclass
class TrenchLayout:
    """The trench array found on one image.

    Attributes
    ----------
    angle_deg : float
        Trench angle (see :mod:`batchlib.trench.geometry`).
    pitch : float
        Trench spacing in pixels.
    sets : DataFrame
        ``set, y_closed, y_open, direction`` (rotated frame); set 0 has the
        closed end with the smaller row.
    trenches : DataFrame
        One row per box, ordered by ``(set, trench)``: ``set, trench,
        x_center, y_closed, direction, height, width, empty, score`` and the
        box corners in the rotated (``rot_y0..3, rot_x0..3``) and raw
        (``raw_y0..3, raw_x0..3``) frames, order closed-left, closed-right,
        open-right, open-left. A detected layout also has ``empty_unclear``: the
        lumens' texture called the trench empty, but its set's flags were unclear
        and not used (a movie's frames may confirm them).
    quality : dict of float
        ``pitch_regularity, contrast, empty_fraction, confidence,
        n_trenches`` and diagnostics (see ``docs/trench_detection.md``).
    image_shape : tuple of int
    kind : str
        ``"phase"`` or ``"fluorescence"``.
    profiles : dict
        Diagnostic profiles for the QC figure (not needed to use the layout).
    """

    angle_deg: float
    pitch: float
    sets: pd.DataFrame
    trenches: pd.DataFrame
    quality: dict
    image_shape: tuple
    kind: str = "phase"
    profiles: dict = field(default_factory=dict, repr=False)
    warnings: list = field(default_factory=list)

    @property
    def n_trenches(self) -> int:
        return len(self.trenches)

    def moved_along(self, shifts) -> "TrenchLayout":
        """A copy with the boxes of set ``k`` moved by ``shifts[k]`` rotated rows (along
        the trenches; sets missing from ``shifts`` stay), raw corners recomputed."""
        trenches, sets = self.trenches.copy(), self.sets.copy()
        by_box = trenches["set"].map(lambda k: float(shifts.get(int(k), 0.0))).to_numpy(float)
        trenches["y_closed"] += by_box
        rot = np.stack([np.stack([trenches[f"rot_y{i}"] + by_box, trenches[f"rot_x{i}"]], -1)
                        for i in range(4)], axis=1)
        raw = rotated_to_raw(rot, self.angle_deg, self.image_shape)
        for i in range(4):
            trenches[f"rot_y{i}"] = rot[:, i, 0]
            trenches[f"raw_y{i}"], trenches[f"raw_x{i}"] = raw[:, i, 0], raw[:, i, 1]
        by_set = sets["set"].map(lambda k: float(shifts.get(int(k), 0.0))).to_numpy(float)
        sets["y_closed"] += by_set
        sets["y_open"] += by_set
        return TrenchLayout(self.angle_deg, self.pitch, sets, trenches, dict(self.quality),
                            self.image_shape, self.kind, self.profiles, list(self.warnings))

    def boxes_inside(self) -> np.ndarray:
        """Per box: :func:`boxes_on_frame` (on the image, or a trench at its side edge
        whose lumen is and whose site matches closely)."""
        tr = self.trenches
        raw = np.stack([tr[[f"raw_y{i}" for i in range(4)]].to_numpy(float),
                        tr[[f"raw_x{i}" for i in range(4)]].to_numpy(float)], axis=-1)
        width = float(tr["width"].max()) if len(tr) else 0.0
        score = tr["score"].to_numpy(float) if "score" in tr else np.full(len(tr), np.nan)
        return boxes_on_frame(raw, self.image_shape, self.quality.get("lumen_width_px"),
                              width, score)

    def to_dict(self) -> dict:
        """JSON-friendly form (without the diagnostic profiles)."""
        return {"angle_deg": float(self.angle_deg), "pitch": float(self.pitch),
                "sets": self.sets.to_dict(orient="list"),
                "trenches": self.trenches.to_dict(orient="list"),
                "quality": {k: float(v) for k, v in self.quality.items()},
                "image_shape": [int(s) for s in self.image_shape], "kind": self.kind,
                "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrenchLayout":
        optional = [c for c in OPTIONAL_TRENCH_COLUMNS if c in d["trenches"]]
        trenches = pd.DataFrame(d["trenches"], columns=TRENCH_COLUMNS + optional)
        trenches = trenches.astype({"set": int, "trench": int, "direction": int, "height": int,
                                    "width": int, "empty": bool, **{c: bool for c in optional}})
        return cls(float(d["angle_deg"]), float(d["pitch"]),
                   pd.DataFrame(d["sets"], columns=SET_COLUMNS), trenches,
                   dict(d["quality"]), tuple(d["image_shape"]), d.get("kind", "phase"),
                   warnings=list(d.get("warnings", [])))


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
        :func:`_sets_at`).

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
        angle, per_set, spread, (rot, power, ratio, runs) = _per_set_angle(
            bands8, y8, bands32, y32, shape, angle, pitch, kind, n_sets, angle_range_deg, step,
            _rows)
    else:
        angle = whole_frame_angle = float(angle_deg)
        gain, per_set, spread = float("nan"), np.zeros(0), 0.0
        rot, power, ratio, runs = _sets_at(bands8, y8, shape, angle, pitch, kind, n_sets,
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
        # a multiple of the pitch taken for it (see _at_fractions), or a harmonic
        retried = _at_fractions(again, pitch, min_pitch, double)
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
        retried = _most_confident(again, changes, accept=_phase_retry_acceptable)
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
        retried = _at_fractions(again, pitch, min_pitch)
        if retried is not None:
            return retried
    if not found:
        raise TrenchDetectionError(
            "no trench set could be resolved into trenches: rows with trench-like structure "
            "were found, but no regularly spaced trenches in them (debris or too few trenches?)")

    if kind == "fluorescence" and not pitch_given:
        finer = _at_finer_lattice(found, pitch, min_pitch, again)
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
        extended = _full_extent_angle(bands8, y8, bands32, y32, shape, angle, pitch, found,
                                      angle_range_deg, step, whole_frame_angle)
        if abs(extended - angle) > MIN_FULL_EXTENT_CORRECTION_DEG:
            return _with_search_facts(again(angle_deg=extended), gain, whole_frame_angle,
                                      spread, per_set,
                                      full_extent_correction_deg=extended - angle)
    if angle_deg is None:
        # the lean of the closed-end lines: the mothers' tips (fluorescence), the lumens'
        # ends (phase); the layout is found again at the corrected angle
        measure, sigmas, least = _END_LINE[kind]
        error, stderr = measure(img, layout)
        if abs(error) > max(sigmas * stderr, least):
            return _with_search_facts(again(angle_deg=angle - error), gain, whole_frame_angle,
                                      spread, per_set, end_line_correction_deg=-error,
                                      end_line_stderr_deg=stderr)
        layout.quality.update(end_line_correction_deg=0.0,
                              end_line_stderr_deg=float(np.nan_to_num(stderr, nan=-1.0)))
    if self_check:
        def with_lumen(other):
            return again(lumen=other, self_check=False)

        layout = _apply_self_check(img, layout, noise, with_lumen if kind == "phase"
                                   and lumen == "auto" else None)
        if kind == "fluorescence":
            _doubt_gaps_in_stacks(img, layout, noise)
    if kind == "phase" and self_check and not pitch_given \
            and layout.quality["confidence"] < LOW_PHASE_CONFIDENCE:
        # (not in the self-check's own retries, which compare polarities at one pitch)
        edge_pitch = _edge_pitch(bands32, min_pitch, widest)
        layout = _at_multiple(again, layout, widest, edge_pitch)
        layout = _with_more_trenches(again, layout, edge_pitch)
    elif kind == "phase" and self_check and not pitch_given and n_sets is None \
            and _rows == "periodic":
        said = _edges_disagree(rot, y8, layout)
        if said == "another set":
            layout = _with_more_trenches(again, layout)
        elif said == "longer":
            layout = _with_longer_sets(again, layout)
    _warn_low_confidence(layout)
    _warn_cleared_end(layout)
    _warn_readings_differ(layout)
    _warn_halo_beyond(layout)
    return layout


def _at_multiple(again, layout, max_pitch, edge_pitch=None):
    """An unsure phase layout, or the most confident one found again at two to four times
    its pitch, or at ``edge_pitch`` (:func:`_edge_pitch`), when that is more confident and
    its boxes have plain walls between them (not :func:`_half_way_alike`).

    A harmonic of the pitch can be periodic enough to be taken for it, the boxes then on
    walls as well as lumens (independent simulator 1017: 65 boxes at 15.2 px for 33
    trenches at 30.4, confidence 0.28; 1019: 130 at 13.0 for 37 at 51.9). Or a period
    that is no harmonic (independent 1184: 299 boxes at 9.83 px for 60 trenches at 33.7,
    confidence 0.00), where the edges' magnitude repeats at the pitch.

    Where the edges repeat at the layout's own pitch, its boxes' neighbours are trenches
    and no multiple is tried: a chip with faint walls, its lumens filled or empty at
    random (independent 1172: 27 trenches at 38.2 px, confidence 0.09, boxed at three
    times the pitch, 0.28, recall 0.00; the edges at 38.25 px).
    """
    if edge_pitch is not None and abs(edge_pitch / layout.pitch - 1) < SAME_PITCH:
        return layout
    multiples = [m * layout.pitch for m in (2, 3, 4) if m * layout.pitch <= max_pitch]
    changes = [dict(pitch=p) for p in multiples]
    if edge_pitch is not None and not any(abs(edge_pitch / p - 1) < SAME_PITCH
                                          for p in multiples):
        changes += [dict(pitch=edge_pitch), dict(pitch=edge_pitch, _rows="edges")]
    better = _most_confident(again, changes, accept=lambda changed, found: not _half_way_alike(found)
                             and found.quality["confidence"] > layout.quality["confidence"])
    return layout if better is None else better


def _with_more_trenches(again, layout, edge_pitch=None):
    """An unsure phase layout, or the one found from its rows' edges (at its pitch, or
    at the edges' own shorter one) when that holds every box of it and more, and the
    cells' texture between its boxes is no larger (its self-check at least as good).

    Filled lumens dark between bright rims and empty ones bright mix, so their plain
    rows are periodic at neither the pitch nor a clean harmonic, while their edges
    repeat at the pitch whatever the lumens hold. Independent simulator 1318: 12 boxes
    at twice the pitch (every other trench, lumen polarity flipped, confidence 0.29;
    the cells of the trenches between them made the self-check's ratio 0.9); at the
    edges' pitch, 28 of 28 (ratio 4.8, confidence 0.17: the plain profile's
    periodicity stays low, so it is still warned). 1310: one of two facing sets
    (12 of 24 trenches); from the edges both. Not the most confident layout: the
    periodicity of the plain rows is what made the first one unsure.
    """
    changes = [dict(pitch=layout.pitch, _rows="edges")]
    if edge_pitch is not None and edge_pitch < (1.0 - SAME_PITCH) * layout.pitch:
        changes.append(dict(pitch=edge_pitch, _rows="edges"))
    best = layout
    ratio = layout.quality.get("self_check_log_ratio", np.nan)
    for changed in changes:
        try:
            found = again(**changed)
        except TrenchDetectionError:
            continue
        if len(found.trenches) > len(best.trenches) and _holds(found, layout) \
                and found.quality.get("self_check_log_ratio", np.nan) >= ratio:
            best = found
    return best


#: rows by which the rows' edges may run past a set's closed end before the set is taken
#: for cut short (right layouts of independent simulator 1276-1298: -10 to +2.8 px)
EDGES_BEYOND_END_PX = 24.0
#: a set's closed end found again within this many rows further in is the same end
SAME_END_PX = 3.0


def _edges_disagree(rot, y8, layout, max_overlap=0.5):
    """What the rows' edges (as :func:`_sets_at` with ``rows="edges"``) of ``rot``, the
    straightened band image at the layout's angle, say that the layout missed:
    ``"another set"`` where a run of their rows lies less than ``max_overlap`` within
    the rows of any set of the layout, ``"longer"`` where a run overlapping a set runs
    on past its closed end by more than :data:`EDGES_BEYOND_END_PX`, else ``None``.

    Filled lumens dark between bright rims and empty ones bright, mixed at random
    along a set, spread its plain rows' power half-way between the harmonics. A set
    so mixed was not found beside a set with more filled lumens (independent
    simulator 1345: 21 of 43 trenches at confidence 0.49, unwarned; the missed set's
    plain rows periodic at 1.0-1.8, its edges at 8-12). Or where the trenches are
    only partly filled the rows near the closed ends are so mixed, and the sets were
    cut short there (1375: the boxes started 41 and 106 px inside the trenches, into
    the mothers, at confidence 0.43, unwarned; the edges run to the ends). Cheap: a
    few milliseconds, and the whole detection again only where they disagree.
    """
    power, ratio = row_periodicity(np.abs(np.diff(rot, axis=1)), layout.pitch)
    runs = find_sets(power, ratio, y8, layout.pitch, weak_ratio=PHASE_WEAK_RATIO)
    sets = list(layout.sets.itertuples())
    longer = False
    for y0, y1, _ in runs:
        covered = [max(0.0, min(y1, max(s.y_closed, s.y_open)) - max(y0, min(s.y_closed, s.y_open)))
                   for s in sets]
        if max(covered, default=0.0) < max_overlap * (y1 - y0):
            return "another set"
        for s, c in zip(sets, covered):
            beyond = (s.y_closed - y0) if s.direction == 1 else (y1 - s.y_closed)
            longer |= c > 0 and beyond > EDGES_BEYOND_END_PX
    return "longer" if longer else None


def _with_longer_sets(again, layout):
    """A phase layout whose sets the rows' edges say were cut short at their closed ends
    (:func:`_edges_disagree`), or the one found from the edges, when that holds every
    box of it, has no fewer trenches, its self-check passes and its sets' closed ends lie
    no further in and one of them at least half that distance further out (independent
    simulator 1375: 41 and 106 px further out, every trench found: 19 -> 20 of 20,
    confidence 0.43 -> 0.30, warned)."""
    try:
        found = again(pitch=layout.pitch, _rows="edges")
    except TrenchDetectionError:
        return layout
    if len(found.trenches) < len(layout.trenches) or not _holds(found, layout) \
            or found.quality.get("self_check") != 1.0:
        return layout
    # how far out each of its sets' closed ends moved (rows, outwards positive)
    moved = []
    for s in found.sets.itertuples():
        mine = [t.y_closed for t in layout.sets.itertuples() if t.direction == s.direction]
        if not mine:
            return layout
        closest = min(mine, key=lambda y: abs(y - s.y_closed))
        moved.append((closest - s.y_closed) * s.direction)
    if min(moved) < -SAME_END_PX or max(moved) < 0.5 * EDGES_BEYOND_END_PX:
        return layout
    return found


def _holds(found, layout, tolerance=0.15):
    """Whether every box of ``layout`` has a box of ``found`` pointing the same way,
    its middle within ``tolerance`` of ``found``'s pitch across the trenches and half
    the box's height along them (compared in ``found``'s rotated frame)."""
    def middles(lay):
        tr = lay.trenches
        raw = np.stack([tr[[f"raw_y{i}" for i in range(4)]].to_numpy(float).mean(axis=1),
                        tr[[f"raw_x{i}" for i in range(4)]].to_numpy(float).mean(axis=1)], -1)
        return raw_to_rotated(raw, found.angle_deg, found.image_shape), tr["direction"].to_numpy()

    (ours, our_dir), (theirs, their_dir) = middles(layout), middles(found)
    if not len(ours) or not len(theirs):
        return False
    along = np.abs(ours[:, None, 0] - theirs[None, :, 0])
    across = np.abs(ours[:, None, 1] - theirs[None, :, 1])
    height = found.trenches["height"].to_numpy(float)[None, :]
    same = (across <= tolerance * found.pitch) & (along <= 0.5 * height) \
        & (our_dir[:, None] == their_dir[None, :])
    return bool(same.any(axis=1).all())


def _with_search_facts(refined, gain, whole_frame_angle, spread, per_set, **correction):
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


def _most_confident(again, changes, accept=None):
    """The most confident layout found again with each of ``changes`` (keyword dicts) and
    accepted by ``accept(changed, layout)``; ``None`` when none is."""
    tried = []
    for changed in changes:
        try:
            layout = again(**changed)
        except TrenchDetectionError:
            continue
        if accept is None or accept(changed, layout):
            tried.append(layout)
    return max(tried, key=lambda lay: lay.quality["confidence"]) if tried else None


def _first_found(again, changes):
    """The layout found again with the first of ``changes`` that finds one; the last
    one's error when none does."""
    for i, changed in enumerate(changes):
        try:
            return again(**changed)
        except TrenchDetectionError:
            if i == len(changes) - 1:
                raise


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
    for f in found:
        f["empty_unclear"] = np.zeros(len(f["empty"]), bool)
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


def _phase_retry_acceptable(changed, layout) -> bool:
    """Phase, no periodic run at the estimated pitch (see ``detect_trenches``): a layout
    from weak rows alone must not be very unsure too (held-out halo_walls 10217 pos 0:
    0.04, every box 29 px inside its trench; the right one of pos 1: 0.15), and twice the
    pitch is wrong when the stripes half-way between its boxes look like them, as is a
    layout from the rows' edges whose boxes have lumens between them."""
    if changed.get("_rows") == "weak":
        return layout.quality["confidence"] >= MIN_WEAK_ROWS_CONFIDENCE
    return not _half_way_alike(layout)


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


def _full_extent_angle(bands8, y8, bands32, y32, shape, angle, pitch, found, angle_range_deg,
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


#: a layout found on weakly periodic rows alone is kept only at this confidence or more
MIN_WEAK_ROWS_CONFIDENCE = 0.1
#: relative difference under which two pitches are one (the edges' period against the
#: retries already listed, the layout's pitch and its multiples: see ``_at_multiple``)
SAME_PITCH = 0.02


def _half_way_alike(layout, min_scatter=0.5) -> bool:
    """Whether, in every set, the cross profile half-way between the boxes holds as much
    structure as at the boxes: trenches between the boxes, a pitch too long.

    Structure is the profile's scatter within a quarter pitch of each site (median
    over the sites); alike is at least ``min_scatter`` of that at the boxes. At twice
    the true pitch the sites half-way are lumens as well: 0.73-1.37 (held-out halo_walls
    10217, 10065, 10086; the independent simulator's seed 11, whose empty lumens
    half-way showed the filled ones' profile inverted: 5 of 12 trenches had been boxed
    at twice the pitch, confidence 0.75 without a warning). At the true pitch they are
    the walls: 0.08-0.38. A correlation of the folded templates (0.5 or more), used
    before, called narrow lumens at the true pitch alike (independent 1017: 0.65, the
    scatter 0.38): a folded template spans the pitch, lumen and wall alike.
    """
    for s in layout.profiles.get("sets", []):
        prof = np.asarray(s["profile"], float)
        x = np.asarray(s["centres"], float)
        quarter = int(0.25 * layout.pitch)
        at_boxes = _site_scatter(prof, x, quarter)
        if not (at_boxes > 0 and _site_scatter(prof, x + 0.5 * layout.pitch, quarter)
                >= min_scatter * at_boxes):
            return False
    return bool(layout.profiles.get("sets"))


def _site_scatter(prof, sites, radius) -> float:
    """Median over ``sites`` of the standard deviation of ``prof`` within ``radius`` of
    each (sites whose window leaves the profile or holds NaN are skipped; NaN if none)."""
    spread = []
    for x in sites:
        i = int(round(x))
        if i - radius >= 0 and i + radius < len(prof):
            w = prof[i - radius:i + radius + 1]
            if np.isfinite(w).all():
                spread.append(float(np.std(w)))
    return float(np.median(spread)) if spread else float("nan")


def _at_fractions(again, pitch, min_pitch, double=False):
    """The most confident layout found at a half, a third or a quarter of ``pitch``, or
    with ``double`` at twice it (a harmonic taken for the pitch); ``None`` when none is
    found. Fluorescence, where nothing was found at ``pitch``.

    Filled trenches at random among empty ones can make a multiple of the pitch the
    strongest period. At it the filled trenches lie between the lattice's sites, so
    no run of rows is periodic (held-out geometry 10156 at 768²: 6 of 10 trenches
    filled, 138 px for 69) or no set passes (held-out nominal 10207: 12 of 20
    filled, 146.7 px for 48.8, the autocorrelation at the pitch itself below zero),
    and the position failed.
    """
    factors = ((0.5,) if double else ()) + (2, 3, 4)
    return _most_confident(again, [dict(pitch=pitch / m) for m in factors
                                   if pitch / m >= min_pitch])


#: smallest closed-end line lean (degrees) worth finding the layout again for
MIN_END_LINE_CORRECTION_DEG = 0.01
#: the mothers' tips may scatter this much (robust sigma, px) about a set's closed-end
#: line: they sit against the end only about as well as a pixel (independent simulator
#: 1372: 1.10 px over 13 tips, a lean of 0.229 +- 0.058 deg refused at 1.0, the angle
#: left 0.215 deg off, unwarned); an open end's tips scatter 8-22 px
MOTHER_TIP_SCATTER_PX = 1.5


def _closed_end_angle_error(img, layout):
    """``(error, stderr)`` in degrees of a fluorescence layout's angle, from the lean of
    its sets' closed-end lines (:func:`.end_line.closed_end_angle_error`); NaN when no
    set's mother tips lie on a line."""
    tr = layout.trenches
    tr = tr[~tr["empty"].to_numpy(bool)]  # an empty trench has no mother tip
    if tr.empty:
        return float("nan"), float("nan")
    tips = closed_end_positions(img, tr, layout.angle_deg, outermost=True)
    error, stderr, _ = closed_end_angle_error(tr["x_center"], tips, tr["set"],
                                              max_scatter_px=MOTHER_TIP_SCATTER_PX)
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
_END_LINE = {"fluorescence": (_closed_end_angle_error, 2.0, MIN_END_LINE_CORRECTION_DEG),
             "phase": (_phase_end_line_error, PHASE_END_LINE_SIGMAS,
                       MIN_PHASE_END_LINE_CORRECTION_DEG)}


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


def _per_set_angle(bands8, y8, bands32, y32, shape, angle, pitch, kind, n_sets, angle_range_deg, step,
                   rows="periodic"):
    """``(angle, per-set angles, their spread, sets)`` refined from each set's own lattice.

    The whole-frame search mixes the sets' lattices (biased by degrees when
    the sets are offset sideways): each set's own angle, twice, the second
    time with the sets placed by the first answer. ``sets`` is what
    :func:`_sets_at` returns at the final angle.
    """
    W = shape[1]
    rot, power, ratio, runs = _sets_at(bands8, y8, shape, angle, pitch, kind, n_sets, rows)
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
            rot, power, ratio, runs = _sets_at(bands8, y8, shape, angle, pitch, kind, n_sets,
                                               rows)
        elif moved > 1e-4:
            rot = rotated_band_image(bands8, y8, shape, angle, y8)
    return angle, per_set, spread, (rot, power, ratio, runs)


def _lumens_are_bright(layout) -> bool:
    """Whether the boxes' axes are brighter than the stripes between them (all sets)."""
    on, off = [], []
    for s in layout.profiles["sets"]:
        prof = np.asarray(s["profile"], float)
        x = np.asarray(s["centres"], float)
        for sites, out in ((x, on), (x + 0.5 * layout.pitch, off)):
            i = np.rint(sites).astype(int)
            out.extend(prof[i[(i >= 0) & (i < prof.size)]])
    return bool(nanmean(np.asarray(on)) > nanmean(np.asarray(off)))


def _other_polarity(img, layout, noise, with_lumen):
    """``(layout, check)`` detected again at the other lumen polarity, marked as
    flipped; ``(None, None)`` when nothing is found there."""
    try:
        other = with_lumen("dark" if _lumens_are_bright(layout) else "bright")
    except TrenchDetectionError:
        return None, None
    other.quality["lumen_polarity_flipped"] = 1.0
    return other, check_layout(img, other, noise)


def _apply_self_check(img, layout, noise, with_lumen=None):
    """The layout after :func:`.selfcheck.check_layout`, with its verdict recorded.

    Boxes on bright walls whose plain texture (illumination speckle scales with the
    brightness) outdoes the faint cells of dark lumens are found with the wrong
    polarity, and the check then says the stripes between them hold more texture
    relative to the brightness (tuning mixed 202: every box on a wall). With
    ``with_lumen`` (a function detecting again at a forced polarity) the other
    polarity is tried, and taken when the texture relative to the brightness is
    clearly on its boxes and the check does not refuse it. The layout stays
    unverified (confidence halved, a warning): the plain texture still disagrees.
    A layout the check refuses outright is detected again at the other polarity
    too, and that one taken (with a warning) when its own check passes.
    """
    check = check_layout(img, layout, noise)
    flipped_reason = ""
    if check.verdict == "fail" and not check.brightness_disagrees and with_lumen is not None:
        # Both textures put the cells between the boxes: the polarity was misread
        # (held-out mixed 10155: wide cells in dark lumens, both positions refused,
        # while the other polarity found all 34 trenches). The other one is taken
        # when its own check passes outright.
        other, other_check = _other_polarity(img, layout, noise, with_lumen)
        if other is not None and other_check.verdict == "pass":
            other.warnings.append(
                "lumen polarity: the first reading put the boxes on the walls (the cells' "
                f"texture {np.exp(-check.log_ratio):.1f}x more between them); the other "
                "polarity's boxes hold the cells and are used; check the QC picture")
            layout, check = other, other_check
    if check.brightness_disagrees and with_lumen is not None:
        other, other_check = _other_polarity(img, layout, noise, with_lumen)
        if other is not None and other_check.verdict != "fail" and other_check.brightness_supports:
            flipped_reason = (
                "the lumen polarity was set by the texture relative to the brightness "
                f"({np.exp(other_check.relative_log_ratio):.1f}x on the boxes), against the "
                f"plain texture ({np.exp(check.log_ratio):.1f}x on the stripes between "
                "them: bright walls under uneven illumination); check the QC picture")
            layout, check = other, other_check
    q = layout.quality
    q["self_check"] = {"pass": 1.0, "undetermined": 0.5, "fail": 0.0}[check.verdict]
    q["self_check_log_ratio"] = check.log_ratio
    q["self_check_relative_log_ratio"] = float(np.nan_to_num(check.relative_log_ratio))
    q.setdefault("lumen_polarity_flipped", 0.0)
    if check.verdict == "fail":
        raise TrenchDetectionError(f"self-check failed: {check.reason}")
    if check.verdict == "undetermined" or flipped_reason:
        q["confidence"] *= 0.5
        layout.warnings.append(f"self-check undetermined: {flipped_reason or check.reason}")
    return layout


#: a set's share of filled boxes holding cells falling, along the boxes, to under this
#: fraction of what it is on both sides (:func:`.stack_gap.occupancy_dip`)
STACK_GAP_DIP = 0.2


def _doubt_gaps_in_stacks(img, layout, noise):
    """A warning, and the confidence a quarter, when a fluorescence set's boxes cross a
    band where none holds cells, with cells beyond it (:mod:`.stack_gap`): right layouts
    of independent simulator 1276-1311 dipped to 0.805 at the lowest (48 sets), a
    generator frame to 0.9; the boxes of two facing sets bridged into one (1327 before
    its fix) to 0.01."""
    dips = occupancy_dip(img, layout, noise)
    deepest = min(dips, key=lambda d: d[1], default=(0, 1.0, 0))
    layout.quality["stack_gap_dip"] = float(deepest[1])
    if deepest[1] >= STACK_GAP_DIP:
        return
    layout.quality["confidence"] *= 0.25
    k, dip, row = deepest
    layout.warnings.append(
        f"set {k}: {row} rows from the closed end the boxes cross a band where none of "
        "them holds cells, with cells beyond it: cells stack from the closed end, so the "
        "boxes may run through the feeding channel into the facing set (two sets taken "
        "for one); check the QC picture")


#: phase confidence under which a layout is warned: every right phase layout of the
#: detection benchmark runs so far scored 0.44 or more (446 positions, tuning and
#: held-out seeds); 3 of 18 trenches at twice the pitch scored 0.20 without a word
#: (held-out halo_walls 10086). Fluorescence has no such line: right layouts go down
#: to 0.02 (low SNR), wrong ones up to 0.17.
LOW_PHASE_CONFIDENCE = 0.4


def _warn_low_confidence(layout):
    """A warning naming the weakest evidence when a phase layout's confidence is low."""
    q = layout.quality
    if layout.kind != "phase" or q["confidence"] >= LOW_PHASE_CONFIDENCE or layout.warnings:
        return
    evidence = {"pitch regularity": q["pitch_regularity"], "template match": q["match_score"],
                "periodicity": q["periodicity"], "lumen polarity": q["lumen_confidence"],
                "direction": q["direction_confidence"]}
    weakest = sorted(evidence.items(), key=lambda kv: kv[1])[:2]
    layout.warnings.append(
        f"low confidence {q['confidence']:.2f} (right phase layouts score "
        f"{LOW_PHASE_CONFIDENCE} or more): weakest evidence "
        + ", ".join(f"{k} {v:.2f}" for k, v in weakest)
        + f"; {int(q['n_trenches'])} trenches at a pitch of {layout.pitch:.1f} px: "
          "check the QC picture")


#: A closed-end line moved out by the contrast's rise (:func:`.filled_ends.clear_closed_end`)
#: by this much or more is warned about.
CLEARED_WARN_PX = 2.0


def _warn_cleared_end(layout):
    """A warning when a set's closed-end line was moved out to where the filled lumens'
    contrast rises from the PDMS (``closed_end_cleared_px``, too few empty lumens to draw
    it). Independent simulator, phase, seeds 1000-1171 (docs/trench_detection.md,
    closed ends of filled sets): moves of 2 px or more on 17 sets, right (within 2 px) on
    11, where the line had been 2.5-33 px inside the mothers, and 2.2-7.2 px too far
    out on 6 (1057, 1072, 1091, 1156, 1158, 1168: a halo beyond the closed end, whose
    contrast looks like the trench's own edge), none cutting a mother. Never on the
    generator's tuning seeds 100-107."""
    _warn_phase_from(layout, "closed_end_cleared_px", CLEARED_WARN_PX, lambda moved: (
        f"a set's closed-end line was moved out {moved:.1f} px, to where the filled "
        "lumens' contrast rises from the PDMS (too few empty trenches to draw it): "
        "without the move the boxes would start inside the mothers, but where a halo "
        f"lies beyond the closed end the boxes now start up to {moved:.1f} px out in the "
        "PDMS (the trench's own edge and a halo look alike); check the QC picture"))


def _warn_readings_differ(layout):
    """A warning when a set's filled lumens were bright and dark by turns, so that where
    its closed end lies depended on how their contrast was read
    (``closed_end_readings_differ_px``, :func:`.filled_ends.clear_closed_end`):
    independent simulator 1089, every box 3.5 px beyond its closed end at confidence
    0.71 (6.8 px, warned, with the lumens' mean contrast)."""
    _warn_phase_from(layout, "closed_end_readings_differ_px", CLEARED_WARN_PX, lambda px: (
        "a set's lumens are bright and dark by turns (empty lumens taken for filled "
        f"ones?): where its closed end lies depends on how their contrast is read, "
        f"{px:.1f} px apart; check the QC picture"))


def _warn_halo_beyond(layout):
    """A warning when a set's filled lumens' contrast, read less smoothed, rises
    :data:`CLEARED_WARN_PX` or more beyond its closed-end line
    (``closed_end_halo_beyond_px``, :func:`.filled_ends.clear_closed_end`): a bright
    halo there may be the mothers' poles. Independent simulator, phase, 1000-1231:
    1225 (boxes into 35 % of the mothers at confidence 0.60, unwarned before) and 1206
    (right); the other positions it fires on were warned already."""
    _warn_phase_from(layout, "closed_end_halo_beyond_px", CLEARED_WARN_PX, lambda px: (
        f"a set's closed end is unsure: its filled lumens' contrast rises {px:.1f} px "
        "beyond the line, a bright halo that may be the mothers' poles (the boxes then "
        "start inside the mothers) or a halo beyond the trenches' ends; check the QC "
        "picture"))


def _warn_phase_from(layout, key, threshold, message):
    """Append ``message(value)`` to a phase layout's warnings (once) where its
    ``quality[key]`` is ``threshold`` or more; the layout."""
    value = layout.quality.get(key, 0.0)
    if layout.kind == "phase" and value >= threshold:
        text = message(value)
        if text not in layout.warnings:
            layout.warnings.append(text)
    return layout


#: Boxes moved out this far (px, the median of a set's filled trenches) beyond the set's
#: closed-end line to clear their outermost cells are warned about (``warn_tip_push``).
TIP_PUSH_WARN_PX = 4.0


def warn_tip_push(layout):
    """A warning when a phase set's boxes had to be moved far out beyond its closed-end line
    to clear what looked like their cells' tips (``closed_end_tip_push_px``).

    Where the PDMS and the lumen look alike only the cells show where a lumen ends, and
    against the walls' level (:func:`.ends._phase_cell_tips`) a mother is followed out while
    its lumen stays darker than the walls. On independent simulator 1089 the closed ends'
    dark rim was taken for the mothers' tips and followed out while the PDMS column stayed a
    little darker: every box started 17-22 px out in the PDMS, at confidence 0.71, without a
    word (the rim is no cell now: ``ends.CELL_CORE_FRACTION``). On the generator's tuning
    seeds 100-103 and held-out 10380-10381 (every family, both positions) the push was 1.5
    px at most; on independent 1000-1095 under 2.3 px but on 1084 (5.5 px: there the line
    lay inside the mothers and the push was needed; already warned, confidence 0.25).
    Called last (the detection's decisions never see it)."""
    return _warn_phase_from(layout, "closed_end_tip_push_px", TIP_PUSH_WARN_PX, lambda push: (
        f"the boxes were moved {push:.1f} px out beyond the trenches' closed-end line to "
        "clear their outermost cells: the lumens' end is unclear (the PDMS may look like "
        "the lumen), and where the boxes start is uncertain by about that much (in the "
        "PDMS, the mothers then look too long); check the QC picture"))


def _at_finer_lattice(found, pitch, min_pitch, again):
    """A fluorescence layout found again at a fraction of ``pitch`` when cells stand
    between the boxes; None when none do.

    Sparse filled trenches (many empty ones) make a multiple of the chip's pitch the
    strongest period. Cells half-way between the boxes say it is half of it, or a
    quarter: at half of it the filled trenches may still be too few on its sites to
    resolve (held-out jpeg 10277: 15 of 23 filled, 170.7 px for 42.6; nothing resolved
    at 85.3, and the position failed); the error of the last try is raised when none
    resolves. Filled trenches every fourth (or third) site leave no cell half-way but
    some a quarter or three quarters (a third, two thirds) of the way (held-out
    curved_cells 10211 at 768²: 216.4 px taken for 53.9, 3 of 8 filled trenches boxed
    at confidence 0.70, nothing warned): a quarter (a third) is tried, and None
    returned when nothing resolves there.
    """
    if pitch / 2 >= min_pitch and _cells_between(found, pitch):
        return _first_found(again, [dict(pitch=pitch / m) for m in (2, 4) if pitch / m >= min_pitch])
    for m in (4, 3):
        if pitch / m < min_pitch:
            continue
        if any(_cells_between(found, pitch, fraction=k / m) for k in range(1, m) if 2 * k != m):
            try:
                return again(pitch=pitch / m)
            except TrenchDetectionError:
                return None
    return None


def _cells_between(found, pitch, min_fraction=0.2, fraction=0.5):
    """Whether cells stand between the boxes of a fluorescence layout, ``fraction`` of
    the pitch past each (half-way by default).

    True when at least ``min_fraction`` of those sites (and two) show at least
    half the median signal of the filled trenches.
    """
    from .centres import strip_mean

    n_between, n_filled = 0, 0
    for s in found:
        prof = np.asarray(s["profile"], float)
        base = np.nanpercentile(prof, 20)
        centres = np.asarray(s["centres"], float)
        filled = ~np.asarray(s["empty"], bool)
        if not filled.any():
            continue
        at = strip_mean(prof, centres, 1) - base
        level = np.nanmedian(at[filled])
        sites = np.concatenate([centres - (1.0 - fraction) * pitch, centres[-1:] + fraction * pitch])
        between = strip_mean(prof, sites, 1) - base
        n_between += int(np.sum(np.nan_to_num(between) > 0.5 * level))
        n_filled += int(filled.sum())
    return n_filled > 0 and n_between >= max(2, min_fraction * n_filled)


#: phase: rows this periodic hold trenches when their periodic power is that of the
#: most periodic rows (:func:`.trench_sets.find_sets`)
PHASE_WEAK_RATIO = 1.5


def _sets_at(bands8, y8, shape, angle, pitch, kind, n_sets, rows="periodic"):
    """The straightened low-resolution image at ``angle`` and the sets found in it
    (``rows``: see ``_rows`` of :func:`detect_trenches`).

    With ``rows="edges"`` each row's periodicity is that of its edges' magnitude
    (the absolute difference of neighbouring columns): a lumen has its walls
    whatever it holds, so filled lumens dark between bright rims and empty ones
    the inverse repeat at the pitch there, where their mix in the plain rows puts
    the power half-way between its harmonics.
    """
    rot = rotated_band_image(bands8, y8, shape, angle, y8)
    power, ratio = row_periodicity(np.abs(np.diff(rot, axis=1)) if rows == "edges" else rot,
                                   pitch)
    coherence = row_coherence(rot, pitch) if kind == "fluorescence" else None
    weak = PHASE_WEAK_RATIO if kind == "phase" else None
    return rot, power, ratio, find_sets(power, ratio, y8, pitch, n_sets, coherence=coherence,
                                        weak_ratio=weak, weak_alone=rows == "weak")


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
        for key in ("closed_end_readings_differ_px", "closed_end_halo_beyond_px"):
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

    rows, set_rows, kept, unclear = [], [], [], []
    for s in found:
        n = len(s["centres"])
        d = s["direction"]
        # per trench: the first lumen row, moved out by the margin
        closed = (s["top_each"] + 0.5 if d == 1 else s["bottom_each"] - 0.5) - d * closed_end_margin
        corners = np.stack([box_corners(x, y, d, box_height, box_width)
                            for x, y in zip(s["centres"], closed)]) if n else np.zeros((0, 4, 2))
        raw = rotated_to_raw(corners, angle, shape)
        inside = boxes_on_frame(raw, shape, s["lumen_width"], box_width, s["ncc"])
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
    sets = pd.DataFrame(set_rows, columns=SET_COLUMNS).astype({"set": int, "direction": int})
    quality = layout_quality(kept, trenches, pitch, noise, kind, extra_quality)
    # Segmentation restricts cells to the lumen: hand it the width measured here.
    quality["lumen_width_px"] = float(np.median([s["lumen_width"] for s in kept]))
    profiles = dict(row_profiles)
    profiles["sets"] = [dict(profile=s["profile"], centres=s["centres"], template=s["template"],
                             y_top=s["y_top"], y_bottom=s["y_bottom"]) for s in kept]
    return TrenchLayout(float(angle), float(pitch), sets, trenches, quality, (H, W), kind,
                        profiles)
