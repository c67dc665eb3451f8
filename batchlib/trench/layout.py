"""The keys of a per-image (one field of view) container, in one place.

=============================  ==============================================
``raw/<channel>``              movie (T, Y, X), one frame per chunk (Ingest)
``tables/frames``              t, time_s per frame (Ingest)
root attribute ``acquisition`` normalised metadata (Ingest)
``tables/trenches``            one row per trench box (TrenchDetection)
``tables/drift``               t, dy, dx per frame (TrenchDetection)
``trench_crops/<channel>``     crops (n_trench, T, H, W) (Compress)
``overview/<channel>``         downsampled movie when raw is dropped (Compress)
``segmentation/<name>``        labels (n_trench, T, H, W) (Segment)
``tables/cells/<name>``        one row per cell and frame (Measure)
``tables/trenches_t``          one row per trench and frame (Measure)
``tables/tracks/<name>``       cell_id, parent_id... per cell and frame (Track)
``tables/cycles/<name>``       one row per tracked cell: its cell cycle (Track)
``tracking/<name>``            the trackers' state, to continue on new frames (Track)
``batchlib/<job>``             completion records (framework)
=============================  ==============================================

Next to the containers, one file per container (listed with their size and
checksum in the completion record of the job that writes them):
``tables/cells/<container>.parquet`` (Measure) and
``qc/<container>_trenches.png`` (TrenchDetection).
"""
from __future__ import annotations

import os
import re

from ..io import CONTAINER_EXTS

RAW = "raw"
OVERVIEW = "overview"
FRAMES_TABLE = "tables/frames"
TRENCHES_TABLE = "tables/trenches"
DRIFT_TABLE = "tables/drift"
CROPS = "trench_crops"
SEGMENTATION = "segmentation"
CELLS_TABLE = "tables/cells"
TRENCH_FRAMES_TABLE = "tables/trenches_t"
ACQUISITION_ATTR = "acquisition"
TRACKS_TABLE = "tables/tracks"
CYCLES_TABLE = "tables/cycles"
TRACK_STATE = "tracking"

#: Folder-level outputs, next to the containers: one file per container, named
#: after it (see :func:`folder_output`), so two positions never share one.
CELLS_DATASET = "tables/cells"
QC_DIR = "qc"


def container_stem(path) -> str:
    """A container's file name without its extension (``exp.v2_pos000.h5`` -> ``exp.v2_pos000``)."""
    name = os.path.basename(os.path.normpath(str(path)))
    root, ext = os.path.splitext(name)
    return root if ext in CONTAINER_EXTS else name


def folder_output(container, subfolder: str, suffix: str) -> str:
    """``<folder>/<subfolder>/<container stem><suffix>`` for the container at ``container``."""
    folder = os.path.dirname(os.path.normpath(str(container)))
    return os.path.join(folder, subfolder, container_stem(container) + suffix)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def channel_key(name: str) -> str:
    """A container-safe key for a channel name ("5-FAM/pH 9.0" -> "5-FAM_pH_9.0")."""
    # Leading dots go too: "." and ".." are directories in n5/zarr, not keys.
    key = _UNSAFE.sub("_", str(name)).strip("_").lstrip(".")
    return key or "channel"


def channel_keys(names) -> list:
    """Unique keys for a list of channel names."""
    keys, seen = [], {}
    for name in names:
        key = channel_key(name)
        n = seen.get(key, 0)
        seen[key] = n + 1
        keys.append(key if n == 0 else f"{key}_{n}")
    return keys
