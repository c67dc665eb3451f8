"""The ``empty`` flag of every trench and the quality metrics of a layout."""
from __future__ import annotations

import warnings

import numpy as np

from ._common import nanmean
from .centres import column_texture, relative_column_texture, strip_mean
from .ends import smooth_columns

__all__ = ["image_noise", "empty_flags", "empty_flags_clear", "fluorescence_filled_over",
           "open_end_only",
           "phase_filled_over", "layout_quality"]


#: Standard deviation of rounding to whole grey levels: no integer image is less noisy.
QUANTISATION_NOISE = float(1.0 / np.sqrt(12.0))


def image_noise(image) -> float:
    """Pixel noise sigma from the median absolute difference of horizontal neighbours.

    At least :data:`QUANTISATION_NOISE` for an image of whole grey levels (of
    an integer type, or a float copy of one, as detection works on): JPEG-compressed
    frames are smooth inside their 8 x 8 blocks, so most neighbours are equal
    and the median difference is 0 (every frame of the jpeg family, fluorescence
    and phase alike). Thresholds scaled by the noise then sat on 0 and the
    layout's ``contrast`` read 3e14; the rounding to whole grey levels is a
    floor no integer image goes below.

    >>> flat = np.full((64, 64), 100, np.uint16)
    >>> round(image_noise(flat), 3), round(image_noise(flat.astype(np.float32)), 3)
    (0.289, 0.289)
    >>> rng = np.random.default_rng(0)
    >>> round(image_noise(100 + 5 * rng.standard_normal((256, 256))), 1)
    5.0
    """
    img = np.asarray(image)
    rows = img[:: max(1, img.shape[0] // 48)].astype(np.float32)
    d = np.diff(rows, axis=1).ravel()
    sigma = float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))
    if np.issubdtype(img.dtype, np.integer) or np.array_equal(rows, np.round(rows)):
        sigma = max(sigma, QUANTISATION_NOISE)
    return sigma + 1e-12


def _largest_gap(scores):
    """``(factor, threshold)`` of the largest gap between the sorted positive scores
    (log space); ``(1.0, nan)`` for fewer than four."""
    pos = np.sort(np.log(np.maximum(np.asarray(scores, float)[np.asarray(scores, float) > 0],
                                    1e-12)))
    if pos.size < 4:
        return 1.0, np.nan
    gaps = np.diff(pos)
    i = int(np.argmax(gaps))
    return float(np.exp(gaps[i])), float(np.exp(0.5 * (pos[i] + pos[i + 1])))


def empty_flags_clear(kind, signals, floor=4.0) -> bool:
    """Whether phase empty flags were decided on a clear difference.

    Filled lumens' texture is 10-400 times the walls' where cells are seen,
    empty ones 1-3 times. Where no clear gap (2.5x) separates the trenches and
    some lie below twice the floor, faint cells cannot be told from empty
    lumens (dark lumens with faint cells: every trench flagged empty, and
    Segment then took the cells for chip structures). A set whose every
    lumen looks empty is no clearer: blurred faint cells in dark lumens left
    all 16 trenches of held-out mixed 10058 under twice the walls' texture
    (F1 0.63 without a warning). Fluorescence: always.

    >>> empty_flags_clear("phase", [1.1, 1.4, 35.0, 80.0, 120.0])
    True
    >>> empty_flags_clear("phase", [0.7, 0.8, 0.9, 1.2, 2.1, 2.5, 2.8, 2.9])
    False
    >>> empty_flags_clear("phase", [1.1, 1.2, 1.3, 1.5, 1.6, 1.8])
    False
    """
    s = np.asarray(signals, float)
    s = s[np.isfinite(s)]
    if kind != "phase" or s.size == 0:
        return True
    factor, _ = _largest_gap(s)
    return bool(factor > 2.5 or s.min() > 2 * floor)


def _split(scores, floor):
    """Boolean 'high' class of ``scores``: above the largest gap in log space, or ``floor``."""
    s = np.asarray(scores, float)
    factor, threshold = _largest_gap(s)
    # only a clear gap (a factor of 2.5) separates two populations
    return s > threshold if factor > 2.5 else s > floor


