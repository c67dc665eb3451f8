#!/usr/bin/env python
"""Live-mode latency: how long after a timepoint's last file lands its cells are in the tables.

A simulated microscope writes a TIFF-sequence acquisition (default 4 positions x
1024 x 1024 x 2 channels) into an input folder, one timepoint at a time, while
``workflows/trench_workflow.py --watch`` runs on it in a subprocess. For every
timepoint after the first ones, the latency is the time from the moment its
last file was written until every position's per-cell table
(``tables/cells/<container>.parquet``) holds that frame and the cycle table
(``tables/cycles/``) was rewritten after it. The watch log tells how many
frames each cycle processed (only the new ones).

Peer measured in the same run: a batch run of the whole workflow on all the
frames from scratch, which is what you would do without live mode.

    python benchmarks/bench_live.py [--positions 4] [--size 1024] [--timepoints 6] [--backend watchdog]

The machine's load average (1 min) is printed beside every latency: on a shared
machine the other work shows up in the figures.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.trench.synthetic import SyntheticConfig, write_acquisition  # noqa: E402

TARGET_S = 10.0


def frames_in_tables(out: Path, n_positions: int):
    """Smallest last frame over the positions' cell tables (-1 while one is missing), and the
    newest cycle table's mtime."""
    files = sorted((out / "tables" / "cells").glob("*.parquet"))
    if len(files) < n_positions:
        return -1, 0.0
    last = []
    for f in files:
        try:
            last.append(int(pd.read_parquet(f, columns=["t"])["t"].max()))
        except Exception:  # noqa: BLE001 - being replaced right now: look again
            return -1, 0.0
    cycles = [f.stat().st_mtime for f in (out / "tables" / "cycles").glob("*.parquet")]
    return min(last), (min(cycles) if len(cycles) >= n_positions else 0.0)


def write_timepoint(files, t, dest: Path) -> float:
    """Copy timepoint ``t``'s files into ``dest``; returns when the last one landed."""
    for f in files:
        if f.name.startswith(f"t{t:03d}"):
            shutil.copyfile(f, dest / f.name)  # written in place, as a microscope does
    return time.time()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, default=4)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--timepoints", type=int, default=6)
    p.add_argument("--initial", type=int, default=2, help="timepoints present when watching starts")
    p.add_argument("--executor", default="processes")
    p.add_argument("--n_jobs", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--poll_s", type=float, default=1.0)
    p.add_argument("--stable_s", type=float, default=2.0)
    p.add_argument("--qc", action="store_true",
                   help="keep the per-position QC pictures of TrenchDetection and Track (redrawn "
                        "every cycle, about 1-2 s a position); off by default: the report has the overlay")
    p.add_argument("--segment_method", default=None,
                   help="segmentation method (default: the workflow's default)")
    p.add_argument("--backend", default="poll", help="--watch_backend of the session (poll, watchdog)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_live_"))
    cfg = SyntheticConfig(height=args.size, width=args.size, n_positions=args.positions,
                          n_timepoints=args.timepoints, channels=("phase", "gfp"), seed=3)
    t0 = time.perf_counter()
    write_acquisition(work / "full", cfg, layout="tiff-sequence", name="A", ground_truth=False)
    print(f"generated {args.positions} x {args.timepoints} x {args.size}^2 x 2 in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    files = sorted((work / "full" / "A").glob("*.tif"))
    common = ["--executor", args.executor, "--n_jobs", str(args.n_jobs), "--ingest_phase_channels", "c0",
              "--progress", "false", "--log_level", "INFO", "--track_frame_interval_s", "180"]
    if not args.qc:
        common += ["--detect_qc_plot", "false", "--track_qc_plot", "false"]
    if args.segment_method:
        common += ["--segment_method", args.segment_method]
    live = ["--watch_backend", args.backend] if args.backend != "poll" else []
    script = str(ROOT / "workflows" / "trench_workflow.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    # Peer: the whole workflow on all frames, from scratch.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, script, "--input_folder", str(work / "full"),
                    "--folder", str(work / "batch"), *common], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    batch_s = time.perf_counter() - t0

    raw, out = work / "raw", work / "live"
    (raw / "A").mkdir(parents=True)
    for t in range(args.initial):
        write_timepoint(files, t, raw / "A")
    proc = subprocess.Popen([sys.executable, script, "--input_folder", str(raw), "--folder", str(out),
                             *common, *live, "--watch", "--watch_poll_s", str(args.poll_s),
                             "--watch_stable_s", str(args.stable_s)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        deadline = time.time() + 600
        while frames_in_tables(out, args.positions)[0] < args.initial - 1:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("the live session did not process the first timepoints")
            time.sleep(0.1)
        log_file = out / "batchlib" / "TrenchWorkflow.log"
        for t in range(args.initial, args.timepoints):
            # The microscope's interval is longer than a cycle (else no live mode keeps up):
            # the next timepoint lands once the previous cycle, report included, is over.
            done = t - args.initial + 1
            while log_file.read_text().count("Workflow.watch: cycle ") < done:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the live session stopped")
                time.sleep(0.1)
            time.sleep(args.poll_s)
            landed = write_timepoint(files, t, raw / "A")
            while True:
                last, cycles_mtime = frames_in_tables(out, args.positions)
                if last >= t and cycles_mtime >= landed:
                    break
                if time.time() - landed > 300 or proc.poll() is not None:
                    raise RuntimeError(f"timepoint {t} never reached the tables")
                time.sleep(0.05)
            rows.append({"t": t, "landed": landed, "latency_s": time.time() - landed,
                         "load": os.getloadavg()[0]})
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log = (out / "batchlib" / "TrenchWorkflow.log").read_text()
    starts = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in
              re.finditer(r"^(\S+ \S+) \[INFO\] Workflow: workflow \S+ on ", log, re.M)]
    for r in rows:  # picked up: the first cycle that started after the last file landed
        r["picked_s"] = min((s - r["landed"] for s in starts if s >= r["landed"]), default=float("nan"))
    cycles = [(int(m.group(2)), float(m.group(3))) for m in
              re.finditer(r"cycle (\d+): (\d+) new frame\(s\), \w+, ([\d.]+) s", log)]
    print(f"\n{args.positions} positions x {args.size}x{args.size} x 2 channels, TIFF sequence, "
          f"executor {args.executor} ({args.n_jobs} jobs), poll {args.poll_s} s, stable after "
          f"{args.stable_s} s, backend {args.backend}, QC pictures {'on' if args.qc else 'off'}, "
          f"segmentation {args.segment_method or 'default'}; {os.cpu_count()} CPUs\n")
    print("| new timepoint | latency (s) | of which waiting (s) | processing (s) | target (s) "
          "| latency / target | latency / batch rerun | load average (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| t={r['t']} | {r['latency_s']:.1f} | {r['picked_s']:.1f} | {r['latency_s'] - r['picked_s']:.1f} "
              f"| {TARGET_S:.0f} | {r['latency_s'] / TARGET_S:.2f} | {r['latency_s'] / batch_s:.2f} "
              f"| {r['load']:.1f} |")
    print("\n(waiting: from the last file written until the cycle started, stable time included; "
          "processing: from there until the tables were written)")
    print(f"\npeer: batch run of the whole workflow on all {args.timepoints} frames from scratch: "
          f"{batch_s:.1f} s")
    print("cycles (new frames, seconds incl. CSV and report): "
          + ", ".join(f"{n} frames {s:.1f} s" for n, s in cycles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
