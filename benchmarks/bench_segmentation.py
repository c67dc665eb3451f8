"""Accuracy and speed of trench-crop segmentation, per scenario family, on held-out seeds.

Every family of :mod:`batchlib.trench.synthetic.families` is drawn for
``--n-seeds`` held-out seeds (``--seeds tuning`` for the tuning split). Both the
phase channel (``kind="phase"``) and the first fluorescence channel
(``kind="fluorescence"``) are segmented twice:

* **true geometry**: crops cut on the true boxes and drift, so the truth is
  ``trench_labels`` exactly; ``lumen_width`` is the true trench width;
* **detected geometry** (end to end): ``detect_trenches`` on the channel itself
  (first phase frame, or the maximum projection of the fluorescence movie),
  drift from ``DriftEstimator`` on the same channel, ``crop_trenches`` and
  ``lumen_width`` from the detection, as the workflow does. The truth of each
  crop is the raw-frame truth sampled on the same box; cells of true trenches
  the detection missed count as missed, cells in boxes matching no trench as
  false.

Per family, kind and geometry: F1 at IoU 0.5, mean IoU of the matched cells,
the fraction of trench-frames whose cell count is within +-1, the fraction of
mothers (label 1 of the truth) whose predicted mother (label 1 of the
prediction, closest to the closed end) has its whole-cell length within 5 %,
and the fraction of empty trench-frames (no true cell) left without any cell.
Then the median over families, the **worst family** and PASS/FAIL against the
targets of issue 8.

Also: speed per trench-frame, the real molyso phase frame and the real label
stacks of ``../shared/data`` rendered as pseudo-fluorescence.

    python benchmarks/bench_segmentation.py --quick   # 1 seed per family, 512^2, 4 frames
    python benchmarks/bench_segmentation.py           # 3 seeds per family, 768^2, 8 frames

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
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detection import channels_of, markdown, with_summary  # noqa: E402

from batchlib.trench.detection import (TrenchDetectionError,  # noqa: E402
                                       crop_trenches)
from batchlib.trench.geometry import crop_box  # noqa: E402
from batchlib.trench.segmentation.empty_trenches import references_by_set, segment_and_clean  # noqa: E402
from batchlib.trench.segmentation.boundaries import LOW_BOUNDARY  # noqa: E402
from batchlib.trench.segmentation.contrast import LOW_CONTRAST  # noqa: E402
from batchlib.trench.segmentation.doubts import block_figures, judge  # noqa: E402
from batchlib.trench.segmentation.fill import LOW_FILL  # noqa: E402
from batchlib.trench.segmentation.mirror import LOW_AGREEMENT, mirror_counts  # noqa: E402
from batchlib.trench.segmentation.mother_lengths import WIDE_SPREAD  # noqa: E402
from batchlib.trench.segmentation.single_file import SIDE_SHARE  # noqa: E402
from batchlib.trench.measure import measure_cells, measure_trench_frames  # noqa: E402
from batchlib.trench.detection.movie import detect_in_movie, movie_drift  # noqa: E402
from batchlib.trench.segmentation import resolve_method, segment_trenches  # noqa: E402
from batchlib.trench.segmentation.methods import accepted_keywords  # noqa: E402
from batchlib.trench.segmentation.evaluate import match_labels, rod_profile  # noqa: E402
from batchlib.trench.segmentation.scale import zoom_for  # noqa: E402
from batchlib.trench.segmentation.threshold import empty_background  # noqa: E402
from batchlib.trench.synthetic import simulate_position  # noqa: E402
from batchlib.trench.synthetic.families import (FAMILIES, add_seed_arguments,  # noqa: E402
                                                sample_config, seeds)
from batchlib.trench.synthetic.scoring import (count_labels, edge_lumen_boxes,  # noqa: E402
                                               labels_in_boxes, match_boxes)

SHARED = Path(os.environ.get("BATCHLIB_SHARED_DATA",
                             Path(__file__).resolve().parents[1].parent / "shared" / "data"))
TARGETS = [("F1", 0.95, "min"), ("mean IoU", 0.85, "min"), ("count +-1", 0.95, "min"),
           ("mother len 5%", 0.90, "min"), ("empty clean", 0.99, "min")]


def crops_of(pos, channels, boxes=None):
    """``(n_trench, T, H, W)`` crops of each channel on the true boxes (or ``boxes``, the
    same columns) and drift."""
    boxes = pos.trenches if boxes is None else boxes
    out = {}
    for ch in channels:
        movie = pos.movies[ch]
        out[ch] = np.stack([[crop_box(movie[t], r.x_center, r.y_closed, r.direction, int(r.height),
                                      int(r.width), r.angle_deg, pos.drift[t])
                             for t in range(movie.shape[0])] for r in boxes.itertuples()])
    return out


def mother_lengths(pos) -> np.ndarray:
    """True whole-cell length of the mother of every trench and frame ``(N, T)`` (NaN: none)."""
    n, T = pos.trench_labels.shape[:2]
    out = np.full((n, T), np.nan)
    m = pos.cells[pos.cells["mother"]]
    out[m["row"].to_numpy(), m["t"].to_numpy()] = m["length_px"].to_numpy(float)
    return out


def score(truth, pred, mother_len, true_counts=None, missed_counts=None, missed_mothers=0,
          poles=None):
    """Segmentation scores of crops ``(N, T, H, W)`` against their truth.

    Parameters
    ----------
    truth, pred : ndarray (N, T, H, W)
        True labels (any ids) and predicted labels (1..k from the closed end).
    mother_len : ndarray (N, T)
        True whole-cell length of each crop's mother, NaN where there is none.
    true_counts : ndarray (N, T), optional
        True number of cells of the trench behind each crop (default: counted
        in ``truth``). With detected boxes a cell may be cut away from the crop;
        it still counts as a cell to find.
    missed_counts : ndarray, optional
        True cell counts of the trench-frames no box covers (detection misses):
        their cells count as missed, their mothers as wrong.
    missed_mothers : int
        Mothers in those trench-frames.
    poles : ndarray (N, T, H, 2), optional
        The U-Net's pole codes (:func:`segment`'s ``poles_out``): the mothers'
        lengths measured to a fraction of a pixel, as the Measure job does.
    """
    missed = np.zeros(0, int) if missed_counts is None else np.asarray(missed_counts).ravel()
    if truth.size:
        m = match_labels(truth, pred)
        tp, n_pred, iou = m.tp, m.n_pred, m.mean_iou
        nt = count_labels(truth) if true_counts is None else np.asarray(true_counts)
        nt, npred = nt.ravel(), count_labels(pred).ravel()
        n_true = max(int(nt.sum()), m.n_true)
    else:
        tp = n_true = n_pred = 0
        iou, nt, npred = np.nan, np.zeros(0, int), np.zeros(0, int)
    n_true += int(missed.sum())
    within = np.concatenate([np.abs(npred - nt) <= 1, missed <= 1])
    ok_mother, n_mother = 0, missed_mothers
    if np.isfinite(mother_len).any():
        meas = measure_cells(pred, pole_codes=poles) if pred.size and pred.max() > 0 else None
        pred_len = np.full(mother_len.shape, np.nan)
        if meas is not None:
            first = meas[meas["label"] == 1]
            pred_len[first["n"].to_numpy(), first["t"].to_numpy()] = first["length_px"].to_numpy()
        has = np.isfinite(mother_len)
        err = np.abs(pred_len[has] - mother_len[has]) / mother_len[has]
        ok_mother = int(np.sum(err <= 0.05))
        n_mother += int(has.sum())
    empty = nt == 0
    return {"true cells": n_true, "trench-frames": len(within),
            "F1": 2 * tp / (n_true + n_pred) if n_true + n_pred else 1.0,
            "mean IoU": iou, "count +-1": within.mean() if within.size else np.nan,
            "mother len 5%": ok_mother / n_mother if n_mother else np.nan,
            "empty clean": np.mean(npred[empty] == 0) if empty.any() else np.nan}


def segment(crops, kind, lumen_width, empty=None, method="threshold", margin=None,
            pixel_size_um=None, sets=None, poles_out=None):
    """The Segment job's call: ``threshold`` with the lumen width and, in phase, the
    empty trenches as the reference; other methods with their defaults (the U-Net,
    ``closed_end_margin``: the boxes' margin, as the Segment job passes it);
    then, in phase, objects that look like the empty lumen dropped, and what
    recurs in most empty trenches dropped from them. The U-Net gets the zoom of
    the acquisition's ``pixel_size_um`` (:func:`~batchlib.trench.segmentation.scale.zoom_for`).

    Returns the labels and, as the job measures them, the doubts' extra figures:
    the :func:`mirror_counts` of the first frame (the benchmark's movies are one
    block of frames) and the trench-frames that lost an object beside a cell.
    ``poles_out`` (:func:`pole_buffer`): filled with the method's pole codes.
    ``sets``: every crop's trench set, whose own empty lumens are the look-alikes'
    reference (:func:`references_by_set`)."""
    kwargs = _segment_kwargs(crops, kind, lumen_width, empty, method, margin, pixel_size_um)
    if kind == "phase" and empty is not None and sets is not None:
        kwargs["references"] = references_by_set(crops, empty, sets,
                                                 background=kwargs.get("background"))

    def call(crops, **kwargs):
        return segment_and_clean(crops, method, kind, empty, **kwargs)[0]

    poles = {} if poles_out is None else {"poles_out": poles_out}
    labels, removed = segment_and_clean(crops, method, kind, empty, **kwargs, **poles)
    return labels, {"mirror": mirror_counts(crops, labels, call, **kwargs),
                    "side_crops": removed["side_crops"]}


def pole_buffer(crops, method):
    """An array for :func:`segment`'s ``poles_out`` where ``method`` fills one (the U-Net:
    where the free poles lie within their pixels, as the Segment job keeps them), else
    ``None``."""
    if "poles_out" not in accepted_keywords(resolve_method(method).fn):
        return None
    return np.zeros((*np.shape(crops)[:-1], 2), np.uint8)


def plausibility(crops, pred, kind, extra=None, detection_warned=False) -> dict:
    """Whether the status warns about one position: Segment's warnings
    (:mod:`batchlib.trench.segmentation.doubts`; ``extra``: :func:`segment`'s
    figures) and, on the detected geometry, TrenchDetection's (empty flags it could
    not decide, a layout it could not verify); ``mirror agreement``: the figure of
    :mod:`batchlib.trench.segmentation.mirror`."""
    figures, warned = judge([block_figures(crops, pred, kind, **(extra or {}))])
    agree = figures.get("mirror_agreement")
    return {"flagged": bool(warned) or detection_warned,
            "mirror agreement": np.nan if agree is None else agree}


def _segment_kwargs(crops, kind, lumen_width, empty=None, method="threshold", margin=None,
                    pixel_size_um=None):
    """The keywords the Segment job passes ``segment_trenches`` for these crops."""
    extra = {}
    background = None
    if kind == "phase" and empty is not None:
        background = empty_background(crops, empty)
    if method == "unet":
        zoom = zoom_for(pixel_size_um)
        if zoom != 1.0:
            extra["zoom"] = round(zoom, 4)
    if method != "threshold":
        if method == "unet" and kind == "phase":
            if background is not None:
                extra["background"] = background
            if margin is not None:
                extra["closed_end_margin"] = margin
        return extra
    if background is not None:
        extra["background"] = background
    if kind == "fluorescence" and empty is not None:
        extra["empty_crops"] = np.asarray(empty, bool)[:, None]
    return {**extra, "lumen_width": int(round(lumen_width))}


def end_to_end(pos, cfg, ch, kind, mother_len, method="threshold"):
    """Detect, estimate drift, crop and segment one channel; scores against the truth."""
    movie = pos.movies[ch]
    try:
        # as the TrenchDetection job does it
        lay, reference = detect_in_movie(movie, kind, box_width=cfg.box_width)
    except TrenchDetectionError:
        return {**score(np.zeros((0,)), np.zeros((0,)), np.full((0, 0), np.nan), None,
                        count_labels(pos.trench_labels), int(np.isfinite(mother_len).sum())),
                "flagged": True}  # the job fails with the reason
    drift = movie_drift(movie, reference, lay, kind)
    crops = np.stack([crop_trenches(movie[t], lay, drift_yx=drift[t])
                      for t in range(len(movie))], axis=1)
    truth = np.stack([labels_in_boxes(pos.frame_labels[t], lay.trenches, lay.angle_deg, drift[t])
                      for t in range(len(movie))], axis=1)
    # as the Segment job does: unclear empty flags are not used
    empty = lay.trenches["empty"].to_numpy(bool) if lay.quality.get("empty_flags_clear", 1.0) else None
    poles = pole_buffer(crops, method)
    pred, extra = segment(crops, kind, lay.quality.get("lumen_width_px", 14.0), empty, method,
                           lay.quality.get("closed_end_margin_px"), cfg.pixel_size_um,
                           lay.trenches["set"].to_numpy(), poles_out=poles)
    pairs, _ = match_boxes(lay.trenches, lay.angle_deg, pos.trenches, pos.metadata["angle_deg"],
                           movie.shape[1:], cfg.pitch_px)
    keep = ~on_edge_trenches(lay, pos, cfg, movie.shape[1:])
    if not keep.all():
        # a box on a trench the frame edge cuts: its cells are real but not in the truth
        index = np.cumsum(keep) - 1
        pairs = [(i, int(index[j])) for i, j in pairs]
        crops, truth, pred = crops[keep], truth[keep], pred[keep]
        poles = None if poles is None else poles[keep]
    det_len = np.full(crops.shape[:2], np.nan)
    counts = np.zeros(crops.shape[:2], int)  # boxes on no trench should hold no cell
    all_counts = count_labels(pos.trench_labels)
    matched = np.zeros(len(pos.trenches), bool)
    for i, j in pairs:
        det_len[j], counts[j] = mother_len[i], all_counts[i]
        matched[i] = True
    return {**score(truth, pred, det_len, counts, all_counts[~matched],
                    int(np.isfinite(mother_len[~matched]).sum()), poles),
            **plausibility(crops, pred, kind, extra, empty is None or bool(lay.warnings))}


def on_edge_trenches(lay, pos, cfg, shape) -> np.ndarray:
    """Which detected boxes lie on a trench the generator cut at the frame edge.

    With ``edge_trenches="cells"`` such trenches are rendered with their cells
    but are neither in the truth nor in the labels (``docs/synthetic_data.md``).
    A box detection puts on one holds real cells with no truth to score them
    against: they are left out of the scores, not counted as false cells
    (:func:`~batchlib.trench.synthetic.scoring.edge_lumen_boxes`). ``shape``: the
    frame's. With ``"empty"`` an edge lumen holds no cell, as scored.
    """
    if cfg.edge_trenches != "cells":
        return np.zeros(len(lay.trenches), bool)
    return edge_lumen_boxes(lay.trenches, lay.angle_deg, cfg, int(pos.metadata["position"]),
                            pos.metadata["angle_deg"], shape)


def moved_boxes(pos, channel, across, into_wall):
    """Crops of ``channel`` and their truth on the true boxes moved ``across`` px (x) and
    ``into_wall`` px towards the closed end: what a box off by that much gives the
    segmentation (the truth sampled as for detected boxes, ``labels_in_boxes``)."""
    boxes = pos.trenches.copy()
    boxes["x_center"] += across
    boxes["y_closed"] -= into_wall * boxes["direction"]
    truth = np.stack([labels_in_boxes(pos.frame_labels[t], boxes, pos.metadata["angle_deg"],
                                      pos.drift[t]) for t in range(len(pos.drift))], axis=1)
    return crops_of(pos, (channel,), boxes)[channel], truth


def run_families(families, seed_list, size, n_timepoints, verbose=False, method="threshold",
                 kinds=("phase", "fluorescence"), geometries=("true", "detected"),
                 move_true=(0.0, 0.0)):
    rows, nominal_crops = [], None
    for family in families:
        for seed in seed_list:
            cfg = sample_config(family, seed, height=size, width=size, n_timepoints=n_timepoints,
                                n_positions=1)
            pos = simulate_position(cfg, 0)
            ph, fl = channels_of(cfg)
            crops = crops_of(pos, (ph, fl))
            mlen = mother_lengths(pos)
            if family == "nominal" and nominal_crops is None:
                nominal_crops = {"phase": crops[ph], "gfp": crops[fl]}
            for kind, ch in (("phase", ph), ("fluorescence", fl)):
                if kind not in kinds:
                    continue
                results = {}
                if "true" in geometries:
                    true_crops, truth = crops[ch], pos.trench_labels
                    if any(move_true):
                        true_crops, truth = moved_boxes(pos, ch, *move_true)
                    poles = pole_buffer(true_crops, method)
                    pred, extra = segment(true_crops, kind, cfg.trench_width_px,
                                          pos.trenches["empty"].to_numpy(bool), method,
                                          pixel_size_um=cfg.pixel_size_um, poles_out=poles)
                    results["true"] = {**score(truth, pred, mlen, poles=poles),
                                       **plausibility(true_crops, pred, kind, extra)}
                if "detected" in geometries:
                    results["detected"] = end_to_end(pos, cfg, ch, kind, mlen, method)
                for geo, r in results.items():
                    rows.append({"kind": kind, "geometry": geo, "family": family, "seed": seed,
                                 **r})
                    if verbose:
                        print(f"# {family} {seed} {kind} {geo}: " + ", ".join(
                            f"{k} {v:.3f}" for k, v in r.items()), file=sys.stderr)
    return pd.DataFrame(rows), nominal_crops


def family_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per family: sums of counts and cell-weighted means over seeds."""
    out = []
    for family, g in rows.groupby("family", sort=False):
        w = g["true cells"].to_numpy(float)
        mean = lambda c: float(np.average(g[c], weights=np.maximum(w, 1e-9))) \
            if g[c].notna().all() else float(g[c].mean())  # noqa: E731
        out.append({"family": family, "seeds": len(g), "true cells": g["true cells"].sum(),
                    "trench-frames": g["trench-frames"].sum(),
                    **{c: mean(c) for c in ("F1", "mean IoU", "count +-1", "mother len 5%",
                                            "empty clean")}})
    return pd.DataFrame(out)


