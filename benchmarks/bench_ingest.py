"""Ingest throughput against the floor of merely reading the same frames.

    python benchmarks/bench_ingest.py [--quick] [--frames 200] [--size 1024]

Writes a synthetic movie (one position, phase + GFP) as an ImageJ TIFF stack
and as a TIFF sequence, then for each layout measures in separate processes
(so that peak memory is per measurement):

* floor: open the acquisition and read every frame with the same reader;
* ingest: the Ingest job (serial, one core) with the default codec, and gzip.

Prints a markdown table: seconds, frames per second per core, ratio to the
floor, compression ratio (raw bytes / container bytes) and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
mode, src, out, codec = sys.argv[1:5]


def peak_rss_mb():
    # VmHWM belongs to this process's address space; getrusage's ru_maxrss would
    # carry over the peak of the parent that forked us.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


import h5py, hdf5plugin  # noqa: F401 - imported before timing, as a long-running process has
import batchlib.io.compression as comp
from batchlib import run_workflow
from batchlib.trench.jobs import Ingest
from batchlib.trench.readers import find_acquisitions, open_acquisition
comp.DEFAULT_COMPRESSION = codec
rss0 = peak_rss_mb()
t0 = time.perf_counter()  # after the imports: both runs pay the same start-up
if mode == "floor":
    n = 0
    for s in find_acquisitions(src):
        with open_acquisition(s) as acq:
            for p in range(acq.n_positions):
                for t in range(acq.n_timepoints):
                    for c in range(len(acq.channels)):
                        acq.read_frame(p, t, c); n += 1
else:
    run_workflow("Bench", out, [Ingest()], input_folder=src, lock=False, progress=False,
                 log_level="WARNING")
    n = None
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "frames": n,
                  "peak_rss_mb": peak_rss_mb(),
                  "rss_after_imports_mb": rss0}))
"""


def make_movie(n_frames, size, seed=0):
    """A (T, C, Y, X) uint16 movie from the synthetic generator, tiled in time."""
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    n_sim = min(n_frames, 12)
    pos = simulate_position(SyntheticConfig(height=size, width=size, n_timepoints=n_sim,
                                            channels=("phase", "gfp"), seed=seed), 0)
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n_frames):  # reuse simulated frames with fresh shot noise
        base = [pos.movies[ch][t % n_sim].astype(np.int32) for ch in ("phase", "gfp")]
        frames.append(np.stack([np.clip(b + rng.integers(-3, 4, b.shape), 0, 65535) for b in base]))
    return np.stack(frames).astype(np.uint16)


def drop_page_cache() -> bool:
    """Empty the page cache (needs root) so that reads come from the disk."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_child(mode, src, out, codec="blosc-lz4", cold=False):
    if cold and not drop_page_cache():
        raise SystemExit("--cold needs permission to write /proc/sys/vm/drop_caches (root)")
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out), codec],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def dir_size(path):
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="40 frames of 512 x 512")
    ap.add_argument("--cold", action="store_true",
                    help="empty the page cache before each run (root): reads come from the disk, "
                         "as for data arriving from a microscope")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.size = 40, 512
    import tifffile

    movie = make_movie(args.frames, args.size)
    raw_bytes = movie.nbytes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stack = tmp / "stack"
        stack.mkdir()
        tifffile.imwrite(stack / "movie.tif", movie, imagej=True, metadata={"axes": "TCYX"})
        seq = tmp / "seq" / "movie"
        seq.mkdir(parents=True)
        for t in range(movie.shape[0]):
            for c in range(movie.shape[1]):
                tifffile.imwrite(seq / f"t{t:03d}xy00c{c}.tif", movie[t, c])
        n = movie.shape[0] * movie.shape[1]
        n_t, n_c = movie.shape[:2]
        del movie  # free the movie before the measurements start
        import gc

        gc.collect()
        for layout, src in (("ImageJ stack", stack), ("TIFF sequence", seq.parent)):
            floor = run_child("floor", src, tmp / "none", cold=args.cold)
            rows.append((layout, "read only (floor)", floor, None, floor["seconds"]))
            for codec in ("blosc-lz4", "gzip"):
                out = tmp / f"out-{codec}-{layout[:5]}"
                res = run_child("ingest", src, out, codec, cold=args.cold)
                size = sum(dir_size(p) for p in out.glob("*.h5"))
                rows.append((layout, f"Ingest, {codec}", res, raw_bytes / size, floor["seconds"]))
    print(f"\n{n_t} timepoints x {n_c} channels x {args.size}^2 uint16 "
          f"({raw_bytes / 1e6:.0f} MB), one core, "
          f"{'cold page cache (reads from disk)' if args.cold else 'warm page cache'}\n")
    print("| input | run | seconds | frames/s/core | x floor | compression ratio | peak RSS MB "
          "| RSS after imports MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for layout, what, res, ratio, floor_s in rows:
        print(f"| {layout} | {what} | {res['seconds']:.2f} | {n / res['seconds']:.0f} | "
              f"{res['seconds'] / floor_s:.2f} | {'' if ratio is None else f'{ratio:.2f}'} | "
              f"{res['peak_rss_mb']:.0f} | {res['rss_after_imports_mb']:.0f} |")


if __name__ == "__main__":
    main()
