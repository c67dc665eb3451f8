"""Timing of the synthetic acquisition generator.

    python benchmarks/bench_synthetic.py [--quick]

Prints a markdown table: acquisition size -> seconds (simulation only, and
simulation plus writing an OME-TIFF with ground truth). A tiny warm-up run
first loads the numba kernels from their cache (or compiles them).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.trench.synthetic import (  # noqa: E402
    SyntheticConfig, simulate_position, write_acquisition)

CASES = [  # (size, positions, timepoints, channels)
    (512, 2, 10, ("phase", "gfp")),
    (1024, 1, 10, ("phase", "gfp")),
    (2048, 1, 5, ("phase", "gfp")),
    (2048, 1, 5, ("phase", "gfp", "mcherry")),
]


def _simulate(cfg):
    for p in range(cfg.n_positions):
        simulate_position(cfg, p)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 512 x 512 case")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    _simulate(SyntheticConfig(height=128, width=128, n_timepoints=1, trench_length_px=44))
    print(f"warm-up (numba cache load or compile): {time.perf_counter() - t0:.2f} s\n")
    print("| acquisition (positions x T x C x Y x X) | frames | simulate (s) | s / frame "
          "| simulate + write OME-TIFF + truth (s) |")
    print("|---|---|---|---|---|")
    for size, n_pos, n_t, channels in CASES[:1] if args.quick else CASES:
        cfg = SyntheticConfig(height=size, width=size, n_positions=n_pos, n_timepoints=n_t,
                              channels=channels, seed=0)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            _simulate(cfg)
            best = min(best, time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_acquisition(tmp, cfg, layout="ome-tiff", name="bench")
            written = time.perf_counter() - t0
        frames = n_pos * n_t
        print(f"| {n_pos} x {n_t} x {len(channels)} x {size} x {size} | {frames} | {best:.2f} "
              f"| {best / frames:.3f} | {written:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
