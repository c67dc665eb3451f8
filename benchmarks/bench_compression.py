"""Write time, read time and compression ratio of batchlib's codecs, h5 and n5.

Movies are stored frame per chunk, (T, Y, X) with chunks (1, Y, X), as the
jobs store them. Data sets:

* real frames from ``../shared/data`` (relative to the repository root),
  skipped when absent: ``chamber_stack/example_stack.tiff`` (fluorescence,
  T10 x 256 x 256 uint16) and ``phase_fov/molyso_example_frame.tif``
  (phase contrast, 526 x 388 uint8, repeated over time);
* synthetic uint16 microscopy-like frames: smooth background, bright blobs
  and Poisson noise;
* the phase and fluorescence movies of ``batchlib.trench.synthetic``'s
  ``simulate_position``, when it imports.

Usage::

    python benchmarks/bench_compression.py            # full
    python benchmarks/bench_compression.py --quick    # smaller frames, one repeat

Prints one markdown table per data set (best of ``--repeats`` runs).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.io import COMPRESSIONS, DEFAULT_COMPRESSION, create_dataset, open_file  # noqa: E402

SHARED = Path(os.environ.get("BATCHLIB_SHARED_DATA", ROOT.parent / "shared" / "data"))


def synthetic_movie(n_t=20, shape=(512, 512), seed=0):
    """Smooth background + bright blobs (cells) + Poisson noise, uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    background = 300 + 150 * np.sin(yy / shape[0] * np.pi) * np.cos(xx / shape[1] * np.pi / 2)
    centres = rng.uniform(0, 1, size=(60, 2)) * shape
    movie = np.empty((n_t,) + shape, np.uint16)
    for t in range(n_t):
        expected = background.copy()
        for cy, cx in centres + rng.normal(0, 1.0, size=centres.shape) + t * 0.5:
            r2 = (yy - cy) ** 2 / 30.0 + (xx - cx) ** 2 / 8.0
            local = r2 < 25
            expected[local] += 2000 * np.exp(-r2[local])
        movie[t] = np.clip(rng.poisson(expected), 0, 65535)
    return movie


def datasets(quick):
    out = {}
    stack = SHARED / "chamber_stack" / "example_stack.tiff"
    frame = SHARED / "phase_fov" / "molyso_example_frame.tif"
    if stack.exists() or frame.exists():
        import tifffile

        if stack.exists():
            out["real fluorescence chamber stack (T10x256x256 uint16)"] = tifffile.imread(stack)
        if frame.exists():
            img = tifffile.imread(frame)
            out[f"real phase frame ({img.shape[0]}x{img.shape[1]} uint8, x10 frames)"] = \
                np.repeat(img[None], 10, axis=0)
    else:
        print(f"(real fixtures not found at {SHARED}: skipped)", file=sys.stderr)
    n_t, size = (8, 256) if quick else (20, 512)
    out[f"synthetic blobs + Poisson (T{n_t}x{size}x{size} uint16)"] = synthetic_movie(n_t, (size, size))
    try:
        from batchlib.trench.synthetic import SyntheticConfig, simulate_position

        cfg = SyntheticConfig(height=size, width=size, n_timepoints=n_t, channels=("phase", "gfp"), seed=1)
        movies = simulate_position(cfg, 0).movies
        for name, movie in movies.items():
            movie = np.asarray(movie)
            out[f"simulate_position {name} (T{movie.shape[0]}x{movie.shape[1]}x{movie.shape[2]} "
                f"{movie.dtype})"] = movie
    except Exception as e:  # noqa: BLE001 - optional: the domain package may be absent or broken
        print(f"(batchlib.trench.synthetic.simulate_position unavailable: {e})", file=sys.stderr)
    return out


def stored_bytes(path, ext):
    if ext == ".h5":
        with open_file(path, "r") as f:
            return f["movie"].id.get_storage_size()
    total = 0
    for root, _, files in os.walk(Path(path) / "movie"):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in files if n != "attributes.json")
    return total


def measure(movie, ext, codec, tmp, repeats):
    chunks = (1,) + movie.shape[1:]
    best_w = best_r = np.inf
    for i in range(repeats):
        path = os.path.join(tmp, f"bench{i}{ext}")
        t0 = time.perf_counter()
        with open_file(path, "w" if ext == ".h5" else "a") as f:
            create_dataset(f, "movie", data=movie, chunks=chunks, compression=codec)
        best_w = min(best_w, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with open_file(path, "r") as f:
            back = f["movie"][:]
        best_r = min(best_r, time.perf_counter() - t0)
        assert np.array_equal(back, movie), (ext, codec)
        size = stored_bytes(path, ext)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    mb = movie.nbytes / 1e6
    return {"write_s": best_w, "read_s": best_r, "write_mb_s": mb / best_w, "read_mb_s": mb / best_r,
            "ratio": movie.nbytes / max(size, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller synthetic movies, one repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--formats", nargs="*", default=[".h5", ".n5"])
    p.add_argument("--tmp", default=None, help="where to write (default: system temp)")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    tmp = tempfile.mkdtemp(prefix="bench_compression_", dir=args.tmp)
    summary = {}
    try:
        for name, movie in datasets(args.quick).items():
            print(f"\n### {name}: {movie.nbytes / 1e6:.1f} MB, chunks (1, {movie.shape[1]}, {movie.shape[2]})\n")
            print("| format | codec | ratio | write (MB/s) | read (MB/s) | write (ms) | read (ms) |")
            print("|---|---|---:|---:|---:|---:|---:|")
            for ext in args.formats:
                for codec in COMPRESSIONS:
                    r = measure(movie, ext, codec, tmp, repeats)
                    summary.setdefault((ext, codec), []).append(r)
                    mark = " (default)" if codec == DEFAULT_COMPRESSION else ""
                    print(f"| {ext[1:]} | {codec}{mark} | {r['ratio']:.2f} | {r['write_mb_s']:.0f} "
                          f"| {r['read_mb_s']:.0f} | {r['write_s'] * 1e3:.1f} | {r['read_s'] * 1e3:.1f} |",
                          flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n### Geometric mean over the data sets\n")
    print("| format | codec | ratio | write (MB/s) | read (MB/s) |")
    print("|---|---|---:|---:|---:|")
    for (ext, codec), rs in summary.items():
        gm = {k: float(np.exp(np.mean([np.log(r[k]) for r in rs]))) for k in ("ratio", "write_mb_s", "read_mb_s")}
        print(f"| {ext[1:]} | {codec} | {gm['ratio']:.2f} | {gm['write_mb_s']:.0f} | {gm['read_mb_s']:.0f} |")


if __name__ == "__main__":
    main()
