"""The detection found again with something changed, where its first answer is unsure.

Each function takes ``again``, a function running the whole detection with some of its
arguments changed (a pitch, the rows read), and gives the layout to keep: a harmonic or
a multiple taken for the pitch (:func:`at_multiple`, :func:`at_fractions`,
:func:`at_finer_lattice`), a set only the rows' edges show or sets they show longer
(:func:`edges_disagree`, :func:`with_more_trenches`, :func:`with_longer_sets`).
"""
from __future__ import annotations

import numpy as np

from ..geometry import raw_to_rotated
from ._common import TrenchDetectionError
from .trench_sets import sets_in


def at_multiple(again, layout, max_pitch, edge_pitch=None):
    """An unsure phase layout, or the most confident one found again at two to four times
    its pitch, or at ``edge_pitch`` (:func:`_edge_pitch`), when that is more confident and
    its boxes have plain walls between them (not :func:`half_way_alike`).

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
    better = most_confident(again, changes, accept=lambda changed, found: not half_way_alike(found)
                             and found.quality["confidence"] > layout.quality["confidence"])
    return layout if better is None else better


def with_more_trenches(again, layout, edge_pitch=None):
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


def edges_disagree(rot, y8, layout, max_overlap=0.5):
    """What the rows' edges (:func:`.trench_sets.sets_in` with ``rows="edges"``) of
    ``rot``, the straightened band image at the layout's angle, say that the layout missed:
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
    _, _, runs = sets_in(rot, y8, layout.pitch, "phase", rows="edges")
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


def with_longer_sets(again, layout):
    """A phase layout whose sets the rows' edges say were cut short at their closed ends
    (:func:`edges_disagree`), or the one found from the edges, when that holds every
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
    """Whether every box of ``layout`` but the outermost of a set has a box of ``found``
    pointing the same way, its middle within ``tolerance`` of ``found``'s pitch across the
    trenches and half the box's height along them (compared in ``found``'s rotated frame).

    The rows' edges can read a set's outermost trench less well (independent simulator
    1480: two facing sets, one missed, 23 of 46 trenches at confidence 0.52, unwarned;
    from the edges 45 of 46, all but the first trench, a filled one 12 px from the
    frame's side).
    """
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
    held = same.any(axis=1)
    by_set = layout.trenches.groupby("set")["x_center"]
    x = layout.trenches["x_center"].to_numpy(float)
    outermost = (x == by_set.transform("min").to_numpy(float)) \
        | (x == by_set.transform("max").to_numpy(float))
    return bool(held.any()) and bool((held | outermost).all())


def most_confident(again, changes, accept=None):
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


def phase_retry_acceptable(changed, layout) -> bool:
    """Phase, no periodic run at the estimated pitch (see ``detect_trenches``): a layout
    from weak rows alone must not be very unsure too (held-out halo_walls 10217 pos 0:
    0.04, every box 29 px inside its trench; the right one of pos 1: 0.15), and twice the
    pitch is wrong when the stripes half-way between its boxes look like them, as is a
    layout from the rows' edges whose boxes have lumens between them."""
    if changed.get("_rows") == "weak":
        return layout.quality["confidence"] >= MIN_WEAK_ROWS_CONFIDENCE
    return not half_way_alike(layout)


#: a layout found on weakly periodic rows alone is kept only at this confidence or more
MIN_WEAK_ROWS_CONFIDENCE = 0.1
#: relative difference under which two pitches are one (the edges' period against the
#: retries already listed, the layout's pitch and its multiples: see ``at_multiple``)
SAME_PITCH = 0.02


def half_way_alike(layout, min_scatter=0.5) -> bool:
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


def at_fractions(again, pitch, min_pitch, double=False):
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
    return most_confident(again, [dict(pitch=pitch / m) for m in factors
                                   if pitch / m >= min_pitch])


def at_finer_lattice(found, pitch, min_pitch, again):
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
