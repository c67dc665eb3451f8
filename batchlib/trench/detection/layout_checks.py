"""What a found layout's confidence and warnings say: the self-check (the other lumen
polarity tried where it disagrees), the fluorescence stack-gap doubt, and the warnings
a person reads in the status and the QC picture."""
from __future__ import annotations

import numpy as np

from ._common import TrenchDetectionError, nanmean
from .selfcheck import check_layout
from .stack_gap import occupancy_dip


def lumens_are_bright(layout) -> bool:
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
        other = with_lumen("dark" if lumens_are_bright(layout) else "bright")
    except TrenchDetectionError:
        return None, None
    other.quality["lumen_polarity_flipped"] = 1.0
    return other, check_layout(img, other, noise)


def apply_self_check(img, layout, noise, with_lumen=None):
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


def doubt_gaps_in_stacks(img, layout, noise):
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


def warn_low_confidence(layout):
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


def warn_cleared_end(layout):
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


def warn_readings_differ(layout):
    """A warning when a set's filled lumens were bright and dark by turns, so that where
    its closed end lies depended on how their contrast was read
    (``closed_end_readings_differ_px``, :func:`.filled_ends.clear_closed_end`):
    independent simulator 1089, every box 3.5 px beyond its closed end at confidence
    0.71 (6.8 px, warned, with the lumens' mean contrast)."""
    _warn_phase_from(layout, "closed_end_readings_differ_px", CLEARED_WARN_PX, lambda px: (
        "a set's lumens are bright and dark by turns (empty lumens taken for filled "
        f"ones?): where its closed end lies depends on how their contrast is read, "
        f"{px:.1f} px apart; check the QC picture"))


def warn_halo_beyond(layout):
    """A warning when a set's filled lumens' contrast, read less smoothed, rises
    :data:`CLEARED_WARN_PX` or more beyond its closed-end line
    (``closed_end_halo_beyond_px``, :func:`.filled_ends.clear_closed_end`): a bright
    halo there may be the mothers' poles. Independent simulator, phase, 1000-1231:
    1225 (boxes into 35 % of the mothers at confidence 0.60, unwarned before; its poles'
    halo now moves the line out, :func:`.filled_ends.pole_halo_beyond`) and 1206
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
