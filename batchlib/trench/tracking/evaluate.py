"""Scoring tracks and cycles against the synthetic generator's lineage truth.

Used by ``tests/trench/test_tracking.py`` and ``benchmarks/bench_tracking.py``.
The truth is :func:`batchlib.trench.synthetic.lineage.simulate_lineage`:
``states`` (one row per visible cell and frame) and ``lineage`` (one row per cell).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["truth_cells", "inject_errors", "link_error", "mother_division_f1", "cycle_errors"]


def truth_cells(states: pd.DataFrame, height, length_noise_px=0.0, rng=None) -> pd.DataFrame:
    """A Measure-like cell table from the generator's states (``true_id`` kept).

    Cells are cut at the open end of the crop (``height`` rows), as a crop
    shows them; ``length_noise_px`` adds Gaussian noise to each end of every
    cell, like a segmentation would.
    """
    rng = rng or np.random.default_rng(0)
    top = states["s_center"].to_numpy() - 0.5 * states["length"].to_numpy()
    bot = states["s_center"].to_numpy() + 0.5 * states["length"].to_numpy()
    if length_noise_px:
        top = top + rng.normal(0, length_noise_px, len(top))
        bot = bot + rng.normal(0, length_noise_px, len(bot))
    bot = np.minimum(bot, float(height) - 0.5)
    return pd.DataFrame({
        "n": states["row"].to_numpy(np.int64), "t": states["t"].to_numpy(np.int64),
        "label": states["label"].to_numpy(np.int64), "centroid_y": 0.5 * (top + bot),
        "length_px": bot - top, "width_px": states["width"].to_numpy(float),
        "true_id": states["cell_id"].to_numpy(np.int64),
        "true_label": states["label"].to_numpy(np.int64)})


def inject_errors(cells: pd.DataFrame, miss=0.0, split=0.0, rng=None) -> pd.DataFrame:
    """Segmentation errors: drop a fraction ``miss`` of the rows, cut ``split`` of them in two.

    Labels are renumbered from the closed end in every trench and frame.
    """
    rng = rng or np.random.default_rng(0)
    u = rng.random(len(cells))
    keep = cells[u >= miss]
    cut = (u[u >= miss] < miss + split)
    whole = keep[~cut]
    pieces = keep[cut]
    frac = rng.uniform(0.35, 0.65, len(pieces))
    top = pieces["centroid_y"].to_numpy() - 0.5 * pieces["length_px"].to_numpy()
    length = pieces["length_px"].to_numpy()
    gap = 1.0
    a, b = pieces.copy(), pieces.copy()
    la, lb = frac * length - gap / 2, (1 - frac) * length - gap / 2
    a["length_px"], a["centroid_y"] = la, top + la / 2
    b["length_px"], b["centroid_y"] = lb, top + la + gap + lb / 2
    out = pd.concat([whole, a, b], ignore_index=True).sort_values(["n", "t", "centroid_y"])
    out["label"] = out.groupby(["n", "t"]).cumcount() + 1
    return out.reset_index(drop=True)


def _links(frame_ids: pd.DataFrame, parent: dict, max_gap=2) -> set:
    """Links ``(id_a, t_a, id_b, t_b)`` between consecutive sightings and parent -> daughter.

    ``frame_ids`` has one row per (cell, t) with ``ids``: the true ids seen there.
    """
    links = set()
    frame_ids = frame_ids.sort_values(["cell", "t"])
    cell = frame_ids["cell"].to_numpy()
    t = frame_ids["t"].to_numpy()
    ids = frame_ids["ids"].to_numpy()
    for k in range(1, len(cell)):
        if cell[k] == cell[k - 1] and t[k] - t[k - 1] <= max_gap:
            links.update((a, t[k - 1], b, t[k]) for a in ids[k - 1] for b in ids[k])
    first = frame_ids.groupby("cell").head(1)
    last = frame_ids.groupby("cell").tail(1).set_index("cell")
    for c, tb, idb in zip(first["cell"], first["t"], first["ids"]):
        p = parent.get(c, 0)
        if p and p in last.index and 0 < tb - last.at[p, "t"] <= max_gap:
            links.update((a, last.at[p, "t"], b, tb) for a in last.at[p, "ids"] for b in idb)
    return links


def link_error(tracks: pd.DataFrame, cells: pd.DataFrame, lineage: pd.DataFrame) -> dict:
    """Wrong and missing links against the truth, as a fraction of the true links.

    ``cells`` carries ``true_id`` per row (see :func:`truth_cells`); a true link
    joins two consecutive sightings of a true cell (up to one frame missed) or
    a mother's last sighting and a daughter's first.
    """
    d = tracks.merge(cells[["n", "t", "label", "true_id"]], on=["n", "t", "label"])
    pred = d.groupby(["cell_id", "t"])["true_id"].apply(frozenset).reset_index() \
        .rename(columns={"cell_id": "cell", "true_id": "ids"})
    ppar = dict(zip(d["cell_id"], d["parent_id"]))
    true = d.groupby(["true_id", "t"])["true_id"].apply(frozenset).rename("ids").reset_index() \
        .rename(columns={"true_id": "cell"})
    tpar = dict(zip(lineage["cell_id"], lineage["parent_id"]))
    pl, tl = _links(pred, ppar), _links(true, tpar)
    wrong, missing = len(pl - tl), len(tl - pl)
    return {"true_links": len(tl), "wrong": wrong, "missing": missing,
            "error": (wrong + missing) / max(len(tl), 1)}


def _true_mothers(cells: pd.DataFrame, lineage: pd.DataFrame) -> pd.DataFrame:
    """True mother cells (label 1 whenever seen) that divided in the movie."""
    first = cells.groupby("true_id")["true_label"].max() == 1
    lin = lineage.set_index("cell_id")
    ids = first[first].index.intersection(lin.index)
    lin = lin.loc[ids]
    return lin[lin["division_frame"] >= 0]


def mother_division_f1(cycles: pd.DataFrame, cells: pd.DataFrame, lineage: pd.DataFrame,
                       tol=1) -> dict:
    """F1 of the mother cells' division events (trench, frame) within ``tol`` frames."""
    tm = _true_mothers(cells, lineage)
    true = {}
    for r, f in zip(tm["row"], tm["division_frame"]):
        true.setdefault(int(r), []).append(int(f))
    pm = cycles[cycles["is_mother"] & (cycles["division_frame"] >= 0)]
    pred = {}
    for r, f in zip(pm["n"], pm["division_frame"]):
        pred.setdefault(int(r), []).append(int(f))
    tp = 0
    for r, fs in pred.items():
        avail = sorted(true.get(r, []))
        for f in sorted(fs):
            hit = next((x for x in avail if abs(x - f) <= tol), None)
            if hit is not None:
                avail.remove(hit)
                tp += 1
    n_pred, n_true = sum(map(len, pred.values())), sum(map(len, true.values()))
    prec, rec = tp / max(n_pred, 1), tp / max(n_true, 1)
    return {"true": n_true, "found": n_pred, "matched": tp,
            "f1": 2 * prec * rec / max(prec + rec, 1e-12)}


