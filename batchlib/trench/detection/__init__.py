"""Trench detection on arrays: angle, trench sets and boxes, drift, crops and QC.

>>> from batchlib.trench.detection import detect_trenches, crop_trenches
>>> layout = detect_trenches(phase_frame)                       # doctest: +SKIP
>>> crops = crop_trenches(frame_t, layout, drift_yx=(dy, dx))   # doctest: +SKIP

Coordinates follow :mod:`batchlib.trench.geometry`. See ``docs/trench_detection.md``.
"""
from ._common import TrenchDetectionError
from .crop import crop_trenches
from .drift import DriftEstimator, estimate_drift, estimate_drift_stack
from .trench_array import TrenchLayout, detect_trenches
from .pitch import estimate_pitch
from .qc import plot_detection
from .rotation import estimate_angle

__all__ = ["detect_trenches", "TrenchLayout", "TrenchDetectionError", "estimate_drift",
           "estimate_drift_stack", "DriftEstimator", "crop_trenches", "plot_detection",
           "estimate_angle", "estimate_pitch"]
