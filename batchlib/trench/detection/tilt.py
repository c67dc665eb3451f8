"""Chips turned further than the angle search: the array's angle from its spectrum.

The angle search of :func:`~.trench_array.detect_trenches` covers
``angle_range_deg`` (5 degrees) around vertical (a found angle near its edge
widens it threefold), and a chip turned further (a camera mounted askew) gave
a wrong layout: at 20 degrees the search settled on 2.2 degrees, every box
across the trenches, confidence 0.13 with an "undetermined" warning. A trench
array is a grating: its Fourier spectrum peaks at the pitch's frequency, in
the direction across the trenches. :func:`spectrum_angle` reads that
direction from the spectrum of a reduced, windowed frame (to a degree or
two; 8 ms on a 2048² frame). When a layout is missing or uncertain and the
spectrum says the chip is turned beyond the search, :func:`detect_any_tilt`
searches again over a range that holds the spectrum's angle. From 15 degrees
on, the row bands the detection straightens the image with smear the
trenches (30 degrees was refused by the self-check, 40 degrees boxed at
2.9 degrees), so the frame is also turned upright by that angle
(:func:`.orientation.turned_copy`), searched there and the layout turned
back, the boxes leaving the frame dropped; the turned layout wins when it is
at least 0.9 times as confident as the best other (the widened search put 20
degrees 0.08 degrees off at 0.94, the turned frame 0.002 at 0.93). Nominal
chip, 768²: 20, -25, 30, 40 degrees found within 0.003 degrees, every
trench but one edge trench at 20; at 30 and -38 degrees the whole chain
segments both kinds with F1 >= 0.99.
"""
from __future__ import annotations

import numpy as np

from ._common import TrenchDetectionError

__all__ = ["spectrum_angle", "detect_any_tilt"]

#: A layout at least this confident, without warnings, is not second-guessed.
SURE = 0.5
#: Widest search a spectrum angle opens (beyond 45 the trenches run left-right).
MAX_RANGE_DEG = 45.0
#: From this spectrum angle on, the frame is also turned upright and searched there.
TURN_ABOVE_DEG = 15.0


def spectrum_angle(image, size: int = 512, max_pitch_fraction: float = 1 / 3):
    """The trench angle (degrees, the layout's convention) that the strongest peak of
    the image's spectrum gives, within 45 degrees of vertical trenches; ``None``
    when no peak lies there.

    Examples
    --------
    >>> yy, xx = np.mgrid[:512, :512]
    >>> a = np.deg2rad(20.0)                        # stripes 16 px apart, turned by 20 deg
    >>> img = np.cos(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / 16)
    >>> abs(abs(spectrum_angle(img)) - 20.0) < 2.0   # to the spectrum's resolution
    True
    """
    a = np.asarray(image, np.float32)
    step = max(1, int(np.ceil(max(a.shape) / size)))
    a = a[::step, ::step]
    a = np.nan_to_num(a - np.nanmean(a))
    h, w = a.shape
    if min(h, w) < 16:
        return None
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(a * win)))
    ky = (np.arange(h) - h // 2) / h
    kx = (np.arange(w) - w // 2) / w
    KX, KY = np.meshgrid(kx, ky)
    k = np.hypot(KX, KY)
    # not the smooth illumination, not stripes longer than a third of the frame, and
    # only directions within 45 degrees of across vertical trenches
    keep = (k >= 1.0 / (max_pitch_fraction * min(h, w))) & (np.abs(KY) <= np.abs(KX))
    if not keep.any():
        return None
    i = int(np.argmax(np.where(keep, spec, -np.inf)))
    # a raw point's column grows along the trench-normal; the layout's angle turns
    # the rotated frame into the raw one, the opposite sense of the peak's direction
    angle = -np.degrees(np.arctan2(KY.flat[i], KX.flat[i]))
    return float((angle + 90.0) % 180.0 - 90.0)


def detect_any_tilt(detect, image, angle_range_deg=5.0, angle_deg=None, **kwargs):
    """``detect(image, angle_range_deg=..., angle_deg=..., **kwargs)`` for any tilt.

    Where the first layout is missing or uncertain and the spectrum puts the
    array beyond ``angle_range_deg``, the search is repeated over a range that
    holds the spectrum's angle; from :data:`TURN_ABOVE_DEG` on (the spectrum's
    angle, or a steep first layout's own), the frame turned upright by it is
    searched too. The most confident layout is returned, the turned frame's when
    it is at least 0.9 times as confident; ``quality["spectrum_angle_deg"]``
    records the angle used when another than the first layout won. The first
    error is raised when nothing is found."""
    error = None
    try:
        first = detect(image, angle_range_deg=angle_range_deg, angle_deg=angle_deg, **kwargs)
    except TrenchDetectionError as exc:
        first, error = None, exc
    steep = first is not None and abs(first.angle_deg) >= TURN_ABOVE_DEG
    if angle_deg is not None or (first is not None and not first.warnings and not steep
                                 and first.quality.get("confidence", 0.0) >= SURE):
        if first is None:
            raise error
        return first
    # a steep layout found by the widened search: its own angle turns the frame best
    angle = first.angle_deg if steep else spectrum_angle(image)
    if angle is None or abs(angle) <= 0.8 * angle_range_deg or (
            angle_range_deg >= MAX_RANGE_DEG and not steep):
        if first is None:
            raise error
        return first
    wider = min(MAX_RANGE_DEG, abs(angle) + 3.0)
    tries = [first]
    if not steep:
        try:
            tries.append(detect(image, angle_range_deg=wider, angle_deg=None, **kwargs))
        except TrenchDetectionError:
            pass
    turned = None
    if abs(angle) >= TURN_ABOVE_DEG:
        # the row bands smear steep trenches: the frame turned upright by the spectrum's angle
        try:
            turned = _on_turned_copy(detect, image, angle, angle_range_deg, kwargs)
            tries.append(turned)
        except TrenchDetectionError:
            pass
    found = [t for t in tries if t is not None]
    if not found:
        raise error
    best = max(found, key=lambda t: t.quality.get("confidence", 0.0))
    if turned is not None and turned.quality.get("confidence", 0.0) >= \
            0.9 * best.quality.get("confidence", 0.0):
        # as sure, and measured without the smear: 20 deg came out 0.08 deg off from the
        # widened search (confidence 0.94), 0.002 deg from the turned frame (0.93)
        best = turned
    if best is not first:
        best.quality["spectrum_angle_deg"] = angle
    return best


def _on_turned_copy(detect, image, angle, angle_range_deg, kwargs):
    """The layout found on the frame turned by ``angle`` (:func:`.orientation.turned_copy`),
    turned back, without the boxes that leave the frame."""
    from .orientation import turned_back, turned_copy

    raw = np.asarray(image)
    layout = turned_back(detect(turned_copy(raw, angle), angle_range_deg=angle_range_deg,
                                angle_deg=None, **kwargs), raw.shape, angle)
    tr = layout.trenches
    inside = layout.boxes_inside()
    if not inside.all():
        layout.trenches = tr[inside].reset_index(drop=True)
        layout.quality["n_trenches"] = float(inside.sum())
    if not inside.any():
        raise TrenchDetectionError("no box of the turned frame lies inside the frame")
    return layout
