#!/usr/bin/env python
"""Fault injection: fill the disk during the in-place jobs, free it, rerun; does it recover?

Each trial mounts a small tmpfs (root only), runs the first jobs into it,
fills the rest of it with a ballast file leaving a random amount (up to a
little more than the remaining jobs write),
runs the whole workflow (which meets the full disk during Compress, Segment
or Measure: the in-place writes into the containers), removes the ballast and
runs again. A trial *recovers* when the rerun exits 0 and the results equal
those of a run on an ordinary disk.

    sudo python benchmarks/fault_disk_full.py --trials 8                      # trench workflow, h5 and n5
    sudo python benchmarks/fault_disk_full.py --trials 8 --reserve off        # without space reservation
    sudo python benchmarks/fault_disk_full.py --trials 20 --workflow testing  # the small test jobs (fast)

``--reserve off`` disables the space reservation made before in-place h5
writes, so that HDF5 itself meets the full disk: it measures the fallback
(damaged containers noticed at planning and rebuilt).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TESTING = """
import sys
from batchlib.testing import ImportArray, ScaleRaw, SumScaled
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, ext, reserve, stage = sys.argv[1:6]
if reserve == "off":
    ScaleRaw.estimate_output_bytes = SumScaled.estimate_output_bytes = lambda self, *args: 0
jobs = [ImportArray(output_ext=ext), ScaleRaw(), SumScaled()]
jobs = jobs[:1] if stage == "first" else jobs
sys.exit(main_exit_code(lambda: run_workflow("WF", folder, jobs, input_folder=inp, progress=False)))
"""

TRENCH = """
import sys
sys.path.insert(0, sys.argv[6])
from batchlib.container_job import BatchJobOnContainer
from batchlib.workflow import main_exit_code, run_workflow
import trench_workflow as tw
folder, inp, ext, reserve, stage = sys.argv[1:6]
if reserve == "off":
    BatchJobOnContainer.estimate_output_bytes = lambda self, *args: 0
args = tw.build_parser().parse_args(["--input_folder", inp, "--folder", folder, "--container_ext", ext,
                                     "--segment_method", "threshold", "--detect_box_width", "32",
                                     "--progress", "false"])
jobs = tw.build_jobs(args)
jobs = jobs[:2] if stage == "first" else jobs
sys.exit(main_exit_code(lambda: run_workflow("TrenchWorkflow", folder, jobs, input_folder=inp,
                                             progress=False)))
