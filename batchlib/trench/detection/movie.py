"""Detection on a whole movie: the reference image, the layout and the drift of every frame.

The TrenchDetection job and the benchmarks use these, so what is measured is
what the workflow does.

>>> import numpy as np
>>> from batchlib.trench.synthetic import SyntheticConfig, simulate_position
>>> pos = simulate_position(SyntheticConfig(height=256, width=256, n_timepoints=3,
...                                         channels=("phase",), n_sets=1, seed=3), 0)
>>> movie = pos.movies["phase"]
>>> layout, reference = detect_in_movie(movie, "phase")
>>> drift = movie_drift(movie, reference, layout, "phase")
>>> drift.shape
(3, 2)
"""
from __future__ import annotations

import numpy as np

from ..geometry import corners_inside
from .closed_end_drift import (across_trenches, closed_end_positions, fluorescence_drift,
                               orient_by_tips, set_shifts_to_frame)
from .drift import DriftEstimator
from .trench_array import detect_trenches

__all__ = ["reference_image", "detect_in_movie", "movie_drift"]


def reference_image(movie, kind):
    """Frame 0 (phase), or the maximum projection over time (fluorescence: only
    filled trenches show, and a cell seen once marks its trench), as float32."""
    if kind == "phase":
        return np.asarray(movie[0], dtype=np.float32)
    ref = np.asarray(movie[0], dtype=np.float32)
    for t in range(1, movie.shape[0]):  # streamed: one frame in memory at a time
        np.maximum(ref, movie[t], out=ref)
    return ref


def detect_in_movie(movie, kind, **detect_kwargs):
    """Layout of a movie (``(T, H, W)``, any array with ``shape`` and frame indexing).

    Returns ``(layout, reference)``. For fluorescence a single set's direction
    is checked on three frames (:func:`.closed_end_drift.orient_by_tips`), and
    every set's closed ends are put on frame 0's mother tips
    (:func:`.closed_end_drift.set_shifts_to_frame`): the projection holds each
    set's tips at their outermost over the movie.
    """
    reference = reference_image(movie, kind)
    detect_kwargs = dict(detect_kwargs)
    forced = detect_kwargs.pop("direction", None)

    def detect(direction=forced):
        return detect_trenches(reference, kind=kind, direction=direction, **detect_kwargs)

    layout = detect()
    n_t = movie.shape[0]
    if kind == "fluorescence" and forced is None:
        picks = np.unique(np.linspace(0, n_t - 1, min(n_t, 3)).round().astype(int))
        layout = orient_by_tips(reference, [np.asarray(movie[t], np.float32) for t in picks],
                                layout, detect)
    if kind == "fluorescence":
        layout = _closed_ends_on_frame(layout, reference, np.asarray(movie[0], np.float32))
    return layout, reference


def _closed_ends_on_frame(layout, reference, frame):
    """The fluorescence layout with every set moved to ``frame``'s mother tips
    (:func:`.closed_end_drift.set_shifts_to_frame`), except a set whose boxes would
    leave the image; ``quality["closed_end_frame_shift_px"]``, the largest move."""
    shifts = set_shifts_to_frame(reference, frame, layout)
    moved = layout.moved_along(shifts)
    tr = moved.trenches
    raw = np.stack([tr[[f"raw_y{i}" for i in range(4)]].to_numpy(),
                    tr[[f"raw_x{i}" for i in range(4)]].to_numpy()], axis=-1)
    outside = ~corners_inside(raw, layout.image_shape)
    for k in set(tr.loc[outside, "set"].astype(int)):
        shifts.pop(k, None)
    if outside.any():
        moved = layout.moved_along(shifts)
    moved.quality["closed_end_frame_shift_px"] = float(
        max((abs(v) for v in shifts.values()), default=0.0))
    return moved


def movie_drift(movie, reference, layout, kind, start=0, previous=None):
    """``(T, 2)`` drift ``(dy, dx)`` of every frame relative to the boxes' coordinates.

    A phase reference is frame 0 (drift 0 by definition); a fluorescence
    maximum projection is compared with every frame across the trenches by
    cross-correlation, and along them the mother cells' tips of every frame
    are compared with those of frame 0. Frames
    before ``start`` take their rows from ``previous`` (an incremental run).

    The prior of each frame (which of near-equal correlation peaks of a
    periodic array is taken) is the drift of the frame before, read from
    the rows of this table: an incremental run and a run over the whole
    movie therefore decide every frame alike.
    """
    n_t = movie.shape[0]
    out = np.zeros((n_t, 2))
    if start:
        out[:start] = np.asarray(previous, float)[:start]
    trenches = layout.trenches
    first = 1 if kind == "phase" else 0
    estimator, tips, d0 = None, None, None
    if kind == "fluorescence" and n_t > max(start, first):
        # along the trenches, frames are compared with frame 0's mother tips, where
        # detect_in_movie put the boxes (the projection's tips are each set's outermost)
        estimator = DriftEstimator(reference)
        frame0 = np.asarray(movie[0], dtype=np.float32)
        d0 = estimator(frame0, prior=(0.0, 0.0))
        tips = closed_end_positions(frame0, trenches, layout.angle_deg,
                                    across_trenches(d0, layout.angle_deg))
    for t in range(max(start, first), n_t):
        if estimator is None:  # one per movie: the reference is transformed once
            estimator = DriftEstimator(reference)
        frame = np.asarray(movie[t], dtype=np.float32)
        d = d0 if t == 0 and d0 is not None else estimator(
            frame, prior=out[t - 1] if t else (0.0, 0.0))
        if kind == "fluorescence":
            d = fluorescence_drift(reference, frame, trenches, layout.angle_deg, d, tips)
        out[t] = d
    return out
