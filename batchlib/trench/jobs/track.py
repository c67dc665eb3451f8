"""Track: lineages and cell cycles from the per-cell table (after Measure)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...base import Param
from ...container_job import BatchJobOnContainer
from ...errors import InvalidInputError
from ...io import create_dataset, read_attrs, read_table, write_table
from ..layout import (CELLS_TABLE, CYCLES_DATASET, CYCLES_TABLE, QC_DIR, SEGMENTATION, TRACK_STATE,
                      TRACKS_DATASET, TRACKS_TABLE, AcquisitionMeta, container_stem,
                      folder_output, specs)
from .measure import write_parquet

if TYPE_CHECKING:  # pandas is imported where it is used: it is slow to import
    import pandas as pd

_KEYS = ["n", "t", "label"]


class Track(BatchJobOnContainer):
    """Link the cells of every trench over time; write lineages and cell cycles.

    Reads ``tables/cells/<segmentation>`` (Measure) and writes, in the
    container and as ``<folder>/tables/{tracks,cycles}/<container>.parquet``:
    ``tables/tracks/<segmentation>`` (per cell and frame, same keys ``n, t,
    label`` as the cell table) and ``tables/cycles/<segmentation>`` (per
    cell). When frames were appended, the trackers continue from their saved
    state: only the last frames are relabelled, and the result is the one of a
    run on all frames at once. Method and columns: ``docs/tracking.md``.
    """

    version = "2"  # 2: files beside the container named by its whole stem, and recorded
    params = {
        "segmentation": Param("cells", "name of the segmentation whose cell table is tracked"),
        "max_gap": Param(1, "frames a cell may be missed by the segmentation and still be linked"),
        "frame_interval_s": Param(0.0, "seconds between frames, used where the acquisition "
                                  "has no frame times (0: frame times only)"),
        "qc_plot": Param(True, "write a QC picture per position to <folder>/qc/", affects_result=False),
    }
    input_keys = specs(f"{CELLS_TABLE}/{{segmentation}}", f"{SEGMENTATION}/{{segmentation}}")
    output_keys = specs(f"{TRACKS_TABLE}/{{segmentation}}", f"{CYCLES_TABLE}/{{segmentation}}")

    def tracker_params(self):
        from ..tracking import TrackParams

        return TrackParams(max_gap=self.param_values["max_gap"])

    def process_container(self, container, path):
        import numpy as np
        import pandas as pd
        from ..tracking import cycle_table, lineage_columns, track_cells

        p = self.param_values
        seg = p["segmentation"]
        cells = read_table(container, f"{CELLS_TABLE}/{seg}")
        missing = [c for c in (*_KEYS, "centroid_y", "length_px") if c not in cells]
        if missing:
            raise InvalidInputError(f"{path}: {CELLS_TABLE}/{seg} lacks the columns {missing} "
                                    "(was it written by Measure?)")
        labels = container[f"{SEGMENTATION}/{seg}"]
        height = int(labels.shape[2])
        n_frames = min(labels.shape[1], int(read_attrs(labels).get("n_frames", labels.shape[1])))
        n_frames = max(n_frames, int(cells["t"].max()) + 1 if len(cells) else 0)
        cells = cells.sort_values(_KEYS, kind="stable").reset_index(drop=True)
        params = self.tracker_params()

        basis = {"version": self.version, "height": height, "params": vars(params)}
        state_key, old = f"{TRACK_STATE}/{seg}", None
        if state_key in container and f"{TRACKS_TABLE}/{seg}" in container:
            old = json.loads(container[state_key][()].tobytes().decode())
        kept = None
        if old and old.get("basis") == basis and old["n_frames"] <= n_frames \
                and old["fingerprint"] == _fingerprint(cells, old["n_frames"]):
            # Continue the trackers; frames before the open ones are final.
            start = old["n_frames"] - params.undo_frames
            prev = read_table(container, f"{TRACKS_TABLE}/{seg}",
                              columns=[*_KEYS, "cell_id", "parent_id"])
            kept = prev[prev["t"] < start]
            states = {int(k): v for k, v in old["trenches"].items()}
            new, states = track_cells(cells[cells["t"] >= start - 1], height, n_frames, params, states)
            tracks = pd.concat([kept, new], ignore_index=True).sort_values(_KEYS, kind="stable")
            self.logger.debug("%s: tracking continued from frame %d", path, old["n_frames"])
        else:
            tracks, states = track_cells(cells, height, n_frames, params)
        tracks = tracks.reset_index(drop=True)

        times = self._times(cells, n_frames, path)
        tracks = lineage_columns(tracks, cells, height, times)
        cycles = cycle_table(tracks, cells, height, times, AcquisitionMeta.read(container).pixel_size_um,
                             n_frames)
        out = tracks.merge(cells[[*_KEYS, *[c for c in ("acquisition", "position", "container",
                                                          "trench_set", "trench") if c in cells]]],
                           on=_KEYS, how="left")
        front = [c for c in ("acquisition", "position", "container") if c in out]
        out = out[front + [c for c in out.columns if c not in front]]
        write_table(container, f"{TRACKS_TABLE}/{seg}", out)
        write_table(container, f"{CYCLES_TABLE}/{seg}", cycles)
        blob = json.dumps({"basis": basis, "n_frames": n_frames,
                           "fingerprint": _fingerprint(cells, n_frames),
                           "trenches": {str(k): v for k, v in states.items()}}).encode()
        create_dataset(container, state_key, data=np.frombuffer(blob, np.uint8))
        # named by the whole container stem: "exp.v2_pos000" and "exp.v3_pos000"
        # must not share (and overwrite) one file
        stem = container_stem(path)
        folder = Path(path).parent
        tracks_file, cycles_file = self.folder_outputs(path)
        write_parquet(tracks_file, out)
        write_parquet(cycles_file, cycles)
        if p["qc_plot"]:
            from ..tracking.qc import plot_tracking

            (folder / QC_DIR).mkdir(exist_ok=True)
            plot_tracking(tracks, cells, cycles, height, folder / QC_DIR / f"{stem}_tracks.png",
                          title=f"{stem}: {int(cycles['complete'].sum())} complete cell cycles")

    def folder_outputs(self, output_path) -> list:
        """``<folder>/tables/{tracks,cycles}/<container>.parquet``, recorded with the
        container so that a damaged or deleted one is written again."""
        return [folder_output(output_path, TRACKS_DATASET, ".parquet"),
                folder_output(output_path, CYCLES_DATASET, ".parquet")]

    def _times(self, cells, n_frames, path):
        """Seconds of every frame: recorded times, else ``frame_interval_s`` per frame."""
        import numpy as np

        times = np.full(n_frames, np.nan)
        if "time_s" in cells and len(cells):
            per_t = cells.groupby("t")["time_s"].first()
            times[per_t.index.to_numpy()] = per_t.to_numpy()
        gap = np.isnan(times)
        interval = self.param_values["frame_interval_s"]
        if gap.any() and interval > 0:
            times[gap] = np.flatnonzero(gap) * interval
        elif gap.any() and len(cells):
            self.logger.warning("%s: %d frames without a time; their rates and generation "
                                "times are NaN (set track_frame_interval_s)", path, int(gap.sum()))
        return times


def _fingerprint(cells: pd.DataFrame, n_frames: int) -> str:
    """Hash of the tracked columns of the rows of frames ``< n_frames`` (sorted by n, t, label)."""
    import numpy as np

    part = cells[cells["t"] < n_frames]
    h = hashlib.sha1()
    for c in (*_KEYS, "centroid_y", "length_px"):
        h.update(np.ascontiguousarray(part[c].to_numpy(np.float64)).tobytes())
    return h.hexdigest()


def read_cycles(folder) -> pd.DataFrame:
    """All cell cycles of a folder (every ``<folder>/tables/cycles/*.parquet``) as one table."""
    import pandas as pd

    files = sorted((Path(folder) / CYCLES_DATASET).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
