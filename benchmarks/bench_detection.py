"""Accuracy and speed of trench detection, per scenario family, on held-out seeds.

Accuracy: every family of :mod:`batchlib.trench.synthetic.families` (both
lumen polarities, halos, offset sets, geometry ranges, cut edge trenches,
curved cells, defocus, uneven illumination, low SNR, JPEG blocks, unnamed
channels, an alternative optics model, a mix) is drawn for ``--n-seeds`` seeds
of the held-out split (``--seeds tuning`` for the tuning split), each with
``--positions`` positions. Detection runs on the first phase frame
(``kind="phase"``) and on the maximum projection of the fluorescence movie
(``kind="fluorescence"``, only filled trenches visible). A detected box matches
a true one when its centre lies within a quarter pitch across and half a box
height along the trench (:func:`batchlib.trench.synthetic.scoring.match_boxes`).

Per family and kind: angle error (median and 95th percentile over positions),
trench recall and precision, the fraction of matched boxes whose closed end is
within +-2 px of the truth (the end detection found: the box's first row moved
back by the layout's ``closed_end_margin_px``, the PDMS a box keeps before the
closed end by design; "box start med" is the box's first row itself), the
fraction whose box starts inside the mother
cell (it cuts rows of the mother) and the least margin to that ("cut margin
min", px: how far the box could move inwards before it cut a mother), detection failures (``TrenchDetectionError``)
and *confident wrong answers*: positions where the detection reports
``quality["confidence"] >= 0.5`` although it is wrong (recall or precision
below 90 %, angle error above 0.3 deg or fewer than half of the closed ends
within 2 px). Then the median over families and the **worst family** per
column, with PASS/FAIL against the targets of issue 8.

Speed (one core): ``detect_trenches`` on a 2048 x 2048 frame, drift per frame
and cropping throughput. ``--compare DIR`` times ``detect_trenches`` on the
same frame in another checkout too, both in fresh processes taking turns
(this machine's speed drifts by 30 % within minutes, so only a paired ratio
says whether a change made detection faster).

Usage::

    python benchmarks/bench_detection.py --quick     # 1 seed x 1 position per family, 1024^2
    python benchmarks/bench_detection.py             # 4 seeds x 2 positions per family
    python benchmarks/bench_detection.py --families dark_lumen,offset_sets --n-seeds 10
    python benchmarks/bench_detection.py --speed-only --compare ../other-checkout

Prints markdown tables.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.trench.detection import (DriftEstimator, TrenchDetectionError,  # noqa: E402
                                       crop_trenches, detect_trenches, estimate_drift)
from batchlib.trench.detection.movie import detect_in_movie, movie_drift  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, simulate_position  # noqa: E402
from batchlib.trench.synthetic.families import (FAMILIES, add_seed_arguments,  # noqa: E402
                                                sample_config, seeds)
from batchlib.trench.synthetic.scoring import (closed_end_errors, edge_lumen_boxes,  # noqa: E402
                                               match_boxes, mother_top_rows)

CONFIDENT = 0.5  # quality["confidence"] at or above which a wrong answer counts as confident
# (column, target, "max" | "min"): the worst family must satisfy every one.
TARGETS = [("angle med", 0.05, "max"), ("angle p95", 0.1, "max"), ("recall", 0.99, "min"),
           ("precision", 0.99, "min"), ("end +-2px", 0.95, "min"), ("cuts mother", 0.0, "max"),
           ("failed", 0.0, "max"), ("confident wrong", 0.0, "max")]


def channels_of(cfg):
    """The phase and the first fluorescence channel of a configuration (names may be c0/c1)."""
    return (next(c for c in cfg.channels if cfg.is_phase(c)), cfg.fluorescence_channels[0])


def score_detection(lay, truth, angle, shape, pitch, mother_top):
    """Scores of one detected layout against the true trenches (rows of ``truth``)."""
    pairs, _ = match_boxes(lay.trenches, lay.angle_deg, truth, angle, shape, pitch)
    err = closed_end_errors(lay.trenches, truth, pairs, angle, shape)
    # the box starts closed_end_margin_px outside the closed end it found, by design
    found = err + float(lay.quality.get("closed_end_margin_px", 0.0))
    ti = np.array([p[0] for p in pairs], int)
    top = mother_top[ti] if len(ti) else np.zeros(0)
    has_mother = np.isfinite(top)
    r = dict(failed=0, angle_err=abs(lay.angle_deg - angle), tp=len(pairs), n_true=len(truth),
             n_det=len(lay.trenches), within2=int(np.sum(np.abs(found) <= 2.0)),
             n_ends=len(err), cuts=int(np.sum(err[has_mother] > top[has_mother] + 0.5)),
             n_mothers=int(has_mother.sum()), end_err=list(found), start_err=list(err),
             cut_margin=list(top[has_mother] + 0.5 - err[has_mother]),
             confidence=float(lay.quality.get("confidence", np.nan)))
    wrong = (r["tp"] < 0.9 * max(r["n_true"], 1) or r["tp"] < 0.9 * max(r["n_det"], 1)
             or r["angle_err"] > 0.3 or r["within2"] < 0.5 * max(r["n_ends"], 1))
    r["wrong"] = int(wrong)
    r["confident_wrong"] = int(wrong and r["confidence"] >= CONFIDENT)
    return r


def evaluate(family, seed, position, cfg):
    """Rows (one per kind) of one simulated position."""
    pos = simulate_position(cfg, position)
    shape = (cfg.height, cfg.width)
    angle = pos.metadata["angle_deg"]
    truth = pos.trenches.reset_index(drop=True)
    top = mother_top_rows(pos.trench_labels, 0)
    ph, fl = channels_of(cfg)
    filled = ~truth["empty"].to_numpy()
    rows = []
    for kind, movie, sel in (("phase", pos.movies[ph], np.ones(len(truth), bool)),
                             ("fluorescence", pos.movies[fl], filled)):
        base = dict(family=family, seed=seed, position=position, kind=kind, angle=angle)
        t0 = time.perf_counter()
        try:
            # as the TrenchDetection job does it (fluorescence: the maximum projection,
            # a single set's direction checked on the frames)
            lay, reference = detect_in_movie(movie, kind, box_width=cfg.box_width)
            elapsed = time.perf_counter() - t0
            if kind == "phase":
                # the drift the job records for the frames (movie_drift), against the truth
                d = movie_drift(movie, reference, lay, kind)[1:]
                drift_err = list(np.linalg.norm(d - pos.drift[1:], axis=1))
            if kind == "fluorescence":
                # Only filled trenches are visible: score the boxes not flagged empty.
                lay.trenches = lay.trenches[~lay.trenches["empty"]].reset_index(drop=True)
            # boxes on trenches the generator leaves out of its truth (their box leaves
            # a frame, their lumen does not): neither right nor wrong
            edge = edge_lumen_boxes(lay.trenches, lay.angle_deg, cfg, position, angle, shape)
            lay.trenches = lay.trenches[~edge].reset_index(drop=True)
            r = score_detection(lay, truth[sel].reset_index(drop=True), angle, shape,
                                cfg.pitch_px, top[sel])
            r["edge_boxes"] = int(edge.sum())
        except TrenchDetectionError as exc:
            elapsed = time.perf_counter() - t0
            r = dict(failed=1, angle_err=np.nan, tp=0, n_true=int(sel.sum()), n_det=0, within2=0,
                     n_ends=0, cuts=0, n_mothers=0, end_err=[], start_err=[], cut_margin=[],
                     confidence=np.nan, wrong=0,
                     confident_wrong=0, error=str(exc))
        r["seconds"] = elapsed
        if kind == "phase" and not r.get("failed"):
            r["drift_err"] = drift_err
        rows.append({**base, **r})
    return rows


def family_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per family and kind, then the median over families and the worst family."""
    out = []
    for (kind, family), g in rows.groupby(["kind", "family"], sort=False):
        ang = g["angle_err"].dropna().to_numpy()
        ends = np.concatenate([np.asarray(e, float) for e in g["end_err"]] or [np.zeros(0)])
        starts = np.concatenate([np.asarray(e, float) for e in g["start_err"]] or [np.zeros(0)])
        margins = np.concatenate([np.asarray(e, float) for e in g["cut_margin"]] or [np.zeros(0)])
        drift = np.concatenate([np.asarray(e, float) for e in g.get("drift_err", pd.Series(
            [[]] * len(g))).dropna()] or [np.zeros(0)])
        out.append({
            "kind": kind, "family": family, "positions": len(g),
            "angle med": np.median(ang) if ang.size else np.nan,
            "angle p95": np.percentile(ang, 95) if ang.size else np.nan,
            "recall": g.tp.sum() / max(g.n_true.sum(), 1),
            "precision": g.tp.sum() / max(g.n_det.sum(), 1) if g.n_det.sum() else 0.0,
            "end +-2px": g.within2.sum() / max(g.n_ends.sum(), 1),
            "end err med": np.median(ends) if ends.size else np.nan,
            "box start med": np.median(starts) if starts.size else np.nan,
            "cuts mother": g.cuts.sum() / max(g.n_mothers.sum(), 1),
            "cut margin min": margins.min() if margins.size else np.nan,
            "failed": g.failed.sum() / len(g),
            "confident wrong": g.confident_wrong.sum() / len(g),
            "confidence": g.confidence.median(),
            "drift med": np.median(drift) if drift.size else np.nan,
            "ms": 1e3 * g.seconds.median(),
        })
    return pd.DataFrame(out)


