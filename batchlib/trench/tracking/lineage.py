"""From a per-cell table to tracks, lineages and cell cycles.

``cells`` is the Measure table (or anything with its key columns): one row per
segmented cell and frame with ``n`` (trench), ``t``, ``label``,
``centroid_y`` (crop row; the closed end is row 0) and ``length_px``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .tracker import TrackParams, track_trench

__all__ = ["ID_STRIDE", "cell_extents", "track_cells", "lineage_columns", "cycle_table"]

#: ``cell_id = n * ID_STRIDE + k``: ids are unique in an image and independent of the
#: other trenches, so appending frames to one trench never renumbers another.
ID_STRIDE = 1_000_000


def cell_extents(cells: pd.DataFrame, height):
    """Top and bottom edge (crop rows) of every cell, and whether it touches the open end."""
    c = cells["centroid_y"].to_numpy(np.float64)
    half = 0.5 * cells["length_px"].to_numpy(np.float64)
    top, bottom = c - half, c + half
    return top, bottom, bottom >= float(height) - 1.5


def track_cells(cells: pd.DataFrame, height, n_frames, params: TrackParams | None = None,
                states: dict | None = None):
    """Link the cells of every trench across frames.

    Parameters
    ----------
    cells : DataFrame
        ``n, t, label, centroid_y, length_px`` per cell and frame.
    height : int
        Crop length along the trench (rows).
    n_frames : int
        Frames to track (``t < n_frames``).
    params : TrackParams, optional
    states : dict of int to dict, optional
        Per trench, the state returned by an earlier call; those trenches are
        continued from the frame after it (the earlier frames are not read).

    Returns
    -------
    tracks : DataFrame
        ``n, t, label, cell_id, parent_id`` (``parent_id`` 0: no parent seen),
        sorted by ``n, t, label``; with ``states``, only the frames that were
        (re)labelled: from ``state["t"] - params.undo_frames`` on.
    states : dict of int to dict
        The state of every trench after ``n_frames``.
    """
    params = params or TrackParams()
    states = dict(states or {})
    top, bottom, _ = cell_extents(cells, height)
    n = cells["n"].to_numpy(np.int64)
    t = cells["t"].to_numpy(np.int64)
    lab = cells["label"].to_numpy(np.int64)
    order = np.lexsort((top, t, n))
    bounds = np.flatnonzero(np.diff(n[order])) + 1
    out = []
    trenches = sorted(set(np.unique(n).tolist()) | set(states))
    groups = {int(n[g[0]]): g for g in np.split(order, bounds) if len(g)}
    for k in trenches:
        g = groups.get(k, np.zeros(0, np.int64))
        tg = t[g]
        cuts = np.flatnonzero(np.diff(tg)) + 1
        frames = {int(t[s[0]]): (lab[s], top[s], bottom[s]) for s in np.split(g, cuts) if len(s)}
        rec, states[k] = track_trench(frames, n_frames, height, params, states.get(k))
        if len(rec):
            rec = np.column_stack([np.full(len(rec), k), rec])
            out.append(rec)
    rec = np.concatenate(out) if out else np.zeros((0, 5), np.int64)
    cell = np.where(rec[:, 3] > 0, rec[:, 0] * ID_STRIDE + rec[:, 3], 0)
    parent = np.where(rec[:, 4] > 0, rec[:, 0] * ID_STRIDE + rec[:, 4], 0)
    if (rec[:, 3] >= ID_STRIDE).any():
        raise ValueError(f"more than {ID_STRIDE - 1} cells in one trench")
    tracks = pd.DataFrame({"n": rec[:, 0], "t": rec[:, 1], "label": rec[:, 2],
                           "cell_id": cell, "parent_id": parent})
    return tracks.sort_values(["n", "t", "label"], kind="stable").reset_index(drop=True), states


def _cell_frames(table, height, times):
    """One row per (cell, frame): the union of the cell's pieces in that frame."""
    top, bottom, trunc = cell_extents(table, height)
    df = pd.DataFrame({"cell_id": table["cell_id"].to_numpy(), "n": table["n"].to_numpy(),
                       "t": table["t"].to_numpy(), "top": top, "bottom": bottom, "trunc": trunc})
    g = df.groupby(["cell_id", "t"], sort=True)
    cf = g.agg(n=("n", "first"), top=("top", "min"), bottom=("bottom", "max"),
               trunc=("trunc", "any")).reset_index()
    cf["length"] = cf["bottom"] - cf["top"]
    cf["time_h"] = times[cf["t"].to_numpy()] / 3600.0
    return cf


