"""Trenches that run left-right: the image turned a quarter, the layout turned back.

Detection looks for trenches that run top-bottom within ``angle_range_deg``
(:func:`~.trench_array.detect_trenches`). Many microscopes image the chip
with its trenches running left-right; upright, such an image has no
periodic column profile and detection fails ("no periodic trench pattern").
The image is then turned a quarter (``np.rot90``: counter-clockwise), where
the trenches run top-bottom, and the layout found there is expressed in the
raw frame: the geometry's convention (:mod:`batchlib.trench.geometry`) holds
for any angle, so a layout at angle ``a`` on the turned image is one at
``a - 90`` on the raw image, its rotated-frame coordinates moved by the
difference of the two images' centres (non-square frames). Crops, drift,
segmentation and the QC picture use the raw corners and the angle and need
nothing else: a box's row 0 is still its closed end.
"""
from __future__ import annotations

import numpy as np

from ..geometry import frame_center, rotated_to_raw, rotation_matrix
from ._common import TrenchDetectionError

__all__ = ["ORIENTATIONS", "detect_oriented", "turned_back", "turned_copy"]

#: ``detect_trenches``' ``orientation`` choices: auto tries vertical, then horizontal.
ORIENTATIONS = ("auto", "vertical", "horizontal")


def _turned_angle(angle_deg):
    """A given raw angle as an angle on the turned image, in [-90, 90) (``None`` stays)."""
    return None if angle_deg is None else _wrapped(float(angle_deg) + 90.0)


def _wrapped(angle_deg) -> float:
    """``angle_deg`` in [-90, 90): a trench's axis has no sign."""
    return (float(angle_deg) + 90.0) % 180.0 - 90.0


