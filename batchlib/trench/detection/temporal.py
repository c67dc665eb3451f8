"""Where the cells are: a lumen changes from frame to frame, a wall does not.

A phase layout's polarity (lumens the bright or the dark stripes) is read from
one frame, and where cells barely show in it (dark lumens, faint cells, a
textured chip: the ``mixed`` family) both readings can look alike; the
self-check then calls the layout undetermined, and it may sit on the walls.
Over a movie the cells grow, divide and move along the lumens while the PDMS
stays put: after aligning the frames on the first (the drift), the
frame-to-frame change relative to the local brightness is far larger on the
lumens' axes than half a pitch beside them. On held-out positions
(1024², 8 frames, `.scratch` run of 2026-12-04) the change on the boxes' axes
over the change between them was 7.6-16 on right layouts (nominal,
dark_lumen, halo_walls 10252; mixed 10247) and 0.18-0.48 on the layouts that
boxed the walls (mixed 10212, 10224, 10226, 10252 pos 1); a layout boxing half
its trenches right gave 1.0.
"""
from __future__ import annotations

import numpy as np

__all__ = ["temporal_contrast", "flip_thresholds", "FLIP_BELOW", "VERIFIED_ABOVE",
           "UNVERIFIED_FLIP_BELOW", "UNVERIFIED_VERIFIED_ABOVE"]

#: Below this ratio the boxes sit where nothing changes: the walls.
FLIP_BELOW = 0.6
#: From this ratio on, the boxes hold what changes: the lumens.
VERIFIED_ABOVE = 2.0
#: The same two lines for a layout the one-frame self-check left unverified.
UNVERIFIED_FLIP_BELOW = 0.8
UNVERIFIED_VERIFIED_ABOVE = 1.25


def flip_thresholds(unverified: bool) -> tuple:
    """``(flip below, verified above)``: the temporal contrast under which a layout's
    polarity is doubted, and the one the other polarity's layout must reach to be taken.

    A layout the one-frame self-check verified needs strong evidence from time to be
    overturned. One it left unverified was chosen on weak evidence, often the
    texture relative to the brightness, which dark stripes inflate: their noise and
    compression artefacts are large against their dim level. The frame-to-frame change
    relative to the brightness is inflated the same way, so where it still favours the
    *other* (brighter) stripes it is the stronger evidence, even when modest: held-out
    mixed 10307 (bright lumens at 3.4x the dark walls, JPEG 48, read noise 16) was
    flipped onto the walls by the relative texture (2.2x), while over time the bright
    stripes changed 1.4x more than the dark ones (the walls' boxes: 0.67-0.72).
    """
    if unverified:
        return UNVERIFIED_FLIP_BELOW, UNVERIFIED_VERIFIED_ABOVE
    return FLIP_BELOW, VERIFIED_ABOVE


def temporal_contrast(movie, layout, max_frames: int = 6, margin: int = 10) -> float:
    """How much more the image changes over time on the boxes' axes than half a pitch
    beside them (NaN when it cannot be measured).

    Up to ``max_frames`` frames from the layout's reference frame on are aligned on
    it (:class:`.drift.DriftEstimator`, bilinear shifts); the change is the standard
    deviation of the differences between consecutive frames over the mean frame,
    sampled along every box's axis (``margin`` rows in from both ends) and along
    the line half a pitch beside it; the ratio of the two medians over the boxes.

    Examples
    --------
    >>> import pandas as pd
    >>> from batchlib.trench.detection.trench_array import TrenchLayout
    >>> rng = np.random.default_rng(0)
    >>> movie = np.full((4, 120, 120), 100.0) + rng.normal(0, 1, (4, 120, 120))
    >>> movie[:, :, 28:36] += rng.normal(0, 30, (4, 120, 8))   # something lives at x = 31.5
    >>> boxes = pd.DataFrame({"x_center": [31.5], "y_closed": [5.0], "direction": [1],
    ...                       "height": [100]})
    >>> lay = TrenchLayout(0.0, 40.0, pd.DataFrame(), boxes, {}, (120, 120))
    >>> bool(temporal_contrast(movie, lay) > 5)
    True
    """
    from scipy import ndimage

    from ..geometry import rotated_to_raw
    from .drift import DriftEstimator

    n_t = movie.shape[0]
    start = int(layout.quality.get("reference_frame", 0))
    stop = min(n_t, start + max_frames)
    tr = layout.trenches
    if stop - start < 3 or len(tr) == 0:
        return float("nan")
    ref = np.asarray(movie[start], np.float32)
    estimator = DriftEstimator(ref)
    # binned to about 512 px: a lumen stays several pixels wide, the cost a sixteenth
    # at 2048² (6 frames: 585 -> 199 ms, most of it the drift)
    b = max(1, min(ref.shape) // 512)

    def binned(a):
        h, w = (a.shape[0] // b) * b, (a.shape[1] // b) * b
        return a[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))

    frames = [binned(ref)]
    for t in range(start + 1, stop):
        frame = np.asarray(movie[t], np.float32)
        shift = -np.asarray(estimator(frame), float) / b
        frames.append(ndimage.shift(binned(frame), shift, order=1, mode="nearest"))
    stack = np.stack(frames)
    change = np.std(np.diff(stack, axis=0), axis=0) / np.maximum(np.abs(stack.mean(axis=0)), 1e-6)
    on, off = [], []
    for r in tr.itertuples():
        n = int(r.height) - 2 * margin
        if n < 3:
            continue
        rows = float(r.y_closed) + int(r.direction) * np.arange(margin, margin + n, dtype=float)
        for dx, out in ((0.0, on), (0.5 * float(layout.pitch), off)):
            pts = np.stack([rows, np.full(rows.shape, float(r.x_center) + dx)], axis=-1)
            raw = (rotated_to_raw(pts, layout.angle_deg, ref.shape) - 0.5 * (b - 1)) / b
            out.append(float(np.mean(ndimage.map_coordinates(change, [raw[:, 0], raw[:, 1]],
                                                             order=1, mode="nearest"))))
    if not on:
        return float("nan")
    return float(np.median(on) / max(float(np.median(off)), 1e-12))