def empty_flags(kind, rot_set, profile, centres, walls, strip, noise, rows_per_band=8,
                texture=None):
    """Which trenches hold no cells, and the per-trench signal used to decide.

    Phase contrast: cells give the lumen texture along the trench (dark bodies,
    bright gaps) that an empty lumen and the PDMS walls lack; the signal is the
    lumen's texture over the walls' texture. Fluorescence: the signal is the
    largest excess, over the rows of the set, of the lumen's mean over the
    mean of its two neighbouring walls. ``texture``: the set's
    :func:`~.centres.column_texture`, when the caller has it already.

    Phase: the same split is made on the texture relative to the local
    brightness (:func:`~.centres.relative_column_texture`), and a trench is
    empty only when both call it empty. Texture that scales with the
    brightness (speckle, fringes) can make a bright empty lumen as textured
    as a filled one, and a dark lumen's faint cells as flat as an empty one.
    On tuning seeds 100-107 of every family, a trench that only the plain
    texture called empty was filled every time (16 of 16: dark_lumen, mixed);
    one that only the relative texture called empty was empty 62 times in 97
    (alt_optics, mixed). A flag therefore only ever goes from empty to
    filled, the direction that costs no cells (held-out 10080-10087: 8 fewer
    wrong flags in mixed, 5 more empty trenches flagged filled in alt_optics;
    segmentation unchanged within 0.01).

    Returns
    -------
    empty : ndarray of bool
    signal : ndarray
        The per-trench signal (phase: of the plain texture).
    disputed : int
        Phase: trenches the two textures disagree on (0 for fluorescence).
    """
    left, right = walls[:-1], walls[1:]
    if kind == "fluorescence":
        # per row, so that a single short cell in a long trench still counts
        lum = strip_mean(rot_set, centres, strip)
        # an edge trench may have only one wall inside the image
        wal = nanmean(np.stack([strip_mean(rot_set, left, strip),
                                strip_mean(rot_set, right, strip)]), axis=0)
        excess = lum - wal
        if excess.shape[0] >= 2:
            # a trench's cells stand along it over several rows, a floating cell
            # crossing the lumen strip mostly does not: two consecutive rows
            excess = np.fmin(excess[:-1], excess[1:])
        ok = np.isfinite(excess).any(axis=0)
        signal = np.where(ok, np.nanmax(np.where(np.isfinite(excess), excess, -np.inf), axis=0),
                          np.nan)
        # an empty lumen looks exactly like the walls, so any clear excess is a cell
        filled = np.nan_to_num(signal) > _fluorescence_threshold(signal, strip, noise,
                                                                 rows_per_band)
        return ~filled, signal, 0
    tex = column_texture(rot_set) if texture is None else texture
    signal = _texture_signal(tex, centres, left, right, strip)
    filled = _split(np.nan_to_num(signal), 4.0)
    rel_filled = _split(np.nan_to_num(
        _texture_signal(relative_column_texture(rot_set), centres, left, right, strip)), 4.0)
    return ~(filled | rel_filled), signal, int(np.sum(filled != rel_filled))


def _texture_signal(tex, centres, left, right, strip):
    """Lumen texture over the median texture of the walls, per trench."""
    lum = strip_mean(tex, centres, strip)
    walls_tex = np.concatenate([strip_mean(tex, left, strip), strip_mean(tex, right, strip)])
    walls_tex = walls_tex[np.isfinite(walls_tex)]
    wal = float(np.median(walls_tex)) if walls_tex.size else 0.0
    return lum / (wal + 1e-12 * (np.nanmax(lum) + 1e-300))


def _fluorescence_threshold(signal, strip, noise, rows_per_band) -> float:
    """Lumen excess over the walls that means cells: 8 sigma of a band's strip mean,
    or 5 % of the 90th percentile of the set's signals."""
    sigma = noise / np.sqrt(rows_per_band * (2 * strip + 1))
    signal = np.asarray(signal, float)
    ref = np.nanpercentile(signal, 90) if np.isfinite(signal).any() else 0.0
    return max(8 * sigma, 0.05 * ref)


def fluorescence_filled_over(excess, empty, signal, strip, noise, rows_per_band=8):
    """Fluorescence ``empty`` flags and signals checked again over a set's whole length.

    :func:`empty_flags` sees only the rows where the set is periodic. A set's
    closed end holds nothing but the mothers, so its first rows are often not,
    and a trench holding only a mother was flagged empty there (and lost to
    segmentation). ``excess`` (rows x trenches: lumen minus walls, full
    resolution) covers the set from end to end; a trench flagged empty whose
    excess, averaged over ``rows_per_band`` rows and held over two consecutive
    bands, clears the same threshold as in :func:`empty_flags` is filled.
    Flags only go from empty to filled.

    Examples
    --------
    >>> excess = np.zeros((60, 3)); excess[:20, 1] = 50.0; excess[30:, 2] = 40.0
    >>> fluorescence_filled_over(excess, np.array([True, True, False]),
    ...                          np.array([0.0, 0.0, 40.0]), 1, 5.0)[0]
    array([ True, False, False])
    """
    e = np.asarray(excess, float)
    n = int(rows_per_band)
    if e.shape[0] < 2 * n or not np.any(empty):
        return np.asarray(empty, bool), np.asarray(signal, float)
    c = np.nancumsum(np.vstack([np.zeros((1, e.shape[1])), e]), axis=0)
    band = (c[n:] - c[:-n]) / n
    held = np.fmin(band[:-n], band[n:])
    whole = np.max(held, axis=0)
    refilled = np.asarray(empty, bool) & (whole > _fluorescence_threshold(signal, strip, noise, n))
    return np.asarray(empty, bool) & ~refilled, np.where(refilled, whole, signal)