def _instant_rate(cf):
    """D log(length) / dt per hour by central differences within each cell (NaN at open end)."""
    logl = np.log(cf["length"].to_numpy())
    logl[cf["trunc"].to_numpy()] = np.nan
    th = cf["time_h"].to_numpy()
    cell = cf["cell_id"].to_numpy()
    same_prev = np.r_[False, cell[1:] == cell[:-1]]
    same_next = np.r_[cell[:-1] == cell[1:], False]
    prev = np.r_[0, np.arange(len(cf) - 1)]
    nxt = np.r_[np.arange(1, len(cf)), max(len(cf) - 1, 0)]
    lo = np.where(same_prev, prev, np.arange(len(cf)))
    hi = np.where(same_next, nxt, np.arange(len(cf)))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (logl[hi] - logl[lo]) / (th[hi] - th[lo])
    rate[hi == lo] = np.nan
    return rate


def lineage_columns(tracks: pd.DataFrame, cells: pd.DataFrame, height, times) -> pd.DataFrame:
    """Per cell and frame: ``generation``, ``is_mother`` and ``elong_rate`` (per hour).

    Parameters
    ----------
    tracks : DataFrame
        :func:`track_cells` output for all frames.
    cells : DataFrame
        The cell table it was computed from (same keys ``n, t, label``).
    height : int
    times : ndarray
        Time in seconds of every frame index (NaN: unknown).

    Returns
    -------
    DataFrame
        ``tracks`` plus ``generation`` (0 for cells without parent, then +1 per
        division), ``is_mother`` (the cell sits at the closed end in every
        frame it is seen) and ``elong_rate`` (d ln length / dt, 1/h, central
        difference over the neighbouring frames of the same cell; NaN where
        the cell touches the open end or is seen once).
    """
    table = tracks.merge(cells[["n", "t", "label", "centroid_y", "length_px"]],
                         on=["n", "t", "label"], how="left", validate="one_to_one")
    cf = _cell_frames(table, height, np.asarray(times, np.float64))
    cf["elong_rate"] = _instant_rate(cf)
    # Mother: first cell from the closed end in every frame it is seen.
    first = cf.groupby(["n", "t"])["top"].transform("min") == cf["top"]
    mother = first.groupby(cf["cell_id"]).all()
    # Generation: parents appear before their daughters.
    births = table.groupby("cell_id", sort=False).agg(t=("t", "min"), parent=("parent_id", "first"))
    gen = {}
    for cid, parent in births.sort_values("t", kind="stable")["parent"].items():
        gen[cid] = gen.get(parent, -1) + 1 if parent else 0
    out = tracks.copy()
    out["generation"] = out["cell_id"].map(gen).astype(np.int64)
    out["is_mother"] = out["cell_id"].map(mother).astype(bool)
    rate = cf.set_index(["cell_id", "t"])["elong_rate"]
    out["elong_rate"] = rate.reindex(pd.MultiIndex.from_arrays(
        [out["cell_id"], out["t"]])).to_numpy()
    return out


