"""Measure: per-cell and per-trench-frame tables, and the folder-wide parquet dataset."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...base import Param
from ...container_job import BatchJobOnContainer
from ...io import read_attrs, read_table, write_attrs, write_table
from ...io.files import atomic_path
from ..layout import (CELLS_CSV, CELLS_DATASET, CELLS_TABLE, CROPS, DRIFT_TABLE, FRAMES_TABLE,
                      SEGMENTATION, SEGMENTATION_POLES, TRENCH_FRAMES_TABLE, TRENCHES_TABLE, AcquisitionMeta,
                      folder_output, specs)
from .stacks import CHUNK_T, STACK_ID, frame_blocks

if TYPE_CHECKING:  # pandas is imported where it is used: it is slow to import
    import pandas as pd


class Measure(BatchJobOnContainer):
    """Measure every segmented cell (size, position, fluorescence) and every trench-frame.

    Writes ``tables/cells/<segmentation>`` and ``tables/trenches_t`` into the
    container and ``<folder>/tables/cells/<container>.parquet``, so the whole
    folder reads as one dataset (:func:`read_cells`).
    """

    # 3: lengths to a fraction of a pixel from the U-Net's pole codes (segmentation_poles)
    version = "3"
    params = {
        "segmentation": Param("cells", "name of the segmentation to measure", is_name=True),
        "background": Param("trench", "background: trench (cell-free lumen of the same crop) "
                            "or empty_trenches (median of empty trenches in that frame)",
                            choices=("trench", "empty_trenches")),
        "percentile": Param(95.0, "intensity percentile reported per cell"),
    }
    input_keys = specs(f"{SEGMENTATION}/{{segmentation}}", CROPS, TRENCHES_TABLE, DRIFT_TABLE)
    output_keys = specs(f"{CELLS_TABLE}/{{segmentation}}", TRENCH_FRAMES_TABLE)

    def process_container(self, container, path):
        import pandas as pd
        from ..measure import measure_cells, measure_trench_frames

        p = self.param_values
        meta = AcquisitionMeta.read(container, keys_from=CROPS)
        md, keys = meta.attrs, meta.channel_keys
        fluo = [k for k in keys if meta.kind(k) == "fluorescence" and f"{CROPS}/{k}" in container]
        focus = next((k for k in keys if meta.kind(k) == "phase"), keys[0])
        labels_ds = container[f"{SEGMENTATION}/{p['segmentation']}"]
        n_t = min(labels_ds.shape[1], int(read_attrs(labels_ds).get("n_frames", labels_ds.shape[1])))
        trenches = read_table(container, TRENCHES_TABLE)
        empty = trenches["empty"].to_numpy(bool) if "empty" in trenches else None
        lumen = _lumen_columns(container, labels_ds.shape[-1])
        poles_ds = _poles_of(container, p["segmentation"], labels_ds, n_t)
        basis = self._basis(container, labels_ds, fluo, focus, empty, lumen, meta.pixel_size_um,
                            poles_ds)
        start, cells, frames = self._kept_rows(container, basis, n_t)
        if start:
            self.logger.debug("%s: measuring frames %d-%d (earlier ones kept)", path, start, n_t - 1)
        for t0, t1 in frame_blocks(start, n_t, CHUNK_T):
            labels = labels_ds[:, t0:t1]
            inten = {k: container[f"{CROPS}/{k}"][:, t0:t1] for k in fluo}
            block = measure_cells(labels, inten, pixel_size_um=meta.pixel_size_um,
                                  background=p["background"], empty_trench_mask=empty,
                                  percentile=p["percentile"], lumen_columns=lumen,
                                  pole_codes=None if poles_ds is None else poles_ds[:, t0:t1])
            block["t"] += t0
            cells.append(block)
            focus_inten = dict(inten)
            if f"{CROPS}/{focus}" in container and focus not in focus_inten:
                focus_inten[focus] = container[f"{CROPS}/{focus}"][:, t0:t1]
            fr = measure_trench_frames(labels, focus_inten, focus_channel=focus)
            fr["t"] += t0
            frames.append(fr)
        cells = self._annotate(pd.concat(cells, ignore_index=True), container, trenches, md, path)
        frames = _add_trench_ids(pd.concat(frames, ignore_index=True), trenches)
        write_table(container, f"{CELLS_TABLE}/{p['segmentation']}", cells)
        write_table(container, TRENCH_FRAMES_TABLE, frames)
        write_attrs(container[f"{CELLS_TABLE}/{p['segmentation']}"],
                    {MEASURED_ATTR: {"basis": basis, "n_frames": int(n_t)}})
        write_parquet(self.folder_outputs(path)[0], cells)

    def _basis(self, container, labels_ds, fluo, focus, empty, lumen, pixel_size_um,
               poles_ds=None) -> dict:
        """What the measurements of a frame depend on besides its own labels and crops."""
        import numpy as np

        def stack(ds):  # a stack made anew (say after `batchlib verify` deleted a damaged one) has a new id
            attrs = read_attrs(ds)
            return {"basis": attrs.get("basis"), "id": attrs.get(STACK_ID)}

        crops = {k: stack(container[f"{CROPS}/{k}"]) for k in sorted({*fluo, focus}) if f"{CROPS}/{k}" in container}
        flags = [np.asarray(x).tolist() if x is not None else None for x in (empty, lumen)]
        return json.loads(json.dumps({
            "version": self.version, "params": {k: self.param_values[k] for k in ("background", "percentile")},
            "labels": stack(labels_ds), "crops": crops, "fluo": sorted(fluo),
            "poles": None if poles_ds is None else stack(poles_ds),
            "focus": focus, "empty": flags[0], "lumen": flags[1], "pixel_size_um": pixel_size_um},
            default=str))

    def _kept_rows(self, container, basis, n_t):
        """``(start, [cells], [frames])``: the rows of the frames before ``start`` kept from the
        last run (without their annotation, redone over all rows), when it measured the same
        frames from the same basis; ``start`` is a multiple of ``CHUNK_T``, so the blocks
        measured are those of a run from scratch (a block's background may use all its frames)."""
        key = f"{CELLS_TABLE}/{self.param_values['segmentation']}"
        state = read_attrs(container[key]).get(MEASURED_ATTR) \
            if key in container and TRENCH_FRAMES_TABLE in container else None
        if not state or state.get("basis") != basis or n_t <= 0:
            return 0, [], []
        start = min(int(state.get("n_frames", 0)), n_t - 1) // CHUNK_T * CHUNK_T
        if start <= 0:
            return 0, [], []
        try:
            cells = read_table(container, key)
            frames = read_table(container, TRENCH_FRAMES_TABLE)
        except Exception:  # noqa: BLE001 - e.g. a column `batchlib verify` deleted: measure all again
            return 0, [], []
        cells = cells[cells["t"] < start].drop(columns=[c for c in _ANNOTATION if c in cells])
        frames = frames[frames["t"] < start].drop(columns=[c for c in ("trench_set", "trench") if c in frames])
        # an empty part would turn the columns of the concatenation into objects
        return start, [cells.reset_index(drop=True)] if len(cells) else [], \
            [frames.reset_index(drop=True)] if len(frames) else []

    def folder_outputs(self, output_path) -> list:
        """``<folder>/tables/cells/<container>.parquet``: one file per container."""
        return [folder_output(output_path, CELLS_DATASET, ".parquet")]

    @staticmethod
    def _annotate(cells, container, trenches, md, path):
        import numpy as np

        cells = _add_trench_ids(cells, trenches)
        t = cells["t"].to_numpy()
        times = np.full(int(t.max(initial=-1)) + 1, np.nan)
        if FRAMES_TABLE in container:
            known = read_table(container, FRAMES_TABLE)["time_s"].to_numpy()[:len(times)]
            times[:len(known)] = known
        cells.insert(0, "acquisition", md.get("acquisition", ""))
        cells.insert(1, "position", np.full(len(cells), int(md.get("position", -1)), np.int64))
        cells.insert(2, "container", Path(path).name)
        cells["time_s"] = times[t]
        # Centroids in the raw frame: crop -> rotated frame -> raw frame with that frame's drift.
        angle = float(read_attrs(container[TRENCHES_TABLE])["angle_deg"])
        drift = read_table(container, DRIFT_TABLE)[["dy", "dx"]].to_numpy()
        row = cells["n"].to_numpy()
        tr = trenches.iloc[row]
        rot_y = tr["y_closed"].to_numpy() + tr["direction"].to_numpy() * cells["centroid_y"].to_numpy()
        rot_x = tr["x_center"].to_numpy() - (tr["width"].to_numpy() - 1) / 2 + cells["centroid_x"].to_numpy()
        shape = md.get("shape_yx") or [0, 0]
        from ..geometry import rotated_to_raw

        raw = rotated_to_raw(np.stack([rot_y, rot_x], axis=1), angle, shape) + drift[t] \
            if len(cells) else np.zeros((0, 2))
        cells["frame_y"], cells["frame_x"] = raw[:, 0], raw[:, 1]
        return cells


#: The attribute of the cell table saying which frames it measured from what.
MEASURED_ATTR = "measured"
#: The columns :meth:`Measure._annotate` and :func:`_add_trench_ids` add to the measurements.
_ANNOTATION = ("acquisition", "position", "container", "trench_set", "trench", "time_s", "frame_y", "frame_x")


def _add_trench_ids(table, trenches):
    import numpy as np

    n = table["n"].to_numpy()
    table.insert(table.columns.get_loc("n") + 1, "trench_set", trenches["set"].to_numpy()[n].astype(np.int64))
    table.insert(table.columns.get_loc("trench_set") + 1, "trench",
                 trenches["trench"].to_numpy()[n].astype(np.int64))
    return table


def write_parquet(path, table: pd.DataFrame) -> None:
    """Write a parquet file atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def cell_tables(folder) -> list:
    """The per-container parquet files of a folder, sorted."""
    return sorted((Path(folder) / CELLS_DATASET).glob("*.parquet"))


def read_cells(folder) -> pd.DataFrame:
    """All per-cell rows of a folder (every ``<folder>/tables/cells/*.parquet``) as one table.

    Raises
    ------
    ValueError
        A file that cannot be read, named (the next workflow run rebuilds it).
    """
    import pandas as pd

    tables = []
    for f in cell_tables(folder):
        try:
            tables.append(pd.read_parquet(f))
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{f}: cannot be read ({e}); the next run of the workflow rebuilds "
                             f"it") from e
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


#: The completion record of the CSV export, in the folder's status directory.
CSV_RECORD = "cells_csv.record.json"


def export_csv(folder, path=None, force=False) -> Path:
    """Write the folder's consolidated cell table as CSV; returns its path.

    The export has a completion record (``batchlib/cells_csv.record.json``):
    the parquet files it was made from and the CSV's size and hash. It is
    rewritten only when those files changed or the CSV is missing or damaged.
    """
    from ...folder_outputs import problem, signatures
    from ...status import status_dir

    folder = Path(folder)
    path = Path(path) if path else folder / CELLS_CSV
    sources = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in cell_tables(folder)}
    record_path = status_dir(folder) / CSV_RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = None
    if (not force and isinstance(record, dict) and record.get("csv") == str(path.resolve())
            and record.get("sources") == sources
            and problem([path], path.parent, record.get("output")) is None):
        return path
    table = read_cells(folder)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    record = {"csv": str(path.resolve()), "sources": sources, "rows": len(table),
              "output": signatures([path], path.parent)}
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path


def _poles_of(container, segmentation, labels_ds, n_t):
    """The pole codes Segment kept with these labels (``segmentation_poles/<name>``), or
    ``None``: none kept (not a U-Net segmentation, or written before they were), or ones
    left from other labels (another basis, other shape, fewer frames)."""
    key = f"{SEGMENTATION_POLES}/{segmentation}"
    if key not in container:
        return None
    ds = container[key]
    attrs, label_attrs = read_attrs(ds), read_attrs(labels_ds)
    n, _, h, _ = labels_ds.shape
    if ds.ndim != 4 or (ds.shape[0], ds.shape[2], ds.shape[3]) != (n, h, 2) \
            or attrs.get("basis") != label_attrs.get("basis") \
            or int(attrs.get("n_frames", 0)) < n_t or ds.shape[1] < n_t:
        return None
    return ds


def _lumen_columns(container, width):
    """Crop columns of the lumen, from the width TrenchDetection measured (``None``: unknown).

    Fixed by the geometry rather than inferred from the cells, so that the
    background of a frame does not change when later frames are appended.
    """
    import numpy as np

    quality = read_attrs(container[TRENCHES_TABLE]).get("quality", {}) \
        if TRENCHES_TABLE in container else {}
    lumen = float(quality.get("lumen_width_px") or 0.0)
    if not lumen > 2:
        return None
    offset = np.arange(width) - (width - 1) / 2.0
    return np.abs(offset) <= lumen / 2.0
