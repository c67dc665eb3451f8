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

__all__ = ["lumen_departures", "reference_spread", "drop_lumen_lookalikes"]


def lumen_departures(labels, crops, background):
    """How far each object's mean differs from the empty lumen, as a share of it.

    Parameters
    ----------
    labels : array_like of int, shape (N, T, H, W)
        Objects numbered 1..k in every crop.
    crops : array_like, shape (N, T, H, W)
        The phase-contrast crops.
    background : array_like, shape (1, T, H, W)
        The median crop of the empty trenches per frame.

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
    departure = mean - _row_medians(ratio, flat == 0)[:, None]
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
    flagged = np.asarray(crops)[np.asarray(empty, bool)].astype(np.float32)
    if flagged.size == 0:
        return float("nan")
    floor = max(float(np.median(background)) * 1e-2, 1e-6)
    ratio = flagged / np.maximum(np.asarray(background, np.float32), floor)
    w = ratio.shape[-1]
    middle = ratio[..., max(w // 2 - 2, 0): w // 2 + 3]
    level = np.median(ratio.reshape(*ratio.shape[:-2], -1), axis=-1)[..., None, None]
    return float(np.median(np.abs(middle - level).mean(axis=(-2, -1))))


def drop_lumen_lookalikes(labels, crops, background, share=0.15, min_objects=5, empty=None,
                          max_spread=0.5):
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
        is removed. The least contrasted cell of generated data departs by a
        third of the median; the empty lumen's band by under a tenth.
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
    departure = np.abs(lumen_departures(labels, crops, background))
    n, n_t = labels.shape[:2]
    judged = departure
    if empty is not None:
        others = np.repeat(~np.asarray(empty, bool), n_t)       # crops in C order
        judged = departure[others]
    found = judged[np.isfinite(judged)]
    if found.size < min_objects:
        return labels
    if empty is not None and not reference_spread(crops, background, empty) \
            < max_spread * np.median(found):
        return labels
    gone = departure < share * np.median(found)          # NaN compares False
    if not gone.any():
        return labels
    out = labels.copy()
    flat = out.reshape(n * n_t, *labels.shape[2:])
    for m in np.flatnonzero(gone.any(axis=1)):
        k = int(flat[m].max())
        # labels with no pixel go too: the survivors are numbered 1..k' without gaps
        flat[m] = remove_objects(flat[m], gone[m, :k + 1] | np.isnan(departure[m, :k + 1]))
    return out