def with_summary(table: pd.DataFrame, targets=TARGETS, keys=("kind", "family"),
                 also=(("end err med", "absmax"), ("box start med", "absmax"), ("cut margin min", "min"),
                       ("drift med", "max"),
                       ("ms", "max"))):
    """Append the median over families, the worst family per column and PASS/FAIL.

    ``targets``: ``(column, target, "max" | "min")``; the worst family is the
    largest value of a "max" column and the smallest of a "min" one. ``also``:
    other columns shown in the worst row (``"max"``, ``"min"`` or ``"absmax"``).
    The first ``keys`` column is copied into the summary rows, the last names them.
    """
    rule = {c: k for c, _, k in targets} | dict(also)
    num = [c for c in table.columns if c not in keys]
    worst = {}
    for c in num:
        col = pd.to_numeric(table[c], errors="coerce")
        if c not in rule or not col.notna().any():
            worst[c] = np.nan
        elif rule[c] == "min":
            worst[c] = col.min()
        elif rule[c] == "max":
            worst[c] = col.max()
        else:
            worst[c] = col[col.abs().idxmax()]
    verdict = {}
    for name, target, kind in targets:
        v = worst[name]
        ok = np.isfinite(v) and (v <= target if kind == "max" else v >= target)
        verdict[name] = "PASS" if ok else "FAIL"
    head = {k: table[k].iloc[0] for k in keys[:-1]}
    label = keys[-1]
    med = table[num].apply(pd.to_numeric, errors="coerce").median()
    lines = [table,
             pd.DataFrame([{**head, label: "**median of families**", **med}]),
             pd.DataFrame([{**head, label: "**worst family**", **worst}]),
             pd.DataFrame([{**head, label: "target (worst family)",
                            **{n: f"{'<=' if k == 'max' else '>='} {t:g}" for n, t, k in targets}}]),
             pd.DataFrame([{**head, label: "**verdict**", **verdict}])]
    return pd.concat(lines, ignore_index=True)