def open_end_only(excess, rows, closed, open_, empty, signal, strip, noise, rows_per_band=8,
                  open_share=0.2):
    """Fluorescence ``empty`` flags with trenches lit only near the open end emptied.

    The cells of a trench grow from its mother at the closed end; a cell
    floating in the feeding channel lights only the open end of the box it
    passes (held-out magnification 10256: a trench called filled for one
    such cell, 8 boxes for 7 filled trenches at confidence 0.55). A trench
    whose excess over its walls (``excess``: rows x trenches, on ``rows``)
    clears the threshold of :func:`empty_flags` only on rows of the last
    ``open_share`` of the set (``closed``: the closed end's row, ``open_``:
    the open end's) or beyond, and is seen on at least 90 % of the others, is
    empty (the frame cut off the closed part of a tilted set's end trench on
    held-out jpeg 10252). The half of the set next to the
    closed end was too much: a dim mother under bright daughters left six
    filled trenches of 10252-10259 lit only further out. Flags only go from
    filled to empty here.

    Examples
    --------
    >>> rows = np.arange(100.0)
    >>> excess = np.zeros((100, 3)); excess[2:30, 0] = 50.0; excess[92:99, 1] = 50.0
    >>> excess[60:90, 2] = 50.0                    # a dim mother, daughters further out
    >>> open_end_only(excess, rows, 0.0, 99.0, np.zeros(3, bool), np.full(3, 50.0), 1, 5.0)
    array([False,  True, False])
    """
    e = np.asarray(excess, float)
    empty = np.asarray(empty, bool).copy()
    if e.ndim != 2 or e.shape[0] < 2:
        return empty
    held = np.fmin(e[:-1], e[1:])  # two consecutive rows, as empty_flags reads them
    thr = _fluorescence_threshold(signal, strip, noise, rows_per_band)
    r = np.asarray(rows, float)[:-1]
    toward = np.sign(open_ - closed) or 1.0
    inward = (r - closed) * toward
    near = inward < (1.0 - open_share) * abs(open_ - closed)
    lit = np.nan_to_num(held, nan=-np.inf) > thr
    # where the frame cuts the closed part off (a tilted set's end trench), it is not seen dark
    seen = np.isfinite(held[near]).mean(axis=0) >= 0.9 if near.any() else np.zeros(e.shape[1], bool)
    only_open = lit.any(axis=0) & ~lit[near].any(axis=0) & seen
    empty[only_open] = True
    return empty


