"""Accuracy and speed of trench-crop segmentation and per-cell measurement.

Synthetic acquisitions (``batchlib.trench.synthetic``) with varied density,
noise and fluorescence levels give exact masks, lengths and fluorescence; the
real label stacks of ``../shared/data/label_stacks`` (napari-mm3 outputs, not
intensities) are rendered as pseudo-fluorescence and segmented back.

    python benchmarks/bench_segmentation.py            # full (>= 2000 cells)
    python benchmarks/bench_segmentation.py --quick    # a few seconds

Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from batchlib.trench.geometry import crop_box
from batchlib.trench.measure import measure_cells, measure_trench_frames
from batchlib.trench.segmentation import segment_trenches
from batchlib.trench.segmentation.evaluate import match_labels, rod_profile

SCENARIOS = {
    "default": {},
    "dense": dict(empty_fraction=0.0, partial_fraction=0.0),
    "sparse": dict(empty_fraction=0.5, partial_fraction=0.7),
    "dim + noisy": dict(fluor_amplitude=120.0, read_noise=6.0, phase_background=600.0),
    "bright": dict(fluor_amplitude=2000.0),
    "touching": dict(cell_gap_px=0.0, empty_fraction=0.1),
    "often defocused": dict(focus_change_prob=0.5),
}
SHARED = Path(os.environ.get("BATCHLIB_SHARED_DATA",
                             Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (pandas' ``to_markdown`` needs ``tabulate``, not a dependency)."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def simulate(cfg_kwargs, seed):
    """``simulate_position`` of the first seed from ``seed`` on that the generator accepts."""
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    for s in range(seed, seed + 20):
        try:
            return simulate_position(SyntheticConfig(seed=s, **cfg_kwargs), position=0), s
        except ValueError as exc:  # a layout the generator cannot render; try the next seed
            last = exc
    raise last


def crops_of(pos, channels):
    """``(n_trench, T, H, W)`` crops of each channel, aligned with ``pos.trench_labels``."""
    out = {}
    for ch in channels:
        movie = pos.movies[ch]
        out[ch] = np.stack([[crop_box(movie[t], r.x_center, r.y_closed, r.direction, int(r.height),
                                      int(r.width), r.angle_deg, pos.drift[t])
                             for t in range(movie.shape[0])] for r in pos.trenches.itertuples()])
    return out


def evaluate(truth, pred, measured, cells, fluo):
    """Matching and per-cell errors of one segmentation against the synthetic truth."""
    n_t = truth.shape[1]
    m = match_labels(truth, pred)
    pairs = pd.DataFrame({"row": m.crop // n_t, "t": m.crop % n_t, "label": m.true_label,
                          "pred": m.pred_label})
    gt = cells.rename(columns={c: "true_" + c for c in cells.columns if c not in ("row", "t", "label")})
    pairs = pairs.merge(gt, on=["row", "t", "label"])
    meas = measured.rename(columns={"n": "row", "label": "pred"})
    pairs = pairs.merge(meas, on=["row", "t", "pred"])
    # Cells cut by the open end have no defined length in the crop.
    whole = ~pairs.at_open_end
    length_err = ((pairs.length_px - pairs.true_length_px) / pairs.true_length_px)[whole]
    fl_err = ((pairs[f"{fluo}_mean_bgsub"] - pairs[f"true_{fluo}_mean_true"])
              / pairs[f"true_{fluo}_mean_true"])
    return m, length_err.abs(), fl_err.abs()


def run_synthetic(quick: bool, seed: int):
    rows, speed = [], None
    n_t = 4 if quick else 12
    for name, over in SCENARIOS.items():
        pos, used = simulate(dict(height=512, width=512, n_timepoints=n_t,
                                  channels=("phase", "gfp"), **over), seed)
        crops = crops_of(pos, ("phase", "gfp"))
        truth = pos.trench_labels
        # The measurement alone: true masks, estimated background.
        _, _, ferr_true = evaluate(truth, truth, measure_cells(truth, {"gfp": crops["gfp"]}),
                                   pos.cells, "gfp")
        for ch, kind in (("phase", "phase"), ("gfp", "fluorescence")):
            pred = segment_trenches(crops[ch], kind=kind)
            measured = measure_cells(pred, {"gfp": crops["gfp"]})
            m, lerr, ferr = evaluate(truth, pred, measured, pos.cells, "gfp")
            rows.append({"scenario": name, "seed": used, "segmented channel": ch, "true cells": m.n_true,
                         "F1 (IoU>0.5)": m.f1, "precision": m.precision, "recall": m.recall,
                         "mean IoU": m.mean_iou, "length err (median)": lerr.median(),
                         "gfp mean err (median)": ferr.median(),
                         "gfp mean err, true masks": ferr_true.median()})
        if name == "default":
            speed = crops
    return pd.DataFrame(rows), speed


def time_per_trench_frame(crops, repeats: int = 3, n_trench: int = 100, n_t: int = 30):
    """Segmentation and measurement time per 32 x 256 trench-frame on one core."""
    phase, gfp = crops["phase"], crops["gfp"]
    occupied = np.flatnonzero(phase.reshape(-1, *phase.shape[-2:]).std(axis=(1, 2)) > 0)
    idx = np.resize(occupied, n_trench * n_t)
    def tile(a):
        a = a.reshape(-1, *a.shape[-2:])[idx]
        out = np.zeros((len(a), 256, a.shape[-1]), a.dtype)
        reps = -(-256 // a.shape[1])
        out[:] = np.concatenate([a] * reps, axis=1)[:, :256]
        return out.reshape(n_trench, n_t, 256, -1)
    phase, gfp = tile(phase), tile(gfp)
    segment_trenches(phase[:1, :2], kind="phase")
    segment_trenches(gfp[:1, :2], kind="fluorescence")
    res = {}
    for label, fn in (
            ("segment phase", lambda: segment_trenches(phase, kind="phase")),
            ("segment fluorescence", lambda: segment_trenches(gfp, kind="fluorescence")),
    ):
        best = min(_timed(fn) for _ in range(repeats))
        res[label] = best
    labels = segment_trenches(phase, kind="phase")
    measure_cells(labels[:1], {"phase": phase[:1], "gfp": gfp[:1]})
    res["measure_cells (2 channels)"] = min(
        _timed(lambda: measure_cells(labels, {"phase": phase, "gfp": gfp})) for _ in range(repeats))
    res["measure_trench_frames"] = min(
        _timed(lambda: measure_trench_frames(labels, {"phase": phase, "gfp": gfp}, focus_channel="phase"))
        for _ in range(repeats))
    n = n_trench * n_t
    out = pd.DataFrame({"step": list(res), "ms per trench-frame": [v / n * 1e3 for v in res.values()]})
    total = res["segment phase"] + res["measure_cells (2 channels)"] + res["measure_trench_frames"]
    out.loc[len(out)] = ["segment phase + both measurements", total / n * 1e3]
    return out, phase.shape


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pseudo_fluorescence(labels, rods: bool, rng, psf=1.2, noise=0.05):
    """Render label stacks ``(T, H, W)`` as fluorescence with PSF blur and noise.

    ``rods=True``: each cell's signal is its thickness as a rod, from the
    distance ``d`` to its own edge and its half-width ``r`` (largest ``d``):
    ``sqrt(1 - (1 - d / r)^2)``, so poles and the contact between touching
    cells are dimmer, as in real projections. ``rods=False``: flat masks, no
    cue at all where two labels touch (a worst case).
    """
    img = rod_profile(labels) if rods else (np.asarray(labels) > 0).astype(np.float32)
    img = ndimage.gaussian_filter(img.astype(np.float32), (0, psf, psf))
    return img + rng.normal(0, noise, img.shape).astype(np.float32)


def run_real(quick: bool):
    import tifffile

    rows = []
    folder = SHARED / "label_stacks"
    if not folder.is_dir():
        return None
    rng = np.random.default_rng(0)
    for path in sorted(folder.glob("*.tif")):
        truth = tifffile.imread(path).astype(np.int32)
        step = max(1, len(truth) // (40 if quick else 200))
        truth = truth[::step]
        for rods in (True, False):
            img = pseudo_fluorescence(truth, rods, rng)
            pred = segment_trenches(img, kind="fluorescence", lumen_width=None, min_area=20)
            m = match_labels(truth, pred)
            n_true = np.array([len(np.unique(f)) - 1 for f in truth])
            n_pred = pred.reshape(len(pred), -1).max(axis=1)
            rows.append({"label stack": path.stem, "render": "rods" if rods else "flat masks",
                         "frames": len(truth),
                         "cells": m.n_true, "count exact": np.mean(n_pred == n_true),
                         "count within 1": np.mean(np.abs(n_pred - n_true) <= 1),
                         "mean count diff": np.mean(n_pred - n_true),
                         "F1 (IoU>0.5)": m.f1, "mean IoU": m.mean_iou})
    return pd.DataFrame(rows)


# Real phase contrast (molyso example frame): two growth channels with cells,
# closed end at the bottom. Reference counts and lengths were read off the
# septa (bright peaks) of the axial intensity profile; there is no mask truth.
MOLYSO_TRENCHES = {155: [40, 44, 30, 26], 216: [28, 44, 40, 48]}


def molyso_crops(frame, y_closed=381, height=240, width=32):
    """Crops of the two occupied trenches, flipped so that the closed end is row 0."""
    rows = y_closed - np.arange(height)
    return np.stack([frame[rows][:, x - width // 2:x + width // 2] for x in MOLYSO_TRENCHES])


def run_real_phase():
    import tifffile

    path = SHARED / "phase_fov" / "molyso_example_frame.tif"
    if not path.is_file():
        return None
    crops = molyso_crops(tifffile.imread(path))
    rows = []
    for lw in (12, 14):
        cells = measure_cells(segment_trenches(crops, kind="phase", lumen_width=lw))
        for i, (x, ref) in enumerate(MOLYSO_TRENCHES.items()):
            found = cells[cells.t == i]
            rows.append({"trench x": x, "lumen_width": lw, "cells (profile reading)": len(ref),
                         "cells found": len(found), "lengths read": str(ref),
                         "lengths found": str(found.length_px.tolist())})
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small acquisitions, for a smoke test")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    pd.set_option("display.precision", 3)
    table, crops = run_synthetic(args.quick, args.seed)
    print("## Synthetic acquisitions (512 x 512, 20 trench boxes of 32 px)\n")
    print(markdown(table))
    total = table.groupby("segmented channel")[["true cells"]].sum()
    print(f"\ncells per segmented channel: {total['true cells'].to_dict()}\n")
    speed, shape = time_per_trench_frame(crops, repeats=1 if args.quick else 3,
                                         n_trench=20 if args.quick else 100,
                                         n_t=10 if args.quick else 30)
    print(f"## Speed (one core, stack {shape})\n")
    print(markdown(speed))
    phase = run_real_phase()
    if phase is not None:
        print("\n## Real phase contrast (molyso example frame, no mask truth)\n")
        print(markdown(phase))
    real = run_real(args.quick)
    if real is None:
        print(f"\n(real label stacks not found under {SHARED})")
    else:
        print("\n## Real label stacks rendered as pseudo-fluorescence\n")
        print(markdown(real))


if __name__ == "__main__":
    main()