"""


def run(script, folder, inp, ext, reserve, stage):
    env = dict(os.environ, BATCHLIB_RESERVE_MB="0.05", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", script, str(folder), str(inp), ext, reserve, stage,
                           str(ROOT / "workflows")], capture_output=True, text=True, env=env, timeout=600)


def snapshot(folder, ext, workflow):
    from batchlib.io import open_file, read_table

    out = {}
    for path in sorted(Path(folder).glob("*" + ext)):
        with open_file(path, "r") as f:
            if workflow == "testing":
                out[path.name] = [f["raw"][:], f["scaled"][:], f["tables/total/total"][:]]
            else:
                cells = read_table(f, "tables/cells/cells")
                out[path.name] = [f["trench_crops/phase"][:], f["segmentation/cells"][:],
                                  cells.select_dtypes("number").to_numpy()]
    return out


def disk_usage(folder) -> int:
    """Bytes allocated below ``folder`` (what it takes from a file system)."""
    return sum(p.stat().st_blocks * 512 for p in Path(folder).rglob("*") if p.is_file())


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for k in a for x, y in zip(a[k], b[k]))


def make_inputs(folder, workflow):
    if workflow == "testing":
        from batchlib.testing import make_array_inputs

        make_array_inputs(folder, 3, shape=(6, 96, 96))
    else:
        from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

        cfg = SyntheticConfig(height=256, width=256, n_positions=1, n_timepoints=6,
                              channels=("phase", "gfp"), seed=0)
        write_acquisition(folder, cfg, layout="ome-tiff", name="demo")


def trial(script, base, inp, ext, reserve, leave, expected, workflow, size_mb):
    mnt = base / "disk"
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)], check=True)
    try:
        folder = mnt / "work"
        r = run(script, folder, inp, ext, reserve, "first")
        assert r.returncode == 0, r.stderr[-2000:]
        st = os.statvfs(mnt)
        ballast = mnt / "ballast"
        subprocess.run(["fallocate", "-l", str(st.f_bavail * st.f_frsize - leave), str(ballast)], check=True)
        first = run(script, folder, inp, ext, reserve, "all")
        ballast.unlink()
        second = run(script, folder, inp, ext, reserve, "all")
        leftovers = [p.name for p in (folder / "batchlib").glob(".*.tmp-*")]
        ok = second.returncode == 0 and same(snapshot(folder, ext, workflow), expected)
        msg = next((line for line in first.stderr.splitlines() if "disk full:" in line), "")
        return {"first_rc": first.returncode, "segfault": first.returncode in (-11, 139, -7, 135),
                "traceback": "Traceback" in first.stderr, "message": bool(msg),
                "rerun_rc": second.returncode, "recovered": ok, "tmp_left": len(leftovers),
                "detail": (second.stderr.strip().splitlines() or [""])[-1][:120] if not ok else ""}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--formats", nargs="+", default=[".h5", ".n5"])
    p.add_argument("--workflow", choices=("trench", "testing"), default="trench")
    p.add_argument("--reserve", choices=("on", "off"), default="on")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root to mount a tmpfs", file=sys.stderr)
        return 1
    script = TESTING if args.workflow == "testing" else TRENCH
    size_mb = 4 if args.workflow == "testing" else 12
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="batchlib-diskfull-"))
    inp = base / "in"
    make_inputs(inp, args.workflow)
    print(f"workflow={args.workflow} reserve={args.reserve} trials={args.trials}")
    print(f"{'format':<7}{'trial':>6}{'left kB':>9}{'1st rc':>8}{'segv':>6}{'tb':>4}{'msg':>5}"
          f"{'rerun rc':>9}{'recovered':>10}{'tmp left':>9}")
    totals = {}
    try:
        for ext in args.formats:
            ref = base / f"ref{ext}"
            assert run(script, ref, inp, ext, args.reserve, "first").returncode == 0
            before = disk_usage(ref)
            assert run(script, ref, inp, ext, args.reserve, "all").returncode == 0
            expected = snapshot(ref, ext, args.workflow)
            # Free space left after the first jobs: from nothing to a little more than what the
            # other jobs write, so that the disk fills up in any of them (or, rarely, in none).
            leave_range = (0, int(1.1 * (disk_usage(ref) - before)))
            print(f"{ext}: the jobs after the first ones write {(disk_usage(ref) - before) // 1000} kB")
            for i in range(args.trials):
                leave = rng.randint(*leave_range)
                r = trial(script, base, inp, ext, args.reserve, leave, expected, args.workflow, size_mb)
                t = totals.setdefault(ext, {"recovered": 0, "segfault": 0, "message": 0, "n": 0})
                t["n"] += 1
                t["recovered"] += r["recovered"]
                t["segfault"] += r["segfault"]
                t["message"] += r["message"]
                print(f"{ext:<7}{i:>6}{leave // 1000:>9}{r['first_rc']:>8}{'yes' if r['segfault'] else '-':>6}"
                      f"{'yes' if r['traceback'] else '-':>4}{'yes' if r['message'] else '-':>5}"
                      f"{r['rerun_rc']:>9}{'yes' if r['recovered'] else 'NO':>10}{r['tmp_left']:>9} {r['detail']}",
                      flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for ext, t in totals.items():
        print(f"{ext}: recovered {t['recovered']}/{t['n']}, segfaults {t['segfault']}/{t['n']}, "
              f"'disk full' message {t['message']}/{t['n']}")
    return 0 if all(t["recovered"] == t["n"] for t in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