def detect_oriented(detect, image, orientation="auto", angle_deg=None, **kwargs):
    """``detect(image, angle_deg=..., **kwargs)`` in the trenches' orientation.

    Parameters
    ----------
    detect : callable
        Detection of trenches running top-bottom, raising
        :class:`TrenchDetectionError` when it finds none.
    image : array_like, shape (H, W)
    orientation : {"auto", "vertical", "horizontal"}
        "vertical": the image as it is; "horizontal": the image turned a
        quarter; "auto": as it is, and turned only when that finds no trench
        array (the first error is raised when neither does, naming both).
    angle_deg : float, optional
        A known trench angle; one more than 45° from vertical means horizontal
        trenches whatever ``orientation`` says.

    Returns
    -------
    TrenchLayout
        In the raw frame; ``quality["turned_quarter"]`` is 1.0 when found on the
        turned image.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if angle_deg is not None and abs(_wrapped(angle_deg)) > 45.0:
        orientation = "horizontal"
    if orientation != "horizontal":
        try:
            return detect(image, angle_deg=angle_deg, **kwargs)
        except TrenchDetectionError as upright:
            if orientation == "vertical":
                raise
            try:
                return _detect_turned(detect, image, angle_deg, **kwargs)
            except TrenchDetectionError as turned:
                raise TrenchDetectionError(
                    f"{upright} (nor with the image turned a quarter, for trenches running "
                    f"left-right: {turned})") from upright
    return _detect_turned(detect, image, angle_deg, **kwargs)


def _detect_turned(detect, image, angle_deg, **kwargs):
    raw = np.asarray(image)
    if raw.ndim != 2:
        raw = np.squeeze(raw)
    turned = np.ascontiguousarray(np.rot90(raw))
    layout = detect(turned, angle_deg=_turned_angle(angle_deg), **kwargs)
    return turned_back(layout, raw.shape)


def turned_back(layout, shape, turn_deg=-90.0):
    """A layout found on a turned copy of an image, expressed on the image (shape ``shape``).

    The copy (``layout.image_shape``, centre ``c'``) holds at its point ``q`` the raw
    point ``c + R(turn_deg) (q - c')`` (``c``: the image's centre); ``np.rot90(image)``
    is ``turn_deg = -90``. A point of the copy's rotated frame at angle ``a`` is then
    the raw point ``c + R(a + turn_deg) (p - c')``, so the layout's angle becomes
    ``a + turn_deg`` and its rotated-frame coordinates move by ``c - c'``; the raw
    corners follow.

    Examples
    --------
    >>> import pandas as pd
    >>> from batchlib.trench.detection.trench_array import TrenchLayout
    >>> from batchlib.trench.geometry import box_corners
    >>> rot = box_corners(30.0, 10.0, 1, 40, 8)            # one box on a 60 x 100 turned image
    >>> row = {"set": 0, "trench": 0, "x_center": 30.0, "y_closed": 10.0, "direction": 1,
    ...        "height": 40, "width": 8, "empty": False, "score": 1.0}
    >>> row.update({f"rot_y{i}": rot[i, 0] for i in range(4)})
    >>> row.update({f"rot_x{i}": rot[i, 1] for i in range(4)})
    >>> row.update({f"raw_{a}{i}": v for i in range(4) for a, v in zip("yx", rot[i])})
    >>> sets = pd.DataFrame({"set": [0], "y_closed": [10.0], "y_open": [50.0], "direction": [1]})
    >>> lay = TrenchLayout(0.0, 40.0, sets, pd.DataFrame([row]), {}, (100, 60))
    >>> back = turned_back(lay, (60, 100))                  # the raw image: 60 rows, 100 columns
    >>> back.angle_deg, back.image_shape
    (-90.0, (60, 100))
    >>> # the raw point of a turned-image pixel (y', x') is (x', 99 - y')
    >>> got = [(back.trenches[f"raw_y{i}"][0], back.trenches[f"raw_x{i}"][0]) for i in range(4)]
    >>> np.allclose(got, [(x, 99 - y) for y, x in rot])
    True
    """
    from .trench_array import TrenchLayout

    H, W = int(shape[0]), int(shape[1])
    dy, dx = frame_center((H, W)) - frame_center(layout.image_shape)  # c - c'
    angle = float(layout.angle_deg) + float(turn_deg)
    trenches = layout.trenches.copy()
    trenches["y_closed"] = trenches["y_closed"] + dy
    trenches["x_center"] = trenches["x_center"] + dx
    for i in range(4):
        trenches[f"rot_y{i}"] = trenches[f"rot_y{i}"] + dy
        trenches[f"rot_x{i}"] = trenches[f"rot_x{i}"] + dx
    rot = np.stack([np.stack([trenches[f"rot_y{i}"].to_numpy(float),
                              trenches[f"rot_x{i}"].to_numpy(float)], -1) for i in range(4)],
                   axis=1).reshape(-1, 4, 2)
    raw = rotated_to_raw(rot, angle, (H, W))
    for i in range(4):
        trenches[f"raw_y{i}"], trenches[f"raw_x{i}"] = raw[:, i, 0], raw[:, i, 1]
    sets = layout.sets.copy()
    sets["y_closed"] = sets["y_closed"] + dy
    sets["y_open"] = sets["y_open"] + dy
    quality = dict(layout.quality)
    for key in list(quality):
        if key == "whole_frame_angle_deg" or (key.startswith("set") and key.endswith("_angle_deg")
                                              and key[3:-10].isdigit()):
            quality[key] = float(quality[key]) + float(turn_deg)
    if turn_deg == -90.0:
        quality["turned_quarter"] = 1.0
    # the diagnostic profiles stay the turned image's; the QC picture shifts them back
    profiles = {**layout.profiles,
                "column_offset": float(layout.profiles.get("column_offset", 0.0)) + dx}
    return TrenchLayout(angle, layout.pitch, sets, trenches, quality, (H, W), layout.kind,
                        profiles, list(layout.warnings))


def turned_copy(image, turn_deg):
    """A copy of ``image`` turned so that trenches at ``turn_deg`` stand upright: at its
    point ``q`` the raw point ``c + R(turn_deg) (q - c')`` (bilinear; the whole image
    kept, the corners outside it NaN, which detection fills with the median).

    >>> img = np.zeros((40, 60)); img[:, 30] = 1.0
    >>> turned_copy(img, 0.0).shape
    (40, 60)
    >>> turned_copy(img, 30.0).shape
    (65, 72)
    """
    from scipy import ndimage

    raw = np.asarray(image, np.float32)
    H, W = raw.shape
    a = np.deg2rad(float(turn_deg))
    h = int(np.ceil(abs(H * np.cos(a)) + abs(W * np.sin(a))))
    w = int(np.ceil(abs(W * np.cos(a)) + abs(H * np.sin(a))))
    q = np.stack(np.mgrid[:h, :w], axis=-1).reshape(-1, 2).astype(float)
    c, c2 = frame_center((H, W)), frame_center((h, w))
    p = (q - c2) @ rotation_matrix(turn_deg).T + c
    out = ndimage.map_coordinates(raw, [p[:, 0], p[:, 1]], order=1, mode="constant", cval=np.nan)
    return out.reshape(h, w)