def markdown(df: pd.DataFrame, digits: int = 3, whole=("positions", "ms", "trench-frames",
                                                       "true cells", "seeds")) -> str:
    """A pipe table (pandas' ``to_markdown`` needs ``tabulate``, not a dependency).

    Columns named in ``whole`` print as whole numbers, the other floats with
    ``digits`` decimals; NaN prints empty.
    """
    def fmt(v, col):
        if isinstance(v, (float, np.floating)):
            if np.isnan(v):
                return ""
            return f"{v:.0f}" if col in whole else f"{v:.{digits}f}"
        return str(v)
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v, c) for v, c in zip(row, cols)) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def accuracy(families, seed_list, n_positions, size, n_timepoints, verbose):
    rows = []
    t0 = time.perf_counter()
    for family in families:
        for seed in seed_list:
            cfg = sample_config(family, seed, height=size, width=size, n_timepoints=n_timepoints,
                                n_positions=n_positions)
            for p in range(n_positions):
                for r in evaluate(family, seed, p, cfg):
                    rows.append(r)
                    if verbose:
                        print(f"# {family} seed {seed} pos {p} {r['kind']}: angle {r['angle']:+.2f} "
                              f"err {r['angle_err']:.3f} {r['tp']}/{r['n_true']} (det {r['n_det']}) "
                              f"ends within 2 px {r['within2']}/{r['n_ends']} cuts {r['cuts']} "
                              f"conf {r['confidence']:.2f} {r.get('error', '')}"
                              + (f" edge boxes {r['edge_boxes']}" if r.get("edge_boxes") else ""),
                              file=sys.stderr)
    elapsed = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    print(f"\n### Detection accuracy per family ({len(families)} families x {len(seed_list)} seeds "
          f"({seed_list[0]}..{seed_list[-1]}) x {n_positions} position(s), {size} x {size}, "
          f"{elapsed:.0f} s)\n")
    print("Angles in degrees, ends in px (+ = inside the lumen), fractions in [0, 1], "
          "`ms` = median detect_trenches time per frame.\n")
    for kind in ("phase", "fluorescence"):
        table = family_table(df[df.kind == kind])
        print(f"#### {kind}\n")
        print(markdown(with_summary(table)))
        print()
    return df


