"""Benchmarks of batchlib's core: the "nothing to do" fast path and executor overhead.

(1) Deciding that nothing needs doing: N inputs processed by a trivial job
    (ImportArray on tiny .npy files), then the time of a second
    ``run_workflow`` call, which must only find that everything is up to date.
(2) Per-image executor overhead: ~200 trivial images through the serial,
    processes (n_jobs=2) and dask LocalCluster (2 workers) executors; seconds
    per image minus the serial compute time.

Usage::

    python benchmarks/bench_core.py                 # N = 1,000 and 10,000; 200 images
    python benchmarks/bench_core.py --max-n 100000  # also N = 100,000 (slow to build)
    python benchmarks/bench_core.py --quick         # N = 1,000; 60 images
    python benchmarks/bench_core.py --profile 10000 # cProfile of the second run

Prints markdown tables.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.testing import ImportArray, make_array_inputs  # noqa: E402
from batchlib.workflow import run_workflow  # noqa: E402


def _build(root, n, ext, n_jobs):
    """Inputs and a first, complete run; returns (input folder, folder, seconds of the first run)."""
    inp, folder = os.path.join(root, "in"), os.path.join(root, "out")
    make_array_inputs(inp, n, shape=(1, 4, 4), dtype="uint8")
    t0 = time.perf_counter()
    executor = "processes" if n_jobs > 1 and n > 500 else "serial"
    res = run_workflow("Bench", folder, [ImportArray(output_ext=ext)], input_folder=inp,
                       executor=executor, n_jobs=n_jobs, progress=False, log_level="WARNING",
                       status_interval_s=30.0)
    assert res.success and len(res.jobs[0].computed) == n, res
    return inp, folder, time.perf_counter() - t0


def _second_run(inp, folder, ext):
    t0 = time.perf_counter()
    res = run_workflow("Bench", folder, [ImportArray(output_ext=ext)], input_folder=inp,
                       progress=False, log_level="WARNING")
    dt = time.perf_counter() - t0
    assert res.success and not res.jobs[0].computed, res
    return dt


def bench_noop(sizes, ext, n_jobs, repeats, profile_n=None, tmp=None):
    rows = []
    for n in sizes:
        root = tempfile.mkdtemp(prefix=f"bench_noop_{n}_", dir=tmp)
        try:
            inp, folder, t_first = _build(root, n, ext, n_jobs)
            times = [_second_run(inp, folder, ext) for _ in range(repeats)]
            status_mb = os.path.getsize(os.path.join(folder, "batchlib", "ImportArray.status")) / 1e6
            rows.append((n, ext, t_first, min(times), max(times), min(times) / n * 1e6, status_mb))
            print(f"  N={n} {ext}: first run {t_first:.1f} s, second run {min(times):.3f} s",
                  file=sys.stderr, flush=True)
            if profile_n == n:
                prof = cProfile.Profile()
                prof.enable()
                _second_run(inp, folder, ext)
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
                print(out.getvalue(), file=sys.stderr)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n### Deciding that nothing needs doing ({ext}, ImportArray on tiny .npy files)\n")
    print("| N images | first run (s) | second run, best (s) | second run, worst (s) | per image (µs) "
          "| job status file (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, ext_, t1, best, worst, per, mb in rows:
        print(f"| {n:,} | {t1:.1f} | {best:.3f} | {worst:.3f} | {per:.1f} | {mb:.1f} |")
    return rows


def _run_executor(inp, folder, kind, n_jobs):
    t0 = time.perf_counter()
    res = run_workflow("Bench", folder, [ImportArray(input_pattern=os.path.basename(inp) + "/*.npy")],
                       input_folder=os.path.dirname(inp), executor=kind,
                       n_jobs=n_jobs if kind != "serial" else 1, progress=False, log_level="WARNING")
    dt = time.perf_counter() - t0
    assert res.success and res.jobs[0].computed, res
    return dt, len(res.jobs[0].computed)


def bench_executors(n_images, n_jobs, tmp=None):
    """Wall time for a small and a large batch: the slope is the cost per image,
    the intercept the start-up (worker processes, dask cluster)."""
    root = tempfile.mkdtemp(prefix="bench_exec_", dir=tmp)
    n_small = max(n_images // 5, 10)
    rows = []
    try:
        for n in (n_small, n_images):
            make_array_inputs(os.path.join(root, f"in{n}"), n, shape=(2, 16, 16), dtype="uint16")
        for kind in ("serial", "processes", "dask"):
            times = {}
            for n in (n_small, n_images):
                times[n], count = _run_executor(os.path.join(root, f"in{n}"),
                                                os.path.join(root, f"out_{kind}_{n}"), kind, n_jobs)
                assert count == n
            slope = (times[n_images] - times[n_small]) / (n_images - n_small)
            startup = times[n_images] - slope * n_images
            rows.append((kind, times[n_images], slope, startup))
            print(f"  {kind}: {times[n_small]:.2f} s for {n_small}, {times[n_images]:.2f} s for {n_images}",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    serial = rows[0][2]
    print(f"\n### Executor overhead (trivial ImportArray images of 2x16x16 uint16 into h5; "
          f"{n_jobs} workers for processes and dask; per image = slope between {n_small} and "
          f"{n_images} images, start-up = intercept)\n")
    print("| executor | wall for %d images (s) | start-up (s) | wall per image (ms) "
          "| minus serial compute (ms) | worker time per image minus serial (ms) |" % n_images)
    print("|---|---:|---:|---:|---:|---:|")
    for kind, total, slope, startup in rows:
        workers = 1 if kind == "serial" else n_jobs
        print(f"| {kind} | {total:.2f} | {startup:.2f} | {slope * 1e3:.2f} | {(slope - serial) * 1e3:+.2f} "
              f"| {(slope * workers - serial) * 1e3:+.2f} |")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 1,000 and 60 images only")
    p.add_argument("--max-n", type=int, default=10_000, help="largest N for the fast-path benchmark")
    p.add_argument("--ext", default=".h5", choices=(".h5", ".n5"), help="output container format")
    p.add_argument("--n-jobs", type=int, default=2, help="workers for processes / dask")
    p.add_argument("--repeats", type=int, default=3, help="second runs timed per N")
    p.add_argument("--images", type=int, default=200, help="images for the executor benchmark")
    p.add_argument("--profile", type=int, default=None, help="cProfile the second run at this N")
    p.add_argument("--skip-executors", action="store_true")
    p.add_argument("--tmp", default=None, help="where to build the folders (default: system temp)")
    args = p.parse_args(argv)
    if args.quick:
        sizes, n_images = [1_000], 60
    else:
        sizes = [n for n in (1_000, 10_000, 100_000) if n <= args.max_n]
        if args.max_n not in sizes:
            sizes.append(args.max_n)
        n_images = args.images
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores", file=sys.stderr)
    bench_noop(sizes, args.ext, args.n_jobs, args.repeats, args.profile, args.tmp)
    if not args.skip_executors:
        bench_executors(n_images, args.n_jobs, args.tmp)


if __name__ == "__main__":
    main()
