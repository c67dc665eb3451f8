"""Per trench-frame fluorescence background.

Definition (``background="trench"``, the default)
-------------------------------------------------
For each crop (trench ``n``, frame ``t``) the background of a channel is the
median of its *cell-free lumen pixels*: pixels farther than ``dilate`` pixels
(square neighbourhood) from any labelled pixel, restricted to the lumen
columns. Dilating the masks keeps the blurred halo of each cell out of the
estimate. The lumen columns of a trench are the columns covered by its cells in
any frame (cells fill the lumen's width, the walls never hold cells); a trench
that never holds a cell uses the columns covered by cells in at least half as
many crops as the most covered column of the stack.

A crop with fewer than ``min_pixels`` cell-free lumen pixels (a full trench) is
*full*: it takes the median of the backgrounds of the empty trenches of the same
frame; with no empty trench in that frame, the median of the backgrounds of the
other (non-full) trenches of that frame; otherwise NaN.

``background="empty_trenches"`` gives every crop the empty-trench median of its
frame (NaN where a frame has none); a number gives that constant.
Empty trenches are the crops without any label unless ``empty_trench_mask``
(``(N,)`` or ``(N, T)`` booleans) says otherwise.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ._kernels import masked_median_rows

SOURCES = np.array(["trench", "empty_trenches", "frame", "constant", "none"], dtype=object)


def lumen_columns(labels_nt: np.ndarray) -> np.ndarray:
    """Boolean ``(N, W)`` lumen columns of each trench inferred from its cells."""
    col_occ = (labels_nt > 0).any(axis=2)                   # (N, T, W)
    per_trench = col_occ.any(axis=1)                         # (N, W)
    counts = col_occ.sum(axis=(0, 1))
    fallback = counts >= 0.5 * counts.max() if counts.max() > 0 else np.ones_like(counts, bool)
    empty = ~per_trench.any(axis=1)
    per_trench[empty] = fallback
    return per_trench


def _frame_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over trenches of ``values[mask]`` for each frame (``(N, T)`` -> ``(T,)``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.where(mask, values, np.nan), axis=0)


def crop_backgrounds(labels_nt, channels, background="trench", empty_trench_mask=None,
                     dilate=2, min_pixels=50, lumen=None):
    """Background of each crop and channel.

    Returns
    -------
    values : dict channel -> float64 ``(N, T)``
    source : int ``(N, T)``, index into :data:`SOURCES`
    """
    n, t, h, w = labels_nt.shape
    if not isinstance(background, str):
        value = float(background)
        return ({ch: np.full((n, t), value) for ch in channels}, np.full((n, t), 3))
    if background not in ("trench", "empty_trenches"):
        raise ValueError(f"background must be 'trench', 'empty_trenches' or a number; got {background!r}")

    occupied = labels_nt.reshape(n * t, h, w) > 0
    if empty_trench_mask is None:
        empty = ~occupied.any(axis=(1, 2)).reshape(n, t)
    else:
        empty = np.broadcast_to(np.asarray(empty_trench_mask, bool).reshape(n, -1), (n, t))
    lumen = lumen_columns(labels_nt) if lumen is None else np.broadcast_to(np.asarray(lumen, bool), (n, w))
    near_cell = ndimage.maximum_filter(occupied.view(np.uint8), size=(1, 2 * dilate + 1, 2 * dilate + 1))
    free = (near_cell == 0) & np.repeat(lumen, t, axis=0)[:, None, :]
    free = free.reshape(n * t, h * w)

    values, source = {}, None
    for ch, arr in channels.items():
        med, count = masked_median_rows(arr.reshape(n * t, h * w), free)
        med, count = med.reshape(n, t), count.reshape(n, t)
        from_empty = np.broadcast_to(_frame_median(med, empty & (count > 0)), (n, t))
        if background == "empty_trenches":
            bg, src = from_empty.copy(), np.where(np.isnan(from_empty), 4, 1)
        else:
            ok = count >= min_pixels
            from_frame = np.broadcast_to(_frame_median(med, ok), (n, t))
            bg = np.where(ok, med, np.where(np.isnan(from_empty), from_frame, from_empty))
            src = np.where(ok, 0, np.where(~np.isnan(from_empty), 1, np.where(np.isnan(from_frame), 4, 2)))
        values[ch] = bg
        source = src if source is None else source
    if source is None:
        source = np.full((n, t), 4)
    return values, source
