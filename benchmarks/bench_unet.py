"""The shipped U-Net (`unet`) against the classical method (`threshold`): accuracy and speed.

Accuracy per scenario family on *held-out* generator seeds (10000 and up; the
model is trained on tuning seeds 0-999 only, and never on the families
alt_optics, jpeg and mixed), phase-like and fluorescence channels, with exact
truth. Then per-frame agreement on the real label stacks of
``../shared/data/label_stacks`` (rendered as pseudo-fluorescence), the molyso
phase frame, CPU inference speed on 32 x 256 crops and the whole workflow's
time with each method.

    python benchmarks/bench_unet.py            # 3 seeds per family, a few minutes
    python benchmarks/bench_unet.py --quick    # 1 seed per family

Prints markdown tables. Torch threads: ``--threads`` (default 2).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from bench_segmentation import (MOLYSO_TRENCHES, SHARED, crops_of, markdown, molyso_crops,
                                pseudo_fluorescence)

from batchlib.trench.segmentation import segment_trenches
from batchlib.trench.segmentation.evaluate import match_labels
from batchlib.trench.segmentation.torch_model import set_threads
from batchlib.trench.segmentation.training import HELDOUT_FAMILIES
from batchlib.trench.synthetic import simulate_position
from batchlib.trench.synthetic.families import FAMILIES, sample_config, seeds

METHODS = ("threshold", "unet")


def method_params(method, cfg=None):
    """The classical method gets the lumen width, as the Segment job measures it."""
    if method == "threshold":
        return {"lumen_width": float(round(cfg.trench_width_px)) if cfg is not None else None}
    return {}


def crop_scores(truth, pred) -> dict:
    """F1, mean IoU, count within 1 per crop and the median mother length error."""
    m = match_labels(truth, pred)
    flat_t = truth.reshape(-1, *truth.shape[-2:])
    flat_p = pred.reshape(-1, *pred.shape[-2:])
    n_true = np.array([len(np.unique(c)) - 1 for c in flat_t])
    n_pred = flat_p.max(axis=(1, 2))
    # Mother = label 1 of the truth, matched; length = rows spanned; not if cut by the open end.
    errs = []
    mothers = {c: p for c, t, p in zip(m.crop, m.true_label, m.pred_label) if t == 1}
    for c in np.flatnonzero(n_true > 0):
        rows_t = np.flatnonzero((flat_t[c] == 1).any(axis=1))
        if rows_t[-1] == flat_t.shape[1] - 1:
            continue
        if c not in mothers:
            errs.append(1.0)  # a missed mother counts as a 100 % error
            continue
        rows_p = np.flatnonzero((flat_p[c] == mothers[c]).any(axis=1))
        errs.append(abs((rows_p[-1] - rows_p[0]) - (rows_t[-1] - rows_t[0])) / (rows_t[-1] - rows_t[0] + 1))
    return {"cells": m.n_true, "F1": m.f1, "mean IoU": m.mean_iou,
            "count ±1": float(np.mean(np.abs(n_pred - n_true) <= 1)),
            "mother len err": float(np.median(errs)) if errs else np.nan}


def run_families(n_seeds, size, n_t):
    rows, speed_crops = [], None
    for family in FAMILIES:
        for seed in seeds("heldout", n_seeds):
            try:
                cfg = sample_config(family, seed, height=size, width=size, n_timepoints=n_t,
                                    n_positions=1)
                pos = simulate_position(cfg, 0)
            except ValueError as e:  # a layout the generator cannot render at this size
                print(f"skipped {family} seed {seed}: {e}")
                continue
            crops = crops_of(pos, cfg.channels)
            for ch in cfg.channels:
                kind = "phase" if cfg.is_phase(ch) else "fluorescence"
                for method in METHODS:
                    pred = segment_trenches(crops[ch], method=method, kind=kind,
                                            **method_params(method, cfg))
                    rows.append({"family": family, "seed": seed, "kind": kind, "method": method,
                                 **crop_scores(pos.trench_labels, pred)})
            if family == "nominal" and speed_crops is None:
                speed_crops = crops[cfg.channels[0]]
    df = pd.DataFrame(rows)
    # Pool the seeds of a family: cells-weighted F1 and IoU, plain means of the rest.
    df["F1 w"], df["IoU w"] = df.F1 * df.cells, df["mean IoU"] * df.cells
    out = df.groupby(["family", "kind", "method"], sort=False).agg(
        cells=("cells", "sum"), f1w=("F1 w", "sum"), iouw=("IoU w", "sum"),
        count=("count ±1", "mean"), mlen=("mother len err", "median")).reset_index()
    out["F1"], out["mean IoU"] = out.pop("f1w") / out.cells, out.pop("iouw") / out.cells
    out = out.rename(columns={"count": "count ±1", "mlen": "mother len err"})
    out.insert(1, "trained on", ~out.family.isin(HELDOUT_FAMILIES))
    return out, speed_crops


def side_by_side(table):
    """One row per family and kind, the two methods in adjacent columns."""
    wide = table.pivot_table(index=["family", "trained on", "kind"], columns="method",
                             values=["F1", "mean IoU", "count ±1", "mother len err"], sort=False)
    wide.columns = [f"{v} {m}" for v, m in wide.columns]
    return wide.reset_index()


def run_speed(crops, n_crops, repeats, threads):
    """Crops per second of 32 x 256 crops, both methods, same run (the ratio is the figure).

    The U-Net at 1 torch thread and at ``threads``: on a busy machine
    oversubscribed threads spin-wait, so 1 thread can be the faster.
    """
    flat = crops.reshape(-1, *crops.shape[-2:])
    occupied = flat[flat.std(axis=(1, 2)) > 0]
    tiled = np.concatenate([occupied] * (-(-256 // occupied.shape[1])), axis=1)[:, :256]
    stack = np.resize(tiled, (n_crops, 256, tiled.shape[-1])).astype(np.float32)
    rows = []
    for method, n_threads in (("threshold", 1), ("unet", 1), ("unet", threads)):
        params = method_params(method) if method == "threshold" else {"threads": n_threads}
        segment_trenches(stack[:8], method=method, kind="phase", **params)  # warm-up, model load
        best = min(_timed(lambda: segment_trenches(stack, method=method, kind="phase", **params))
                   for _ in range(repeats))
        rows.append({"method": method, "torch threads": n_threads if method == "unet" else "-",
                     "crops": n_crops, "seconds": best, "crops/s": n_crops / best})
    df = pd.DataFrame(rows).drop_duplicates(subset=["method", "torch threads"])
    df["relative to threshold"] = df["crops/s"] / df["crops/s"].iloc[0]
    return df


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_label_stacks(quick):
    """Per-frame agreement with the real label stacks rendered as rod-profile fluorescence."""
    import tifffile

    folder = SHARED / "label_stacks"
    if not folder.is_dir():
        return None
    rows, rng = [], np.random.default_rng(0)
    for path in sorted(folder.glob("*.tif")):
        truth = tifffile.imread(path).astype(np.int32)
        truth = truth[::max(1, len(truth) // (30 if quick else 200))]
        img = pseudo_fluorescence(truth, True, rng)
        for method in METHODS:
            params = {"lumen_width": None, "min_area": 20} if method == "threshold" else {}
            pred = segment_trenches(img, method=method, kind="fluorescence", **params)
            per_frame = [match_labels(t[None], p[None]).f1 for t, p in zip(truth, pred)]
            n_true = np.array([len(np.unique(f)) - 1 for f in truth])
            n_pred = pred.reshape(len(pred), -1).max(axis=1)
            rows.append({"label stack": path.stem, "shape": "x".join(map(str, truth.shape[1:])),
                         "method": method, "frames": len(truth),
                         "F1 per frame (median)": float(np.median(per_frame)),
                         "frames F1 >= 0.9": float(np.mean(np.array(per_frame) >= 0.9)),
                         "count exact": float(np.mean(n_pred == n_true)),
                         "count ±1": float(np.mean(np.abs(n_pred - n_true) <= 1)),
                         "mean IoU": match_labels(truth, pred).mean_iou})
    return pd.DataFrame(rows)


def run_molyso():
    import tifffile

    path = SHARED / "phase_fov" / "molyso_example_frame.tif"
    if not path.is_file():
        return None
    crops = molyso_crops(tifffile.imread(path))
    rows = []
    for method in METHODS:
        params = {"lumen_width": 14} if method == "threshold" else {}
        labels = segment_trenches(crops, method=method, kind="phase", **params)
        for i, (x, ref) in enumerate(MOLYSO_TRENCHES.items()):
            rows.append({"trench x": x, "method": method, "cells (profile reading)": len(ref),
                         "cells found": int(labels[i].max())})
    return pd.DataFrame(rows)


def run_end_to_end(quick):
    """The whole trench workflow (serial) with each method on one generated acquisition."""
    import contextlib
    import importlib.util
    import io
    import json
    import tempfile
    from pathlib import Path

    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    spec = importlib.util.spec_from_file_location(
        "trench_workflow", Path(__file__).resolve().parents[1] / "workflows" / "trench_workflow.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SyntheticConfig(height=512, width=512, n_positions=2, n_timepoints=4 if quick else 12,
                              channels=("phase", "gfp"), seed=0)
        write_acquisition(Path(tmp) / "raw", cfg, layout="ome-tiff", name="demo")
        for method in METHODS:
            out = Path(tmp) / method
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the workflow's summary
                code = wf.main(["--input_folder", str(Path(tmp) / "raw"), "--folder", str(out),
                                "--segment_method", method, "--progress", "false",
                                "--log_level", "WARNING"])
            wall = time.perf_counter() - t0
            seg = json.loads((out / "batchlib" / "Segment.status").read_text())
            rows.append({"method": method, "exit code": code, "workflow s": wall,
                         "Segment s": sum(e["duration_s"] for e in seg["files"].values())})
    df = pd.DataFrame(rows)
    df["workflow relative to threshold"] = df["workflow s"] / df["workflow s"].iloc[0]
    return df


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per family, fewer frames")
    parser.add_argument("--seeds", type=int, default=None, help="held-out seeds per family")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    n_seeds = args.seeds or (1 if args.quick else 3)
    table, crops = run_families(n_seeds, 512, 3 if args.quick else 4)
    print(f"## Held-out generator seeds ({n_seeds} per family, 512 x 512)\n")
    print(markdown(side_by_side(table)))
    worst = table.groupby("method")[["F1", "mean IoU", "count ±1"]].min()
    worst["mother len err"] = table.groupby("method")["mother len err"].max()
    print("\nworst family (min F1 / IoU / count, max length error):\n")
    print(markdown(worst.reset_index()))
    print("\n## CPU speed, 32 x 256 crops (threshold: numba, one core)\n")
    print(markdown(run_speed(crops, 256 if args.quick else 1024, 2 if args.quick else 3, args.threads)))
    print("\n## End to end: the trench workflow, serial, 2 positions x "
          f"{4 if args.quick else 12} frames of 512 x 512, phase + gfp\n")
    print(markdown(run_end_to_end(args.quick)))
    stacks = run_label_stacks(args.quick)
    if stacks is not None:
        print("\n## Real label stacks (napari-mm3 outputs) rendered as pseudo-fluorescence\n")
        print(markdown(stacks))
    molyso = run_molyso()
    if molyso is not None:
        print("\n## Real phase contrast (molyso example frame; counts read off the profile)\n")
        print(markdown(molyso))


if __name__ == "__main__":
    main()
