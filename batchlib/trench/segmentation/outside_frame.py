"""Crops that leave the frame on the left, turned so that they leave it on the right.

A trench at the frame's side edge is kept when its lumen is inside
(detection's rule for edge trenches), and its crop is 0 where the box leaves
the frame (:func:`~batchlib.trench.detection.crop_trenches`). The shipped
U-Net answers such a strip unevenly, by its side: on independent simulator
1105 the trench at the left edge (5 of 26 columns outside) got no cell in 6
of 8 frames (9-12 true ones each) while the same crop flipped left-right was
segmented in full, and the trench at the right edge was segmented in full
until it was flipped. The network is shown a phase crop that leaves the frame
on the left flipped, and its answer flipped back (the U-Net's
``_segment_from``). Fluorescence crops are shown as they are: no side failed
there, and turned, 1105's fluorescence lost F1 0.982 -> 0.968.
Filling the strip instead (mirrored from the columns beside it, or with the
crop's median, or its nearest column) recovered 1105's left trench only in
part and cost the right one and independent 1099's left trench up to 0.09
of mean IoU; turned, 1105's left trench scores F1 1.000 (0.065 before) and
1099's 0.992 (0.952), the right one unchanged.
"""
from __future__ import annotations

import numpy as np

__all__ = ["outside_columns", "leaving_left", "flip_crops"]


def outside_columns(crops) -> tuple[np.ndarray, np.ndarray]:
    """How many columns at the left and at the right of every crop are 0 in every row.

    Parameters
    ----------
    crops : array_like, shape (..., H, W)

    Returns
    -------
    left, right : ndarray of int, shape (...)
        Leading and trailing all-zero columns; a crop that is 0 everywhere has
        none.

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


def leaving_left(crops) -> np.ndarray:
    """Which crops ``(..., H, W)`` leave the frame on the left only (:func:`outside_columns`).

    >>> c = np.ones((3, 4, 6)); c[0, :, :2] = 0; c[1, :, 5] = 0; c[2, :, [0, 5]] = 0
    >>> leaving_left(c).tolist()
    [True, False, False]
    """
    left, right = outside_columns(crops)
    return (left > 0) & (right == 0)


def flip_crops(images, which):
    """``images`` ``(..., H, W)`` with the crops ``which`` (a mask over the axes
    before the last two, or over those after a leading one, as for class
    probabilities ``(C, ..., H, W)``) flipped left-right; ``images`` itself when
    none is.

    >>> c = np.arange(12.0).reshape(2, 1, 6)
    >>> flip_crops(c, np.array([False, True]))[:, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [11.0, 10.0, 9.0, 8.0, 7.0, 6.0]]
    >>> flip_crops(c[None], np.array([False, True]))[0, 1, 0].tolist()
    [11.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    """
    images = np.asarray(images)
    which = np.asarray(which, bool)
    if not which.any():
        return images
    # aligned from the right, the mask reaches past any leading (class) axis
    return np.where(which[..., None, None], images[..., ::-1], images)
