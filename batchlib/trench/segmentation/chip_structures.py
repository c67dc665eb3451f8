"""Objects that recur in the known-empty trenches are part of the chip, not cells."""
from __future__ import annotations

import numpy as np

from .numbering import remove_objects

__all__ = ["drop_chip_structures"]


def drop_chip_structures(labels, empty, min_empty=3, recur=0.5, cover=0.5):
    """Remove, from the trenches flagged empty, objects most empty trenches also hold.

    A segmentation method sees one crop at a time; whatever the chip draws at
    the same place in every trench (a bright band at the closed end, the edge
    of a step in the PDMS, a halo) can look like a cell to it. Trenches that
    TrenchDetection found empty show what the chip alone looks like: an object
    at the same rows and columns in most of them is chip structure. One found
    in a single "empty" trench is kept: a cell that entered it.

    Only the empty trenches are cleaned: in a filled trench the same place
    may hold the mother cell, and telling the two apart needs the intensities
    (the ``background`` the methods get).

    Parameters
    ----------
    labels : ndarray, shape (N, T, H, W)
        Labels of every trench and frame, numbered 1..k from the closed end.
    empty : array of bool, shape (N,)
        TrenchDetection's ``empty`` flag.
    min_empty : int
        With fewer empty trenches nothing is changed.
    recur : float
        Share of the empty trenches that must hold an object at a pixel for it
        to count as chip structure (per frame).
    cover : float
        Share of an object's pixels that must be chip structure for it to go.

    Returns
    -------
    ndarray
        ``labels`` with those objects removed and the rest renumbered 1..k in
        order; the input is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((4, 1, 20, 4), np.int32)
    >>> lab[:3, 0, 2:6] = 1                  # the same "object" in three empty trenches
    >>> lab[1, 0, 10:16] = 2                 # a cell that entered one of them
    >>> lab[3, 0, 2:6] = 1                   # a filled trench: left alone
    >>> out = drop_chip_structures(lab, np.array([True, True, True, False]))
    >>> [int(out[n].max()) for n in range(4)]
    [0, 1, 0, 1]
    """
    labels = np.asarray(labels)
    empty = np.asarray(empty, bool)
    if labels.ndim != 4 or empty.sum() < min_empty or labels.max(initial=0) == 0:
        return labels
    occupied = labels[empty] > 0                          # (E, T, H, W)
    chip = occupied.mean(axis=0) >= recur                 # (T, H, W)
    if not chip.any():
        return labels
    out = labels.copy()
    for n in np.flatnonzero(empty):
        for t in range(labels.shape[1]):
            crop = out[n, t]
            k = int(crop.max())
            if k == 0:
                continue
            size = np.bincount(crop.ravel(), minlength=k + 1)
            on_chip = np.bincount(crop.ravel(), weights=chip[t].ravel(), minlength=k + 1)
            gone = (size > 0) & (on_chip >= cover * np.maximum(size, 1))
            gone[0] = False
            if not gone.any():
                continue
            out[n, t] = remove_objects(crop, gone | (size == 0))
    return out
