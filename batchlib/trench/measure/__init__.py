"""Vectorised per-cell and per trench-frame measurements of labelled trench crops.

See ``docs/segmentation.md`` for the column definitions and the background rule.
"""
from .cells import measure_cells
from .frames import focus_score, measure_trench_frames

__all__ = ["measure_cells", "measure_trench_frames", "focus_score"]
