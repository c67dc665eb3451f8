"""Benchmark of the Track job's algorithm: accuracy against the generator's lineages, and speed.

(1) Accuracy. Cell tables are made from the generator's exact cell states
    (:func:`batchlib.trench.tracking.evaluate.truth_cells`, cells cut at the
    open end of the crop), on seeds and scenario families never used while
    tuning, then degraded with segmentation errors: length noise on each cell
    end, missed cells, cells cut in two. Reported per scenario: link error
    (wrong + missing links / true links), F1 of the mother cells' divisions
    within +-1 frame, median relative errors of ``tau``, ``elong_rate`` and
    ``sb`` over complete mother cycles, and the slope of ``delta`` against
    ``sb`` over all complete cycles next to the same slope from the truth.
(3) End to end: the whole workflow on a generated acquisition, segmented
    cells matched to true cells by IoU (segmentation errors included).
(2) Speed. 100 trenches x 500 frames on one core (CPU time): the tracker (linking),
    the lineage and cycle tables, a floor (visiting every trench-frame of the
    table without linking) and a peer (per-frame nearest-centroid assignment
    with scipy's Hungarian solver, no divisions). Peak memory (tracemalloc).

Usage::

    python benchmarks/bench_tracking.py            # full (a few minutes)
    python benchmarks/bench_tracking.py --quick    # fewer scenarios, 100 x 100 speed run

Prints markdown tables.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchlib.trench.synthetic import SyntheticConfig  # noqa: E402
from batchlib.trench.synthetic.chip import make_layout  # noqa: E402
from batchlib.trench.synthetic.lineage import simulate_lineage  # noqa: E402
from batchlib.trench.tracking import cycle_table, lineage_columns, track_cells  # noqa: E402
from batchlib.trench.tracking.evaluate import (cycle_errors, inject_errors, link_error,  # noqa: E402
                                               mother_division_f1, truth_cells)

# Seeds >= 1000 and these families were never used while tuning (tuning: default family,
# seeds < 100 and 100).
FAMILIES = {
    "default": {},
    "fast growth (5 frames/doubling)": {"doubling_time_s": 900.0},
    "slow growth (20 frames/doubling)": {"doubling_time_s": 3600.0},
    "noisy adder (cv 0.2)": {"added_length_cv": 0.2, "growth_rate_cv": 0.2},
    "asymmetric division (sd 0.06)": {"division_asymmetry_sd": 0.06},
}
ERRORS = {
    "none": (0.0, 0.0, 0.0),
    "length noise 0.5 px/end": (0.5, 0.0, 0.0),
    "length noise 1 px/end": (1.0, 0.0, 0.0),
    "1 % missed": (0.0, 0.01, 0.0),
    "1 % split": (0.0, 0.0, 0.01),
    "5 % missed": (0.0, 0.05, 0.0),
    "5 % split": (0.0, 0.0, 0.05),
    "5 % missed + 5 % split + 0.5 px": (0.5, 0.05, 0.05),
}


def scenario(family, seed, n_timepoints, positions=2):
    """``[(cfg, height, sim), ...]`` for the positions of one seed."""
    cfg = SyntheticConfig(n_timepoints=n_timepoints, seed=seed, **FAMILIES[family])
    out = []
    for p in range(positions):
        layout = make_layout(cfg, p)
        out.append((cfg, layout.trench_length, simulate_lineage(cfg, layout, p)))
    return out


def score(sims, noise, miss, split, seed):
    """Scores of one error level pooled over the positions of ``sims``."""
    rng = np.random.default_rng(seed)
    tot = {"true_links": 0, "wrong": 0, "missing": 0}
    div = {"true": 0, "found": 0, "matched": 0}
    cyc = []
    for cfg, height, sim in sims:
        cells = inject_errors(truth_cells(sim.states, height, noise, rng), miss, split, rng)
        n_t = cfg.n_timepoints
        tracks, _ = track_cells(cells, height, n_t)
        times = np.arange(n_t) * cfg.frame_interval_s
        tracks = lineage_columns(tracks, cells, height, times)
        cycles = cycle_table(tracks, cells, height, times, cfg.pixel_size_um, n_t)
        le = link_error(tracks, cells, sim.lineage)
        for k in tot:
            tot[k] += le[k]
        f = mother_division_f1(cycles, cells, sim.lineage)
        for k in div:
            div[k] += f[k]
        cyc.append(_matched_cycles(cycles, tracks, cells, sim.lineage, cfg.frame_interval_s))
    cyc = pd.concat(cyc, ignore_index=True)
    prec = div["matched"] / max(div["found"], 1)
    rec = div["matched"] / max(div["true"], 1)
    mothers = cyc[cyc["is_mother"]]

    def rel(col):
        return float(np.nanmedian(np.abs(mothers[col] - mothers[col + "_true"]) / mothers[col + "_true"]))

    def slope(x, y):
        ok = np.isfinite(x) & np.isfinite(y)
        return float(np.polyfit(x[ok], y[ok], 1)[0])

    errors = tot["wrong"] + tot["missing"]
    return {"links": tot["true_links"], "link_err": errors / tot["true_links"],
            "div_f1": 2 * prec * rec / max(prec + rec, 1e-12), "mother_cycles": len(mothers),
            "tau": rel("tau"), "elong_rate": rel("elong_rate"), "sb": rel("sb_px"),
            "slope": slope(cyc["sb_px"], cyc["delta_px"]),
            "slope_true": slope(cyc["sb_px_true"], cyc["delta_px_true"])}


def _matched_cycles(cycles, tracks, cells, lineage, dt):
    """Complete cycles with a delta, each next to its true cell's values."""
    d = tracks.merge(cells[["n", "t", "label", "true_id"]], on=["n", "t", "label"])
    major = d.groupby("cell_id")["true_id"].agg(lambda s: s.value_counts().index[0])
    c = cycles[cycles["complete"] & cycles["delta_px"].notna()].copy()
    c["true_id"] = major.reindex(c["cell_id"]).to_numpy()
    lin = lineage.set_index("cell_id")
    c = c[c["true_id"].isin(lin.index)]
    tr = lin.loc[c["true_id"]]
    ok = (tr["division_frame"].to_numpy() >= 0) & (tr["birth_frame"].to_numpy() >= 0)
    c, tr = c[ok].copy(), tr[ok]
    c["tau_true"] = (tr["division_frame"] - tr["birth_frame"]).to_numpy() * dt / 60.0
    c["elong_rate_true"] = tr["growth_rate_per_h"].to_numpy()
    c["sb_px_true"] = tr["birth_length_px"].to_numpy()
    c["delta_px_true"] = (tr["division_length_px"] - tr["birth_length_px"]).to_numpy()
    return c


