"""Growth, division and exit of the cells of every trench.

Cells are 1-D objects along the trench axis: each frame they grow
exponentially, divide once they have added about one birth length (an adder,
so they divide near twice their birth length), are restacked end to end from
the closed end and leave the trench once their centre passes the open end.

Positions are in *crop coordinates* of the trench box: ``s`` is the crop row
(0 = first lumen row at the closed end), the lumen spans ``[-0.5, L - 0.5]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import SyntheticConfig, rng_for
from .chip import Layout

__all__ = ["CellStates", "simulate_lineage"]


class _Cell:
    __slots__ = ("cell_id", "parent_id", "row", "length", "width", "rate", "div_length",
                 "lateral", "tilt", "amp", "birth_frame", "birth_length")


@dataclass
class CellStates:
    """Output of :func:`simulate_lineage`.

    Attributes
    ----------
    states : DataFrame
        One row per visible cell and frame: ``t, row, cell_id, label`` (1 = closest
        to the closed end), ``s_center`` (crop row of the centre), ``lateral``
        (crop-column offset of the axis from the box axis), ``tilt`` (radians),
        ``length, width`` (px) and ``amp_<channel>`` per fluorescence channel.
    lineage : DataFrame
        One row per cell (see :func:`simulate_lineage`).
    empty : ndarray of bool
        Per trench row: never holds a cell.
    """

    states: pd.DataFrame
    lineage: pd.DataFrame
    empty: np.ndarray


class _Simulator:
    def __init__(self, cfg: SyntheticConfig, layout: Layout, rng):
        self.cfg, self.rng = cfg, rng
        self.L = layout.trench_length
        self.fluo = cfg.fluorescence_channels
        self.rate0 = math.log(2.0) / cfg.doubling_time_s
        self.next_id = 1
        self.records = {}

    def _new(self, row, parent, birth_length, width, amp, frame):
        cfg, rng = self.cfg, self.rng
        c = _Cell()
        c.cell_id, self.next_id = self.next_id, self.next_id + 1
        c.parent_id = 0 if parent is None else parent.cell_id
        c.row, c.width, c.amp, c.birth_frame = row, width, amp, frame
        c.birth_length = c.length = birth_length
        c.div_length = birth_length + cfg.birth_length_px * max(
            0.3, 1 + cfg.added_length_cv * rng.standard_normal())
        c.rate = self.rate0 * max(0.2, 1 + cfg.growth_rate_cv * rng.standard_normal())
        c.tilt = math.radians(float(np.clip(rng.normal(0, cfg.tilt_sd_deg), -3 * cfg.tilt_sd_deg,
                                            3 * cfg.tilt_sd_deg)))
        # Keep the whole rod inside the lumen whatever its length up to division.
        room = (cfg.trench_width_px - width) / 2 - 0.5 - 0.5 * c.div_length * abs(math.sin(c.tilt))
        room = max(room, 0.0)
        c.lateral = float(np.clip(rng.normal(0, cfg.lateral_jitter_px), -room, room))
        self.records[c.cell_id] = dict(cell_id=c.cell_id, parent_id=c.parent_id, row=row,
                                       birth_frame=frame, division_frame=-1, exit_frame=-1,
                                       birth_length_px=birth_length,
                                       division_length_px=np.nan,
                                       growth_rate_per_h=c.rate * 3600.0)
        return c

    def founders(self, row, partial):
        cfg, rng = self.cfg, self.rng
        cells, s = [], -0.5 + cfg.closed_end_gap_px
        n_max = int(rng.integers(1, 4)) if partial else 10 ** 6
        while len(cells) < n_max:
            birth = cfg.birth_length_px * max(0.5, 1 + 0.1 * rng.standard_normal())
            width = cfg.cell_width_px * (1 + cfg.cell_width_cv * rng.standard_normal())
            amp = np.array([cfg.amplitude(ch) for ch in self.fluo]) * rng.lognormal(
                0.0, cfg.fluor_cell_sigma, len(self.fluo))
            c = self._new(row, None, birth, width, amp, -1)
            # Random point of the cell cycle, so that the first divisions are spread in time.
            c.length = birth * (c.div_length / birth) ** rng.random()
            if s + c.length / 2 > self.L - 0.5:
                del self.records[c.cell_id]
                break
            cells.append(c)
            s += c.length + cfg.cell_gap_px
        return cells

    def step(self, cells, t):
        """Grow and divide the cells of one trench from frame ``t - 1`` to ``t``."""
        cfg, rng, dt = self.cfg, self.rng, self.cfg.frame_interval_s
        out = []
        for c in cells:
            c.length *= math.exp(c.rate * dt)
            c.amp = c.amp * np.exp(rng.normal(0.0, cfg.fluor_drift_sigma, len(self.fluo)))
            if c.length < c.div_length:
                out.append(c)
                continue
            rec = self.records[c.cell_id]
            rec["division_frame"], rec["division_length_px"] = t, c.length
            frac = float(np.clip(rng.normal(0.5, cfg.division_asymmetry_sd), 0.35, 0.65))
            usable = c.length - cfg.cell_gap_px
            for f in (frac, 1 - frac):
                width = c.width * (1 + 0.01 * rng.standard_normal())
                amp = c.amp * rng.lognormal(0.0, cfg.fluor_inherit_sigma, len(self.fluo))
                out.append(self._new(c.row, c, usable * f, width, amp, t))
        return out

    def stack(self, cells, t):
        """Place cells end to end from the closed end; drop those pushed out."""
        s, kept = -0.5 + self.cfg.closed_end_gap_px, []
        centres = []
        for c in cells:
            centre = s + c.length / 2
            if centre > self.L - 0.5:
                self.records[c.cell_id]["exit_frame"] = t
                continue
            kept.append(c)
            centres.append(centre)
            s += c.length + self.cfg.cell_gap_px
        return kept, centres


def simulate_lineage(cfg: SyntheticConfig, layout: Layout, position: int) -> CellStates:
    """Simulate every trench of ``position`` over all frames.

    The lineage table has one row per cell: ``cell_id, parent_id, set, trench, row,
    birth_frame`` (first frame showing the cell; -1 for founders present at frame 0),
    ``division_frame`` (first frame showing its daughters, -1 if none),
    ``exit_frame`` (first frame after it left through the open end, -1 if never),
    ``birth_length_px`` (for founders, the length they were born with before the
    movie), ``division_length_px`` (length at the moment of division, NaN if none)
    and ``growth_rate_per_h``. A daughter pushed out in the step it is born has
    ``birth_frame == exit_frame`` and is never visible.
    """
    rng = rng_for(cfg, "lineage", position)
    sim = _Simulator(cfg, layout, rng)
    n = len(layout.trenches)
    empty = np.zeros(n, bool)
    empty[rng.permutation(n)[:int(round(cfg.empty_fraction * n))]] = True
    occupied = np.flatnonzero(~empty)
    partial = rng.random(len(occupied)) < cfg.partial_fraction
    per_trench = {int(r): sim.founders(int(r), p) for r, p in zip(occupied, partial)}

    rows = []
    for t in range(cfg.n_timepoints):
        for r in occupied:
            cells = per_trench[int(r)]
            if t > 0:
                cells = sim.step(cells, t)
            cells, centres = sim.stack(cells, t)
            per_trench[int(r)] = cells
            for k, (c, centre) in enumerate(zip(cells, centres), start=1):
                rows.append((t, int(r), c.cell_id, k, centre, c.lateral, c.tilt, c.length,
                             c.width, *c.amp))
    cols = ["t", "row", "cell_id", "label", "s_center", "lateral", "tilt", "length", "width",
            *[f"amp_{ch}" for ch in sim.fluo]]
    states = pd.DataFrame(rows, columns=cols).astype(
        {"t": np.int64, "row": np.int64, "cell_id": np.int64, "label": np.int64})

    lineage = pd.DataFrame(list(sim.records.values()),
                           columns=["cell_id", "parent_id", "row", "birth_frame",
                                    "division_frame", "exit_frame", "birth_length_px",
                                    "division_length_px", "growth_rate_per_h"])
    ints = ["cell_id", "parent_id", "row", "birth_frame", "division_frame", "exit_frame"]
    lineage = lineage.astype({c: np.int64 for c in ints} | {
        "birth_length_px": float, "division_length_px": float, "growth_rate_per_h": float})
    tr = layout.trenches
    lineage.insert(2, "set", tr["set"].to_numpy()[lineage["row"].to_numpy()])
    lineage.insert(3, "trench", tr["trench"].to_numpy()[lineage["row"].to_numpy()])
    lineage = lineage.sort_values("cell_id").reset_index(drop=True)
    return CellStates(states=states, lineage=lineage, empty=empty)