def warnings_table(rows: pd.DataFrame, wrong_below: float = 0.95) -> str:
    """Markdown: how many positions Segment would warn about, and whether any position it
    does not warn about is wrong (F1 below ``wrong_below``: a confident wrong answer)."""
    out = []
    for (kind, geo), g in rows.groupby(["kind", "geometry"], sort=False):
        flagged, quiet = g[g["flagged"]], g[~g["flagged"]]
        out.append({"kind": kind, "geometry": geo, "positions": len(g), "warned": len(flagged),
                    "F1 warned (min)": flagged["F1"].min() if len(flagged) else np.nan,
                    "F1 not warned (min)": quiet["F1"].min() if len(quiet) else np.nan,
                    f"not warned, F1 < {wrong_below}": int((quiet["F1"] < wrong_below).sum())})
    return (f"### Warnings in the status (mother lengths spanning more than {WIDE_SPREAD:g}x; "
            f"fluorescence contrast under {LOW_CONTRAST:g}x the noise, or dips between cells "
            f"under {LOW_BOUNDARY:g}x; cells filling under "
            f"{LOW_FILL:.0%} of their trenches; under {LOW_AGREEMENT:.0%} of the cells found "
            f"again in the crops mirrored; objects beside cells in {SIDE_SHARE:.0%} of the "
            "trench-frames or more; detected geometry: TrenchDetection's warnings "
            "too, unclear empty flags or a layout it could not verify)\n\n"
            + markdown(pd.DataFrame(out)) + "\n")


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


