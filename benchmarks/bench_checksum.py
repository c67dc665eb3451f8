#!/usr/bin/env python
"""What the dataset checksums in the completion records cost, against writing the data.

Every job's record holds a checksum of the stored bytes of what it wrote
(``batchlib.io.checksum``), computed right after writing. This measures, for
a movie of microscopy-like frames in h5 and n5 (Blosc-LZ4, one frame per
chunk): the time to write it, to checksum it (the extra cost of a job), to
read it whole (what ``batchlib verify`` does for datasets without a
checksum), and the ratios to the write.

    python benchmarks/bench_checksum.py [--quick] [--frames 50] [--size 1024] [--repeats 3]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.io import create_dataset, open_file  # noqa: E402
from batchlib.io.checksum import digest, stored_nbytes  # noqa: E402


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10 frames, one repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.repeats = 10, 1
    rng = np.random.default_rng(0)
    movie = rng.poisson(300, (args.frames, args.size, args.size)).astype(np.uint16)
    tmp = Path(tempfile.mkdtemp(prefix="batchlib-bench-checksum-"))
    print(f"{args.frames} frames of {args.size}x{args.size} uint16 ({movie.nbytes / 1e6:.0f} MB raw), "
          f"best of {args.repeats}\n")
    print("| format | stored MB | write s | checksum s | read s | checksum / write | read / write |")
    print("|---|---|---|---|---|---|---|")
    try:
        for ext in (".h5", ".n5"):
            path = tmp / f"m{ext}"

            def write():
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                with open_file(path, "w") as f:
                    ds = create_dataset(f, "raw", shape=movie.shape, dtype=movie.dtype,
                                        chunks=(1,) + movie.shape[1:])
                    for t in range(len(movie)):
                        ds[t] = movie[t]

            t_write = best(write, args.repeats)
            with open_file(path, "r") as f:
                ds = f["raw"]
                t_sum = best(lambda: digest(ds), args.repeats)
                t_read = best(lambda: ds[:], args.repeats)
                size = stored_nbytes(ds)
            print(f"| {ext} | {size / 1e6:.0f} | {t_write:.2f} | {t_sum:.2f} | {t_read:.2f} | "
                  f"{t_sum / t_write:.2f} | {t_read / t_write:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
