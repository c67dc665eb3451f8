"""TrenchDetection: find the trench boxes and the per-frame drift of each position."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ...base import Param
from ...container_job import BatchJobOnContainer, KeySpec
from ...errors import InvalidInputError
from ...io import read_attrs, read_table, write_attrs, write_table
from ..layout import (ACQUISITION_ATTR, DRIFT_TABLE, QC_DIR, RAW, TRENCHES_TABLE, container_stem,
                      folder_output)


def resolve_channel(container, channel: str) -> tuple:
    """``(key, kind)`` of a channel given by name or key; "" means the first phase-like one."""
    md = read_attrs(container).get(ACQUISITION_ATTR) or {}
    keys, names = md.get("channel_keys", []), md.get("channels", [])
    kinds = md.get("channel_kinds", ["fluorescence"] * len(keys))
    if not keys:
        raise InvalidInputError("no channels recorded (was the container written by Ingest?)")
    if channel in ("", None):
        i = kinds.index("phase") if "phase" in kinds else 0
    elif channel in keys:
        i = keys.index(channel)
    elif channel in names:
        i = names.index(channel)
    else:
        raise InvalidInputError(f"no channel {channel!r}; the container has {names} (keys {keys})")
    return keys[i], kinds[i]


class TrenchDetection(BatchJobOnContainer):
    """Detect the trench array (angle, sets, boxes) and track the stage drift.

    The reference is the first frame of a phase-like channel, or the maximum
    projection over time of a fluorescence channel (where empty trenches are
    invisible and may be missed). Drift is measured for every frame against
    the reference; when frames were appended, only the new ones are measured.
    """

    version = "2"
    params = {
        "channel": Param("", "detection channel (name or key; default: first phase-like channel)"),
        "kind": Param("auto", "auto (from the channel name), phase or fluorescence",
                      choices=("auto", "phase", "fluorescence")),
        "box_width": Param(32, "crop width in pixels"),
        "box_height": Param(0, "crop height in pixels (0: the trench length found)"),
        "pitch": Param(0.0, "trench pitch in pixels (0: estimated)"),
        "angle_range_deg": Param(5.0, "search range of the trench angle, +- degrees"),
        "n_sets": Param(0, "number of trench sets, 1 or 2 (0: detected)"),
        "min_trenches": Param(3, "fewer trenches than this is a detection failure"),
        "qc_plot": Param(True, "write a QC picture per position to <folder>/qc/", affects_result=False),
    }
    input_keys = {RAW: KeySpec(kind="group")}
    output_keys = {TRENCHES_TABLE: KeySpec(kind="table"), DRIFT_TABLE: KeySpec(kind="table")}

    def process_container(self, container, path):
        from ..detection import detect_trenches, estimate_drift, plot_detection

        p = self.param_values
        key, kind = resolve_channel(container, p["channel"])
        kind = kind if p["kind"] == "auto" else p["kind"]
        movie = container[f"{RAW}/{key}"]
        n_t = movie.shape[0]
        reference = self._reference(movie, kind)
        layout = detect_trenches(
            reference, kind=kind, box_width=int(p["box_width"]),
            box_height=int(p["box_height"]) or None, pitch=float(p["pitch"]) or None,
            angle_range_deg=float(p["angle_range_deg"]), n_sets=int(p["n_sets"]) or None,
            min_trenches=int(p["min_trenches"]))
        trenches = layout.trenches.reset_index(drop=True)
        drift = self._drift(container, movie, reference, trenches, estimate_drift, kind)
        write_table(container, TRENCHES_TABLE, trenches)
        write_table(container, DRIFT_TABLE, drift)
        quality = {k: float(v) for k, v in layout.quality.items()}
        write_attrs(container[TRENCHES_TABLE], {
            "angle_deg": float(layout.angle_deg), "pitch": float(layout.pitch),
            "channel": key, "kind": kind, "quality": quality, "n_frames": int(n_t),
            "layout_hash": _layout_hash(trenches),
            "sets": layout.sets.to_dict(orient="list"),
            "note": ("fluorescence reference: empty trenches may be missed"
                     if kind == "fluorescence" else ""),
            "warnings": list(layout.warnings),
        })
        for warning in layout.warnings:
            self.warn(f"{os.path.basename(path)}: {warning}")
        verdict = {1.0: "self-check passed", 0.5: "NOT VERIFIED",
                   0.0: "self-check failed"}.get(layout.quality.get("self_check"), "")
        for picture in self.folder_outputs(path):
            os.makedirs(os.path.dirname(picture), exist_ok=True)
            # Drawn under a temporary name, then renamed: never a half-written picture.
            tmp = os.path.join(os.path.dirname(picture), f".{os.path.basename(picture)}.tmp-{os.getpid()}.png")
            plot_detection(reference, layout, tmp,
                           title=f"{container_stem(path)} ({key}, {kind}) - {verdict}, confidence "
                                 f"{layout.quality.get('confidence', 0):.2f}")
            os.replace(tmp, picture)
        self.logger.debug("%s: %d trenches, angle %.3f", os.path.basename(path), len(trenches),
                          layout.angle_deg)

    def folder_outputs(self, output_path) -> list:
        """``<folder>/qc/<container>_trenches.png`` when ``qc_plot`` is set."""
        return [folder_output(output_path, QC_DIR, "_trenches.png")] if self.param_values["qc_plot"] else []

    @staticmethod
    def _reference(movie, kind):
        if kind == "phase":
            return np.asarray(movie[0], dtype=np.float32)
        ref = np.asarray(movie[0], dtype=np.float32)
        for t in range(1, movie.shape[0]):  # streamed maximum projection
            np.maximum(ref, movie[t], out=ref)
        return ref

    def _drift(self, container, movie, reference, trenches, estimate_drift, kind):
        n_t = movie.shape[0]
        old = None
        if DRIFT_TABLE in container and TRENCHES_TABLE in container and kind == "phase":
            attrs = read_attrs(container[TRENCHES_TABLE])
            if attrs.get("layout_hash") == _layout_hash(trenches):
                old = read_table(container, DRIFT_TABLE)
        start = 0 if old is None else min(len(old), n_t)
        dy, dx = np.zeros(n_t), np.zeros(n_t)
        if start:
            dy[:start], dx[:start] = old["dy"].to_numpy()[:start], old["dx"].to_numpy()[:start]
        # Boxes live in the reference's coordinates: a phase reference is frame 0
        # (drift 0 by definition); a max projection is measured against every frame.
        first = 1 if kind == "phase" else 0
        for t in range(max(start, first), n_t):
            dy[t], dx[t] = estimate_drift(reference, np.asarray(movie[t], dtype=np.float32))
        return pd.DataFrame({"t": np.arange(n_t, dtype=np.int64), "dy": dy, "dx": dx})


def _layout_hash(trenches: pd.DataFrame) -> str:
    from ...records import param_hash

    cols = [c for c in ("set", "trench", "x_center", "y_closed", "direction", "height", "width")
            if c in trenches]
    return param_hash({"rows": np.round(trenches[cols].to_numpy(dtype=float), 3).tolist()})