def cycle_table(tracks: pd.DataFrame, cells: pd.DataFrame, height, times, pixel_size_um=None,
                n_frames=None) -> pd.DataFrame:
    """One row per tracked cell: its cell cycle (napari-mm3-like columns).

    Parameters
    ----------
    tracks : DataFrame
        :func:`lineage_columns` output.
    cells : DataFrame
        The cell table (``width_px`` and ``<channel>_mean_bgsub`` are averaged if present;
        ``acquisition, position, container, trench_set, trench`` are copied if present).
    height : int
    times : ndarray
        Time in seconds of every frame index.
    pixel_size_um : float, optional
        For the ``*_um``-free length columns ``sb, sd, delta, width`` (NaN without it).
    n_frames : int, optional
        Frames of the movie (to tell cells still present at the end).

    Returns
    -------
    DataFrame
        See ``docs/tracking.md`` for every column.
    """
    times = np.asarray(times, np.float64)
    fluo = [c for c in cells.columns if c.endswith("_mean_bgsub")]
    extra = [c for c in ("width_px", *fluo) if c in cells.columns]
    meta = [c for c in ("acquisition", "position", "container", "trench_set", "trench")
            if c in cells.columns]
    table = tracks.merge(cells[["n", "t", "label", "centroid_y", "length_px", *extra, *meta]],
                         on=["n", "t", "label"], how="left", validate="one_to_one")
    cf = _cell_frames(table, height, times)
    n_frames = int(n_frames if n_frames is not None else (table["t"].max() + 1 if len(table) else 0))

    cyc, first, last = _cycles(cf, table, meta, extra)
    d1, d2 = _daughters(cyc, first)
    divided = (cyc["daughter1_id"] > 0) & (cyc["daughter2_id"] > 0)
    fr = cyc["birth_frame"].to_numpy()
    dv = cyc["division_frame"].to_numpy()
    cyc["birth_time_s"] = times[fr]
    cyc["division_time_s"] = np.where(divided, times[np.maximum(dv, 0)], np.nan)
    cyc["tau"] = (cyc["division_time_s"] - cyc["birth_time_s"]) / 60.0
    fit = _fit_log_length(cf).reindex(cyc.index)
    sb = _cycle_lengths(cyc, first, d1, d2, divided, fit, pixel_size_um)
    cyc["elong_rate"] = fit["slope"]
    cyc["complete"] = (cyc["parent_id"] > 0) & divided & sb.notna().to_numpy()
    cyc["fate"] = _fates(cyc, last, divided, height, n_frames)
    cyc = cyc.reset_index()
    cols = ["cell_id", "parent_id", "daughter1_id", "daughter2_id", *[c for c in meta if c in cyc],
            "n", "birth_label", "generation", "is_mother", "complete", "fate", "birth_frame",
            "division_frame",
            "last_frame", "n_frames", "birth_time_s", "division_time_s", "tau", "sb", "sd", "delta",
            "sb_px", "sd_px", "delta_px", "elong_rate", "septum_position",
            *[c for c in ("width", "width_px") if c in cyc], *fluo]
    return cyc[cols]


def _cycles(cf, table, meta, extra):
    """One row per cell (index ``cell_id``): frames seen, lineage columns, the ``meta`` columns'
    first and the ``extra`` columns' mean value, ``birth_label``; and the cell's first and
    last frame (rows of ``cf``)."""
    g = cf.groupby("cell_id", sort=True)
    cyc = g.agg(n=("n", "first"), birth_frame=("t", "min"), last_frame=("t", "max"),
                n_frames=("t", "size"))
    first = cf.loc[g["t"].idxmin()].set_index("cell_id")
    last = cf.loc[g["t"].idxmax()].set_index("cell_id")
    info = table.groupby("cell_id", sort=True).agg(
        parent_id=("parent_id", "first"), generation=("generation", "first"),
        is_mother=("is_mother", "first"), **{c: (c, "first") for c in meta},
        **{c: (c, "mean") for c in extra})
    cyc = cyc.join(info)
    # napari-mm3's birth_label: the label (1 = closed end) the cell has in its first frame.
    cyc["birth_label"] = table.sort_values(["t", "label"]).groupby("cell_id")["label"].first()
    return cyc, first, last


def _daughters(cyc, first):
    """Set ``daughter1_id, daughter2_id`` (ordered from the closed end, 0: none),
    ``division_frame`` (-1: not seen to divide) and the daughters' ``birth_frame``;
    return the first frame of each daughter (rows of ``first`` by parent id)."""
    kids = first[first["n"].notna()].reset_index()
    kids = kids.merge(cyc[["parent_id"]].reset_index(), on="cell_id")
    kids = kids[kids["parent_id"] > 0].sort_values(["parent_id", "top"])
    kids["k"] = kids.groupby("parent_id").cumcount()
    d1 = kids[kids["k"] == 0].set_index("parent_id")
    d2 = kids[kids["k"] == 1].set_index("parent_id")
    cyc["daughter1_id"] = d1["cell_id"].reindex(cyc.index).fillna(0).astype(np.int64)
    cyc["daughter2_id"] = d2["cell_id"].reindex(cyc.index).fillna(0).astype(np.int64)
    divided = (cyc["daughter1_id"] > 0) & (cyc["daughter2_id"] > 0)
    # The division is seen in the first frame of either daughter (one may have been
    # missed there), and it is the daughters' birth even if one is first seen later.
    first_kid = np.minimum(d1["t"].reindex(cyc.index), d2["t"].reindex(cyc.index))
    cyc["division_frame"] = np.where(divided, first_kid, -1).astype(np.int64)
    born = cyc["division_frame"].reindex(cyc["parent_id"]).to_numpy()
    cyc["birth_frame"] = np.where(np.nan_to_num(born, nan=-1) >= 0, born,
                                  cyc["birth_frame"]).astype(np.int64)
    return d1, d2


