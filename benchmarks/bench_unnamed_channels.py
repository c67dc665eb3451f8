"""Unnamed channels end to end: a phase movie called c0 through Ingest -> Segment, defaults only.

    python benchmarks/bench_unnamed_channels.py [--quick] [--seeds 3] [--size 512] [--family dark_lumen]

Writes generated acquisitions as TIFF sequences whose channels are c0 (phase)
and c1 (fluorescence), runs Ingest, TrenchDetection, Compress and Segment with
their defaults, and prints per seed: the kinds Ingest recorded, the channel and
kind detection used, the median distance of the true trench centres to the
nearest box, and the cells found in frame 0 against the truth. ``--family``
draws the configuration from ``batchlib.trench.synthetic.families`` (when it
exists; tuning seeds), e.g. ``dark_lumen``; without it the default generator.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib import run_workflow  # noqa: E402
from batchlib.io import open_file, read_attrs, read_table  # noqa: E402
from batchlib.trench.jobs import Compress, Ingest, Segment, TrenchDetection  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, load_ground_truth, write_acquisition  # noqa: E402


def config(family, seed, size):
    common = dict(height=size, width=size, n_positions=1, n_timepoints=4, channels=("c0", "c1"),
                  phase_channels=("c0",))
    if family:
        from batchlib.trench.synthetic.families import sample_config

        return sample_config(family, seed, **common)
    return SyntheticConfig(seed=seed, **common)


def run_one(tmp, family, seed, size):
    cfg = config(family, seed, size)
    d = tmp / f"s{seed}"
    write_acquisition(d / "a", cfg, layout="tiff-sequence", name="A")
    raw, out = d / "raw", d / "out"
    raw.mkdir()
    shutil.move(str(d / "a" / "A"), raw / "A")
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(), Segment()]
    try:
        run_workflow("Bench", out, jobs, input_folder=raw, log_level="ERROR", progress=False)
    except Exception as e:  # noqa: BLE001 - a failed run is a result
        return f"| {seed} | - | - | - | failed: {str(e).splitlines()[1].strip()[:90]} |"
    truth = load_ground_truth(d / "a" / "ground_truth" / "A_pos000")
    with open_file(out / "A_pos000.h5", "r") as f:
        md = read_attrs(f)["acquisition"]
        det = read_table(f, "tables/trenches")
        attrs = read_attrs(f["tables/trenches"])
        labels = f["segmentation/cells"][:, 0]
    true_x = truth.trenches["x_center"].to_numpy()
    dx = np.abs(true_x[:, None] - det["x_center"].to_numpy()[None]).min(axis=1)
    n_pred = int(sum(lab.max() for lab in labels))
    n_true = int(sum(lab.max() for lab in truth.trench_labels[:, 0]))
    kinds = ", ".join(f"{n}: {k} ({c:.2f})" for n, k, c in
                      zip(md["channels"], md["channel_kinds"], md["channel_kind_confidence"]))
    return (f"| {seed} | {kinds} | {attrs['channel']} ({attrs['kind']}) | {np.median(dx):.1f} | "
            f"{n_pred} / {n_true} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--family", default="")
    ap.add_argument("--quick", action="store_true", help="one seed")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = 1
    print(f"family: {args.family or 'default generator'}, {args.size}², channels c0 = phase, c1 = GFP\n")
    print("| seed | kinds recorded (confidence) | detection channel (kind) | median |dx| to true trench, px "
          "| cells in frame 0, found / true |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.seeds + 1):
            print(run_one(Path(tmp), args.family, seed, args.size), flush=True)


if __name__ == "__main__":
    main()