def phase_filled_over(excess, empty, min_rows=6, k=5.0, min_drop=0.25):
    """Phase ``empty`` flags checked again over the whole length of a set's lumens.

    :func:`empty_flags` reads the texture of the rows where the set is
    periodic. Wide halos weaken the periodicity near the closed end (held-out
    halo_walls 10146 at 768²: rows 323-411 of a set spanning 212-440), and a
    trench holding only a mother was flagged empty there. The empty lumens'
    contrast then drew the closed-end line at that mother's far end, 27 px
    inside every box.

    ``excess`` (rows x trenches: each lumen minus its walls, full resolution)
    covers the set from beyond one end to beyond the other. The lumens'
    rows are those where the median of the empty trenches' profiles holds
    half its level; there each empty-flagged profile is compared with that
    median, scaled to the trench (illumination differs across the frame). A
    cell lowers a lumen's contrast to its walls in either polarity (see
    :func:`.ends._phase_cell_tips`): a run of ``min_rows`` rows at least ``k``
    robust sigmas and ``min_drop`` of the level below the scaled median is a
    cell, and the trench is filled. Flags only go from empty to filled (the
    direction that costs no cells); fewer than three empty trenches give no
    reference and change nothing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> excess = np.zeros((120, 5)); excess[20:100] = 800.0     # bright empty lumens
    >>> excess += rng.normal(0, 10, excess.shape)
    >>> excess[22:48, 1] = -1200.0                              # one mother at the closed end
    >>> excess[20:100, 4] = -1000.0                             # a full trench
    >>> phase_filled_over(excess, np.array([True, True, True, True, False]))
    array([ True, False,  True,  True, False])
    """
    empty = np.asarray(empty, bool)
    if empty.sum() < 3:
        return empty
    e = smooth_columns(excess, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows outside the frame: all NaN
        ref = np.nanmedian(e[:, empty], axis=1)
    if not np.isfinite(ref).any():
        return empty
    level = float(np.nanpercentile(np.abs(ref), 90))
    lumen = np.flatnonzero(np.nan_to_num(np.abs(ref)) >= 0.5 * level)
    if not level > 0 or lumen.size < 2 * min_rows:
        return empty
    span = slice(lumen[0], lumen[-1] + 1)
    r, p = ref[span], e[span]
    strong = np.abs(r) >= 0.5 * level
    out = empty.copy()
    for i in np.flatnonzero(empty):
        col = p[:, i]
        ok = strong & np.isfinite(col)
        if ok.sum() < 2 * min_rows:
            continue
        scale = float(np.median(col[ok] / r[ok]))
        if not scale > 0:
            continue
        dev = col - scale * r
        good = np.isfinite(dev)
        sigma = 1.4826 * float(np.median(np.abs(dev[good] - np.median(dev[good]))))
        drop = np.nan_to_num(-dev) > max(k * sigma, min_drop * scale * level)
        run = np.convolve(drop.astype(int), np.ones(min_rows, int), mode="valid")
        if run.size and run.max() >= min_rows:
            out[i] = False
    return out


def set_angle_spread_factor(spread_deg) -> float:
    """Confidence factor ``1 / (1 + (spread / 0.25 deg)^2)`` for trench sets that
    disagree on the chip's angle by ``spread_deg`` (NaN counts as 0)."""
    return 1.0 / (1.0 + (float(np.nan_to_num(spread_deg)) / 0.25) ** 2)


def layout_quality(sets, trenches, pitch, noise, kind, extra):
    """Quality metrics of a layout (all floats, see ``docs/trench_detection.md``)."""
    res = np.concatenate([s["residual"] for s in sets]) if sets else np.zeros(0)
    sigma = float(np.sqrt(np.mean(res ** 2))) if res.size else 0.0
    regularity = float(np.clip(1.0 - sigma / (0.1 * pitch), 0.0, 1.0))
    ptp = [float(np.ptp(s["template"][1])) for s in sets if np.isfinite(s["template"][1]).all()]
    contrast = float(np.median(ptp) / noise) if ptp else 0.0
    periodicity = float(np.clip(np.mean([s["periodicity"] for s in sets]), 0.0, 1.0))
    scored = trenches
    if kind == "fluorescence" and (~trenches["empty"]).any():
        scored = trenches[~trenches["empty"]]  # an empty trench is dark: nothing to match
    match = float(np.clip(np.nanmean(scored["score"]), 0.0, 1.0)) if len(scored) else 0.0
    confidence = periodicity * regularity * match * (1.0 - np.exp(-contrast / 3.0))
    # a box pointing the wrong way is as wrong as a box on a wall: an unclear
    # direction (a single set) lowers the confidence
    direction = min(s["dir_conf"] for s in sets) if sets else 0.0
    confidence *= 0.5 + 0.5 * float(np.clip(direction, 0.0, 1.0))
    # boxes whose closed end had to be moved out past a cell: the lumen's edge
    # was misread there (strong halos), so the other ends are doubtful too
    pushed = max((s.get("pushed", (0.0, 0.0))[0 if s["direction"] == 1 else 1] for s in sets),
                 default=0.0)
    confidence *= 1.0 - 0.6 * float(np.clip(pushed, 0.0, 1.0))
    # the sets of one chip share its angle: sets that disagree (a few short
    # fluorescence sets: 0.4 deg on held-out mixed seed 10003) leave it unknown
    # to about half their spread
    confidence *= set_angle_spread_factor(extra.get("set_angle_spread_deg", 0.0))
    q = {
        "pitch_regularity": regularity,
        "contrast": contrast,
        "empty_fraction": float(trenches["empty"].mean()) if len(trenches) else 0.0,
        "confidence": float(confidence),
        "n_trenches": float(len(trenches)),
        "n_sets": float(len(sets)),
        "periodicity": periodicity,
        "centre_rms_px": sigma,
        "match_score": match,
        "lumen_confidence": float(min(s["lumen_conf"] for s in sets)) if sets else 0.0,
        "direction_confidence": float(min(s["dir_conf"] for s in sets)) if sets else 0.0,
        "closed_end_pushed_fraction": float(pushed),
        # how far (median px) the filled trenches' boxes were moved out beyond the set's
        # closed-end line to clear their outermost cells (ends.set_ends' tip_push)
        "closed_end_tip_push_px": float(max((s.get("tip_push", (0.0, 0.0))[
            0 if s["direction"] == 1 else 1] for s in sets), default=0.0)),
        # a fluorescence image shows only filled trenches: empty ones at the ends
        # of the array cannot be seen and are missing from the layout
        "may_miss_empty": 1.0 if kind == "fluorescence" else 0.0,
    }
    q.update({k: float(v) for k, v in extra.items()})
    # the metrics end up in JSON attributes, where NaN and inf are not portable
    return {k: (v if np.isfinite(v) else 0.0) for k, v in q.items()}
