#!/usr/bin/env python
"""What one live cycle costs: CPU seconds to put one new timepoint into the tables, and the report.

A live cycle is an incremental run of the workflow after one new timepoint
landed. Here it runs in this process with the serial executor, so that its CPU
time (``time.process_time``) is all the work a cycle does, far less swayed by
the machine's load than wall time (not free of it: shared caches), and
``--profile`` can show where it goes (imports, model loading, reading stacks,
tables, records, the report...). Each cycle is timed
after a warm-up cycle (first imports, model loading, numba compilation are a
session's, not a cycle's). Peer measured in the same run: the batch run over
all the frames (the first run, from scratch).

    python benchmarks/bench_live_cycle.py [--positions 4] [--size 1024] [--timepoints 6 40]
        [--segment_method unet] [--qc] [--profile cycle.prof]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.trench.synthetic import SyntheticConfig, write_acquisition  # noqa: E402


def load_workflow():
    spec = importlib.util.spec_from_file_location("trench_workflow", ROOT / "workflows" / "trench_workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Clock:
    """CPU and wall seconds of a block."""

    def __enter__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def one_length(wf, work, n_t, args):
    """Batch run on all but the last two frames, a warm-up cycle, then the timed cycle."""
    cfg = SyntheticConfig(height=args.size, width=args.size, n_positions=args.positions, n_timepoints=n_t,
                          channels=("phase", "gfp"), seed=3)
    write_acquisition(work / "full", cfg, layout="tiff-sequence", name="A", ground_truth=False)
    files = sorted((work / "full" / "A").glob("*.tif"))
    (work / "raw" / "A").mkdir(parents=True)

    def land(ts):
        for f in files:
            if int(f.name[1:4]) in ts:
                shutil.copyfile(f, work / "raw" / "A" / f.name)

    argv = ["--input_folder", str(work / "raw"), "--folder", str(work / "out"), "--executor", "serial",
            "--ingest_phase_channels", "c0", "--progress", "false", "--log_level", "WARNING",
            "--track_frame_interval_s", "180"]
    if not args.qc:
        argv += ["--detect_qc_plot", "false", "--track_qc_plot", "false"]
    if args.segment_method:
        argv += ["--segment_method", args.segment_method]
    land(range(n_t - 2))
    with Clock() as batch:
        wf.main(argv)
    land([n_t - 2])
    wf.main(argv)  # warm-up cycle
    land([n_t - 1])
    after = wf.after_run
    report = Clock()

    def timed_after_run(*a, **kw):
        with report:
            return after(*a, **kw)

    wf.after_run = timed_after_run
    profiler = cProfile.Profile() if args.profile else None
    try:
        with Clock() as cycle:
            if profiler:
                profiler.enable()
            wf.main(argv)
            if profiler:
                profiler.disable()
    finally:
        wf.after_run = after
    if profiler:
        path = f"{args.profile}.{n_t}" if len(args.timepoints) > 1 else args.profile
        profiler.dump_stats(path)
        print(f"profile of the cycle after {n_t - 1} frames: {path}", file=sys.stderr)
    return {"n_t": n_t, "batch_cpu": batch.cpu, "tables_cpu": cycle.cpu - report.cpu,
            "report_cpu": report.cpu, "cycle_wall": cycle.wall, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, default=4)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--timepoints", type=int, nargs="+", default=[6, 40],
                   help="acquisition lengths: the cycle timed adds the last frame")
    p.add_argument("--segment_method", default=None, help="default: the workflow's default")
    p.add_argument("--qc", action="store_true", help="keep the per-position QC pictures on")
    p.add_argument("--profile", default=None, help="write a cProfile file of the timed cycle")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    wf = load_workflow()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_live_cycle_"))
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # the runs' summaries
        rows = [one_length(wf, base / f"t{n}", n, args) for n in args.timepoints]
    print(f"\n{args.positions} positions x {args.size}x{args.size} x 2 channels, serial executor in one "
          f"process, QC pictures {'on' if args.qc else 'off'}, segmentation "
          f"{args.segment_method or 'default'}, {os.cpu_count()} CPUs\n")
    print("| frames before | CPU s to the tables | CPU s report | cycle wall s | batch run CPU s (peer) "
          "| tables / batch | load average (1 min) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n_t'] - 1} | {r['tables_cpu']:.2f} | {r['report_cpu']:.2f} | {r['cycle_wall']:.1f} "
              f"| {r['batch_cpu']:.1f} | {r['tables_cpu'] / r['batch_cpu']:.3f} | {r['load']:.1f} |")
    print("\n(the batch run is over all frames but the last two; CPU of this process only: with the "
          "serial executor that is all the work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