def _cycle_lengths(cyc, first, d1, d2, divided, fit, pixel_size_um):
    """Set the lengths at birth and division (``sb, sd, delta`` in um and px, ``width``,
    ``septum_position``); return ``sb`` (px)."""
    # Birth lengths from the fit of ln(length) over the cycle at its first frame
    # (a single frame's length where the fit has too few frames). The length at
    # division is that of the two daughters at their birth plus the septum gap
    # between them: it does not share the mother's fit, whose errors would
    # otherwise bias delta against sb.
    raw_sb = first["length"].where(~first["trunc"]).reindex(cyc.index)
    fit_sb = np.exp(fit["ym"] + fit["slope"] * (cyc["birth_time_s"] / 3600.0 - fit["xm"]))
    sb = fit_sb.where(fit["slope"].notna() & raw_sb.notna(), raw_sb)
    span = (d2["bottom"].where(~d2["trunc"]) - d1["top"]).reindex(cyc.index)
    septum = (d2["top"] - d1["bottom"]).clip(lower=0).reindex(cyc.index)
    sd = (sb.reindex(cyc["daughter1_id"]).to_numpy() + sb.reindex(cyc["daughter2_id"]).to_numpy()
          + septum)
    sd = sd.where(divided)
    cyc["sb_px"], cyc["sd_px"] = sb, sd
    cyc["delta_px"] = sd - sb
    cyc["septum_position"] = (d1["length"].reindex(cyc.index) / span).where(divided)
    px = np.nan if pixel_size_um is None else float(pixel_size_um)
    cyc["sb"], cyc["sd"], cyc["delta"] = sb * px, sd * px, (sd - sb) * px
    if "width_px" in cyc:
        cyc["width"] = cyc["width_px"] * px
    return sb


def _fates(cyc, last, divided, height, n_frames):
    """How each cell's track ends: divided, end_of_movie, exited (through the open end) or lost."""
    return np.where(divided, "divided", np.where(
        cyc["last_frame"] >= n_frames - 1, "end_of_movie",
        np.where(last["bottom"].reindex(cyc.index) >= height - 0.5 - 0.5 * last["length"].reindex(
            cyc.index) - 3.0, "exited", "lost")))


def _fit_log_length(cf) -> pd.DataFrame:
    """Least-squares line of ln(length) against time (h) per cell (>= 3 untruncated frames).

    Columns ``slope`` (1/h; NaN with fewer frames), ``xm, ym`` (the means it passes through).
    """
    ok = ~cf["trunc"].to_numpy() & np.isfinite(cf["time_h"].to_numpy())
    d = pd.DataFrame({"cell_id": cf["cell_id"].to_numpy()[ok], "x": cf["time_h"].to_numpy()[ok],
                      "y": np.log(cf["length"].to_numpy()[ok])})
    g = d.groupby("cell_id")
    d["xm"], d["ym"] = g["x"].transform("mean"), g["y"].transform("mean")
    d["xy"] = (d["x"] - d["xm"]) * (d["y"] - d["ym"])
    d["xx"] = (d["x"] - d["xm"]) ** 2
    s = d.groupby("cell_id").agg(xy=("xy", "sum"), xx=("xx", "sum"), k=("x", "size"),
                                 xm=("xm", "first"), ym=("ym", "first"))
    with np.errstate(invalid="ignore", divide="ignore"):
        s["slope"] = (s["xy"] / s["xx"]).where(s["k"] >= 3)
    return s[["slope", "xm", "ym"]]
