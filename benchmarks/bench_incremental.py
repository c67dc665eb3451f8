"""Benchmark of incremental reruns on a growing TIFF sequence: what is recomputed, and the time.

A generated sequence (``--positions`` positions, 256 px frames, 3 complete
timepoints) is processed by the whole trench workflow; then, one step at a
time: a rerun with nothing new (the floor), one file of a new timepoint
(incomplete: nothing may be recomputed), the rest of that timepoint (every
position gains a frame), and one rewritten file of position 1 (only that
position may be recomputed).

Usage::

    python benchmarks/bench_incremental.py [--positions 4]

Prints a markdown table: seconds per rerun, its ratio to the floor, and the
units computed per job.
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
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, TrenchDetection  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition  # noqa: E402


def _run(raw, out):
    jobs = [Ingest(), TrenchDetection(), Compress(), Segment(), Measure()]
    t0 = time.perf_counter()
    res = run_workflow("Bench", out, jobs, input_folder=raw, progress=False, log_level="WARNING")
    assert res.success, res.state
    return time.perf_counter() - t0, [len(j.computed) for j in res.jobs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = SyntheticConfig(height=256, width=256, n_positions=args.positions, n_timepoints=4,
                              channels=("phase", "gfp"), seed=5)
        write_acquisition(tmp / "gen", cfg, layout="tiff-sequence", name="A", ground_truth=False)
        later = tmp / "later"
        later.mkdir()
        for f in (tmp / "gen" / "A").glob("t003*"):
            shutil.move(str(f), later / f.name)
        raw, out = tmp / "raw", tmp / "out"
        shutil.move(str(tmp / "gen" / "A"), raw)
        _run(raw, out)  # first run (and numba compilation)
        rows = [("nothing new (floor)",) + _run(raw, out)]
        new = sorted(later.iterdir())
        shutil.copy2(new[0], raw / new[0].name)
        rows.append(("1 file of a new, incomplete timepoint",) + _run(raw, out))
        for f in new[1:]:
            shutil.copy2(f, raw / f.name)
        rows.append(("the timepoint completes",) + _run(raw, out))
        import tifffile

        target = raw / "t001xy01c1.tif"
        tifffile.imwrite(target, tifffile.imread(target)[::-1].copy())
        rows.append(("1 rewritten file of position 1",) + _run(raw, out))
    floor = rows[0][1]
    print(f"{args.positions} positions x 2 channels, 256 x 256 px, 3 -> 4 timepoints (tiff-sequence)\n")
    print("| change | rerun (s) | / floor | computed: Ingest, Detection, Compress, Segment, Measure |")
    print("|---|---|---|---|")
    for name, seconds, computed in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / floor:.1f} | {', '.join(map(str, computed))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
