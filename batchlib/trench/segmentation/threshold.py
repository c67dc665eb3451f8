"""Default segmentation: background-corrected threshold in the lumen, profile splitting.

All steps are vectorised over the stack of crops (no loop over crops in Python):

1. Smooth each crop (Gaussian, ``sigma``; along/across the trench).
2. Signal with cells positive. Fluorescence: intensity minus the median of
   each row (cells cover less than half of a row), smoothed along the trench.
   Phase: a reference minus the intensity, the reference being each column's
   brightest level (gaps, septa, empty lumen) in a window longer than a cell;
   it follows the blur of the walls across the lumen and the illumination
   along it, whichever of walls or lumen is brighter.
3. Lumen band: ``lumen_width`` columns, recentred per crop by up to
   ``lumen_shift`` pixels on the strongest signal.
4. Candidates: band pixels above ``snr`` times the noise (median absolute
   deviation of the high-pass residual); phase also darker than
   ``min_depth`` times the lumen level.
5. Numba (:mod:`.splitting`): split touching cells at dips of the row profile,
   keep each cell's pixels above ``level`` times its own peak (phase: depth
   below the local halo), fill holes, drop side protrusions, small objects,
   objects off the axis or (phase) too shallow, number from the closed end.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .splitting import label_crops

# The references along the trench vary slowly: computed on every _STEP-th row.
_STEP = 4

DEFAULTS = {
    "fluorescence": dict(level=0.3, snr=4.0, sigma=1.0, split_depth=0.25),
    # Phase contrast darkens the middle of long cells less than their ends
    # (shade-off), a dip of up to ~30 % that must not split them.
    "phase": dict(level=0.12, snr=4.0, sigma=(1.5, 0.5), split_depth=0.4),
}


def _min_dip(noise, sig, lumen_width, w, k):
    """Smallest dip (row-sum units) that noise does not make: ``k`` sigmas of a row sum.

    A row sum adds ``lumen_width`` smoothed pixels whose noise is correlated
    over about ``2.5 * sigma_across`` columns.
    """
    width = float(lumen_width if lumen_width is not None else w)
    corr = max(2.5 * float(sig[1]), 1.0)
    return (k * np.asarray(noise, float) * np.sqrt(corr * width)).astype(np.float64)


def _noise_factor(sigma) -> float:
    """Ratio of the noise of the smoothed image to the noise of the high-pass residual."""
    delta = np.zeros((31, 31))
    delta[15, 15] = 1.0
    g = ndimage.gaussian_filter(delta, sigma)
    return float(np.sqrt((g ** 2).sum() / ((delta - g) ** 2).sum()))


def _block_rows(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` over blocks of ``_STEP`` rows of ``(M, H, W)`` (last block may be shorter)."""
    m, h, w = a.shape
    full = h // _STEP * _STEP
    out = reduce(a[:, :full].reshape(m, full // _STEP, _STEP, w), axis=2)
    if full < h:
        out = np.concatenate([out, reduce(a[:, full:], axis=1)[:, None]], axis=1)
    return out


def _rows_from_blocks(blocks: np.ndarray, h: int) -> np.ndarray:
    """Back from blocks of ``_STEP`` rows to ``h`` rows (the references are smooth)."""
    return np.repeat(blocks, _STEP, axis=1)[:, :h]


def _lumen_band(cols: np.ndarray, lumen_width, lumen_shift: int):
    """Boolean ``(M, W)`` lumen columns, centred where the cell signal ``cols`` is strongest.

    Also returns the axis column of each band.
    """
    m, w = cols.shape
    if lumen_width is None or lumen_width >= w:
        return np.ones((m, w), bool), np.full(m, (w - 1) / 2.0)
    lw = int(round(lumen_width))
    csum = np.concatenate([np.zeros((m, 1)), np.cumsum(cols, axis=1)], axis=1)
    start0 = (w - lw) // 2
    shifts = np.arange(-lumen_shift, lumen_shift + 1)
    starts = np.clip(start0 + shifts, 0, w - lw)
    score = csum[:, starts + lw] - csum[:, starts]           # (M, n_shifts)
    # Prefer the centred band unless another is clearly better (empty crops).
    score[:, lumen_shift] *= 1.05
    start = starts[np.argmax(score, axis=1)]
    col = np.arange(w)
    band = (col[None, :] >= start[:, None]) & (col[None, :] < start[:, None] + lw)
    return band, start + (lw - 1) / 2.0


def _empty_reference(background, shape, sm, sig):
    """The empty-trench crop for every crop, smoothed like them and scaled to their brightness."""
    h, w = shape[-2:]
    # smoothed once (it is shared by many crops), then spread over the crops
    small = np.asarray(background, np.float32)
    small = ndimage.gaussian_filter(small, (0,) * (small.ndim - 2) + tuple(sig), mode="nearest")
    bg = np.broadcast_to(small, shape).reshape(-1, h, w)
    # the walls (outer quarters of the crop) hold no cells: their brightness
    # relative to the empty crop's walls is the crop's gain
    side = max(1, w // 4)
    cols = np.r_[0:side, w - side:w]
    q_crop = np.median(sm[:, :, cols].reshape(len(sm), -1), axis=1)
    q_bg = np.median(bg[:, :, cols].reshape(len(bg), -1), axis=1)
    gain = np.where(q_bg > 0, q_crop / np.maximum(q_bg, 1e-12), 1.0)
    return (bg * gain[:, None, None].astype(np.float32)).astype(np.float32)


#: first frames whose median shows what a lone empty trench's lumen looks like
LONE_REFERENCE_FRAMES = 16


def empty_background(crops, empty, min_empty=2, lone=None):
    """Median crop of the trenches known to be empty, per frame, or ``None``.

    With a single trench flagged empty (and ``(N, T, H, W)`` crops) there is no
    other empty trench to take a median with: its own median over its first
    frames (:func:`lone_empty_reference`) is the reference of every frame. An
    object in that trench is then measured against what the trench looked like
    when TrenchDetection found it empty, so a cell that enters it later departs
    from the reference and is kept. Without it, the U-Net's objects in the lone
    empty lumen of 5 of 84 independent positions (1021, 1043, 1049, 1054, 1072:
    the lumen, or a still band at its open end, in every frame) stayed: empty
    trench-frames clean 0.0-0.125, counts within one 0.81-0.88 on two of them.

    Parameters
    ----------
    crops : ndarray, shape (N, T, H, W)
    empty : array of bool, shape (N,)
        Trenches without cells (TrenchDetection's ``empty`` flag).
    min_empty : int
        Fewer empty trenches give no background (but the lone one above).
    lone : ndarray, shape (1, H, W), optional
        :func:`lone_empty_reference` of the position's first frames (the Segment
        job's blocks of later frames pass it); default: of ``crops``.

    Returns
    -------
    ndarray, shape (1, T, H, W), or None

    Examples
    --------
    >>> crops = np.zeros((3, 20, 8, 4)); crops[1] = 5.0; crops[1, 18:] = 50.0   # a cell enters
    >>> empty_background(crops, [False, True, False])[0, :, 0, 0].tolist() == [5.0] * 20
    True
    >>> empty_background(crops, [False, False, False]) is None
    True
    """
    empty = np.asarray(empty, bool)
    crops = np.asarray(crops)
    if empty.sum() == 1 and crops.ndim == 4:
        if lone is None:
            lone = lone_empty_reference(crops[empty])
        lone = np.asarray(lone, np.float32)
        return np.repeat(lone[:, None], crops.shape[1], axis=1)
    if empty.sum() < min_empty:
        return None
    return np.median(crops[empty].astype(np.float32), axis=0)[None]


def lone_empty_reference(first_frames) -> np.ndarray:
    """``(1, H, W)``: the median of one empty trench's crops ``(1, T, H, W)`` over their
    first :data:`LONE_REFERENCE_FRAMES` frames (see :func:`empty_background`)."""
    first = np.asarray(first_frames)[:, :LONE_REFERENCE_FRAMES].astype(np.float32)
    return np.median(first, axis=1)


def _cell_signal(sm, kind, background, shape, sig, background_rows):
    """``(reference, signal, background)``: the reference level of the crops, the cell
    signal against it (bright = cell) and ``background`` (None once it was used up)."""
    h, w = sm.shape[1:]
    size = max(1, min(background_rows, h) // _STEP)
    if kind == "fluorescence":
        # Cells cover less than half of each row: the row median is background.
        ref = np.median(sm[:, ::_STEP], axis=2)
        ref = ndimage.uniform_filter1d(ref, size, axis=1, mode="nearest")
        return ref, sm - _rows_from_blocks(ref, h)[:, :, None], background
    if background is not None and _dark_lumen(background, w):
        # A dark lumen between bright walls: the column reference would take the
        # walls' and the closed end's glow for the empty lumen; the empty
        # trenches show what an empty lumen really looks like.
        ref = _empty_reference(background, shape, sm, sig)
        return ref, ref - sm, None
    # Reference: each column's brightest level along the trench (gaps, septa,
    # empty lumen) within a window longer than a cell; it follows the blur of
    # the walls across the lumen and the illumination along it.
    ref = ndimage.maximum_filter1d(_block_rows(sm, np.max), size, axis=1, mode="nearest")
    ref = _rows_from_blocks(ndimage.uniform_filter1d(ref, size, axis=1, mode="nearest"), h)
    return ref, ref - sm, background


def _contour_signal(sm, s, kind, c0, c1, contour_window, contour_rows):
    """The signal whose level sets each cell's contour, on columns ``c0:c1``."""
    if kind != "phase":
        return s[:, :, c0:c1]
    # Edges are measured from the nearest halo (local maximum across the
    # trench, a few rows along it) rather than from the column reference,
    # whose level is set by the brightest septum of the window.
    w = sm.shape[2]
    e0, e1 = max(c0 - contour_window // 2, 0), min(c1 + contour_window // 2, w)
    part = sm[:, :, e0:e1]
    contour = ndimage.maximum_filter(part, (1, contour_rows, contour_window), mode="nearest") - part
    return contour[:, :, c0 - e0:c1 - e0]


def _noise_and_floors(x, sm, ref, band, sig, kind, min_depth, min_peak_depth):
    """``(noise, floor, min_peak)`` per crop: the noise sigma of the smoothed lumen, and
    (phase) the least depth of a cell's pixels and of its darkest point."""
    m, h, w = x.shape
    # Noise from the high-pass residual of the lumen, on every _STEP-th row.
    sub = np.broadcast_to(band[:, None, :], (m, len(range(0, h, _STEP)), w))
    res = (x[:, ::_STEP] - sm[:, ::_STEP])[sub].reshape(m, -1)
    mad = np.median(np.abs(res - np.median(res, axis=1, keepdims=True)), axis=1)
    noise = 1.4826 * mad * _noise_factor(sig)
    if kind == "fluorescence":
        return noise, np.zeros(m), np.zeros(m)
    lumen_level = np.median(ref[:, ::_STEP][sub].reshape(m, -1), axis=1)
    return noise, min_depth * lumen_level, min_peak_depth * lumen_level


def segment_threshold(crops, kind="phase", *, sigma=None, lumen_width=14, lumen_shift=2,
                      snr=None, level=None, split_depth=None, min_length=8, min_area=40,
                      open_end="keep", background_rows=61, min_depth=0.1, min_peak_depth=0.25,
                      contour_window=15, contour_rows=3, max_offset=None, clean=True,
                      background=None, split_noise=8.0, empty_crops=None, device=None):
    """Segment the cells of trench crops without a trained model.

    Parameters
    ----------
    crops : ndarray, shape (..., H, W)
        Trench crops, trench axis vertical, closed end at row 0.
    kind : {"phase", "fluorescence"}
        Phase contrast (dark cells) or fluorescence (bright cells).
    sigma : float or (float, float)
        Gaussian smoothing (pixels) before thresholding, or ``(along, across)``
        the trench: cells are straight along it, so smoothing along the trench
        steadies the edges without moving them.
    lumen_width : int or None
        Width in pixels of the band of columns searched for cells (the trench
        lumen; give the real lumen width, not more, so walls stay out). None
        searches the whole crop.
    lumen_shift : int
        The band may move this many pixels off the crop centre, per crop,
        towards the strongest cell signal.
    snr : float
        Detection threshold in noise standard deviations of the smoothed image.
    level : float
        Contour level: each cell keeps the pixels above ``level`` times its own
        peak, where the signal is the intensity above background
        (fluorescence) or the depth below the local halo (phase). Default 0.3
        (fluorescence), 0.12 (phase), 0.05 (phase with ``background``).
    split_depth : float
        Relative depth of a dip of the row profile that separates two cells.
    min_length : int
        Shortest piece (rows) a split may produce.
    min_area : int
        Objects smaller than this (pixels) are dropped.
    open_end : {"keep", "drop"}
        Whether cells touching the last row (cut by the crop's open end) are kept.
    background_rows : int
        Length (rows, longer than a cell) of the windows of the reference along
        the trench: running mean of the row median (fluorescence), running
        maximum then mean of each column (phase).
    min_depth : float
        Phase: candidate pixels are darker than the reference by at least this
        fraction of it.
    min_peak_depth : float
        Phase: a cell's darkest point is darker than the reference by at least
        this fraction of it (empty lumen shades, e.g. near the open end, are not).
    contour_window : int
        Phase: width (columns) of the window of the local halo level; it must
        reach from a cell's axis to its halo.
    contour_rows : int
        Phase: height (rows) of that window; small, so that the bright halo of
        a neighbouring septum does not set the level along a cell's sides.
    max_offset : float
        Objects whose centroid lies farther than this (pixels) from the lumen
        axis are dropped; default a quarter of ``lumen_width``.
    clean : bool
        Fill holes and keep, in every row, only each cell's run of pixels
        through its axis (drops wall blur and debris glued to its side).
    empty_crops : array of bool, optional
        Which crops are known to hold no cell (TrenchDetection's ``empty``
        flag), broadcastable to the leading dimensions of ``crops`` (e.g.
        ``(N, 1)``). Whatever is found in them shows what artefacts look like
        here (JPEG blocks, noise): objects no stronger than those are dropped
        everywhere (the 90th percentile of their peaks, never above half the
        median peak of the objects in the other crops).
    split_noise : float
        A dip must also be this many noise sigmas (of a row sum) deep to split
        a cell: in dim cells noise makes dips as deep, relatively, as septa.
    background : ndarray, optional
        Phase: what an empty trench looks like, broadcastable to ``crops``
        (e.g. ``(T, 1, H, W)``: the median crop of the trenches found empty,
        per frame). It replaces the column reference: the chip's own
        structure (walls, the PDMS beyond the closed end, their halos, a dark
        lumen between bright walls) is then removed, so an empty lumen gives
        no cell whatever the polarity. Scaled per crop to its brightness.
    device : str, optional
        Accepted for the registry's common interface and ignored: this method
        runs on the CPU.

    Returns
    -------
    labels : int32 ndarray, same shape as ``crops``
        Cells numbered 1..k from the closed end in every crop, background 0.
    """
    if kind not in DEFAULTS:
        raise ValueError(f"kind must be one of {sorted(DEFAULTS)}; got {kind!r}")
    if open_end not in ("keep", "drop"):
        raise ValueError(f"open_end must be 'keep' or 'drop'; got {open_end!r}")
    snr = DEFAULTS[kind]["snr"] if snr is None else snr
    if level is None:
        # against empty trenches the depth is measured from the true empty level, so a
        # lower contour level reaches the cell's edge (IoU 0.78-0.86 -> 0.83-0.89 on
        # five optics families, tuning seeds)
        level = 0.05 if (kind == "phase" and background is not None) else DEFAULTS[kind]["level"]
    sigma = DEFAULTS[kind]["sigma"] if sigma is None else sigma
    split_depth = DEFAULTS[kind]["split_depth"] if split_depth is None else split_depth
    crops = np.asarray(crops)
    if crops.ndim < 2:
        raise ValueError(f"crops must be (..., H, W); got shape {crops.shape}")
    shape = crops.shape
    h, w = shape[-2:]
    x = crops.reshape(-1, h, w).astype(np.float32)
    if x.shape[0] == 0 or h == 0 or w == 0:
        return np.zeros(shape, np.int32)

    sig = tuple(np.broadcast_to(np.asarray(sigma, float), (2,)))
    sm = ndimage.gaussian_filter(x, (0,) + sig, mode="nearest")
    m = x.shape[0]
    ref, s, background = _cell_signal(sm, kind, background, shape, sig, background_rows)
    band, axis = _lumen_band(s.sum(axis=1), lumen_width, lumen_shift)
    # Only the columns of some lumen band go to the labelling kernel.
    used = np.flatnonzero(band.any(axis=0))
    c0, c1 = used[0], used[-1] + 1
    contour = _contour_signal(sm, s, kind, c0, c1, contour_window, contour_rows)
    if max_offset is None:
        max_offset = (lumen_width if lumen_width is not None else w) / 4.0
    noise, floor, min_peak = _noise_and_floors(x, sm, ref, band, sig, kind, min_depth, min_peak_depth)
    cut = np.maximum(np.maximum(snr * noise, floor), 1e-6 * np.abs(sm).max(axis=(1, 2)))
    cand = (s[:, :, c0:c1] > cut[:, None, None]) & band[:, None, c0:c1]
    if kind == "phase" and background is not None:
        # shapes come from the column reference; but a pixel no darker than an
        # empty trench at the same place (the PDMS beyond the closed end, lumen
        # shades, halo dips) is no cell
        empty_ref = _empty_reference(background, shape, sm, sig)
        depth = (empty_ref - sm)[:, :, c0:c1]
        cand &= depth > (0.5 * snr * noise)[:, None, None]
        # nothing lies beyond the closed end: rows before the empty lumen starts
        cand[:, :lumen_start_row(background, w)] = False
    out = label_crops(np.ascontiguousarray(s[:, :, c0:c1], np.float32),
                      np.ascontiguousarray(contour, np.float32),
                      cand, float(level), min_peak.astype(np.float64), (axis - c0).astype(np.float64),
                      float(max_offset), float(split_depth), max(int(min_length), 1),
                      int(min_area), open_end == "drop", bool(clean),
                      _min_dip(noise, sig, lumen_width, w, split_noise))
    if kind == "phase" and background is not None:
        # whether an object is a cell at all is decided against the empty trenches
        out = _drop_shallow(out, depth, np.maximum(snr * noise, floor))
    if empty_crops is not None:
        em = np.broadcast_to(np.asarray(empty_crops, bool).reshape(
            np.asarray(empty_crops).shape + (1,) * (len(shape) - 2 - np.ndim(empty_crops))),
            shape[:-2]).reshape(-1)
        out = _drop_like_empty(out, s[:, :, c0:c1], em)
    labels = np.zeros((m, h, w), np.int32)
    labels[:, :, c0:c1] = out
    return labels.reshape(shape)


def lumen_start_row(background, w=None) -> int:
    """First crop row of the lumen, from the empty-trench crop (0 when no edge is seen).

    A box starts a little outside the closed end, in the PDMS; the empty
    trenches show where their lumen begins: where the centre columns' profile
    along the trench has come half-way from the level of the first row (PDMS)
    to the lumen's own level. Cells cannot lie before that row.

    Parameters
    ----------
    background : ndarray, shape (..., H, W)
        Empty-trench crop(s) (e.g. from :func:`empty_background`).

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> crop = np.full((40, 16), 100.0)
    >>> crop[:3] = 20.0                               # three rows of PDMS
    >>> lumen_start_row(crop)
    3
    """
    bg = np.asarray(background, np.float32)
    h, w = bg.shape[-2:]
    centre = bg[..., w // 2 - max(1, w // 8): w // 2 + max(1, w // 8) + 1]
    profile = centre.reshape(-1, h, centre.shape[-1]).mean(axis=(0, 2))
    top = profile[: max(4, h // 8)]
    first = float(profile[0])
    # the lumen's level next to the closed end: the extreme away from the PDMS row
    # (an edge when 8 noise levels off). Where the other extreme comes first and is
    # half as far off, the lumen begins there: a rounded end's outline is a dark rim
    # before a lumen barely brighter than the PDMS (independent simulator 1116), and
    # half-way to the bright level lay 3-5 rows inside the rim; the mothers, which
    # fill the end up to it, lost those rows. A halo in the PDMS before a lumen far
    # darker is no start (1057: 0.14 of the lumen's departure; taken, the U-Net grew
    # the mothers into the PDMS)
    middle = np.diff(profile[h // 4: 3 * h // 4])
    extremes = sorted((float(top.max()), float(top.min())), key=lambda e: -abs(e - first))
    noise = 1.4826 * float(np.median(np.abs(middle))) + 1e-6 * abs(extremes[0])
    bars = (8 * noise, max(4 * noise, 0.5 * abs(extremes[0] - first)))
    starts = []
    for ext, bar in zip(extremes, bars):
        if abs(ext - first) < bar:
            break
        reached = (top - 0.5 * (first + ext)) * np.sign(ext - first) >= 0
        starts.append(int(np.argmax(reached)))
    return min(starts, default=0)


def first_cell_row(closed_end_margin) -> int:
    """First crop row where a cell may begin, for boxes that start ``closed_end_margin``
    pixels before the closed end (TrenchDetection's ``closed_end_margin_px``).

    The rows before the lumen's edge, wholly or in part, and the blurred edge
    row after them: left in, the U-Net extends the mothers into that row
    (alt_optics tuning seeds 10-11: mothers 2.2 px too long with it, 0.4 px too
    short without it). Used when no empty trench shows where the lumen starts
    (:func:`lumen_start_row`).

    Examples
    --------
    >>> first_cell_row(1.5), first_cell_row(1.0), first_cell_row(0.0)
    (3, 2, 0)
    """
    margin = float(closed_end_margin)
    return int(np.ceil(margin - 1e-6)) + 1 if margin > 0 else 0


def _dark_lumen(background, w) -> bool:
    """Whether the empty lumen (centre columns) is darker than the walls (outer quarters)."""
    bg = np.asarray(background, np.float32)
    side = max(1, w // 4)
    centre = np.median(bg[..., w // 2 - side // 2: w // 2 + side // 2 + 1])
    walls = np.median(np.concatenate([bg[..., :side].ravel(), bg[..., w - side:].ravel()]))
    return bool(centre < walls)


def _object_ids(labels):
    """Flat id ``crop * n + label`` of every pixel and ``n`` (labels per crop, with 0)."""
    n = int(labels.max(initial=0)) + 1
    return (np.arange(labels.shape[0])[:, None, None] * n + labels).ravel(), n


def _keep_objects(labels, keep):
    """``labels`` with the objects where ``keep`` (``(M, n)`` bool) is False set to 0."""
    m = labels.shape[0]
    kept = np.take_along_axis(keep, labels.reshape(m, -1), axis=1).reshape(labels.shape)
    return np.where(kept, labels, 0).astype(labels.dtype)


def _drop_shallow(labels, depth, cut):
    """Remove objects whose mean depth below the empty trench is under ``cut`` (per crop)."""
    ids, n = _object_ids(labels)
    if n == 1:
        return labels
    m = labels.shape[0]
    sums = np.bincount(ids, weights=depth.ravel().astype(np.float64), minlength=m * n)
    counts = np.bincount(ids, minlength=m * n)
    keep = (sums / np.maximum(counts, 1)).reshape(m, n) > np.asarray(cut, float)[:, None]
    keep[:, 0] = False
    return _keep_objects(labels, keep)


def _drop_like_empty(labels, signal, empty):
    """Drop objects no stronger than what the known-empty crops hold (see ``empty_crops``)."""
    if not empty.any() or empty.all() or labels.max(initial=0) == 0:
        return labels
    ids, n = _object_ids(labels)
    m = labels.shape[0]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    peaks = np.zeros(m * n)
    peaks[sorted_ids[starts]] = np.maximum.reduceat(signal.ravel()[order], starts)
    present = np.zeros(m * n, bool)
    present[sorted_ids[starts]] = True
    peaks, present = peaks.reshape(m, n), present.reshape(m, n)
    present[:, 0] = False
    false = peaks[empty][present[empty]]
    real = peaks[~empty][present[~empty]]
    if false.size == 0 or real.size == 0:
        return labels
    # a cell that entered an "empty" trench must not raise the bar for all cells
    cut = min(float(np.percentile(false, 90)), 0.5 * float(np.median(real)))
    return _keep_objects(labels, present & (peaks > cut))
