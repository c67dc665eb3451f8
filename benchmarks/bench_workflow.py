"""The whole trench workflow on a synthetic acquisition: time per field-of-view frame.

    python benchmarks/bench_workflow.py [--quick] [--positions 4] [--timepoints 30] [--size 2048]

Generates positions x timepoints x 2 channels (phase, GFP) as one OME-TIFF,
then runs Ingest -> TrenchDetection -> Compress -> Segment -> Measure with
n_jobs=1 (serial, one core) and n_jobs=2 (processes), each on a fresh folder.
Prints per-job seconds (from the job status files), seconds per
field-of-view frame (one position at one timepoint, all channels), and the
size of the trench crops relative to the ingested raw movies.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("Ingest", "TrenchDetection", "Compress", "Segment", "Measure")


def dataset_bytes(folder, prefix):
    """Stored (compressed) bytes of the datasets under ``prefix`` in every h5 container."""
    import h5py

    total = 0
    for path in Path(folder).glob("*.h5"):
        with h5py.File(path, "r") as f:
            if prefix not in f:
                continue
            items = []
            f[prefix].visititems(lambda name, obj: items.append(obj) if isinstance(obj, h5py.Dataset) else None)
            total += sum(ds.id.get_storage_size() for ds in items)
    return total


def run(raw, out, n_jobs):
    sys.path.insert(0, str(ROOT / "workflows"))
    import trench_workflow

    argv = ["--input_folder", str(raw), "--folder", str(out), "--n_jobs", str(n_jobs),
            "--executor", "processes" if n_jobs > 1 else "serial", "--progress", "false",
            "--log_level", "WARNING", "--detect_qc_plot", "false"]
    t0 = time.perf_counter()
    code = trench_workflow.main(argv)
    total = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"workflow failed with exit code {code}")
    per_job = {}
    for job in JOBS:
        status = json.loads((Path(out) / "batchlib" / f"{job}.status").read_text())
        per_job[job] = status["duration_s"]
    return total, per_job


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--positions", type=int, default=4)
    ap.add_argument("--timepoints", type=int, default=30)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--quick", action="store_true", help="2 positions x 8 timepoints x 1024^2")
    args = ap.parse_args()
    if args.quick:
        args.positions, args.timepoints, args.size = 2, 8, 1024
    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    cfg = SyntheticConfig(height=args.size, width=args.size, n_positions=args.positions,
                          n_timepoints=args.timepoints, channels=("phase", "gfp"), seed=1)
    n_frames = args.positions * args.timepoints
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        t0 = time.perf_counter()
        write_acquisition(raw, cfg, layout="ome-tiff", name="bench", ground_truth=False)
        gen = time.perf_counter() - t0
        rows = []
        for n_jobs in (1, 2):
            out = Path(tmp) / f"out{n_jobs}"
            total, per_job = run(raw, out, n_jobs)
            rows.append((n_jobs, total, per_job))
        raw_bytes = dataset_bytes(Path(tmp) / "out1", "raw")
        crop_bytes = dataset_bytes(Path(tmp) / "out1", "trench_crops")
    print(f"\n{args.positions} positions x {args.timepoints} timepoints x 2 channels x "
          f"{args.size}^2 ({n_frames} field-of-view frames); generating took {gen:.1f} s\n")
    print("| n_jobs | total s | s per FOV frame | " + " | ".join(f"{j} s" for j in JOBS) + " |")
    print("|---:|---:|---:|" + "---:|" * len(JOBS))
    for n_jobs, total, per_job in rows:
        print(f"| {n_jobs} | {total:.1f} | {total / n_frames:.3f} | "
              + " | ".join(f"{per_job[j]:.1f}" for j in JOBS) + " |")
    print(f"\ntrench crops on disk: {crop_bytes / 1e6:.1f} MB, raw movies on disk: "
          f"{raw_bytes / 1e6:.1f} MB, crops / raw = {crop_bytes / raw_bytes:.3f}")


if __name__ == "__main__":
    main()
