"""The trench array of one position: chip geometry, stage drift and focus.

Everything here lives in the *rotated frame* of :mod:`batchlib.trench.geometry`
(trenches vertical). Scenes are rendered on a *canvas*: the rotated frame padded
by ``margin`` pixels on every side, so canvas index = rotated coordinate + margin
and every raw pixel of every frame samples a point inside the canvas.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import geometry
from .config import SyntheticConfig, rng_for

__all__ = ["Layout", "make_layout", "pdms_coverage", "with_edge_trenches"]

_CORNER_COLS = [f"raw_{a}{i}" for a in "yx" for i in range(4)]


@dataclass
class Layout:
    """Geometry of one position.

    Attributes
    ----------
    shape : (int, int)
        Raw frame shape.
    angle_deg : float
    drift : ndarray, shape (T, 2)
        ``(dy, dx)`` of every frame; frame 0 is ``(0, 0)``.
    psf_sigma : ndarray, shape (T,)
        Total Gaussian blur of every frame (PSF plus defocus).
    trench_length, box_width : int
        Box height (= lumen length) and width.
    feed_edges : (float, float)
        Rotated rows of the feeding channel's edges (pixel boundaries).
    margin : int
        Canvas padding.
    trenches : DataFrame
        The ground-truth trenches (see :func:`make_layout`).
    lumens : DataFrame
        Every drawn lumen: ``x_center, y_closed, direction, row`` (``row`` = index in
        ``trenches`` or -1 for an edge lumen outside the truth).
    """

    shape: tuple
    angle_deg: float
    drift: np.ndarray
    psf_sigma: np.ndarray
    trench_length: int
    box_width: int
    feed_edges: tuple
    margin: int
    trenches: pd.DataFrame
    lumens: pd.DataFrame

    @property
    def canvas_shape(self) -> tuple:
        return (self.shape[0] + 2 * self.margin, self.shape[1] + 2 * self.margin)


def _drift_and_focus(cfg: SyntheticConfig, position: int):
    rng = rng_for(cfg, "drift", position)
    steps = rng.normal(0.0, cfg.drift_step_px, size=(cfg.n_timepoints, 2))
    steps[0] = 0.0
    drift = np.zeros((cfg.n_timepoints, 2))
    for t in range(1, cfg.n_timepoints):
        # Bounded walk: a stage drifts slowly but never by more than a few pixels.
        drift[t] = np.clip(drift[t - 1] + steps[t], -cfg.max_drift_px, cfg.max_drift_px)
    if cfg.drift_quantum_px > 0:
        drift = np.round(drift / cfg.drift_quantum_px) * cfg.drift_quantum_px
    defocus = rng.random(cfg.n_timepoints) < cfg.focus_change_prob
    defocus[0] = False
    extra = rng.uniform(*cfg.focus_extra_sigma_px, size=cfg.n_timepoints) * defocus
    return drift, np.sqrt(cfg.psf_sigma_px ** 2 + extra ** 2)


def _set_rows(cfg: SyntheticConfig, rng, height: int):
    """``[(y_closed, direction), ...]`` per set and the feeding-channel edges."""
    L, F = cfg.resolved_trench_length(), cfg.resolved_feeding_width()
    jitter = rng.uniform(-cfg.layout_jitter_px, cfg.layout_jitter_px)
    if cfg.n_sets == 2:
        top = int(round((height - (2 * L + F)) / 2 + jitter))
        return [(top, 1), (top + 2 * L + F - 1, -1)], (top + L - 0.5, top + L + F - 0.5)
    direction = cfg.single_set_direction or int(rng.choice([-1, 1]))
    top = int(round((height - (L + F)) / 2 + jitter))
    if direction == 1:
        return [(top, 1)], (top + L - 0.5, top + L + F - 0.5)
    return [(top + F + L - 1, -1)], (top - 0.5, top + F - 0.5)


def _box_inside(corners_rot, angle, shape, drift) -> np.ndarray:
    """Whether each box ``(n, 4, 2)`` stays inside the raw frame at every drift."""
    ok = np.ones(len(corners_rot), bool)
    hi = np.array(shape, float) - 1.0
    for d in drift:
        raw = geometry.rotated_to_raw(corners_rot, angle, shape, d)
        ok &= np.all((raw >= 0.0) & (raw <= hi), axis=(1, 2))
    return ok


def _canvas_margin(shape, angle, drift) -> int:
    h, w = shape
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float)
    reach = 0.0
    for d in drift:
        rot = geometry.raw_to_rotated(corners, angle, shape, d)
        reach = max(reach, -rot.min(), (rot - (np.array(shape) - 1)).max())
    return int(math.ceil(reach)) + 4


def make_layout(cfg: SyntheticConfig, position: int) -> Layout:
    """Place the trench array of ``position`` (deterministic for the seed).

    Trench axes are put on half-pixel or whole-pixel columns so that the crop
    columns ``x_center - (width - 1) / 2 + j`` are whole rotated-frame pixels, and
    ``y_closed`` (first lumen row) is whole: with angle 0 and whole-pixel drift a
    crop is then a plain slice of the frame.
    """
    rng = rng_for(cfg, "layout", position)
    shape = (int(cfg.height), int(cfg.width))
    angle = float(cfg.angle_deg) if cfg.angle_deg is not None else float(
        rng.uniform(-cfg.max_angle_deg, cfg.max_angle_deg))
    drift, psf_sigma = _drift_and_focus(cfg, position)
    margin = _canvas_margin(shape, angle, drift)
    if cfg.edge_trenches == "cells":
        # Room for the whole box of every trench cut by the frame edge, cells included.
        margin += int(cfg.box_width) + 8
    L, bw = cfg.resolved_trench_length(), int(cfg.box_width)
    sets, feed = _set_rows(cfg, rng, shape[0])
    phase = rng.uniform(0.0, cfg.pitch_px)

    lumens, truth = [], []
    for s, (y_closed, direction) in enumerate(sets):
        x_first = phase + (cfg.set_offset_px if s == 1 else 0.0)
        k = np.arange(math.floor((-margin - x_first) / cfg.pitch_px),
                      math.ceil((shape[1] + margin - x_first) / cfg.pitch_px) + 1)
        x_center = np.round(x_first + k * cfg.pitch_px - (bw - 1) / 2) + (bw - 1) / 2
        corners = np.stack([geometry.box_corners(x, y_closed, direction, L, bw) for x in x_center])
        inside = _box_inside(corners, angle, shape, drift)
        for x, ok in zip(x_center, inside):
            if ok:
                truth.append((s, x, y_closed, direction))
            if ok or cfg.edge_trenches != "omit":
                lumens.append((x, y_closed, direction, ok))

    if not truth:
        warnings.warn(f"position {position}: no trench box fits in a {shape} frame at angle "
                      f"{angle:.2f} deg; enlarge the frame or shorten the trenches", stacklevel=3)
    rows = []
    for s, x, y_closed, direction in truth:
        raw = geometry.rotated_to_raw(geometry.box_corners(x, y_closed, direction, L, bw),
                                      angle, shape)
        rows.append([s, 0, x, y_closed, direction, L, bw, angle, False,
                     *raw[:, 0], *raw[:, 1], float(cfg.trench_width_px)])
    trenches = pd.DataFrame(rows, columns=["set", "trench", "x_center", "y_closed", "direction",
                                           "height", "width", "angle_deg", "empty",
                                           *_CORNER_COLS, "trench_width_px"])
    trenches = trenches.astype({"set": int, "y_closed": int, "direction": int, "height": int,
                                "width": int, "empty": bool})
    # `trench` is the rank of x_center within its set.
    trenches["trench"] = trenches.groupby("set")["x_center"].rank(method="first").astype(int) - 1
    trenches = trenches.sort_values(["set", "trench"]).reset_index(drop=True)

    key = {(r.set, r.x_center): i for i, r in enumerate(trenches.itertuples())}
    lum = pd.DataFrame(lumens, columns=["x_center", "y_closed", "direction", "in_truth"])
    set_of_row = {y: s for s, (y, _) in enumerate(sets)}
    lum["row"] = [key[(set_of_row[y], x)] if ok else -1
                  for x, y, ok in zip(lum.x_center, lum.y_closed, lum.in_truth)]
    return Layout(shape=shape, angle_deg=angle, drift=drift, psf_sigma=psf_sigma,
                  trench_length=L, box_width=bw, feed_edges=feed, margin=margin,
                  trenches=trenches, lumens=lum.drop(columns="in_truth"))


def with_edge_trenches(layout: Layout) -> Layout:
    """``layout`` with the edge lumens (``row == -1``) appended to ``trenches``.

    For ``edge_trenches="cells"``: the appended rows (``trench == -1``) are
    simulated and rendered like the others and then removed from the truth.
    Only lumens whose box lies inside the canvas are added.
    """
    tr = layout.trenches
    edge = layout.lumens[layout.lumens["row"] < 0]
    H, W = layout.canvas_shape
    L, bw, m = layout.trench_length, layout.box_width, layout.margin
    x0 = np.round(edge.x_center.to_numpy() - (bw - 1) / 2) + m
    y0 = np.where(edge.direction.to_numpy() == 1, edge.y_closed.to_numpy(),
                  edge.y_closed.to_numpy() - L + 1) + m
    fits = (x0 >= 0) & (x0 + bw <= W) & (y0 >= 0) & (y0 + L <= H)
    edge = edge[fits]
    sets = dict(zip(zip(tr.y_closed, tr.direction), tr["set"]))
    extra = pd.DataFrame({
        "set": [sets.get((y, d), 0) for y, d in zip(edge.y_closed, edge.direction)],
        "trench": -1, "x_center": edge.x_center.to_numpy(), "y_closed": edge.y_closed.to_numpy(),
        "direction": edge.direction.to_numpy(), "height": L, "width": bw,
        "angle_deg": layout.angle_deg, "empty": False})
    trenches = pd.concat([tr, extra], ignore_index=True)
    trenches = trenches.astype({"set": int, "trench": int, "y_closed": int, "direction": int,
                                "height": int, "width": int, "empty": bool})
    return dataclasses.replace(layout, trenches=trenches)


def _rounded_box_sdf(yy, xx, y0, y1, x0, x1, radius):
    """Signed distance to a box ``[y0, y1] x [x0, x1]`` with rounded corners."""
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    qy = np.abs(yy - cy) - ((y1 - y0) / 2 - radius)
    qx = np.abs(xx - cx) - ((x1 - x0) / 2 - radius)
    outside = np.hypot(np.maximum(qy, 0), np.maximum(qx, 0))
    return outside + np.minimum(np.maximum(qy, qx), 0) - radius


def pdms_coverage(layout: Layout, cfg: SyntheticConfig) -> np.ndarray:
    """Fraction of each canvas pixel covered by PDMS (1) rather than medium (0).

    The medium is the feeding channel plus the trench lumens; the PDMS walls
    between lumens are rounded where they meet the feeding channel.
    """
    H, W = layout.canvas_shape
    m = layout.margin
    cover = np.ones((H, W), np.float32)
    f0, f1 = layout.feed_edges
    rows = np.arange(H) - m
    cover[(rows > f0) & (rows < f1)] = 0.0
    half = cfg.trench_width_px / 2
    r = min(cfg.pillar_corner_radius_px, 0.45 * (cfg.pitch_px - cfg.trench_width_px))
    L = layout.trench_length
    for (y_closed, direction), lum in layout.lumens.groupby(["y_closed", "direction"]):
        xs = np.sort(lum.x_center.to_numpy())
        closed_edge = y_closed - 0.5 * direction
        open_edge = closed_edge + direction * L
        lo, hi = sorted((closed_edge, open_edge))
        cover[(rows > lo) & (rows < hi)] = 0.0
        # Walls: boxes between neighbouring lumens reaching past the closed end,
        # so only their open-end corners show the rounding.
        ext = 2 * r + 2
        if direction == 1:
            wy0, wy1 = closed_edge - ext, open_edge
        else:
            wy0, wy1 = open_edge, closed_edge + ext
        a0 = max(int(math.floor(wy0)) + m - 2, 0)
        a1 = min(int(math.ceil(wy1)) + m + 3, H)
        yy = np.arange(a0, a1)[:, None] - m
        edges = np.concatenate([[-m - 4 * r], np.ravel(np.column_stack([xs - half, xs + half])),
                                [W - m + 4 * r]])
        for x0, x1 in edges.reshape(-1, 2):
            c0, c1 = max(int(math.floor(x0)) + m - 1, 0), min(int(math.ceil(x1)) + m + 2, W)
            if c1 <= c0:
                continue
            xx = np.arange(c0, c1)[None, :] - m
            wall = np.clip(0.5 - _rounded_box_sdf(yy, xx, wy0, wy1, x0, x1, r), 0, 1)
            block = cover[a0:a1, c0:c1]
            np.maximum(block, wall, out=block)
    return cover