def cycle_errors(cycles: pd.DataFrame, tracks: pd.DataFrame, cells: pd.DataFrame,
                 lineage: pd.DataFrame, frame_interval_s: float) -> dict:
    """Median relative errors of ``tau, elong_rate, sb`` of complete mother cycles, adder slopes.

    A predicted cycle is matched to the true cell seen most in its rows; the
    truth's ``tau`` is its division minus birth frame times the interval. The
    slopes of ``delta`` against ``sb`` use every complete cycle, measured and true.
    """
    d = tracks.merge(cells[["n", "t", "label", "true_id"]], on=["n", "t", "label"])
    major = d.groupby("cell_id")["true_id"].agg(lambda s: s.value_counts().index[0])
    lin = lineage.set_index("cell_id")

    def matched(pc):
        pc = pc.assign(true_id=major.reindex(pc["cell_id"]).to_numpy())
        pc = pc[pc["true_id"].isin(lin.index)]
        tr = lin.loc[pc["true_id"]]
        ok = (tr["division_frame"].to_numpy() >= 0) & (tr["birth_frame"].to_numpy() >= 0)
        return pc[ok], tr[ok]

    def rel(a, b):
        b = np.asarray(b, float)
        return float(np.nanmedian(np.abs(np.asarray(a, float) - b) / np.abs(b))) if len(b) else np.nan

    def slope(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        return float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() > 2 else np.nan

    pc, tr = matched(cycles[cycles["complete"] & cycles["is_mother"]])
    tau_true = (tr["division_frame"] - tr["birth_frame"]).to_numpy() * frame_interval_s / 60.0
    allc, alltr = matched(cycles[cycles["complete"] & cycles["delta_px"].notna()])
    true_delta = alltr["division_length_px"].to_numpy() - alltr["birth_length_px"].to_numpy()
    return {"cycles": len(pc),
            "tau": rel(pc["tau"], tau_true),
            "elong_rate": rel(pc["elong_rate"], tr["growth_rate_per_h"]),
            "sb": rel(pc["sb_px"], tr["birth_length_px"]),
            "all_cycles": len(allc),
            "adder_slope": slope(allc["sb_px"], allc["delta_px"]),
            "adder_slope_true": slope(alltr["birth_length_px"], true_delta)}
