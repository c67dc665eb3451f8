"""Phase-contrast objects that look just like the empty lumen are not cells.

Under strong wall halos the middle of an empty lumen is a shade darker than its
edges, and a learned model can take that band for a long, thin cell: in empty
trenches and in the empty part of filled ones (generated held-out halo_walls
10109: 13 of 72 empty trench-frames, and about 100 objects in the empty ends of
filled trenches). The trenches TrenchDetection found empty show what the lumen
looks like in the same frame (:func:`~.threshold.empty_background`). A cell
differs from that reference by a large share of the lumen's brightness (on
generated data of every family, tuning seeds, the mean of crop / reference over
a cell departs from the crop's own level by 0.10-0.73, and by at least a third
of the stack's typical cell); the band departs by 0.00-0.03.
"""
from __future__ import annotations

import numpy as np

from .numbering import remove_objects

__all__ = ["lumen_departures", "reference_spread", "within_empty_spread",
           "drop_lumen_lookalikes"]


def lumen_departures(labels, crops, background):
    """How far each object's mean differs from the empty lumen, as a share of it.

    Parameters
    ----------
    labels : array_like of int, shape (N, T, H, W)
        Objects numbered 1..k in every crop.
    crops : array_like, shape (N, T, H, W)
        The phase-contrast crops.
    background : array_like, shape (1, T, H, W) or (N, T, H, W)
        The median crop of the empty trenches per frame (or one per crop: of its
        set's, :func:`~.empty_trenches.references_by_set`).

    Returns
    -------
    ndarray, shape (N * T, K + 1)
        For label ``k`` of crop ``m`` (crops in C order): the mean of
        ``crop / background`` over the object minus its median over the crop's
        pixels outside every object (which takes out a crop's own illumination
        level). NaN for labels a crop does not hold, and column 0.
    """
    labels = np.asarray(labels)
    n, n_t, h, w = labels.shape
    crops = np.asarray(crops, np.float32)
    background = np.asarray(background, np.float32)
    # where the reference is (nearly) zero a ratio means nothing: clip it
    floor = max(float(np.median(background)) * 1e-2, 1e-6)
    ratio = (crops / np.maximum(background, floor)).reshape(n * n_t, h * w)
    flat = labels.reshape(n * n_t, h * w)
    k = int(flat.max(initial=0))
    # sums over the labelled pixels only: (crop, label) -> one index
    where = np.flatnonzero(flat)
    ids = (where // (h * w)) * (k + 1) + flat.ravel()[where]
    size = np.bincount(ids, minlength=n * n_t * (k + 1)).reshape(n * n_t, k + 1)
    total = np.bincount(ids, weights=ratio.ravel()[where], minlength=size.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total.reshape(size.shape) / size
    # a crop without a pixel outside its objects has no level (NaN): its objects stay
    # only crops holding an object need their level (a third of them in empty trenches)
    level = np.full(n * n_t, np.nan, ratio.dtype)
    held = flat.any(axis=1)
    level[held] = _row_medians(ratio[held], flat[held] == 0)
    departure = mean - level[:, None]
    departure[size == 0] = np.nan
    departure[:, 0] = np.nan
    return departure


def _row_medians(values, where):
    """The median of ``values[m][where[m]]`` for every row ``m`` (NaN where none).

    One sort of the rows (the other values set to +inf), about three times
    faster than ``np.nanmedian``, and equal to it.

    >>> _row_medians(np.array([[1.0, 5.0, 3.0, 9.0], [2.0, 4.0, 6.0, 8.0]]),
    ...              np.array([[True, True, True, False], [False, False, False, False]]))
    array([ 3., nan])
    """
    ordered = np.sort(np.where(where, values, np.inf), axis=1)
    count = where.sum(axis=1)
    rows = np.arange(len(ordered))
    upper = ordered[rows, np.minimum(count // 2, ordered.shape[1] - 1)]
    lower = ordered[rows, np.maximum(count // 2 - 1, 0)]
    median = np.where(count % 2 == 1, upper, 0.5 * (lower + upper))
    return np.where(count > 0, median, np.nan)


def reference_spread(crops, background, empty) -> float:
    """How far the crops the reference was taken from depart from it, in the lumen.

    The median, over those crops and frames, of the mean of
    ``|crop / background - level|`` over the crop's middle five columns (its
    lumen), ``level`` being the crop's median ratio. Empty lumens agree with
    their median to noise (0.01-0.04 on generated data of every family);
    trenches with cells flagged empty do not (0.05-0.15), and their median is
    then no picture of an empty lumen.
    """
    empty = np.asarray(empty, bool)
    flagged = np.asarray(crops)[empty].astype(np.float32)
    if flagged.size == 0:
        return float("nan")
    background = _for_flagged(background, empty)
    floor = max(float(np.median(background)) * 1e-2, 1e-6)
    ratio = flagged / np.maximum(background, floor)
    w = ratio.shape[-1]
    middle = ratio[..., max(w // 2 - 2, 0): w // 2 + 3]
    level = np.median(ratio.reshape(*ratio.shape[:-2], -1), axis=-1)[..., None, None]
    return float(np.median(np.abs(middle - level).mean(axis=(-2, -1))))


def _for_flagged(background, empty):
    """``background`` (float32) for the crops flagged ``empty``: one crop for all
    (``(1, T, H, W)``), or its rows of one per crop (``(N, T, H, W)``,
    :func:`~.empty_trenches.references_by_set`)."""
    background = np.asarray(background, np.float32)
    return background[empty] if background.shape[0] == len(empty) > 1 else background


def within_empty_spread(labels, crops, background, empty, departure=None):
    """How far each object in a trench flagged empty departs from the empty lumen, in
    units of how far the empty lumens depart from each other at its pixels.

    Per frame, every empty crop's ``crop / background`` less its own level (the
    median outside its objects) is a deviation image; the spread is, per pixel,
    the scaled median absolute deviation of those images across the empty
    trenches. An object's score is ``|departure|`` (:func:`lumen_departures`)
    over the mean spread at its pixels. Where the empty lumens differ among
    themselves (bands of the open end that fall a row or two apart from trench
    to trench) a look-alike of one of them scores about 1 however far it is
    from their median; a cell that entered an empty trench scores far more.

    ``departure``, :func:`lumen_departures` of the same arguments (either sign), is
    taken as given where the caller has it already.

    Returns
    -------
    ndarray, shape (N * T, K + 1)
        The scores of the objects of the empty trenches' crops (crops in C
        order); NaN elsewhere, and for labels a crop does not hold.

    Examples
    --------
    >>> from batchlib.trench.segmentation.threshold import empty_background
    >>> rng = np.random.default_rng(0)
    >>> crops = 100 + rng.normal(0, 1, (5, 1, 30, 8))       # five empty trenches
    >>> for i in range(5):                                  # a band, a row apart in each
    ...     crops[i, 0, 20 + i % 3: 23 + i % 3, 2:6] -= 10
    >>> crops[1, 0, 5:12, 2:6] = 50                         # a cell that entered one
    >>> labels = np.zeros(crops.shape, int)
    >>> labels[0, 0, 20:23, 2:6] = 1                        # the band, taken for a cell
    >>> labels[1, 0, 5:12, 2:6] = 1
    >>> empty = np.ones(5, bool)
    >>> score = within_empty_spread(labels, crops, empty_background(crops, empty), empty)
    >>> np.round(score[:2, 1], 1)
    array([ 1.5, 43.5])
    """
    labels = np.asarray(labels)
    empty = np.asarray(empty, bool)
    n, n_t, h, w = labels.shape
    if departure is None:
        departure = lumen_departures(labels, crops, background)
    score = np.full(departure.shape, np.nan)
    idx = np.flatnonzero(empty)
    background = _for_flagged(background, empty)
    floor = max(float(np.median(background)) * 1e-2, 1e-6)
    ratio = np.asarray(crops, np.float32)[idx] / np.maximum(background, floor)  # (E, T, H, W)
    free = labels[idx] == 0
    level = _row_medians(ratio.reshape(-1, h * w), free.reshape(-1, h * w))
    dev = ratio - level.reshape(len(idx), n_t, 1, 1)
    spread = 1.4826 * np.median(np.abs(dev - np.median(dev, axis=0)), axis=0)   # (T, H, W)
    # the mean spread under every label of every empty crop: (crop, label) -> one index
    k = departure.shape[1] - 1
    lab = labels[idx].reshape(-1, h * w)
    ids = (np.arange(len(lab))[:, None] * (k + 1) + lab).ravel()
    weights = np.broadcast_to(spread, (len(idx), n_t, h, w)).ravel()
    on = np.bincount(ids, weights=weights, minlength=lab.shape[0] * (k + 1))
    size = np.bincount(ids, minlength=lab.shape[0] * (k + 1))
    rows = (idx[:, None] * n_t + np.arange(n_t)).ravel()        # those crops in C order
    with np.errstate(invalid="ignore", divide="ignore"):
        score[rows] = np.abs(departure[rows]) / (on / size).reshape(len(rows), k + 1)
    score[:, 0] = np.nan
    return score


def _close_to(departure, crops, background, empty, share, min_objects, max_spread):
    """Per object (:func:`lumen_departures`' layout): whether its ``departure`` from
    ``background`` is under ``share`` of the median of the other trenches' objects;
    ``None`` where that says nothing (too few objects, or a reference that holds cells:
    see :func:`drop_lumen_lookalikes`)."""
    judged = departure
    if empty is not None:
        judged = departure[np.repeat(~np.asarray(empty, bool), np.shape(crops)[1])]
    found = judged[np.isfinite(judged)]
    if found.size < min_objects:
        return None
    if empty is not None and not reference_spread(crops, background, empty) \
            < max_spread * np.median(found):
        return None
    return departure < share * np.median(found)          # NaN compares False


#: Objects departing from the empty lumen by under this share of the cells' median go.
#: 0.15 until the seventeenth session. Independent simulator, phase, the 245 positions
#: of 1000-1251 with an empty trench: of the U-Net's objects no true cell matches (3567,
#: mostly the shaded lumen between a trench's last cell and its open end) 2685 depart
#: by under 0.4 of it (2269 under 0.3), of the 335748 matched cells 146 (53); on the
#: generator (tuning seeds 4-5, every family) no matched cell under 0.5.
LOOKALIKE_SHARE = 0.4
#: The same against each trench set's own empty lumens (``references``): they can be
#: dark where the position's are not, and cells depart from them less (independent
#: 1055, one dark empty lumen per set: at 0.4 its counts within one 1.000 -> 0.888).
SET_LOOKALIKE_SHARE = 0.15


def drop_lumen_lookalikes(labels, crops, background, share=LOOKALIKE_SHARE, min_objects=5,
                          empty=None, max_spread=0.5, within_spread=2.0, min_empty=4,
                          references=None, set_share=SET_LOOKALIKE_SHARE):
    """Remove phase objects whose contrast to the empty lumen is a small share of the cells'.

    Parameters
    ----------
    labels : array_like of int, shape (N, T, H, W)
        Objects numbered 1..k from the closed end in every crop.
    crops : array_like, shape (N, T, H, W)
        The phase-contrast crops they were found in.
    background : array_like, shape (1, T, H, W), or None
        What an empty trench looks like in each frame
        (:func:`~.threshold.empty_background`); without it nothing changes.
    share : float
        An object whose departure from the lumen (:func:`lumen_departures`,
        either sign) is under this share of the median departure of all objects
        is removed (:data:`LOOKALIKE_SHARE`). The empty lumen's band departs by
        under a tenth, the shaded lumen towards a trench's open end by 0.2-0.38.
    min_objects : int
        With fewer objects in the stack the median says too little: nothing changes.
    empty : array of bool, shape (N,), optional
        The trenches ``background`` was taken from (TrenchDetection's ``empty``
        flag). When their own crops depart from it by ``max_spread`` or more of
        the cells' median departure (:func:`reference_spread`), the reference
        holds cells, not an empty lumen, and nothing is dropped: with only
        filled trenches flagged empty, dropping took 4-10 % of real cells
        (generated tuning positions; the spread was 1.0-4.8 times the cells'
        departure there, and 0.02-0.28 times with the right flags, one wrong
        flag among three included). The medians are then over the objects of
        the other trenches.
    max_spread : float
        See ``empty``.
    within_spread : float
        With ``empty`` and at least ``min_empty`` trenches flagged, an object in one of
        them also goes when it departs from the empty lumen by under this many times
        the empty lumens' own spread at its pixels (:func:`within_empty_spread`).
        Independent simulator 1020: bands at the lumens' open end that fall a row
        or two apart from trench to trench, 0.05-0.08 from the reference (a sixth to
        a quarter of the cells' median departure) but 0.58-1.04 of the spread, were
        a cell in 25 % of the empty trench-frames; the cells of the filled trenches
        score 4 or more in 95 % of cases (median 16).
    min_empty : int
        See ``within_spread``.
    references : array_like, shape (N, T, H, W), optional
        With ``empty``: what an empty lumen looks like in each crop's own trench
        set (:func:`~.empty_trenches.references_by_set`). An object also goes when
        it departs from that by under ``set_share`` of the median (with the same
        checks). The two sets of a chip can light their lumens differently: the
        open-end shading of one set's empty lumens (independent simulator 1012),
        or one set's dark empty lumens (1055), departed from the position's
        median by a quarter to 0.7 of the cells' median, from their own set's by
        0.00-0.04. Not in place of ``background``: against a set's reference of
        two or three lumens the spread of ``within_spread`` is too narrow (1084:
        an empty lumen's open end, 2-2.8 times it, would have stayed).
    set_share : float
        See ``references`` (:data:`SET_LOOKALIKE_SHARE`).

    Returns
    -------
    ndarray
        ``labels``, or a copy without those objects, renumbered from the closed end.

    Examples
    --------
    >>> bg = np.full((1, 1, 40, 10), 100.0)
    >>> crops = np.repeat(bg, 3, axis=0).copy()
    >>> labels = np.zeros(crops.shape, int)
    >>> for n in range(3):                    # three dark cells, 55 % of the lumen
    ...     labels[n, 0, 2:12, 3:7] = 1; crops[n, 0, 2:12, 3:7] = 45
    ...     labels[n, 0, 14:24, 3:7] = 2; crops[n, 0, 14:24, 3:7] = 50
    >>> labels[2, 0, 26:38, 4:6] = 3          # a band 1 % darker than the lumen
    >>> crops[2, 0, 26:38, 4:6] = 99
    >>> out = drop_lumen_lookalikes(labels, crops, bg)
    >>> [int(out[n].max()) for n in range(3)]
    [2, 2, 2]
    """
    labels = np.asarray(labels)
    if background is None or labels.ndim != 4 or labels.max(initial=0) == 0:
        return labels
    n, n_t = labels.shape[:2]
    departure = np.abs(lumen_departures(labels, crops, background))
    gone = _close_to(departure, crops, background, empty, share, min_objects, max_spread)
    if gone is not None and empty is not None and np.sum(empty) >= min_empty:
        gone |= within_empty_spread(labels, crops, background, empty, departure) < within_spread
    if references is not None and empty is not None:
        by_set = _close_to(np.abs(lumen_departures(labels, crops, references)), crops,
                           references, empty, set_share, min_objects, max_spread)
        if by_set is not None:
            gone = by_set if gone is None else gone | by_set
    if gone is None or not gone.any():
        return labels
    out = labels.copy()
    flat = out.reshape(n * n_t, *labels.shape[2:])
    for m in np.flatnonzero(gone.any(axis=1)):
        k = int(flat[m].max())
        # labels with no pixel go too: the survivors are numbered 1..k' without gaps
        flat[m] = remove_objects(flat[m], gone[m, :k + 1] | np.isnan(departure[m, :k + 1]))
    return out
