"""Coordinate conventions shared by the generator, trench detection and cropping.

Every module that places or reads a trench uses these functions, so that the
synthetic ground truth, the detected boxes and the crops agree to the pixel.

Conventions
-----------
* Points are ``(y, x)`` in pixels; pixel centres sit on integer coordinates.
* The *rotated frame* is the raw frame turned so that the trenches are vertical.
  A point ``p_rot`` of the rotated frame of a frame with shape ``(H, W)`` lies at::

      p_raw = c + R(angle) @ (p_rot - c) + drift

  in the raw frame, with ``c = ((H - 1) / 2, (W - 1) / 2)``,
  ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` acting on ``(y, x)`` and
  ``drift = (dy, dx)`` the stage translation of that frame relative to the
  reference frame (content moves by ``+drift``).
* A trench box lives in the rotated frame: ``x_center`` (column of its axis),
  ``y_closed`` (row of its closed end), ``direction`` (+1 when the trench runs
  towards larger rows from its closed end, -1 when towards smaller rows),
  ``height`` (rows, along the trench) and ``width`` (columns). Its crop has shape
  ``(height, width)``; crop row ``i`` samples rotated row ``y_closed + direction * i``
  and crop column ``j`` samples rotated column ``x_center - (width - 1) / 2 + j``,
  so row 0 is always the closed end (the mother cell).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "rotation_matrix",
    "frame_center",
    "rotated_to_raw",
    "raw_to_rotated",
    "box_sample_grid",
    "box_corners",
    "corners_inside",
    "lumen_share",
    "crop_box",
]


def rotation_matrix(angle_deg: float) -> np.ndarray:
    """Matrix mapping rotated-frame offsets ``(dy, dx)`` to raw-frame offsets."""
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def frame_center(shape) -> np.ndarray:
    """Centre of rotation ``((H - 1) / 2, (W - 1) / 2)`` of a frame of ``shape``."""
    return (np.asarray(shape[-2:], dtype=float) - 1.0) / 2.0


def rotated_to_raw(points_yx, angle_deg: float, shape, drift_yx=(0.0, 0.0)) -> np.ndarray:
    """Map ``(..., 2)`` rotated-frame points to raw-frame points."""
    p = np.asarray(points_yx, dtype=float)
    c = frame_center(shape)
    return (p - c) @ rotation_matrix(angle_deg).T + c + np.asarray(drift_yx, dtype=float)


def raw_to_rotated(points_yx, angle_deg: float, shape, drift_yx=(0.0, 0.0)) -> np.ndarray:
    """Inverse of :func:`rotated_to_raw`."""
    p = np.asarray(points_yx, dtype=float) - np.asarray(drift_yx, dtype=float)
    c = frame_center(shape)
    return (p - c) @ rotation_matrix(angle_deg) + c


def corners_inside(raw_corners, shape, keep=1.0) -> np.ndarray:
    """Whether every corner ``(..., 4, 2)`` of each box lies on the image (pixel
    centres from 0 to ``shape - 1``, give or take half a pixel).

    ``keep`` < 1 asks it of the middle ``keep`` of each box's width only (corners
    in :func:`box_corners`'s order): a box whose lumen lies in the frame while the
    walls beside it leave it (a trench at the frame's side edge) counts as inside.

    Examples
    --------
    >>> box = box_corners(7.0, 0.0, 1, 20, 10)[None]          # columns 2.5-11.5
    >>> corners_inside(box, (30, 10)).tolist(), corners_inside(box, (30, 10), keep=0.5).tolist()
    ([False], [True])
    """
    c = np.asarray(raw_corners, float)
    if keep < 1.0:
        # closed-left, closed-right, open-right, open-left: pull each side in
        left, right = c[..., [0, 3], :], c[..., [1, 2], :]
        inset = 0.5 * (1.0 - max(float(keep), 0.0)) * (right - left)
        c = np.concatenate([left + inset, right - inset], axis=-2)
    H, W = shape
    return np.all((c[..., 0] >= -0.5) & (c[..., 0] <= H - 0.5)
                  & (c[..., 1] >= -0.5) & (c[..., 1] <= W - 0.5), axis=-1)


def lumen_share(lumen_width, box_width, pad=1.0) -> float:
    """The middle share of a box's width that must lie in the frame (:func:`corners_inside`):
    the lumen and ``pad`` pixels of wall either side; the whole box where the lumen
    width is unknown.

    Examples
    --------
    >>> lumen_share(22.5, 46), lumen_share(None, 46), lumen_share(50.0, 46)
    (0.532608695652174, 1.0, 1.0)
    """
    if lumen_width is None or not np.isfinite(lumen_width) or lumen_width <= 0 or box_width <= 0:
        return 1.0
    return float(min(1.0, (float(lumen_width) + 2.0 * pad) / float(box_width)))


def box_sample_grid(x_center, y_closed, direction, height, width):
    """Rotated-frame row and column coordinates sampled by a box's crop.

    Returns
    -------
    rows : ndarray, shape (height,)
    cols : ndarray, shape (width,)
    """
    rows = y_closed + direction * np.arange(height, dtype=float)
    cols = x_center - (width - 1) / 2.0 + np.arange(width, dtype=float)
    return rows, cols


def box_corners(x_center, y_closed, direction, height, width) -> np.ndarray:
    """Corners ``(4, 2)`` of a box's sampled area in the rotated frame.

    Order: closed-left, closed-right, open-right, open-left. The corners are the
    centres of the extreme sampled pixels.
    """
    rows, cols = box_sample_grid(x_center, y_closed, direction, height, width)
    return np.array(
        [[rows[0], cols[0]], [rows[0], cols[-1]], [rows[-1], cols[-1]], [rows[-1], cols[0]]]
    )


def crop_box(frame, x_center, y_closed, direction, height, width,
             angle_deg=0.0, drift_yx=(0.0, 0.0), order=1, cval=0.0) -> np.ndarray:
    """Crop one trench box out of a raw frame, closed end at row 0.

    Without rotation and with whole-pixel positions the crop is a plain slice
    (no interpolation); otherwise the raw frame is sampled with spline
    interpolation of the given ``order``. Samples outside the frame are ``cval``.

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        Raw frame.
    x_center, y_closed, direction, height, width
        The box in the rotated frame (see the module docstring).
    angle_deg : float
        Trench angle of the frame.
    drift_yx : (float, float)
        Drift of this frame relative to the reference frame.

    Returns
    -------
    crop : ndarray, shape (height, width), dtype of ``frame``
    """
    rows, cols = box_sample_grid(x_center, y_closed, direction, height, width)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    pts = rotated_to_raw(np.stack([rr, cc], axis=-1), angle_deg, frame.shape, drift_yx)
    py, px = pts[..., 0], pts[..., 1]
    iy, ix = np.rint(py), np.rint(px)
    # rtol=0: at coordinates near 2000 the default rtol would call 0.02 px "whole".
    if np.allclose(py, iy, rtol=0, atol=1e-6) and np.allclose(px, ix, rtol=0, atol=1e-6):
        iy, ix = iy.astype(np.intp), ix.astype(np.intp)
        inside = (iy >= 0) & (iy < frame.shape[0]) & (ix >= 0) & (ix < frame.shape[1])
        out = np.full((height, width), cval, dtype=frame.dtype)
        out[inside] = frame[iy[inside], ix[inside]]
        return out
    out = ndimage.map_coordinates(frame.astype(np.float32, copy=False), [py, px],
                                  order=order, mode="constant", cval=cval, prefilter=order > 1)
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(frame.dtype)