def _speed_position(size):
    cfg = SyntheticConfig(height=size, width=size, n_timepoints=3, seed=7, n_sets=2,
                          angle_deg=1.3, pitch_px=44.0, trench_width_px=14.0)
    return simulate_position(cfg, 0)


#: run in a fresh process with the checkout first on the path: median ms of the calls
_TIME_DETECTION = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from batchlib.trench.detection import detect_trenches
frame = np.load(sys.argv[2])
detect_trenches(frame)
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    detect_trenches(frame)
    times.append(time.perf_counter() - t0)
print(1e3 * float(np.median(times)))
"""


def paired_detection_speed(checkouts, size=2048, rounds=4, calls=5):
    """Median ``detect_trenches`` time (ms) of the phase speed frame per checkout.

    Every round runs each checkout once in a fresh process (one thread), in
    turn, so that both see the same machine; returns ``{name: [ms per round]}``.
    """
    frame = _speed_position(size).movies["phase"][0]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                   "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    out = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frame.npy")
        np.save(path, frame)
        for _ in range(rounds):
            for name, root in checkouts.items():
                proc = subprocess.run([sys.executable, "-c", _TIME_DETECTION, str(root), path,
                                       str(calls)], env=env, capture_output=True, text=True,
                                      cwd=tmp)
                if proc.returncode:
                    raise RuntimeError(f"timing {root} failed:\n{proc.stderr[-2000:]}")
                out[name].append(float(proc.stdout.split()[-1]))
    return out


def print_paired_speed(checkouts, rounds=4):
    times = paired_detection_speed(checkouts, rounds=rounds)
    this = float(np.median(times["this"]))
    print(f"\n### detect_trenches, 2048 x 2048 phase, one thread: {rounds} paired rounds "
          "(median of 5 calls each)\n")
    print("| checkout | median ms | rounds (ms) | this / it |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"| {name} ({checkouts[name]}) | {med:.0f} | {', '.join(f'{t:.0f}' for t in ts)} "
              f"| {this / med:.2f} |")


def speed(size=2048, repeats=5):
    pos = _speed_position(size)
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
    ap.add_argument("--quick", action="store_true",
                    help="1 seed x 1 position per family (about 1 min on one core)")
    add_seed_arguments(ap, 4)
    ap.add_argument("--positions", type=int, default=None, help="positions per seed (default 2)")
    ap.add_argument("--size", type=int, default=1024, help="frame side")
    ap.add_argument("--timepoints", type=int, default=3)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table(s)")
    ap.add_argument("--compare", default=None,
                    help="another checkout: detect_trenches timed in both, taking turns")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per position (stderr)")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    n_seeds = args.n_seeds or (1 if args.quick else 4)
    n_positions = args.positions or (1 if args.quick else 2)
    warnings.simplefilter("ignore", RuntimeWarning)
    if not args.speed_only:
        accuracy(families, seeds(args.seeds, n_seeds, args.seed_start), n_positions, args.size,
                 args.timepoints, args.verbose)
    if not args.no_speed:
        speed(repeats=3 if args.quick else 5)
        if args.compare:
            print_paired_speed({"this": Path(__file__).resolve().parents[1],
                                "compared": Path(args.compare).resolve()})


if __name__ == "__main__":
    main()
