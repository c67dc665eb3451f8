"""Accuracy and speed of trench detection, drift estimation and cropping.

Accuracy: synthetic positions (``batchlib.trench.synthetic``) with drawn angle
(-3..3 deg), pitch, trench width, one or two sets, 30 % empty trenches, noise
level, debris and drift. Detection runs on the first phase frame and on the
maximum projection of the fluorescence movie (only filled trenches visible).
A detected box matches a true one when its centre lies within a quarter pitch
across and half a box height along the trench.

Speed (one core): ``detect_trenches`` on a 2048 x 2048 frame, drift per frame
(with the reference transformed once, and as a single call), and cropping
throughput (frames per second) for the layout found on that frame.

Usage::

    python benchmarks/bench_detection.py            # 60 positions of 1024 x 1024
    python benchmarks/bench_detection.py --quick    # 16 positions of 768 x 768
    python benchmarks/bench_detection.py -n 100 --size 2048

Prints markdown tables.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.trench.detection import (DriftEstimator, TrenchDetectionError,  # noqa: E402
                                       crop_trenches, detect_trenches, estimate_drift)
from batchlib.trench.geometry import raw_to_rotated, rotated_to_raw  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, simulate_position  # noqa: E402


def draw_config(i, size, n_timepoints):
    rng = np.random.default_rng(1000 + i)
    pitch = float(rng.uniform(34, 64))
    trench_width = float(rng.uniform(11, 18))
    return SyntheticConfig(
        height=size, width=size, n_timepoints=n_timepoints, channels=("phase", "gfp"), seed=i,
        n_sets=int(rng.integers(1, 3)), single_set_direction=0,
        angle_deg=float(rng.uniform(-3, 3)), pitch_px=pitch, trench_width_px=trench_width,
        cell_width_px=trench_width - 3.0, box_width=32, empty_fraction=0.3,
        phase_background=float(rng.uniform(300, 3000)), read_noise=float(rng.uniform(2, 10)),
        fluor_amplitude=float(rng.uniform(120, 800)),
        debris_per_mpx=float(rng.uniform(0, 200)), drift_step_px=float(rng.uniform(0.2, 1.0)),
        max_drift_px=5.0)


def _centres(df, angle, shape):
    yc = df["y_closed"].to_numpy(float) + df["direction"].to_numpy(float) * (
        df["height"].to_numpy(float) - 1) / 2
    return rotated_to_raw(np.stack([yc, df["x_center"].to_numpy(float)], -1), angle, shape)


def match_boxes(det, det_angle, truth, true_angle, shape, pitch):
    """Greedy matching; returns (pairs, IoUs) with IoU of the boxes in the true rotated frame."""
    if len(det) == 0 or len(truth) == 0:
        return [], []
    tc = raw_to_rotated(_centres(truth, true_angle, shape), true_angle, shape)
    dc = raw_to_rotated(_centres(det, det_angle, shape), true_angle, shape)
    th, tw = truth["height"].to_numpy(float), truth["width"].to_numpy(float)
    dh, dw = det["height"].to_numpy(float), det["width"].to_numpy(float)
    pairs, ious, used = [], [], set()
    for i in range(len(tc)):
        dx = np.abs(dc[:, 1] - tc[i, 1])
        ok = (dx < pitch / 4) & (np.abs(dc[:, 0] - tc[i, 0]) < th[i] / 2)
        cand = [j for j in np.flatnonzero(ok) if j not in used]
        if not cand:
            continue
        j = min(cand, key=lambda c: dx[c])
        used.add(j)
        pairs.append((i, j))
        iy = max(0.0, min(tc[i, 0] + th[i] / 2, dc[j, 0] + dh[j] / 2)
                 - max(tc[i, 0] - th[i] / 2, dc[j, 0] - dh[j] / 2))
        ix = max(0.0, min(tc[i, 1] + tw[i] / 2, dc[j, 1] + dw[j] / 2)
                 - max(tc[i, 1] - tw[i] / 2, dc[j, 1] - dw[j] / 2))
        inter = iy * ix
        ious.append(inter / (th[i] * tw[i] + dh[j] * dw[j] - inter))
    return pairs, ious


def _directions_ok(det, truth, pairs):
    if not pairs:
        return np.nan
    ti, dj = zip(*pairs)
    return float(np.mean(truth["direction"].to_numpy()[list(ti)]
                         == det["direction"].to_numpy()[list(dj)]))


def evaluate(i, size, n_timepoints):
    cfg = draw_config(i, size, n_timepoints)
    pos = simulate_position(cfg, 0)
    shape = (cfg.height, cfg.width)
    angle = pos.metadata["angle_deg"]
    truth = pos.trenches.reset_index(drop=True)
    row = {"position": i, "n_sets": cfg.n_sets, "pitch": cfg.pitch_px, "angle": angle}
    phase = pos.movies["phase"]

    try:
        lay = detect_trenches(phase[0], kind="phase", box_width=cfg.box_width)
        pairs, ious = match_boxes(lay.trenches, lay.angle_deg, truth, angle, shape, cfg.pitch_px)
        ti = [p[0] for p in pairs]
        dj = [p[1] for p in pairs]
        row.update(
            ph_fail=0, ph_angle_err=abs(lay.angle_deg - angle), ph_tp=len(pairs),
            ph_true=len(truth), ph_det=len(lay.trenches), ph_iou=list(ious),
            ph_dir=_directions_ok(lay.trenches, truth, pairs),
            ph_empty_acc=float(np.mean(truth["empty"].to_numpy()[ti]
                                       == lay.trenches["empty"].to_numpy()[dj])) if pairs else np.nan,
            ph_pitch_err=abs(lay.pitch - cfg.pitch_px),
            # positive: the detected closed end lies inside the lumen
            ph_yc_err=list((lay.trenches["y_closed"].to_numpy()[dj] - truth["y_closed"].to_numpy()[ti])
                           * truth["direction"].to_numpy()[ti]),
            ph_h_err=list(lay.trenches["height"].to_numpy()[dj] - truth["height"].to_numpy()[ti]))
    except TrenchDetectionError as e:
        row.update(ph_fail=1, ph_true=len(truth), ph_tp=0, ph_det=0, ph_iou=[], ph_error=str(e))

    filled = truth[~truth["empty"]].reset_index(drop=True)
    try:
        lay_f = detect_trenches(pos.movies["gfp"].max(axis=0), kind="fluorescence",
                                box_width=cfg.box_width)
        det_f = lay_f.trenches[~lay_f.trenches["empty"]].reset_index(drop=True)
        pairs, ious = match_boxes(det_f, lay_f.angle_deg, filled, angle, shape, cfg.pitch_px)
        row.update(fl_fail=0, fl_angle_err=abs(lay_f.angle_deg - angle), fl_tp=len(pairs),
                   fl_true=len(filled), fl_det=len(det_f), fl_iou=list(ious),
                   fl_dir=_directions_ok(lay_f.trenches[~lay_f.trenches["empty"]]
                                         .reset_index(drop=True), filled, pairs))
    except TrenchDetectionError as e:
        row.update(fl_fail=1, fl_true=len(filled), fl_tp=0, fl_det=0, fl_iou=[], fl_error=str(e))

    est = DriftEstimator(phase[0])
    drifts = np.array([est(f) for f in phase[1:]])
    row["drift_err"] = list(np.linalg.norm(drifts - pos.drift[1:], axis=1))
    return row


def accuracy(n, size, n_timepoints, verbose):
    rows = []
    t0 = time.perf_counter()
    for i in range(n):
        rows.append(evaluate(i, size, n_timepoints))
        r = rows[-1]
        if verbose:
            print(f"# {i}: sets {r['n_sets']} pitch {r['pitch']:.1f} angle {r['angle']:+.2f} "
                  f"phase {r['ph_tp']}/{r['ph_true']} (det {r['ph_det']}) "
                  f"fluo {r['fl_tp']}/{r['fl_true']} (det {r['fl_det']}) "
                  f"drift max {max(r['drift_err']):.2f} px "
                  f"{r.get('ph_error', '')}{r.get('fl_error', '')}", file=sys.stderr)
    elapsed = time.perf_counter() - t0

    def agg(key):
        return np.array([r[key] for r in rows if key in r and np.isfinite(r[key])], float)

    def cat(key):
        vals = [v for r in rows for v in r.get(key, [])]
        return np.array(vals, float)

    ph_tp, ph_true, ph_det = (sum(r[k] for r in rows) for k in ("ph_tp", "ph_true", "ph_det"))
    fl_tp, fl_true, fl_det = (sum(r[k] for r in rows) for k in ("fl_tp", "fl_true", "fl_det"))
    ang, ang_f = agg("ph_angle_err"), agg("fl_angle_err")
    drift = cat("drift_err")
    iou, iou_f = cat("ph_iou"), cat("fl_iou")
    print(f"\n### Detection accuracy ({n} synthetic positions, {size} x {size}, "
          f"{elapsed:.0f} s)\n")
    print("| metric | phase | fluorescence (max projection) | target |")
    print("|---|---|---|---|")
    print(f"| median abs angle error (deg) | {np.median(ang):.4f} | {np.median(ang_f):.4f} | <= 0.05 |")
    print(f"| 90th pct / max abs angle error (deg) | {np.percentile(ang, 90):.4f} / {ang.max():.4f} | "
          f"{np.percentile(ang_f, 90):.4f} / {ang_f.max():.4f} | |")
    print(f"| trench recall | {ph_tp / max(ph_true, 1):.2%} ({ph_tp}/{ph_true}) | "
          f"{fl_tp / max(fl_true, 1):.2%} ({fl_tp}/{fl_true} filled) | >= 99 % |")
    print(f"| trench precision | {ph_tp / max(ph_det, 1):.2%} ({ph_tp}/{ph_det}) | "
          f"{fl_tp / max(fl_det, 1):.2%} ({fl_tp}/{fl_det} non-empty) | >= 99 % |")
    print(f"| median box IoU | {np.median(iou):.3f} | {np.median(iou_f):.3f} | >= 0.85 |")
    print(f"| boxes with IoU >= 0.85 | {np.mean(iou >= 0.85):.1%} | {np.mean(iou_f >= 0.85):.1%} | |")
    print(f"| set direction correct (matched boxes) | {np.mean(agg('ph_dir')):.1%} | "
          f"{np.mean(agg('fl_dir')):.1%} | |")
    print(f"| empty flag correct (matched boxes) | {np.mean(agg('ph_empty_acc')):.1%} | | |")
    print(f"| median abs pitch error (px) | {np.median(agg('ph_pitch_err')):.3f} | | |")
    yc, hh = cat("ph_yc_err"), cat("ph_h_err")
    print(f"| closed end: mean / median abs error (px, + = inside) | {yc.mean():+.2f} / "
          f"{np.median(np.abs(yc)):.2f} | | |")
    print(f"| box height: mean / median abs error (px) | {hh.mean():+.2f} / "
          f"{np.median(np.abs(hh)):.2f} | | |")
    print(f"| detection failures (TrenchDetectionError) | {sum(r['ph_fail'] for r in rows)} | "
          f"{sum(r['fl_fail'] for r in rows)} | 0 |")
    print(f"| drift error median / 95th pct / max (px) | {np.median(drift):.3f} / "
          f"{np.percentile(drift, 95):.3f} / {drift.max():.3f} | | <= 0.3 (median) |")
    return rows


def speed(size=2048, repeats=5):
    cfg = SyntheticConfig(height=size, width=size, n_timepoints=3, seed=7, n_sets=2,
                          angle_deg=1.3, pitch_px=44.0, trench_width_px=14.0)
    pos = simulate_position(cfg, 0)
    frame = pos.movies["phase"][0]
    detect_trenches(frame)  # compile the numba kernels once
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lay = detect_trenches(frame)
        times.append(time.perf_counter() - t0)
    fl = pos.movies["gfp"].max(axis=0)
    times_f = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detect_trenches(fl, kind="fluorescence")
        times_f.append(time.perf_counter() - t0)
    frames = [pos.movies["phase"][t] for t in range(pos.movies["phase"].shape[0])]
    est = DriftEstimator(frames[0])
    est(frames[1])
    dt = []
    for k in range(4 * repeats):
        t0 = time.perf_counter()
        est(frames[1 + k % (len(frames) - 1)])
        dt.append(time.perf_counter() - t0)
    single = []
    for k in range(repeats):
        ref = frames[0].copy()  # a new reference every call: no reuse possible
        t0 = time.perf_counter()
        estimate_drift(ref, frames[1])
        single.append(time.perf_counter() - t0)
    crop_trenches(frames[1], lay, drift_yx=(0.4, -0.3))
    ct = []
    for k in range(repeats):
        t0 = time.perf_counter()
        crop_trenches(frames[1], lay, drift_yx=(0.4, -0.3))
        ct.append(time.perf_counter() - t0)
    lay0 = detect_trenches(frame)
    print(f"\n### Speed (one core, {size} x {size} uint16, {len(lay0.trenches)} trenches of "
          f"{lay0.trenches['height'].iloc[0]} x {lay0.trenches['width'].iloc[0]} px)\n")
    print("| operation | median time | target |")
    print("|---|---|---|")
    print(f"| detect_trenches, phase | {np.median(times) * 1e3:.0f} ms | <= 200 ms |")
    print(f"| detect_trenches, fluorescence max projection | {np.median(times_f) * 1e3:.0f} ms | |")
    print(f"| drift per frame (DriftEstimator / estimate_drift_stack) | {np.median(dt) * 1e3:.1f} ms "
          "| <= 20 ms |")
    print(f"| estimate_drift, new reference each call | {np.median(single) * 1e3:.1f} ms | |")
    print(f"| crop_trenches per frame (bilinear, all trenches) | {np.median(ct) * 1e3:.1f} ms "
          f"({1 / np.median(ct):.0f} frames/s) | |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=None, help="number of positions (default 60)")
    ap.add_argument("--size", type=int, default=None, help="frame side (default 1024)")
    ap.add_argument("--timepoints", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="16 positions of 768 x 768")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per position (stderr)")
    args = ap.parse_args(argv)
    n = args.n or (16 if args.quick else 60)
    size = args.size or (768 if args.quick else 1024)
    warnings.simplefilter("ignore", RuntimeWarning)
    accuracy(n, size, args.timepoints, args.verbose)
    if not args.no_speed:
        speed(repeats=3 if args.quick else 5)


if __name__ == "__main__":
    main()
