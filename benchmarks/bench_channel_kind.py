"""Channel kind from the pixels (phase-like or fluorescence): accuracy per scenario family.

    python benchmarks/bench_channel_kind.py [--quick] [--seeds 3] [--size 512] [--split heldout]

Classifies, with :func:`batchlib.trench.channels.kind_from_data`, the first
frame of every channel of generated acquisitions (every scenario family of
``batchlib.trench.synthetic.families`` when it exists, else a few fixed
variants), both lumen polarities of the phase channel, and the real fixtures
of ``../shared/data`` when present. Prints a markdown table per family: frames,
wrong decisions, the lowest confidence of a right one, the highest of a wrong
one, and the worst family.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.trench.channels import LOW_CONFIDENCE, kind_from_data  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, simulate_position  # noqa: E402

SHARED = Path(os.environ.get("BATCHLIB_SHARED_DATA", ROOT.parent / "shared" / "data"))


def real_frames():
    """``[(family, label, frame, expected kind)]`` of the real fixtures, if present."""
    out = []
    if not SHARED.is_dir():
        return out
    import tifffile

    phase = tifffile.imread(SHARED / "phase_fov" / "molyso_example_frame.tif")
    out += [("real", "molyso phase", phase, "phase"),
            ("real", "molyso phase, inverted", 255 - phase, "phase")]
    stack = tifffile.imread(SHARED / "chamber_stack" / "example_stack.tiff")
    out += [("real", f"chamber fluorescence t{t}", stack[t], "fluorescence") for t in (0, 5, 9)]
    try:
        import nd2

        movie = nd2.imread(SHARED / "nd2" / "cluster.nd2")  # T Z C Y X
        out += [("real", f"cluster.nd2 c{c}", movie[0].max(axis=0)[c], "fluorescence")
                for c in range(movie.shape[2])]
    except ImportError:
        pass
    return out


def configs(n_seeds, size, split):
    """``[(family, seed, SyntheticConfig)]``: the scenario families, or fixed variants."""
    try:
        from batchlib.trench.synthetic.families import sample_configs
    except ImportError:
        variants = {"nominal": {}, "vignetting": {"fluor_background": 500, "illumination_variation": 0.3},
                    "low_snr": {"fluor_amplitude": 40, "read_noise": 6, "phase_background": 300},
                    "low_contrast": {"phase_pdms_contrast": 0.8, "phase_cell_contrast": 0.5}}
        return [(name, s, SyntheticConfig(height=size, width=size, n_positions=1, n_timepoints=1,
                                          seed=s, **v))
                for name, v in variants.items() for s in range(n_seeds)]
    return sample_configs(split=split, n_seeds=n_seeds, height=size, width=size, n_positions=1,
                          n_timepoints=1)


def generated_frames(n_seeds, size, split):
    out = []
    for family, seed, cfg in configs(n_seeds, size, split):
        pos = simulate_position(cfg, 0)
        for ch in cfg.channels:
            frame = pos.movies[ch][0]
            kind = "phase" if cfg.is_phase(ch) else "fluorescence"
            out.append((family, f"seed {seed} {ch}", frame, kind))
            if kind == "phase":  # the other lumen polarity
                inv = frame.max() + frame.min() - frame.astype(np.int64)
                out.append((family, f"seed {seed} {ch} inverted", inv, kind))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--split", default="heldout", choices=("tuning", "heldout"))
    ap.add_argument("--quick", action="store_true", help="one seed")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = 1
    frames = real_frames() + generated_frames(args.seeds, args.size, args.split)
    rows = {}
    t0 = time.perf_counter()
    for family, label, frame, expected in frames:
        kind, conf = kind_from_data(frame)
        r = rows.setdefault(family, {"n": 0, "wrong": [], "right_min": 1.0, "low": 0})
        r["n"] += 1
        if kind == expected:
            r["right_min"] = min(r["right_min"], conf)
            r["low"] += conf < LOW_CONFIDENCE
        else:
            r["wrong"].append((label, kind, conf))
    per_frame_ms = 1000 * (time.perf_counter() - t0) / max(len(frames), 1)
    print(f"| family | frames | wrong | lowest confidence when right | right but below {LOW_CONFIDENCE} "
          "(warned) | wrong decisions (confidence) |")
    print("|---|---|---|---|---|---|")
    for family, r in rows.items():
        wrong = "; ".join(f"{lab}: {k} ({c:.2f})" for lab, k, c in r["wrong"]) or "-"
        print(f"| {family} | {r['n']} | {len(r['wrong'])} | {r['right_min']:.3f} | {r['low']} | {wrong} |")
    worst = max(rows, key=lambda f: (len(rows[f]["wrong"]) / rows[f]["n"], -rows[f]["right_min"]))
    n_wrong = sum(len(r["wrong"]) for r in rows.values())
    print(f"\n{len(frames)} frames, {n_wrong} wrong; worst family: {worst} "
          f"({len(rows[worst]['wrong'])}/{rows[worst]['n']} wrong, lowest right confidence "
          f"{rows[worst]['right_min']:.3f}); {per_frame_ms:.1f} ms per frame ({args.size}²)")
    return 1 if n_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
