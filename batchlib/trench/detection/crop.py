"""Cropping every trench box of a frame at once.

The sample grid is the one of :func:`batchlib.trench.geometry.crop_box`, built
for all boxes together so that a frame costs one ``map_coordinates`` call (or
one fancy-indexing gather when no interpolation is needed).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ..geometry import frame_center, raw_to_rotated, rotation_matrix

__all__ = ["crop_trenches", "crop_coordinates", "paste_trenches", "CropSampler"]


def _boxes(layout_or_trenches, angle_deg):
    trenches = getattr(layout_or_trenches, "trenches", layout_or_trenches)
    if not isinstance(trenches, pd.DataFrame):
        raise TypeError("expected a TrenchLayout or a trench DataFrame")
    if angle_deg is None and not isinstance(layout_or_trenches, pd.DataFrame):
        angle_deg = getattr(layout_or_trenches, "angle_deg", None)
    if angle_deg is None and "angle_deg" in trenches and len(trenches):
        angles = trenches["angle_deg"].to_numpy(float)
        if not np.allclose(angles, angles[0]):
            raise ValueError("trenches carry different angles; pass angle_deg")
        angle_deg = float(angles[0])
    if angle_deg is None:
        raise ValueError("angle_deg is required with a trench DataFrame")
    heights, widths = trenches["height"].to_numpy(), trenches["width"].to_numpy()
    if len(trenches) and (np.any(heights != heights[0]) or np.any(widths != widths[0])):
        raise ValueError("all boxes must share one height and width to stack their crops")
    return trenches, float(angle_deg)


def crop_coordinates(trenches, angle_deg, shape, drift_yx=(0.0, 0.0)):
    """Raw-frame sample positions of all boxes, shape (2, n, height, width)."""
    ay, by, ky, ax, bx, kx = _coordinate_terms(trenches, angle_deg, shape, drift_yx)
    py = ay[:, :, None] + by[:, None, :] + ky
    px = ax[:, :, None] + bx[:, None, :] + kx
    return np.stack([py, px])


def _coordinate_terms(trenches, angle_deg, shape, drift_yx):
    """The parts of :func:`crop_coordinates`: ``py = (ay[n, i] + by[n, j]) + ky`` and
    ``px = (ax[n, i] + bx[n, j]) + kx`` for row ``i`` and column ``j`` of box ``n``."""
    h, w = int(trenches["height"].iloc[0]), int(trenches["width"].iloc[0])
    x = trenches["x_center"].to_numpy(float)
    y = trenches["y_closed"].to_numpy(float)
    d = trenches["direction"].to_numpy(float)
    rows = y[:, None] + d[:, None] * np.arange(h, dtype=float)[None, :]
    cols = x[:, None] - (w - 1) / 2.0 + np.arange(w, dtype=float)[None, :]
    # geometry.rotated_to_raw, split into its row and column terms so that the
    # (n, h, w) grids come from one broadcast sum instead of a matrix product
    c = frame_center(shape)
    rot = rotation_matrix(angle_deg)
    dr, dc = rows - c[0], cols - c[1]
    drift = np.asarray(drift_yx, dtype=float)
    return (dr * rot[0, 0], dc * rot[0, 1], c[0] + drift[0],
            dr * rot[1, 0], dc * rot[1, 1], c[1] + drift[1])


class CropSampler:
    """How to crop every box of frames of one shape at one drift: computed once per frame,
    applied to each of its channels (:meth:`crop`).

    Three ways, chosen here: a plain gather when every sample falls on a
    pixel (e.g. angle 0 with whole-pixel positions and drift); for bilinear
    interpolation (``order=1``) a compiled pass over the samples whose
    neighbours lie inside the frame, with scipy's own arithmetic (so the
    result is bit for bit what ``scipy.ndimage.map_coordinates`` gives, see
    :mod:`._crop_kernel`), and ``map_coordinates`` itself for the few samples
    at the frame's edge; ``map_coordinates`` for every sample at other orders.
    Only the row and column terms of the sample positions are kept, not the
    ``(n, height, width)`` grids.
    """

    def __init__(self, trenches, angle_deg, shape, drift_yx=(0.0, 0.0), order=1, cval=0.0):
        self.shape, self.order, self.cval = tuple(shape), int(order), float(cval)
        self.terms = _coordinate_terms(trenches, angle_deg, shape, drift_yx)
        ay, by, ky, ax, bx, kx = self.terms
        self.out_shape = (ay.shape[0], ay.shape[1], by.shape[1])
        self.gather = self.py = self.px = None
        # the corners settle "every sample on a pixel" at once for any rotated or
        # sub-pixel grid, without building the grids
        ends = [0, -1]
        corners = [ay[:, ends][:, :, None] + by[:, ends][:, None, :] + ky,
                   ax[:, ends][:, :, None] + bx[:, ends][:, None, :] + kx]
        if all(_whole_pixels(c) for c in corners):
            py, px = crop_coordinates(trenches, angle_deg, shape, drift_yx)
            if _whole_pixels(py) and _whole_pixels(px):
                iy, ix = np.rint(py).astype(np.intp), np.rint(px).astype(np.intp)
                inside = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
                self.gather = (iy, ix, None if inside.all() else inside)
                return
            self.py, self.px = py, px
        elif self.order != 1:
            self.py, self.px = crop_coordinates(trenches, angle_deg, shape, drift_yx)

    def crop(self, frame):
        """Crops of all boxes of ``frame`` (H, W): (n_trench, height, width), ``frame``'s dtype."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from {self.shape}")
        if self.gather is not None:
            iy, ix, inside = self.gather
            if inside is None:
                return frame[iy, ix]
            out = np.full(iy.shape, self.cval, dtype=frame.dtype)
            out[inside] = frame[iy[inside], ix[inside]]
            return out
        if self.order != 1:
            out = ndimage.map_coordinates(frame.astype(np.float32, copy=False), [self.py, self.px],
                                          order=self.order, mode="constant", cval=self.cval,
                                          prefilter=self.order > 1)
        else:
            out = self._bilinear(frame)
        if np.issubdtype(frame.dtype, np.integer):
            info = np.iinfo(frame.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(frame.dtype, copy=False)

    def _bilinear(self, frame):
        # the samples whose neighbours lie inside the frame: scipy's arithmetic, compiled
        # (_crop_kernel); those at the frame's edge: map_coordinates itself
        from ._crop_kernel import bilinear_boxes

        ay, by, ky, ax, bx, kx = self.terms
        out = np.empty(self.out_shape, dtype=np.float32)
        edge = np.empty(out.size, dtype=np.intp)
        # the kernel takes the frame as it is (each value goes through float32 as
        # map_coordinates' input does); a type it is not compiled for goes first
        src = frame if frame.dtype.isnative and frame.dtype.char in "BHILQbhilqfd" \
            else frame.astype(np.float32)
        n_edge = bilinear_boxes(src, ay, by, ky, ax, bx, kx, out, edge)
        if n_edge:
            edge = edge[:n_edge]
            n, ij = np.divmod(edge, out.shape[1] * out.shape[2])
            i, j = np.divmod(ij, out.shape[2])
            py = ay[n, i] + by[n, j] + ky
            px = ax[n, i] + bx[n, j] + kx
            out.reshape(-1)[edge] = ndimage.map_coordinates(
                frame.astype(np.float32, copy=False), [py, px], order=1, mode="constant",
                cval=self.cval, prefilter=False)
        return out


def _whole_pixels(coords, atol=1e-6) -> bool:
    """Whether every coordinate is a whole pixel (to ``atol``); the corners first, which
    settles it at once for any rotated or sub-pixel grid."""
    corners = coords[..., [0, -1]][..., [0, -1], :] if coords.ndim == 3 else coords
    if not np.allclose(corners, np.rint(corners), rtol=0.0, atol=atol):
        return False
    return bool(np.allclose(coords, np.rint(coords), rtol=0.0, atol=atol))


def crop_trenches(frame, layout_or_trenches, angle_deg=None, drift_yx=(0.0, 0.0), order=1,
                  cval=0.0):
    """Crop all trench boxes of one raw frame.

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        Raw frame.
    layout_or_trenches : TrenchLayout or DataFrame
        Boxes (``x_center, y_closed, direction, height, width``), all of the
        same height and width.
    angle_deg : float, optional
        Trench angle; taken from the layout (or the DataFrame's ``angle_deg``
        column) when omitted.
    drift_yx : (float, float)
        Drift of this frame relative to the frame the boxes were found on.
    order : int
        Spline order of the interpolation (1: bilinear).
    cval : float
        Value of samples outside the frame.

    Returns
    -------
    crops : ndarray, shape (n_trench, height, width), dtype of ``frame``
        Closed end at row 0; identical to :func:`geometry.crop_box` per box. A
        plain gather (no interpolation) when every sample falls on a pixel,
        e.g. at angle 0 with whole-pixel positions and drift. Several
        channels of one frame: build one :class:`CropSampler` and call its
        ``crop`` per channel.
    """
    frame = np.asarray(frame)
    trenches, angle = _boxes(layout_or_trenches, angle_deg)
    if len(trenches) == 0:
        return np.zeros((0, 0, 0), dtype=frame.dtype)
    return CropSampler(trenches, angle, frame.shape, drift_yx, order, cval).crop(frame)


def crop_trenches_reference(frame, layout_or_trenches, angle_deg=None, drift_yx=(0.0, 0.0),
                            order=1, cval=0.0):
    """:func:`crop_trenches` as it was before :class:`CropSampler`: one
    ``map_coordinates`` call for all samples. Kept as the reference the tests
    compare the fast paths with, bit for bit."""
    frame = np.asarray(frame)
    trenches, angle = _boxes(layout_or_trenches, angle_deg)
    if len(trenches) == 0:
        return np.zeros((0, 0, 0), dtype=frame.dtype)
    py, px = crop_coordinates(trenches, angle, frame.shape, drift_yx)
    iy, ix = np.rint(py), np.rint(px)
    if np.allclose(py, iy, rtol=0.0, atol=1e-6) and np.allclose(px, ix, rtol=0.0, atol=1e-6):
        iy, ix = iy.astype(np.intp), ix.astype(np.intp)
        inside = (iy >= 0) & (iy < frame.shape[0]) & (ix >= 0) & (ix < frame.shape[1])
        if inside.all():
            return frame[iy, ix]
        out = np.full(iy.shape, cval, dtype=frame.dtype)
        out[inside] = frame[iy[inside], ix[inside]]
        return out
    out = ndimage.map_coordinates(frame.astype(np.float32, copy=False), [py, px], order=order,
                                  mode="constant", cval=cval, prefilter=order > 1)
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(frame.dtype, copy=False)


def paste_trenches(crops, layout_or_trenches, shape, angle_deg=None, drift_yx=(0.0, 0.0), values=None,
                   dtype=None):
    """Put the crops of one frame back into a raw frame: the inverse of :func:`crop_trenches`.

    Every raw pixel inside a box takes the value of the crop pixel nearest to
    it (nearest neighbour, so labels stay labels); pixels outside every box
    are 0. Zeros of a crop never overwrite what an earlier box put there, so
    where boxes touch, cells are not cut by the neighbour's background.

    Parameters
    ----------
    crops : ndarray, shape (n_trench, height, width)
        One frame's crops, e.g. a segmentation's labels.
    layout_or_trenches : TrenchLayout or DataFrame
        The boxes the crops were cut with.
    shape : (int, int)
        Shape of the raw frame.
    angle_deg, drift_yx
        As for :func:`crop_trenches`.
    values : callable, optional
        ``values(n, crop_values) -> frame values`` for the crop of trench
        ``n``, e.g. to make labels unique across trenches; called on the
        non-zero pixels only.
    dtype : dtype, optional
        Of the frame (default: that of ``crops``).

    Returns
    -------
    frame : ndarray, shape ``shape``
    """
    crops = np.asarray(crops)
    trenches, angle = _boxes(layout_or_trenches, angle_deg)
    out = np.zeros(tuple(shape), dtype=dtype or crops.dtype)
    if len(trenches) == 0:
        return out
    h, w = int(trenches["height"].iloc[0]), int(trenches["width"].iloc[0])
    if crops.shape != (len(trenches), h, w):
        raise ValueError(f"crops of shape {crops.shape} for {len(trenches)} boxes of {h} x {w}")
    py, px = crop_coordinates(trenches, angle, shape, drift_yx)
    y_closed = trenches["y_closed"].to_numpy(float)
    direction = trenches["direction"].to_numpy(float)
    x_left = trenches["x_center"].to_numpy(float) - (w - 1) / 2.0
    for n in range(len(trenches)):
        if not crops[n].any():
            continue
        # The raw pixels the box covers (its sampled corners, rounded outwards).
        y0, y1 = int(max(np.floor(py[n].min()), 0)), int(min(np.ceil(py[n].max()) + 1, shape[0]))
        x0, x1 = int(max(np.floor(px[n].min()), 0)), int(min(np.ceil(px[n].max()) + 1, shape[1]))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rot = raw_to_rotated(np.stack([yy, xx], axis=-1), angle, shape, drift_yx)
        i = np.rint((rot[..., 0] - y_closed[n]) * direction[n]).astype(np.intp)
        j = np.rint(rot[..., 1] - x_left[n]).astype(np.intp)
        inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
        v = np.zeros(i.shape, dtype=crops.dtype)
        v[inside] = crops[n][i[inside], j[inside]]
        hit = v != 0
        region = out[y0:y1, x0:x1]
        region[hit] = v[hit] if values is None else values(n, v[hit])
    return out
