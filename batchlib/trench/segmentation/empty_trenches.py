"""What a segmentation may keep in the trenches TrenchDetection found empty."""
from __future__ import annotations

import numpy as np

from .chip_structures import drop_chip_structures
from .numbering import remove_objects
from .open_end_bands import join_across_open_end_bands

__all__ = ["segment_and_clean", "clean_by_empty_trenches", "clean_empty_trenches",
           "drop_fragments", "references_by_set"]


def segment_and_clean(crops, method, kind, empty=None, references=None, **kwargs) -> tuple:
    """``(labels, removed)``: ``segment_trenches(crops, method=method, kind=kind,
    **kwargs)``; objects beside a larger one dropped (cells lie in single file:
    :func:`~.single_file.drop_side_objects`); in phase, a cell split by the chip's band
    at the open end joined (:func:`~.open_end_bands.join_across_open_end_bands`; the
    ``unet`` method joins them itself, before its fragments are merged); then, with TrenchDetection's
    ``empty`` flags, what they rule out (:func:`clean_by_empty_trenches`, with
    ``kwargs["background"]`` and ``references``, :func:`references_by_set`, when given).

    The Segment job's segmentation of a block of frames, and of the frame it
    segments again mirrored (:mod:`.mirror`); the benchmarks score this call.
    ``removed``: ``{"side_crops": crops that lost an object beside a cell,
    "lookalikes": objects dropped as look-alikes of the empty lumen}``.
    """
    from . import resolve_method, segment_trenches
    from .single_file import drop_side_objects

    labels, side_crops = drop_side_objects(segment_trenches(crops, method=method, kind=kind,
                                                            **kwargs))
    if kind == "phase" and resolve_method(method).name != "unet":
        # a cell split by the chip's band at the open end is one cell (open_end_bands.py)
        labels, _ = join_across_open_end_bands(labels, crops)
    removed = {"side_crops": side_crops, "lookalikes": 0}
    if empty is None:
        return labels, removed
    labels, removed["lookalikes"] = clean_by_empty_trenches(
        labels, crops, kind, np.asarray(empty, bool), kwargs.get("background"), references)
    return labels, removed


def references_by_set(crops, empty, sets, first=None, background=None):
    """What an empty lumen looks like in each crop's own trench set, per frame; ``None``
    where fewer than two sets have a trench flagged empty (the position's one
    reference, :func:`~.threshold.empty_background`, is then the same thing).

    The two sets of a chip face the main channel from either side: their lumens'
    open ends lie in other light, and an empty lumen of one set can look unlike
    those of the other. Against the median of both, the open-end shading of one
    set's empty trenches departed from "empty" by a quarter of the cells' median
    departure (independent simulator 1012, kept as a cell in every frame of its 4
    empty trenches), or a dark empty lumen by 0.7 of it (1055: taken for one long
    cell); against their own set's empty lumens, by 0.00-0.04.

    Parameters
    ----------
    crops : ndarray, shape (N, T, H, W)
    empty : array of bool, shape (N,)
        TrenchDetection's ``empty`` flags.
    sets : array of int, shape (N,)
        The set of every crop (the trenches table's ``set``).
    first : ndarray, shape (N, T0, H, W), optional
        The position's first frames: a set with one empty trench takes its median
        over them (:func:`~.threshold.lone_empty_reference`; the Segment job's later
        blocks of frames pass them); default ``crops``.
    background : ndarray, shape (1, T, H, W), optional
        The position's reference, :func:`~.threshold.empty_background` of ``crops``
        and ``empty``, where the caller has it already.

    Returns
    -------
    ndarray of float32, shape (N, T, H, W), or None
        Crops of a set without an empty trench get the position's reference.

    Examples
    --------
    >>> crops = np.zeros((4, 2, 6, 3), np.float32)
    >>> crops[2:] = 10.0                                  # the second set's light
    >>> ref = references_by_set(crops, [True, False, True, False], [0, 0, 1, 1])
    >>> ref[:, 0, 0, 0].tolist()
    [0.0, 0.0, 10.0, 10.0]
    >>> references_by_set(crops, [True, True, False, False], [0, 0, 1, 1]) is None
    True
    """
    from .threshold import empty_background, lone_empty_reference

    crops = np.asarray(crops)
    empty, sets = np.asarray(empty, bool), np.asarray(sets)
    flagged = [k for k in np.unique(sets) if empty[sets == k].any()]
    if crops.ndim != 4 or len(flagged) < 2:
        return None
    out = np.empty(crops.shape, np.float32)
    out[:] = empty_background(crops, empty) if background is None else background
    for k in flagged:
        own = empty & (sets == k)
        # a set's lone empty trench: its median over the position's first frames
        lone = lone_empty_reference(first[own]) if first is not None and own.sum() == 1 \
            else None
        out[sets == k] = empty_background(crops, own, lone=lone)
    return out


