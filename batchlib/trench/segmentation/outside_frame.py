"""Crop columns that lie outside the frame, mirrored from the columns inside.

A trench at the frame's side edge is kept when its lumen is inside
(detection's rule for edge trenches), and its crop is filled with 0 where the
box leaves the frame (:func:`~batchlib.trench.detection.crop_trenches`). The
shipped U-Net never saw such a strip and answers it unevenly: on independent
simulator 1105 a trench whose crop lost its 5 left columns got no cell in 6
of 8 frames (9-12 true cells each), while the same crop flipped left-right,
its strip on the right, was segmented in full, and so was every crop of the
trench at the other edge until it was flipped. Mirrored from the columns
beside it, the strip looks like the wall the network knows (the lumen of a
kept edge trench is inside the frame, so its cells are not mirrored).
"""
from __future__ import annotations

import numpy as np

__all__ = ["outside_columns", "mirror_outside_columns"]


def outside_columns(crops) -> tuple[np.ndarray, np.ndarray]:
    """How many columns at the left and at the right of every crop are 0 in every row.

    Parameters
    ----------
    crops : array_like, shape (..., H, W)

    Returns
    -------
    left, right : ndarray of int, shape (...)
        Leading and trailing all-zero columns; a crop that is 0 everywhere has
        none (there is nothing inside to mirror).

    Examples
    --------
    >>> c = np.ones((2, 4, 6)); c[0, :, :2] = 0; c[1, :, 5] = 0
    >>> left, right = outside_columns(c)
    >>> left.tolist(), right.tolist()
    ([2, 0], [0, 1])
    """
    crops = np.asarray(crops)
    zero = ~crops.any(axis=-2)                                  # (..., W)
    blank = zero.all(axis=-1)
    left = np.where(blank, 0, np.argmin(zero, axis=-1))
    right = np.where(blank, 0, np.argmin(zero[..., ::-1], axis=-1))
    return left.astype(int), right.astype(int)


def mirror_outside_columns(crops):
    """The crops with their all-zero side columns (:func:`outside_columns`) mirrored
    from the columns inside (a copy); the crops themselves where no crop has any.

    Examples
    --------
    >>> c = np.arange(1, 7, dtype=float)[None, None, :].repeat(3, axis=1)
    >>> c[..., :2] = 0
    >>> mirror_outside_columns(c)[0, 0].tolist()
    [4.0, 3.0, 3.0, 4.0, 5.0, 6.0]
    """
    crops = np.asarray(crops)
    left, right = outside_columns(crops)
    if not (left.any() or right.any()):
        return crops
    w = crops.shape[-1]
    out = crops.copy()
    flat = out.reshape(-1, *crops.shape[-2:])
    for m in np.flatnonzero((left > 0).ravel() | (right > 0).ravel()):
        a, b = int(left.ravel()[m]), int(right.ravel()[m])
        inside = w - a - b
        crop = flat[m]  # (H, W), a view
        if a:  # column a - 1 - j takes column a + j: a reflection about the frame's edge
            crop[:, a - 1 - np.arange(a)] = crop[:, a + np.minimum(np.arange(a), inside - 1)]
        if b:
            crop[:, w - b + np.arange(b)] = crop[:, w - b - 1 - np.minimum(np.arange(b), inside - 1)]
    return out
