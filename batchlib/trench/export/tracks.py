"""Lineages as a napari Tracks table, in full-frame pixel coordinates.

``<stem>_tracks.csv`` has one row per cell and frame::

    track_id, t, y, x, parent_track_id, n, trench_set, trench, label

``track_id`` is Track's ``cell_id`` (unique in a position), ``t`` the frame,
``y, x`` the cell's centroid in the raw frame (pixels; Measure's ``frame_y``,
``frame_x``), ``parent_track_id`` the mother cell's track (0: none seen).
:func:`load_napari_tracks` turns it into the ``data`` and ``graph`` of
``viewer.add_tracks``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...io import read_table
from ..layout import CELLS_TABLE, TRACKS_TABLE

COLUMNS = ["track_id", "t", "y", "x", "parent_track_id", "n", "trench_set", "trench", "label"]


def tracks_table(tracks: pd.DataFrame, cells: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """The napari table from Track's table and Measure's cell table (frames ``< n_frames``).

    A cell the segmentation cut in two in one frame (two labels, one track)
    is one row there, at the mean of its parts, as napari wants one point per
    track and frame.
    """
    keys = ["n", "t", "label"]
    xy = cells[keys + ["frame_y", "frame_x"]]
    df = tracks[keys + ["cell_id", "parent_id"]].merge(xy, on=keys, how="left")
    df = df[df["t"] < n_frames]
    if "trench_set" in cells and "trench" in cells:
        df = df.merge(cells[keys + ["trench_set", "trench"]], on=keys, how="left")
    else:
        df["trench_set"], df["trench"] = -1, -1
    out = df.groupby(["cell_id", "t"], sort=True).agg(
        y=("frame_y", "mean"), x=("frame_x", "mean"), parent=("parent_id", "first"),
        n=("n", "first"), trench_set=("trench_set", "first"), trench=("trench", "first"),
        label=("label", "min")).reset_index()
    ids = set(out["cell_id"].tolist())
    parent = out["parent"].to_numpy(np.int64)
    known = np.array([p in ids for p in parent.tolist()], bool)
    out = pd.DataFrame({
        "track_id": out["cell_id"].to_numpy(np.int64), "t": out["t"].to_numpy(np.int64),
        "y": out["y"].to_numpy(float), "x": out["x"].to_numpy(float),
        # a mother outside the exported frames (or not tracked) would be a dangling edge
        "parent_track_id": np.where(known, parent, 0),
        "n": out["n"].to_numpy(np.int64), "trench_set": out["trench_set"].to_numpy(np.int64),
        "trench": out["trench"].to_numpy(np.int64), "label": out["label"].to_numpy(np.int64)})
    return out[COLUMNS]


def write_tracks(container, segmentation: str, n_frames: int, path) -> Path:
    """Write ``path`` from an open container; untouched when its content is the same."""
    tracks = read_table(container, f"{TRACKS_TABLE}/{segmentation}")
    cells = read_table(container, f"{CELLS_TABLE}/{segmentation}")
    buf = io.StringIO()
    tracks_table(tracks, cells, n_frames).to_csv(buf, index=False, float_format="%.3f")
    text = buf.getvalue()
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return path
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def load_napari_tracks(path, image=None):
    """``(data, graph)`` for ``napari.Viewer.add_tracks`` from a ``<stem>_tracks.csv``.

    ``data`` is (N, 4): ``track_id, t, y, x``; ``graph`` maps a daughter's
    track id to ``[mother's track id]``. With ``image`` (the position's
    ``<stem>.ome.zarr``), ``t, y, x`` are scaled as its full-resolution labels
    are (seconds and micrometres when known), so the tracks lie on the
    layers the OME-Zarr reader opens.
    """
    df = pd.read_csv(path)
    data = df[["track_id", "t", "y", "x"]].to_numpy(float)
    if image is not None:
        import zarr

        group = zarr.open_group(str(image), mode="r")
        labels = list(group["labels"].attrs.get("labels", [])) if "labels" in group else []
        source = group[f"labels/{labels[0]}"] if labels else group
        scale = source.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        data[:, 1:] *= [scale[0], scale[2], scale[3]]  # (t, c, y, x): c has no place here
    first = df.drop_duplicates("track_id")
    graph = {int(k): [int(p)] for k, p in zip(first["track_id"], first["parent_track_id"]) if p > 0}
    return data, graph