def add_model_options(parser) -> None:
    """``--weights`` and ``--cell-threshold``: measure other U-Net weights or another
    calibration with this benchmark (and ``bench_independent.py``)."""
    parser.add_argument("--weights", default=None,
                        help="U-Net weights to measure in place of the shipped ones (with the "
                             "shipped weights' per-kind cell thresholds): candidate weights "
                             "from `batchlib train-segmenter`")
    parser.add_argument("--cell-threshold", default="", metavar="KIND=P,...",
                        help="the U-Net's P(cell) threshold per kind in place of the shipped "
                             "weights' (e.g. phase=0.4), to measure a calibration")


def apply_model_options(parser, args) -> None:
    """Put :func:`add_model_options`' choices in place for this process."""
    from batchlib.trench.segmentation import torch_model

    if args.weights:
        torch_model.DEFAULT_WEIGHTS = Path(args.weights).resolve()
    for item in filter(None, args.cell_threshold.split(",")):
        kind, _, value = item.partition("=")
        if kind not in ("phase", "fluorescence") or not value:
            parser.error(f"--cell-threshold takes phase=P and/or fluorescence=P, not {item!r}")
        torch_model.CELL_THRESHOLD[kind] = float(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 seed per family, 512 x 512, 4 frames (about 1-2 min on one core)")
    add_seed_arguments(parser, 3)
    parser.add_argument("--size", type=int, default=None, help="frame side (default 768)")
    parser.add_argument("--timepoints", type=int, default=None, help="frames (default 8)")
    parser.add_argument("--no-extras", action="store_true",
                        help="families only: no speed and no real-data tables")
    parser.add_argument("--method", default="auto",
                        help="segmentation method: auto (the Segment job's default), threshold, unet")
    parser.add_argument("--kinds", default="phase,fluorescence",
                        help="comma-separated channel kinds to segment (default: both)")
    parser.add_argument("--geometries", default="true,detected",
                        help="comma-separated crop geometries: true, detected (default: both)")
    parser.add_argument("--seed-list", default=None,
                        help="comma-separated seeds to run instead of --seeds/--n-seeds/"
                             "--seed-start (e.g. the seeds of one corner of a family)")
    add_model_options(parser)
    parser.add_argument("--move-true-boxes", default="0,0", metavar="ACROSS,INTO_WALL",
                        help="move the true boxes by this many pixels across the trench (x) and "
                             "towards the closed end, to measure what a box off by that much "
                             "costs (the truth then sampled as on detected boxes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per run (stderr)")
    args = parser.parse_args(argv)
    apply_model_options(parser, args)
    if args.method == "auto":
        from batchlib.trench.segmentation.methods import default_method
        args.method = default_method()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    n_seeds = args.n_seeds or (1 if args.quick else 3)
    size = args.size or (512 if args.quick else 768)
    n_t = args.timepoints or (4 if args.quick else 8)
    if args.seed_list:
        seed_list = [int(x) for x in args.seed_list.split(",") if x.strip()]
    else:
        seed_list = seeds(args.seeds, n_seeds, args.seed_start)
    warnings.simplefilter("ignore", RuntimeWarning)

    t0 = time.perf_counter()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    geometries = tuple(g.strip() for g in args.geometries.split(",") if g.strip())
    if set(kinds) - {"phase", "fluorescence"} or set(geometries) - {"true", "detected"}:
        parser.error("--kinds takes phase and fluorescence, --geometries true and detected")
    try:
        move = tuple(float(v) for v in args.move_true_boxes.split(","))
    except ValueError:
        move = ()
    if len(move) != 2:
        parser.error(f"--move-true-boxes takes two numbers, ACROSS,INTO_WALL, not "
                     f"{args.move_true_boxes!r}")
    rows, crops = run_families(families, seed_list, size, n_t, args.verbose, args.method,
                               kinds, geometries, move)
    print(f"## Segmentation per family, method {args.method} ({len(families)} families x "
          f"{len(seed_list)} seeds "
          f"({seed_list[0]}..{seed_list[-1]}), {size} x {size}, {n_t} frames, "
          f"{time.perf_counter() - t0:.0f} s)\n")
    print("F1 at IoU 0.5; `count +-1`: trench-frames with the cell count within one; "
          "`mother len 5%`: mothers whose whole-cell length is within 5 %; `empty clean`: "
          "empty trench-frames without any cell. Cell-weighted over seeds.\n")
    for kind in kinds:
        for geo in geometries:
            sub = rows[(rows.kind == kind) & (rows.geometry == geo)]
            table = family_table(sub)
            table.insert(0, "geometry", geo)
            table.insert(0, "kind", kind)
            print(f"### {kind}, crops on the {geo} geometry\n")
            print(markdown(with_summary(table, TARGETS, keys=("kind", "geometry", "family"),
                                        also=())))
            print()
    print(warnings_table(rows))
    if args.no_extras:
        return
    if crops is not None:
        speed, shape = time_per_trench_frame(crops, repeats=1 if args.quick else 3,
                                             n_trench=20 if args.quick else 100,
                                             n_t=10 if args.quick else 30)
        print(f"## Speed (one core, stack {shape})\n")
        print(markdown(speed, whole=()))
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
