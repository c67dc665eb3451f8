"""How well the cells alone tell the trench angle: fluorescence-only detection in context.

A fluorescence image shows only cells; the walls that give phase contrast its
0.01 deg angles are invisible. This fits one straight line per trench through
the *true* centroids of every cell in every frame (drift removed, one
intercept per trench, a common slope) and compares its angle error with the
fluorescence detection's (the maximum projection, as the TrenchDetection job
runs it) on the same positions. It is a yardstick, not a bound: detection
also sees the cells' shapes and their motion.

Usage::

    python benchmarks/bench_angle_from_cells.py                      # geometry, nominal, mixed, held-out
    python benchmarks/bench_angle_from_cells.py --families geometry --n-seeds 8

Prints a markdown table (angle errors in degrees).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.trench.detection.movie import detect_in_movie  # noqa: E402
from batchlib.trench.geometry import raw_to_rotated  # noqa: E402
from batchlib.trench.synthetic import simulate_position  # noqa: E402
from batchlib.trench.synthetic.families import add_seed_arguments, sample_config, seeds  # noqa: E402


def angle_from_true_cells(pos) -> float:
    """Common slope (degrees) of straight lines through each trench's true cell centroids."""
    angle = pos.metadata["angle_deg"]
    centres = pos.trenches["x_center"].to_numpy()
    ys, xs, keys = [], [], []
    for t in range(pos.frame_labels.shape[0]):
        lab = pos.frame_labels[t]
        ids = np.unique(lab)
        ids = ids[ids > 0]
        if not ids.size:
            continue
        com = np.array(ndimage.center_of_mass(np.ones_like(lab), lab, ids)) - pos.drift[t]
        rot = raw_to_rotated(com, angle, lab.shape)
        trench = np.argmin(np.abs(rot[:, 1][:, None] - centres[None]), axis=1)
        ys.append(com[:, 0])
        xs.append(com[:, 1])
        keys.append(2 * trench + (rot[:, 0] > lab.shape[0] / 2))
    y, x, key = map(np.concatenate, (ys, xs, keys))
    for k in np.unique(key):
        m = key == k
        y[m] -= y[m].mean()
        x[m] -= x[m].mean()
    return float(np.rad2deg(np.arctan((y * x).sum() / (y * y).sum())))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(ap, 4)
    ap.set_defaults(families="geometry,nominal,mixed", n_seeds=4)
    ap.add_argument("--positions", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--timepoints", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    print("| family | positions | cells: median | cells: p95 | detection: median | detection: p95 |")
    print("|---|---|---|---|---|---|")
    for family in args.families.split(","):
        cells, detected = [], []
        for seed in seeds(args.seeds, args.n_seeds, args.seed_start):
            for p in range(args.positions):
                cfg = sample_config(family, seed, height=args.size, width=args.size,
                                    n_timepoints=args.timepoints)
                pos = simulate_position(cfg, p)
                truth = pos.metadata["angle_deg"]
                layout, _ = detect_in_movie(pos.movies[cfg.fluorescence_channels[0]],
                                            "fluorescence", box_width=cfg.box_width)
                cells.append(abs(angle_from_true_cells(pos) - truth))
                detected.append(abs(layout.angle_deg - truth))
        print(f"| {family} | {len(cells)} | {np.median(cells):.3f} | {np.percentile(cells, 95):.3f} "
              f"| {np.median(detected):.3f} | {np.percentile(detected, 95):.3f} |")


if __name__ == "__main__":
    main()
