#!/usr/bin/env python
"""Report build time and size for a folder of many positions.

Runs the trench workflow (with ``--report false``) on a generated acquisition
(default 20 positions x 12 frames x 512 x 512 x phase + GFP), then times
``build_report``: from scratch (no cached figures), with nothing changed,
and after one position's records changed (one position redrawn).
Targets: 30 s and 20 MB for 20 positions.

    python benchmarks/bench_report.py [--positions 20] [--size 512] [--timepoints 12]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.io import open_file, read_attrs, write_attrs  # noqa: E402
from batchlib.trench.report import build_report  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--timepoints", type=int, default=12)
    p.add_argument("--n_jobs", type=int, default=2)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_report_"))
    out = work / "out"
    if not (out / "report").parent.exists() or not list(out.glob("*.h5")):
        cfg = SyntheticConfig(height=args.size, width=args.size, n_positions=args.positions,
                              n_timepoints=args.timepoints, channels=("phase", "gfp"), seed=7)
        write_acquisition(work / "raw", cfg, layout="ome-tiff", name="exp", ground_truth=False)
        subprocess.run([sys.executable, str(ROOT / "workflows" / "trench_workflow.py"),
                        "--input_folder", str(work / "raw"), "--folder", str(out), "--executor",
                        "processes", "--n_jobs", str(args.n_jobs), "--progress", "false",
                        "--report", "false", "--log_level", "WARNING"], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.rmtree(out / "report", ignore_errors=True)
    cold = build_report(out)
    warm = build_report(out)
    first = sorted(out.glob("*.h5"))[0]
    with open_file(first, "a") as f:
        rec = read_attrs(f["batchlib/Track"])["record"]
        write_attrs(f["batchlib/Track"], {"record": {**rec, "run_id": f"{time.time_ns():x}"[-12:]}})
    one = build_report(out)
    print(f"\n{cold['positions']} positions x {args.timepoints} frames x {args.size}^2 x 2 channels\n")
    print("| build | positions redrawn | time (s) | target (s) | time / target | size (MB) | size / 20 MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("from scratch", cold), ("nothing changed", warm), ("one position changed", one)):
        print(f"| {name} | {r['redrawn']} | {r['seconds']:.1f} | 30 | {r['seconds'] / 30:.2f} | "
              f"{r['bytes'] / 1e6:.1f} | {r['bytes'] / 20e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
