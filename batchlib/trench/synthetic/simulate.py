"""``simulate_position``: one field of view, its movies and its exact ground truth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .artefacts import jpeg_like, psf_tail
from .config import SyntheticConfig, rng_for
from .kernels import camera
from .chip import make_layout, with_edge_trenches
from .lineage import simulate_lineage
from .render import Renderer

__all__ = ["GroundTruth", "SimulatedPosition", "simulate_position"]


@dataclass
class GroundTruth:
    """The exact truth of one position (see ``docs/synthetic_data.md``).

    Attributes
    ----------
    frame_labels : ndarray (T, Y, X) int32
        Cell ids in the raw frame (0 background); trench cells only.
    trench_labels : ndarray (n_trench, T, height, width) int32
        Perfect segmentation of every crop box, labels 1..k from the closed end.
    trenches, cells, lineage : DataFrame
    drift : ndarray (T, 2)
        ``(dy, dx)`` of every frame relative to frame 0.
    psf_sigma : ndarray (T,)
        Total blur of every frame (larger on out-of-focus frames).
    metadata : dict
    """

    frame_labels: np.ndarray
    trench_labels: np.ndarray
    trenches: pd.DataFrame
    cells: pd.DataFrame
    lineage: pd.DataFrame
    drift: np.ndarray
    psf_sigma: np.ndarray
    metadata: dict


@dataclass
class SimulatedPosition(GroundTruth):
    """A simulated position: the truth plus ``movies`` (channel -> (T, Y, X) uint16)."""

    movies: dict


def _metadata(cfg: SyntheticConfig, layout, position: int, n_trenches: int) -> dict:
    rng = rng_for(cfg, "layout", position, 1)
    # A plausible stage path: positions along the chip, a slightly tilted focus plane.
    stage = [1000.0 + 650.0 * position + rng.normal(0, 5), 2000.0 + rng.normal(0, 5),
             3500.0 + 0.002 * 650.0 * position + rng.normal(0, 0.2)]
    return {
        "position": int(position),
        "seed": int(cfg.seed),
        "shape": [int(cfg.height), int(cfg.width)],
        "n_timepoints": int(cfg.n_timepoints),
        "pixel_size_um": float(cfg.pixel_size_um),
        "frame_interval_s": float(cfg.frame_interval_s),
        "channels": list(cfg.channels),
        "channel_kinds": {c: ("phase" if cfg.is_phase(c) else "fluorescence")
                          for c in cfg.channels},
        "stage_xyz": [float(v) for v in stage],
        "angle_deg": float(layout.angle_deg),
        "pitch_px": float(cfg.pitch_px),
        "n_sets": int(cfg.n_sets),
        "n_trenches": int(n_trenches),
        "trench_length_px": int(layout.trench_length),
        "trench_width_px": float(cfg.trench_width_px),
        "box_height": int(layout.trench_length),
        "box_width": int(layout.box_width),
        "feeding_channel_rows": [float(v) for v in layout.feed_edges],
        "camera_offset": float(cfg.camera_offset),
        "fluor_background": float(cfg.fluor_background),
        "feeding_channel_cells_labelled": False,
        "family": cfg.family,
        "family_seed": int(cfg.family_seed),
        "config": cfg.to_dict(),
    }


def _measure(lab, crop_fluo, fluo_names):
    """Area, centroid and true mean fluorescence of each label of one crop."""
    n = int(lab.max()) + 1
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    rr, cc = np.indices(lab.shape)
    # Every label of a crop has pixels (cells leave before their centre does).
    safe = np.maximum(area, 1.0)
    cy = np.bincount(flat, rr.ravel(), n) / safe
    cx = np.bincount(flat, cc.ravel(), n) / safe
    means = [np.bincount(flat, crop_fluo[j].ravel(), n) / safe for j in range(len(fluo_names))]
    return area, cy, cx, means


def simulate_position(cfg: SyntheticConfig, position: int = 0) -> SimulatedPosition:
    """Simulate one position of ``cfg`` (deterministic for ``(cfg.seed, position)``).

    Returns
    -------
    SimulatedPosition
        ``movies``, ``frame_labels``, ``trench_labels``, ``trenches``, ``cells``,
        ``lineage``, ``drift``, ``psf_sigma`` and ``metadata``.
    """
    layout = make_layout(cfg, position)
    n_truth = len(layout.trenches)
    if cfg.edge_trenches == "cells":
        # Trenches cut by the frame edge get cells too; rows >= n_truth leave the truth below.
        layout = with_edge_trenches(layout)
    sim = simulate_lineage(cfg, layout, position)
    trenches = layout.trenches.iloc[:n_truth].copy()
    trenches["empty"] = sim.empty[:n_truth]
    lineage, states = sim.lineage, sim.states
    cell_row = np.zeros(int(lineage.cell_id.max()) + 1 if len(lineage) else 1, np.intp)
    cell_row[lineage.cell_id.to_numpy()] = lineage.row.to_numpy()
    lineage = lineage[lineage.row < n_truth].reset_index(drop=True)
    renderer = Renderer(cfg, layout, position, cell_row)

    T, H, W = cfg.n_timepoints, cfg.height, cfg.width
    L, bw = layout.trench_length, layout.box_width
    fluo = list(cfg.fluorescence_channels)
    movies = {ch: np.empty((T, H, W), np.uint16) for ch in cfg.channels}
    frame_labels = np.empty((T, H, W), np.int32)
    trench_labels = np.zeros((len(trenches), T, L, bw), np.int32)
    measured = []
    cols = ["row", "cell_id", "label", "s_center", "lateral", "tilt", "length", "width"]
    arrays = {c: states[c].to_numpy() for c in cols}
    amps = states[[f"amp_{ch}" for ch in fluo]].to_numpy(float)
    arrays["amps"] = amps.reshape(len(states), len(fluo))
    arrays.update(_cell_shapes(cfg, position, arrays["cell_id"]))
    bounds = np.searchsorted(states["t"].to_numpy(), np.arange(T + 1))
    for t in range(T):
        frame = {k: v[bounds[t]:bounds[t + 1]] for k, v in arrays.items()}
        raw, frame_labels[t], crop_labels, crop_fluo = renderer.render(t, frame)
        if len(layout.trenches) > n_truth:
            frame_labels[t][cell_row[frame_labels[t]] >= n_truth] = 0
            crop_labels = {r: v for r, v in crop_labels.items() if r < n_truth}
        if cfg.psf_tail_weight > 0:
            raw = psf_tail(raw, cfg.psf_tail_weight, cfg.psf_tail_sigma_px)
        for c, ch in enumerate(cfg.channels):
            phase = cfg.is_phase(ch)
            plane = raw[0] if phase else raw[int(bool(renderer.phase)) + fluo.index(ch)]
            movies[ch][t] = camera(
                plane, renderer.gain[ch], rng_for(cfg, "noise", position, t, c),
                add=0.0 if phase else cfg.fluor_background,
                electrons_per_count=cfg.electrons_per_count, read_noise=cfg.read_noise,
                offset=cfg.camera_offset, exact_poisson_below=cfg.exact_poisson_below)
            if cfg.jpeg_quality:
                movies[ch][t] = jpeg_like(movies[ch][t], cfg.jpeg_quality)
        rows = frame["row"]
        for row, lab in crop_labels.items():
            trench_labels[row, t] = lab
            area, cy, cx, means = _measure(lab, crop_fluo[row], fluo)
            sel = rows == row
            k = frame["label"][sel]
            measured.append({
                "t": np.full(len(k), t), "cell_id": frame["cell_id"][sel],
                "row": np.full(len(k), row), "label": k,
                "length_px": frame["length"][sel], "width_px": frame["width"][sel],
                "centroid_y": cy[k], "centroid_x": cx[k], "area_px": area[k].astype(int),
                **{f"{ch}_amplitude": frame["amps"][sel, j] for j, ch in enumerate(fluo)},
                **{f"{ch}_mean_true": means[j][k] for j, ch in enumerate(fluo)},
            })

    cells = _cells_table(measured, lineage, trenches, fluo)
    drift = layout.drift.copy()
    return SimulatedPosition(frame_labels=frame_labels, trench_labels=trench_labels,
                             trenches=trenches, cells=cells, lineage=lineage, drift=drift,
                             psf_sigma=layout.psf_sigma.copy(),
                             metadata=_metadata(cfg, layout, position, n_truth), movies=movies)


def _cell_shapes(cfg: SyntheticConfig, position: int, cell_ids) -> dict:
    """Per-state ``curvature`` and ``taper``, drawn once per cell (none by default).

    They come from their own random stream, so switching them on leaves every
    other draw (layout, lineage, noise) unchanged.
    """
    if not (cfg.cell_curvature_sd > 0 or cfg.cell_taper_sd > 0):
        return {}
    n = int(cell_ids.max()) + 1 if len(cell_ids) else 1
    rng = rng_for(cfg, "shape", position)
    clip = lambda v, sd: np.clip(v, -2.5 * sd, 2.5 * sd)  # noqa: E731
    curv = clip(rng.normal(0.0, cfg.cell_curvature_sd, n), cfg.cell_curvature_sd)
    taper = clip(rng.normal(0.0, cfg.cell_taper_sd, n), cfg.cell_taper_sd)
    return {"curvature": curv[cell_ids], "taper": taper[cell_ids]}


def _cells_table(measured, lineage, trenches, fluo):
    cols = ["t", "cell_id", "parent_id", "set", "trench", "row", "label", "mother", "length_px",
            "width_px", "centroid_y", "centroid_x", "area_px",
            *[f"{ch}_amplitude" for ch in fluo], *[f"{ch}_mean_true" for ch in fluo]]
    if not measured:
        floats = {"length_px", "width_px", "centroid_y", "centroid_x"} | {
            c for c in cols if c.endswith(("_amplitude", "_mean_true"))}
        return pd.DataFrame({c: pd.Series(dtype=float if c in floats else
                                          bool if c == "mother" else np.int64) for c in cols})
    cells = pd.DataFrame({c: np.concatenate([m[c] for m in measured])
                          for c in measured[0]})
    parent = lineage.set_index("cell_id")["parent_id"]
    cells["parent_id"] = parent.loc[cells.cell_id].to_numpy()
    cells["set"] = trenches["set"].to_numpy()[cells.row]
    cells["trench"] = trenches["trench"].to_numpy()[cells.row]
    # The mother is the cell at the closed end of its trench (label 1) in that frame.
    cells["mother"] = cells["label"] == 1
    return cells[cols].sort_values(["t", "row", "label"]).reset_index(drop=True)
