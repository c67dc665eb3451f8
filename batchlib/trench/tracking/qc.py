"""QC picture of the tracking of one position."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .lineage import cell_extents

__all__ = ["plot_tracking"]


def plot_tracking(tracks: pd.DataFrame, cells: pd.DataFrame, cycles: pd.DataFrame, height,
                  path_png, n_trenches=4, title=None):
    """Write a PNG: mother length over time for a few trenches, and a kymograph of tracks.

    Left: the length of the cell at the closed end of the ``n_trenches``
    trenches with the most mother divisions, with its divisions marked.
    Right: for the first of them, every cell as a vertical bar (its extent
    along the trench) in every frame, coloured and numbered by track.

    Parameters
    ----------
    tracks, cells, cycles : DataFrame
        :func:`~batchlib.trench.tracking.lineage_columns`, the cell table and
        :func:`~batchlib.trench.tracking.cycle_table` of the position.
    height : int
        Crop length (rows).
    path_png : path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax_len = fig.add_axes([0.06, 0.1, 0.4, 0.78])
    ax_ky = fig.add_axes([0.53, 0.1, 0.45, 0.78])
    d = tracks.merge(cells[["n", "t", "label", "centroid_y", "length_px"]], on=["n", "t", "label"])
    d["top"], d["bottom"], _ = cell_extents(d, height)
    mothers = cycles[cycles["is_mother"] & (cycles["division_frame"] >= 0)]
    ranked = mothers.groupby("n").size().sort_values(ascending=False, kind="stable")
    chosen = list(ranked.index[:n_trenches]) or sorted(d["n"].unique())[:n_trenches]
    for k, n in enumerate(chosen):
        m = d[(d["n"] == n) & d["is_mother"]]
        per_t = m.groupby("t").agg(top=("top", "min"), bottom=("bottom", "max"))
        colour = f"C{k % 10}"
        ax_len.plot(per_t.index, per_t["bottom"] - per_t["top"], "-", color=colour, lw=1,
                    label=f"trench {n}")
        div = mothers.loc[mothers["n"] == n, "division_frame"].to_numpy()
        ax_len.plot(div, np.interp(div, per_t.index, per_t["bottom"] - per_t["top"]) if len(per_t)
                    else div * 0, "v", color=colour, ms=5)
    ax_len.set_xlabel("frame")
    ax_len.set_ylabel("mother cell length (px)")
    ax_len.set_title("mother cells (triangles: divisions)", fontsize=9)
    if chosen:
        ax_len.legend(fontsize=7, loc="upper left")
        n = chosen[0]
        k = d[d["n"] == n]
        ids = np.unique(k["cell_id"])
        colour = {c: f"C{i % 10}" for i, c in enumerate(ids)}
        ax_ky.vlines(k["t"], k["top"], k["bottom"], colors=[colour[c] for c in k["cell_id"]], lw=3)
        first = k.sort_values("t").groupby("cell_id").head(1)
        for r in first.itertuples(index=False):
            ax_ky.text(r.t, 0.5 * (r.top + r.bottom), str(int(r.cell_id) % 1_000_000), fontsize=6,
                       ha="left", va="center")
        ax_ky.set_title(f"trench {n}: cells by track (number: track id within the trench)", fontsize=9)
    ax_ky.set_ylim(height - 0.5, -0.5)
    ax_ky.set_xlabel("frame")
    ax_ky.set_ylabel("position along the trench (px, closed end at 0)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path_png)
