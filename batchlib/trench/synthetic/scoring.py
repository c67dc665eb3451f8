"""Comparing detected trench boxes and segmentations with the synthetic truth.

Plain functions on the truth tables of :func:`simulate_position` and on the
``trenches`` table of a :class:`~batchlib.trench.detection.TrenchLayout` (any
table with ``x_center, y_closed, direction, height, width`` and the raw corners
``raw_y0..3, raw_x0..3``), for tests and benchmarks.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..geometry import box_sample_grid, raw_to_rotated, rotated_to_raw

__all__ = ["match_boxes", "edge_lumen_boxes", "closed_end_errors", "mother_top_rows",
           "labels_in_boxes", "count_labels"]


def _centres(df, angle, shape):
    yc = df["y_closed"].to_numpy(float) + df["direction"].to_numpy(float) * (
        df["height"].to_numpy(float) - 1) / 2
    return rotated_to_raw(np.stack([yc, df["x_center"].to_numpy(float)], -1), angle, shape)


def match_boxes(det, det_angle, truth, true_angle, shape, pitch):
    """Pair detected boxes with true ones.

    A detected box matches a true one when its centre lies within a quarter
    pitch across and half a box height along the true trench (both measured in
    the true rotated frame); each box is used once, the closest across wins.

    Returns
    -------
    pairs : list of (int, int)
        ``(true row, detected row)`` (positions in the tables).
    ious : list of float
        IoU of the paired boxes as axis-aligned rectangles of the true frame.
    """
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


def edge_lumen_boxes(det, det_angle, cfg, position, angle, shape) -> np.ndarray:
    """Which detected boxes lie on a lumen the generator leaves out of the truth.

    The truth holds the trenches whose *box* stays inside every frame; with
    ``cfg.edge_trenches`` ``"empty"`` or ``"cells"`` the others are drawn too.
    Detection keeps a trench whose *lumen* lies in the frame (its box filled beyond
    the edge): such a box is on a real trench, neither a true nor a false positive.
    A box that matches a true trench is never one of these.

    Parameters
    ----------
    det : DataFrame
        Detected boxes (a layout's ``trenches``); ``det_angle`` its angle.
    cfg, position
        The generator's configuration and the position simulated.
    angle, shape
        The true angle and the frame's shape.
    """
    from .chip import make_layout

    out = np.zeros(len(det), bool)
    if cfg.edge_trenches == "omit" or not len(det):
        return out
    layout = make_layout(cfg, int(position))
    edge = layout.lumens[layout.lumens["row"] < 0]
    if not len(edge):
        return out
    edge = edge.assign(height=int(layout.trench_length), width=int(layout.box_width))
    in_truth = {j for _, j in match_boxes(det, det_angle, layout.trenches, angle, shape,
                                          cfg.pitch_px)[0]}
    for _, j in match_boxes(det, det_angle, edge, angle, shape, cfg.pitch_px)[0]:
        out[j] = j not in in_truth
    return out


def closed_end_errors(det, truth, pairs, true_angle, shape) -> np.ndarray:
    """Signed distance (px) from the true to the detected first box row, per pair.

    Both are the centre of the box's first (closed-end) row, from the raw
    corners 0 and 1, measured along the true trench axis in the true rotated
    frame. Positive: the detected box starts inside the lumen (towards the open
    end), so it may cut the mother cell; negative: it starts in the wall.
    """
    if not pairs:
        return np.zeros(0)
    ti, dj = (np.array(v) for v in zip(*pairs))

    def first_row(df, rows):
        y = (df["raw_y0"].to_numpy(float)[rows] + df["raw_y1"].to_numpy(float)[rows]) / 2
        x = (df["raw_x0"].to_numpy(float)[rows] + df["raw_x1"].to_numpy(float)[rows]) / 2
        return raw_to_rotated(np.stack([y, x], -1), true_angle, shape)[:, 0]

    direction = truth["direction"].to_numpy(float)[ti]
    return (first_row(det, dj) - first_row(truth, ti)) * direction


def mother_top_rows(trench_labels, t: int = 0) -> np.ndarray:
    """First crop row of the mother (label 1) of every true trench at frame ``t`` (NaN: none)."""
    mother = np.asarray(trench_labels)[:, t] == 1
    has = mother.any(axis=(1, 2))
    top = np.argmax(mother.any(axis=2), axis=1).astype(float)
    top[~has] = np.nan
    return top


def labels_in_boxes(frame_labels, boxes: pd.DataFrame, angle_deg, drift_yx=(0.0, 0.0)):
    """True cell ids sampled (nearest pixel) on the grid of each box: ``(n, height, width)``.

    The truth of crops cut with any geometry, e.g. a detected one: pixels
    outside the frame are 0. Off the pixel grid every boundary of this truth lies
    up to half a pixel from the cell's, so a perfect segmentation of a box at a
    random sub-pixel offset scores a mean IoU of about 0.93 against it (rods
    7-13 px wide), 1.0 on whole-pixel boxes: IoU on detected boxes reads low by
    that much; lengths measured against the true ones do not.
    """
    frame_labels = np.asarray(frame_labels)
    out = []
    H, W = frame_labels.shape
    for b in boxes.itertuples():
        rows, cols = box_sample_grid(b.x_center, b.y_closed, b.direction, int(b.height),
                                     int(b.width))
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        pts = np.rint(rotated_to_raw(np.stack([rr, cc], -1), angle_deg, (H, W), drift_yx))
        iy, ix = pts[..., 0].astype(np.intp), pts[..., 1].astype(np.intp)
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        crop = np.zeros(iy.shape, frame_labels.dtype)
        crop[ok] = frame_labels[iy[ok], ix[ok]]
        out.append(crop)
    if not out:
        return np.zeros((0, 0, 0), frame_labels.dtype)
    return np.stack(out)


def count_labels(stack) -> np.ndarray:
    """Number of distinct non-zero labels in every 2-D crop of ``(..., H, W)``."""
    a = np.asarray(stack)
    flat = a.reshape(-1, a.shape[-2] * a.shape[-1]) if a.size else np.zeros((0, 1), int)
    srt = np.sort(flat, axis=1)
    new = np.diff(srt, axis=1) != 0
    n = (new & (srt[:, 1:] != 0)).sum(axis=1) + (srt[:, :1] != 0).sum(axis=1)
    return n.reshape(a.shape[:-2])
