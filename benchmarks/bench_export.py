"""Benchmark of ``batchlib export --format ome-zarr``: time against reading its inputs, and appending.

A generated TIFF sequence (``--positions`` positions x 2 channels) goes through
the trench workflow with its last timepoint held back, and is exported; then
the timepoint arrives, the workflow runs again and the export appends it.
The floor is reading, from the containers, every array the export reads
(movies, crops, labels): what any exporter has to do.

Usage::

    python benchmarks/bench_export.py [--positions 2] [--size 512] [--frames 12] [--quick]

Prints a markdown table: seconds, the ratio to the floor, frames written and
the size on disk.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib import run_workflow  # noqa: E402
from batchlib.io import open_file  # noqa: E402
from batchlib.trench.export import export_folder  # noqa: E402
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, Track, TrenchDetection  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition  # noqa: E402


def _workflow(raw, out):
    jobs = [Ingest(phase_channels=["c0"]), TrenchDetection(qc_plot=False), Compress(), Segment(), Measure(),
            Track(qc_plot=False, frame_interval_s=180.0)]
    res = run_workflow("Bench", out, jobs, input_folder=raw, progress=False, log_level="WARNING")
    assert res.success, res.state


def _read_floor(out) -> float:
    t0 = time.perf_counter()
    for path in sorted(Path(out).glob("*.h5")):
        with open_file(path, "r") as f:
            for group in ("raw", "trench_crops"):
                for key in f[group]:
                    ds = f[f"{group}/{key}"]
                    for t in range(ds.shape[0] if group == "raw" else 1):
                        ds[t] if group == "raw" else ds[:]
            f["segmentation/cells"][:]
    return time.perf_counter() - t0


def _timed_export(folder, **kwargs):
    t0 = time.perf_counter()
    results, problems = export_folder(folder, **kwargs)
    assert not problems, problems
    return time.perf_counter() - t0, sum(r["written"] for r in results)


def _size_mb(paths) -> float:
    files = [f for p in map(Path, paths) for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="256 px, 6 frames")
    args = parser.parse_args()
    size, frames = (256, 6) if args.quick else (args.size, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = SyntheticConfig(height=size, width=size, n_positions=args.positions, n_timepoints=frames,
                              channels=("phase", "gfp"), seed=7)
        write_acquisition(tmp / "gen", cfg, layout="tiff-sequence", name="A", ground_truth=False)
        raw, out, later = tmp / "raw", tmp / "out", tmp / "later"
        later.mkdir()
        shutil.move(str(tmp / "gen" / "A"), raw)
        for f in raw.glob(f"t{frames - 1:03d}*"):
            shutil.move(str(f), later / f.name)
        _workflow(raw, out)
        export_folder(out, out=tmp / "warm")  # imports and numba, not measured
        rows = []
        floor = _read_floor(out)
        rows.append(("read the export's inputs (floor)", floor, "", _size_mb(out.glob("*.h5"))))
        seconds, written = _timed_export(out)
        rows.append((f"export {frames - 1} frames", seconds, written, _size_mb((out / "export").iterdir())))
        seconds, written = _timed_export(out)
        rows.append(("export again, nothing new", seconds, written, ""))
        for f in later.iterdir():
            shutil.move(str(f), raw / f.name)
        _workflow(raw, out)
        seconds, written = _timed_export(out)
        rows.append(("export after 1 new frame", seconds, written, _size_mb((out / "export").iterdir())))
        seconds, written = _timed_export(out, out=tmp / "oneshot")
        rows.append((f"one-shot export of {frames} frames", seconds, written, ""))
    print(f"{args.positions} positions x 2 channels, {size} x {size} px, {frames - 1} -> {frames} frames\n")
    print("| step | seconds | / floor | frames written | MB on disk |")
    print("|---|---|---|---|---|")
    for name, seconds, written, mb in rows:
        size_text = f"{mb:.1f}" if mb != "" else ""
        print(f"| {name} | {seconds:.2f} | {seconds / floor:.1f} | {written} | {size_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