def clean_by_empty_trenches(labels, crops, kind, empty, background=None,
                            references=None) -> tuple:
    """What the trenches TrenchDetection found empty rule out, after any segmentation
    method: what the Segment job does (and the benchmarks, which must score what it
    writes).

    In phase contrast, objects in any trench that look just like the empty lumen
    (:func:`~.lumen_lookalikes.drop_lumen_lookalikes`, against ``background`` or,
    without it, the empty trenches' median crop, and against each trench set's own,
    ``references``, when given); then, in the trenches flagged
    empty, chip structures and fragments (:func:`clean_empty_trenches`).

    Returns
    -------
    labels : ndarray
    n_lookalikes : int
        Objects dropped as look-alikes of the empty lumen.
    """
    n_lookalikes = 0
    if kind == "phase":
        from .lumen_lookalikes import drop_lumen_lookalikes
        from .threshold import empty_background

        if background is None:
            background = empty_background(crops, empty)
        kept = drop_lumen_lookalikes(labels, crops, background, empty=empty,
                                     references=references)
        if kept is not labels:
            # numbered 1..k in every crop: the largest labels count the objects
            n_lookalikes = int(labels.max(axis=(2, 3)).sum() - kept.max(axis=(2, 3)).sum())
            labels = kept
    return clean_empty_trenches(labels, empty), n_lookalikes


def clean_empty_trenches(labels, empty):
    """Chip structures (:func:`~.chip_structures.drop_chip_structures`), then fragments
    (:func:`drop_fragments`) removed from the trenches flagged ``empty`` (the second
    half of :func:`clean_by_empty_trenches`).
    """
    return drop_fragments(drop_chip_structures(labels, empty), empty)


def drop_fragments(labels, empty, narrow=0.6, small=0.4, min_cells=3):
    """Remove, from the trenches flagged empty, objects too small or narrow to be a cell.

    A cell that enters an empty trench is a whole cell. What a method finds
    in an empty lumen otherwise is a piece of halo at the open end, the edge
    of a bright band or a speck of debris: 30-45 px and 4-6 px wide, where
    the cells of the same frame are 130-330 px and 9-12 px wide (tuning
    seeds of halo_walls, dark_lumen and uneven_illumination, U-Net and
    phase contrast: 1-3 of 8 frames of an empty trench held one). The cells
    of the filled trenches of the same frame set the scale, so the rule
    holds at any magnification.

    Parameters
    ----------
    labels : ndarray, shape (N, T, H, W)
        Labels of every trench and frame, numbered 1..k from the closed end.
    empty : array of bool, shape (N,)
        TrenchDetection's ``empty`` flag.
    narrow : float
        An object whose mean width (pixels per row it spans) is under this
        share of the median width of the frame's cells in filled trenches goes.
    small : float
        So does one whose area is under this share of their median area.
    min_cells : int
        Frames whose filled trenches hold fewer cells are left as they are
        (no scale to judge by).

    Returns
    -------
    ndarray
        ``labels`` with those objects removed and the rest renumbered 1..k in
        order; the input is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((4, 1, 60, 16), np.int32)
    >>> for n in (0, 1):                      # filled trenches: cells 10 px wide, 20 long
    ...     lab[n, 0, 2:22, 3:13], lab[n, 0, 24:44, 3:13] = 1, 2
    >>> lab[2, 0, 54:60, 5:11] = 1           # a speck at the open end of an empty trench
    >>> lab[3, 0, 30:50, 3:12] = 1           # a whole cell that entered an empty trench
    >>> out = drop_fragments(lab, np.array([False, False, True, True]))
    >>> [int(out[n].max()) for n in range(4)]
    [2, 2, 0, 1]
    """
    labels = np.asarray(labels)
    empty = np.asarray(empty, bool)
    if labels.ndim != 4 or not empty.any() or empty.all() or labels.max(initial=0) == 0:
        return labels
    from .label_stats import highest_labels, label_stats  # numba: loaded where used

    n_tr, n_t = labels.shape[:2]
    counts, _, _, n_rows, _ = label_stats(labels)
    n_lab = counts.shape[1] - 1
    k_max = highest_labels(counts).reshape(n_tr, n_t)
    # labels 1..k of every crop (k its largest): area, and mean width = area over the
    # rows it spans; labels with no pixel (a gap in the numbering) are neither small
    # nor narrow
    own = np.arange(1, n_lab + 1)[None, None, :] <= k_max[:, :, None]
    area = counts[:, 1:].astype(float).reshape(n_tr, n_t, n_lab)
    rows = n_rows[:, 1:].reshape(n_tr, n_t, n_lab)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.where(rows > 0, area / np.maximum(rows, 1), np.inf)
    area = np.where(area > 0, area, np.inf)
    filled = np.flatnonzero(~empty)
    out = labels
    for t in range(n_t):
        mine = own[filled, t]
        cell_area, cell_width = area[filled, t][mine], width[filled, t][mine]
        real = np.isfinite(cell_area)
        cell_area, cell_width = cell_area[real], cell_width[real]
        if len(cell_area) < min_cells:
            continue
        min_area, min_width = small * np.median(cell_area), narrow * np.median(cell_width)
        for n in np.flatnonzero(empty):
            k = int(k_max[n, t])
            if k == 0:
                continue
            a, w = area[n, t, :k], width[n, t, :k]
            gone = (a < min_area) | (w < min_width)
            if not gone.any():
                continue
            if out is labels:
                out = labels.copy()
            # labels with no pixel go too: the survivors are numbered 1..k' without gaps
            out[n, t] = remove_objects(labels[n, t], np.concatenate([[False], gone | ~np.isfinite(a)]))
    return out
