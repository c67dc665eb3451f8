"""Pieces of cells: objects far shorter than any cell of their frame."""
from __future__ import annotations

import numpy as np

__all__ = ["merge_fragments", "drop_thin_objects"]


def merge_fragments(labels, ratio=0.4, gap=3, open_end_rows=2):
    """Join objects much shorter than the frame's cells to the cell they touch.

    A newborn cell is about half as long as its mother was at division, so
    about 0.7 times the median length of a growing population; cell-to-cell
    variation takes that to 0.5 at the lowest (the generator's families, all
    of them: 0.50-0.61). An object under ``ratio`` times the median is a piece
    of a cell that noise cut off (low SNR: the interior probability dips
    inside a cell) and goes back to the neighbour it touches; one that touches
    none is dropped. Objects that reach the open end are left alone: the box
    cuts them.

    Parameters
    ----------
    labels : ndarray, shape (..., H, W)
        Labels numbered 1..k from the closed end (row 0). ``(N, T, H, W)``:
        each frame's median is taken over its trenches, so a frame's labels
        do not depend on the other frames; any other shape is one group.
    ratio : float
        Length (rows spanned) under which an object is a fragment, as a share
        of the group's median cell length.
    gap : int
        A fragment is joined to a neighbour whose end lies at most this many
        rows away (the rows between are filled); otherwise dropped.
    open_end_rows : int
        Objects reaching into the last rows are neither fragments nor counted
        in the median.

    Returns
    -------
    ndarray
        The labels with fragments joined or dropped, renumbered 1..k from
        the closed end; the input is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((3, 60, 12), np.int32)
    >>> for n in range(3):
    ...     lab[n, 2:22, 2:10], lab[n, 24:44, 2:10] = 1, 2
    >>> lab[0, 24:44] = 0
    >>> lab[0, 24:28, 2:10], lab[0, 29:44, 2:10] = 2, 3   # noise cut a piece off
    >>> out = merge_fragments(lab)
    >>> [int(c.max()) for c in out]
    [2, 2, 2]
    >>> int((out[0] == 2).sum()) == int((lab[1] == 2).sum())   # the row between filled
    True
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.max(initial=0) == 0:
        return labels
    from .label_stats import highest_labels, label_stats  # numba: loaded where used

    h, w = labels.shape[-2:]
    out = labels.copy()
    # every crop's spans at once, from the input: each crop is judged on its own
    # labels and written once, so they are what it holds when it is judged
    area, top, bot, _, _ = label_stats(labels)
    top, bot = top[:, 1:], bot[:, 1:]
    # labels 1..k of each crop, k its largest (a gap in the numbering spans 1 row, -1..-1)
    own = np.arange(1, area.shape[1])[None, :] <= highest_labels(area)[:, None]
    length = bot - top + 1
    crops = out.reshape(-1, h, w)
    # one group per frame of (N, T, H, W) (its crops: n * T + t), else the whole stack
    n_t = out.shape[1] if out.ndim == 4 else 1
    for t in range(n_t):
        idx = np.arange(t, len(crops), n_t)
        mine = own[idx]
        lengths = length[idx][mine]
        lengths = lengths[(bot[idx][mine] < h - open_end_rows) & (lengths > 0)]
        if len(lengths) < 3:
            continue
        shortest = ratio * float(np.median(lengths))
        fragment = mine & (top[idx] >= 0) & (length[idx] < shortest) & (bot[idx] < h - open_end_rows)
        for j in np.flatnonzero(fragment.any(axis=1)):
            m, k = idx[j], int(mine[j].sum())
            crops[m] = _joined(crops[m], top[m, :k], bot[m, :k], fragment[j, :k], gap)
    return out


def drop_thin_objects(labels, narrow=0.6, small=0.4, open_end_rows=2, min_cells=3):
    """Remove objects both narrower and smaller than the cells of their frame.

    A cell spans its lumen's width; a newborn one is short but as wide as the
    others, a piece noise cut off a cell is cut across it and as wide too
    (:func:`merge_fragments` joins those back). An object whose mean width is
    under ``narrow`` times the frame's median and whose area is under
    ``small`` times the median is a strip of lumen between a cell and the
    wall, or of an empty lumen's shading, that the network took for a cell
    (the independent simulator's phase optics, seed 1010: 425 of the 529
    objects matching no cell, and none of the 2118 matching one; every
    trench-frame held 1.4 objects too many). Pieces beside a cell would
    otherwise be joined to it as fragments.

    Parameters
    ----------
    labels : ndarray, shape (..., H, W)
        Labels numbered 1..k from the closed end. ``(N, T, H, W)``: each
        frame's medians are taken over its trenches; any other shape is one
        group.
    narrow, small : float
        Shares of the group's median mean width (area over the rows spanned)
        and median area.
    open_end_rows : int
        Objects reaching into the last rows are kept (the box cuts them) and
        not counted in the medians.
    min_cells : int
        Groups with fewer objects are left as they are.

    Returns
    -------
    ndarray
        The labels without those objects, renumbered 1..k from the closed
        end; the input is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((3, 60, 16), np.int32)
    >>> for n in range(3):
    ...     lab[n, 2:22, 3:13], lab[n, 24:44, 3:13] = 1, 2   # cells 10 px wide
    >>> lab[1, 24:44] = 0
    >>> lab[1, 26:40, 13:15], lab[1, 24:44, 3:13] = 2, 3     # a strip beside a cell
    >>> out = drop_thin_objects(lab)
    >>> [int(c.max()) for c in out], int((out[1] == 2).sum())
    ([2, 2, 2], 200)
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.max(initial=0) == 0:
        return labels
    from .label_stats import label_stats  # numba: loaded where used
    from .numbering import remove_objects

    h, w = labels.shape[-2:]
    flat = labels.reshape(-1, h, w)
    area, _, bot, n_rows, _ = label_stats(flat)
    area, bot, n_rows = area[:, 1:], bot[:, 1:], n_rows[:, 1:]
    width = area / np.maximum(n_rows, 1)
    inner = (area > 0) & (bot < h - open_end_rows)
    n_t = labels.shape[1] if labels.ndim == 4 else 1
    out = None
    for t in range(n_t):
        idx = np.arange(t, len(flat), n_t)
        mine = inner[idx]
        if mine.sum() < min_cells:
            continue
        thin = mine & (width[idx] < narrow * np.median(width[idx][mine])) \
            & (area[idx] < small * np.median(area[idx][mine]))
        for j in np.flatnonzero(thin.any(axis=1)):
            if out is None:
                out = flat.copy()
            out[idx[j]] = remove_objects(flat[idx[j]], np.concatenate([[False], thin[j]]))
    return labels if out is None else out.reshape(labels.shape)