def accuracy(quick):
    families = ["default", "fast growth (5 frames/doubling)"] if quick else list(FAMILIES)
    errors = ["none", "1 % missed", "5 % split"] if quick else list(ERRORS)
    seeds = [1001] if quick else [1001, 1002]
    n_t = 120 if quick else 200
    print(f"\n### Accuracy against the generator's lineages ({len(seeds)} seed(s) x 2 positions x "
          f"{n_t} frames per family)\n")
    print("| family | segmentation errors | true links | link error | mother div. F1 (+-1) "
          "| mother cycles | tau err | elong_rate err | sb err | adder slope (truth) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for fam in families:
        sims = [s for seed in seeds for s in scenario(fam, seed, n_t)]
        for err in errors:
            r = score(sims, *ERRORS[err], seed=hash(err) % 1000)
            print(f"| {fam} | {err} | {r['links']} | {100 * r['link_err']:.2f} % | {r['div_f1']:.4f} "
                  f"| {r['mother_cycles']} | {100 * r['tau']:.2f} % | {100 * r['elong_rate']:.2f} % "
                  f"| {100 * r['sb']:.2f} % | {r['slope']:+.3f} ({r['slope_true']:+.3f}) |", flush=True)


def _speed_table(n_trenches, n_frames):
    """A cell table of ``n_trenches`` occupied trenches over ``n_frames`` frames."""
    cfg = SyntheticConfig(height=512, width=4096, n_timepoints=n_frames, seed=2001,
                          empty_fraction=0.0, partial_fraction=0.0)
    layout = make_layout(cfg, 0)
    if len(layout.trenches) < n_trenches:
        raise RuntimeError(f"layout has {len(layout.trenches)} trenches < {n_trenches}")
    sim = simulate_lineage(cfg, layout, 0)
    cells = truth_cells(sim.states, layout.trench_length)
    return cells[cells["n"] < n_trenches].reset_index(drop=True), layout.trench_length


def _floor(cells):
    """Visit every trench-frame with its ordered cells, doing nothing with them."""
    order = np.lexsort((cells["centroid_y"].to_numpy(), cells["t"].to_numpy(), cells["n"].to_numpy()))
    key = cells["n"].to_numpy()[order] * 100000 + cells["t"].to_numpy()[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    n = 0
    for g in np.split(order, cuts):
        n += len(g)
    return n


def _peer(cells):
    """Per trench-frame Hungarian assignment on centroid distance (scipy), no divisions."""
    from scipy.optimize import linear_sum_assignment

    c = cells.sort_values(["n", "t", "centroid_y"])
    links = 0
    for _, tr in c.groupby("n", sort=False):
        prev = None
        for _, fr in tr.groupby("t", sort=False):
            y = fr["centroid_y"].to_numpy()
            if prev is not None and len(prev) and len(y):
                rows, cols = linear_sum_assignment(np.abs(prev[:, None] - y[None, :]))
                links += len(rows)
            prev = y
    return links


def speed(quick):
    n_tr, n_t = (100, 100) if quick else (100, 500)
    cells, height = _speed_table(n_tr, n_t)
    track_cells(cells[cells["t"] < 3], height, 3)  # numba compilation (cached on disk)
    times = np.arange(n_t) * 180.0
    rows = []
    t0 = time.process_time()
    _floor(cells)
    rows.append(("floor: visit every trench-frame", time.process_time() - t0))
    t0 = time.process_time()
    _peer(cells)
    rows.append(("peer: Hungarian per frame (scipy), no divisions", time.process_time() - t0))
    t0 = time.process_time()
    tracks, states = track_cells(cells, height, n_t)
    link_s = time.process_time() - t0
    rows.append(("track_cells (linking)", link_s))
    t0 = time.process_time()
    tracks = lineage_columns(tracks, cells, height, times)
    cycle_table(tracks, cells, height, times, 0.1, n_t)
    rows.append(("lineage_columns + cycle_table", time.process_time() - t0))
    total = link_s + rows[-1][1]
    print(f"\n### Speed: {n_tr} trenches x {n_t} frames ({len(cells)} cell rows), one core\n")
    print("CPU seconds of this process (time.process_time: robust to other processes sharing "
          "the cores; wall time is higher on a loaded machine)\n")
    print("| step | CPU seconds | x floor |")
    print("|---|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} | {s / rows[0][1]:.1f} |")
    print(f"| **tracking total** | **{total:.2f}** | {total / rows[0][1]:.1f} |")
    # Memory (tracemalloc slows allocation-heavy Python several-fold: a separate run on
    # fewer trenches). Beyond the output, what is held is one trench's tracker.
    print("\n| trenches tracked under tracemalloc | peak MiB | output MiB | peak - output MiB |")
    print("|---:|---:|---:|---:|")
    for k in (1, 10):
        part = cells[cells["n"] < k]
        tracemalloc.start()
        out, _ = track_cells(part, height, n_t)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = out.memory_usage(deep=True).sum()
        print(f"| {k} | {peak / 2**20:.1f} | {size / 2**20:.1f} | {(peak - size) / 2**20:.1f} |")
    state = max(len(str(s)) for s in states.values())
    print(f"\nlargest saved trench state: {state / 1024:.1f} KiB (independent of the number of frames)")


def end_to_end(quick):
    """The whole workflow on a generated acquisition; segmented cells matched to the truth by IoU."""
    import contextlib
    import importlib.util
    import io
    import shutil
    import tempfile

    from batchlib.io import open_file, read_attrs, read_table
    from batchlib.trench.detection import crop_trenches
    from batchlib.trench.segmentation.evaluate import match_labels
    from batchlib.trench.synthetic import load_ground_truth, write_acquisition

    n_t = 30 if quick else 80
    cfg = SyntheticConfig(height=512, width=512, n_positions=1, n_timepoints=n_t, seed=3001,
                          channels=("phase", "gfp"))
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("wf", root / "workflows" / "trench_workflow.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)
    tmp = Path(tempfile.mkdtemp(prefix="bench_tracking_"))
    try:
        write_acquisition(tmp / "raw", cfg, layout="ome-tiff", name="E")
        shutil.move(str(tmp / "raw" / "ground_truth"), tmp / "gt")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the workflow's own summary
            code = wf.main(["--input_folder", str(tmp / "raw"), "--folder", str(tmp / "out"),
                            "--executor", "serial", "--progress", "false", "--log_level", "ERROR"])
        wall = time.perf_counter() - t0
        assert code == 0, code
        truth = load_ground_truth(tmp / "gt" / "E_pos000")
        with open_file(tmp / "out" / "E_pos000.h5", "r") as f:
            det = read_table(f, "tables/trenches")
            angle = read_attrs(f["tables/trenches"])["angle_deg"]
            drift = read_table(f, "tables/drift")[["dy", "dx"]].to_numpy()
            labels = f["segmentation/cells"][:].astype(np.int64)
            cells = read_table(f, "tables/cells/cells")
            tracks = read_table(f, "tables/tracks/cells")
            cycles = read_table(f, "tables/cycles/cells")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    true = np.stack([crop_trenches(truth.frame_labels[t], det, angle, tuple(drift[t]), order=0)
                     for t in range(labels.shape[1])], axis=1).astype(np.int64)
    m = match_labels(true, labels)
    match = pd.DataFrame({"n": m.crop // n_t, "t": m.crop % n_t, "label": m.pred_label,
                          "true_id": m.true_label})
    cells = cells.merge(match, on=["n", "t", "label"], how="inner")
    # Truth labels (1 = closed end) and detected trench -> true trench row.
    st = truth.cells[["t", "cell_id", "label", "row"]].rename(
        columns={"cell_id": "true_id", "label": "true_label", "row": "true_row"})
    cells = cells.merge(st, on=["t", "true_id"], how="left")
    rows = cells.groupby("n")["true_row"].agg(lambda s: s.value_counts().index[0])
    tracks = tracks[tracks.set_index(["n", "t", "label"]).index.isin(
        cells.set_index(["n", "t", "label"]).index)]
    cyc = cycles.assign(n=rows.reindex(cycles["n"]).to_numpy())
    le = link_error(tracks, cells, truth.lineage)
    f1 = mother_division_f1(cyc, cells, truth.lineage.assign(row=truth.lineage["row"]))
    ce = cycle_errors(cycles, tracks, cells, truth.lineage, cfg.frame_interval_s)
    print(f"\n### End to end: workflow on a generated acquisition (1 position, 512 x 512, {n_t} frames, "
          f"threshold segmentation)\n")
    print(f"segmented cells matched to true cells (IoU > 0.5): {m.f1:.3f} F1; workflow {wall:.0f} s\n")
    print("| true links | link error | mother div. F1 (+-1) | mother cycles | tau err | elong_rate err "
          "| sb err | adder slope (truth) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {le['true_links']} | {100 * le['error']:.2f} % | {f1['f1']:.4f} | {ce['cycles']} "
          f"| {100 * ce['tau']:.2f} % | {100 * ce['elong_rate']:.2f} % | {100 * ce['sb']:.2f} % "
          f"| {ce['adder_slope']:+.3f} ({ce['adder_slope_true']:+.3f}) |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--only-e2e", action="store_true")
    args = ap.parse_args()
    if not args.only_e2e:
        speed(args.quick)
        if not args.skip_accuracy:
            accuracy(args.quick)
    end_to_end(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
