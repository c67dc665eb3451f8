"""The whole trench workflow on generated acquisitions, checked against ground truth.

Ingest -> TrenchDetection -> Compress -> Segment -> Measure, then growth of the
acquisition and a new position, then a rerun that must do nothing.
"""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchlib.io import open_file, read_attrs, read_table
from batchlib.trench.segmentation.evaluate import match_labels
from batchlib.trench.synthetic import SyntheticConfig, load_ground_truth, write_acquisition

ROOT = Path(__file__).resolve().parents[2]
T = 6
CFG_A = SyntheticConfig(height=448, width=448, n_positions=2, n_timepoints=T, channels=("phase", "gfp"),
                        seed=11)
CFG_B = SyntheticConfig(height=448, width=448, n_positions=1, n_timepoints=T - 1,
                        channels=("phase", "gfp"), seed=12)


def load_workflow():
    spec = importlib.util.spec_from_file_location("trench_workflow", ROOT / "workflows" / "trench_workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_status(folder, job):
    return json.loads((folder / "batchlib" / f"{job}.status").read_text())


def computed(folder, job):
    return sorted(k for k, e in job_status(folder, job)["files"].items() if e.get("this_run"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The first run on acquisition A (last timepoint not yet written)."""
    tmp = tmp_path_factory.mktemp("e2e")
    raw, gt, out, later = tmp / "raw", tmp / "gt", tmp / "out", tmp / "later"
    write_acquisition(tmp / "a", CFG_A, layout="tiff-sequence", name="A")
    raw.mkdir()
    shutil.move(str(tmp / "a" / "A"), raw / "A")
    shutil.move(str(tmp / "a" / "ground_truth"), gt)
    later.mkdir()
    for f in (raw / "A").glob(f"t{T - 1:03d}*"):
        shutil.move(str(f), later / f.name)
    wf = load_workflow()
    argv = ["--input_folder", str(raw), "--folder", str(out), "--executor", "serial",
            "--ingest_phase_channels", "c0", "--progress", "false", "--log_level", "WARNING"]
    assert wf.main(argv) == 0
    return {"tmp": tmp, "raw": raw, "gt": gt, "out": out, "later": later, "wf": wf, "argv": argv}


def detected(run, p):
    """Ground truth and what the workflow found for position ``p`` of acquisition A."""
    truth = load_ground_truth(run["gt"] / f"A_pos{p:03d}")
    with open_file(run["out"] / f"A_pos{p:03d}.h5", "r") as f:
        det = read_table(f, "tables/trenches")
        angle = read_attrs(f["tables/trenches"])["angle_deg"]
        drift = read_table(f, "tables/drift")[["dy", "dx"]].to_numpy()
        labels = f["segmentation/cells"][:]
    return truth, det, angle, drift, labels


def test_detection_matches_ground_truth(run):
    for p in range(CFG_A.n_positions):
        truth, det, angle, drift, _ = detected(run, p)
        assert abs(angle - truth.metadata["angle_deg"]) < 0.1
        pitch = truth.metadata["pitch_px"]
        for s in sorted(set(truth.trenches["set"])):
            true_x = truth.trenches.loc[truth.trenches["set"] == s, "x_center"].to_numpy()
            det_x = det.loc[det["set"] == s, "x_center"].to_numpy()
            dist = np.abs(true_x[:, None] - det_x[None, :]).min(axis=1)
            assert (dist < pitch / 4).all(), f"position {p} set {s}: missed trenches {true_x[dist >= pitch / 4]}"
        # Drift relative to frame 0, within a fraction of a pixel (frames 0..T-2 were ingested).
        true_drift = truth.drift[: len(drift)]
        assert np.abs(drift - true_drift).max() < 0.5


def test_segmentation_matches_ground_truth(run):
    from batchlib.trench.detection import crop_trenches

    f1s, ious = [], []
    for p in range(CFG_A.n_positions):
        truth, det, angle, drift, labels = detected(run, p)
        # The true labels cut out with the *detected* boxes: detection errors count against us.
        true = np.stack([crop_trenches(truth.frame_labels[t], det, angle, tuple(drift[t]), order=0)
                         for t in range(labels.shape[1])], axis=1)
        m = match_labels(true, labels.astype(np.int64))
        f1s.append(m.f1)
        ious.append(m.mean_iou)
        first_rows = labels[:, :, :3].max(axis=(1, 2, 3))  # numbered from the closed end
        assert set(np.unique(first_rows)) <= {0, 1}
    assert min(f1s) >= 0.95, f1s
    assert min(ious) >= 0.85, ious


def test_tables_and_measurements(run):
    from batchlib.trench.jobs import read_cells

    cells = read_cells(run["out"])
    assert set(cells["container"]) == {"A_pos000.h5", "A_pos001.h5"}
    assert cells["t"].max() == T - 2
    for col in ("acquisition", "position", "trench_set", "trench", "t", "time_s", "label", "area",
                "length_px", "width_px", "length_um", "centroid_y", "frame_y", "frame_x",
                "c1_mean", "c1_total", "c1_p95", "c1_background", "c1_mean_bgsub"):
        assert col in cells.columns, col
    assert (cells["length_um"] - cells["length_px"] * CFG_A.pixel_size_um).abs().max() < 1e-6
    assert cells["time_s"].isna().all()  # TIFF sequences carry no timestamps: missing, not invented
    with open_file(run["out"] / "A_pos000.h5", "r") as f:
        per_trench = read_table(f, "tables/trenches_t")
    assert {"cell_count", "focus"} <= set(per_trench.columns)
    assert (cells["centroid_y"] >= 0).all()


def test_growth_and_new_position_do_only_the_new_work(run, tmp_path, monkeypatch):
    # Its own copy of the first run's folders (times kept): the module's fixture stays as it was.
    raw, out, wf = tmp_path / "raw", tmp_path / "out", run["wf"]
    shutil.copytree(run["raw"], raw)
    shutil.copytree(run["out"], out)
    argv = ["--input_folder", str(raw), "--folder", str(out)] + run["argv"][4:]
    assert run["argv"][:4] == ["--input_folder", str(run["raw"]), "--folder", str(run["out"])]
    from batchlib.trench import detection
    from batchlib.trench.jobs import read_cells

    before = read_cells(out)
    with open_file(out / "A_pos000.h5", "r") as f:
        old_crops = f["trench_crops/c0"][:]
    # The microscope writes the last timepoint of A, and a new acquisition B arrives.
    for f in run["later"].iterdir():
        shutil.copy2(f, raw / "A" / f.name)
    write_acquisition(tmp_path / "b", CFG_B, layout="ome-tiff", name="B")
    shutil.move(str(tmp_path / "b" / "B.ome.tif"), raw / "B.ome.tif")

    cropped = []
    original = detection.crop.CropSampler.crop  # one call per channel of a frame

    def counted(self, frame):
        # Compress's crops only: detection crops the boxes of its reference image too
        # (the fluorescence stack-gap check)
        if sys._getframe(1).f_globals["__name__"] == "batchlib.trench.jobs.compress":
            cropped.append(1)
        return original(self, frame)

    monkeypatch.setattr(detection.crop.CropSampler, "crop", counted)
    assert wf.main(argv) == 0
    # A's two positions grew, B's one position is new (one Ingest unit per position).
    assert computed(out, "Ingest") == ["A/#pos000", "A/#pos001", "B.ome.tif"]
    for job in ("TrenchDetection", "Compress", "Segment", "Measure"):
        assert computed(out, job) == ["A_pos000.h5", "A_pos001.h5", "B_pos000.h5"], job
    # Compress cropped only the new frame of A (2 positions x 2 channels) and all of B.
    assert len(cropped) == 2 * 2 * 1 + 1 * 2 * (T - 1)
    with open_file(out / "A_pos000.h5", "r") as f:
        crops = f["trench_crops/c0"][:]
    assert crops.shape[1] == T
    np.testing.assert_array_equal(crops[:, : T - 1], old_crops)

    after = read_cells(out)
    key = ["container", "trench_set", "trench", "t", "label"]
    old = after[(after["container"] != "B_pos000.h5") & (after["t"] < T - 1)]
    # B names its channels (phase, gfp) where A's sequence has c0, c1: the folder table
    # holds the union of columns, so compare A's rows on A's columns.
    pd.testing.assert_frame_equal(old[before.columns].sort_values(key).reset_index(drop=True),
                                  before.sort_values(key).reset_index(drop=True))
    new = after.drop(old.index)
    assert set(new["container"]) == {"A_pos000.h5", "A_pos001.h5", "B_pos000.h5"}
    assert (new.loc[new["container"] != "B_pos000.h5", "t"] == T - 1).all()
    assert len(after) == len(before) + len(new)

    # Nothing new: nothing is done, no table is rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "tables" / "cells").glob("*.parquet")}
    assert wf.main(argv) == 0
    for job in ("Ingest", "TrenchDetection", "Compress", "Segment", "Measure"):
        assert computed(out, job) == [], job
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "tables" / "cells").glob("*.parquet")}