def row_presence(crop) -> np.ndarray:
    """``(H, k)`` bool: which rows of one crop hold labels 1..k."""
    present = np.zeros((crop.shape[0], int(crop.max()) + 1), bool)
    present[np.arange(crop.shape[0])[:, None], crop] = True
    return present[:, 1:]


def row_spans(crop):
    """First and last row of labels 1..k of one crop (-1 for a label with no pixel)."""
    if int(crop.max()) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    present = row_presence(crop)
    has = present.any(axis=0)
    top = np.where(has, present.argmax(axis=0), -1)
    bot = np.where(has, crop.shape[0] - 1 - present[::-1].argmax(axis=0), -1)
    return top, bot


def _joined(crop, top, bot, fragment, gap):
    """``crop`` with each fragment given to the neighbour (in order from the closed end)
    whose end is nearest, within ``gap`` rows, or removed; renumbered 1..k."""
    k = len(top)
    new_id = np.arange(k + 1)
    fills = []
    for f in np.flatnonzero(fragment):
        options = []
        for nb in (f - 1, f + 1):
            if 0 <= nb < k and top[nb] >= 0 and not fragment[nb]:
                upper, lower = (nb, f) if nb < f else (f, nb)
                distance = top[lower] - bot[upper]
                if distance <= gap:
                    options.append((distance, nb, upper, lower))
        if options:
            _, nb, upper, lower = min(options)
            new_id[f + 1] = nb + 1
            fills.append((nb + 1, bot[upper], top[lower]))
        else:
            new_id[f + 1] = 0
    out = new_id[crop]
    for label, last, first in fills:
        fill_between(out, label, last, first)
    kept = np.unique(out)
    kept = kept[kept > 0]
    renumber = np.zeros(k + 1, out.dtype)
    renumber[kept] = np.arange(1, len(kept) + 1)
    return renumber[out].astype(crop.dtype)


def fill_between(crop, label, last, first):
    """Fill, in place, the empty pixels of rows ``last + 1 .. first - 1`` of ``crop``
    with ``label``, the two pieces of which end at row ``last`` and begin at row
    ``first``: in the columns both of those facing rows hold (either's, where they
    share none)."""
    if first - last <= 1:
        return
    cols = (crop[last] == label) & (crop[first] == label)
    if not cols.any():
        cols = (crop[last] == label) | (crop[first] == label)
    rows = slice(last + 1, first)
    crop[rows] = np.where((crop[rows] == 0) & cols, label, crop[rows])
