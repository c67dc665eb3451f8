"""Tracking the cells of mother-machine trenches: links, lineages, cell cycles.

Plain functions on tables; the Track job (:mod:`batchlib.trench.jobs.track`)
only reads and writes them. Method and columns: ``docs/tracking.md``.
"""
from .lineage import ID_STRIDE, cycle_table, lineage_columns, track_cells
from .tracker import TrackParams, TrenchTracker, track_trench

__all__ = ["ID_STRIDE", "TrackParams", "TrenchTracker", "track_trench", "track_cells",
           "lineage_columns", "cycle_table"]
