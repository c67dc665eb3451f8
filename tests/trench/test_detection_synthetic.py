"""Detection, drift and cropping on the synthetic generator's positions (exact truth)."""
from __future__ import annotations

import numpy as np
import pytest

from batchlib.trench.detection import (crop_trenches, detect_trenches, estimate_drift,
                                       estimate_drift_stack)
from batchlib.trench.geometry import crop_box, raw_to_rotated, rotated_to_raw
from batchlib.trench.synthetic import SyntheticConfig, simulate_position

SMALL = dict(height=384, width=448, n_timepoints=4, channels=("phase", "gfp"))


def _centres(df, angle, shape):
    yc = df["y_closed"].to_numpy(float) + df["direction"].to_numpy(float) * (
        df["height"].to_numpy(float) - 1) / 2
    return rotated_to_raw(np.stack([yc, df["x_center"].to_numpy(float)], -1), angle, shape)


def match(layout, truth, true_angle, shape, pitch):
    """Pairs (true row, detected row) within a quarter pitch across, and box IoUs."""
    det = layout.trenches
    tc = raw_to_rotated(_centres(truth, true_angle, shape), true_angle, shape)
    dc = raw_to_rotated(_centres(det, layout.angle_deg, shape), true_angle, shape)
    pairs, ious = [], []
    for i in range(len(tc)):
        d = np.abs(dc[:, 1] - tc[i, 1]) + 1e3 * (np.abs(dc[:, 0] - tc[i, 0]) > truth["height"].iloc[i] / 2)
        j = int(np.argmin(d))
        if d[j] < pitch / 4:
            pairs.append((i, j))
            t, r = truth.iloc[i], det.iloc[j]
            iy = max(0, min(tc[i, 0] + t.height / 2, dc[j, 0] + r.height / 2)
                     - max(tc[i, 0] - t.height / 2, dc[j, 0] - r.height / 2))
            ix = max(0, min(tc[i, 1] + t.width / 2, dc[j, 1] + r.width / 2)
                     - max(tc[i, 1] - t.width / 2, dc[j, 1] - r.width / 2))
            ious.append(iy * ix / (t.height * t.width + r.height * r.width - iy * ix))
    return pairs, np.array(ious)


@pytest.fixture(scope="module")
def two_sets():
    return simulate_position(SyntheticConfig(**SMALL, seed=11, n_sets=2, angle_deg=-1.7), 0)


@pytest.fixture(scope="module", params=[1, -1])
def one_set(request):
    cfg = SyntheticConfig(**SMALL, seed=12, n_sets=1, single_set_direction=request.param,
                          pitch_px=40.0, trench_width_px=13.0)
    return simulate_position(cfg, 0)


def _check_phase(pos, layout):
    cfg = pos.metadata["config"]
    truth = pos.trenches
    shape = pos.movies["phase"].shape[1:]
    assert abs(layout.angle_deg - pos.metadata["angle_deg"]) < 0.05
    assert layout.pitch == pytest.approx(cfg["pitch_px"], abs=0.1)
    pairs, ious = match(layout, truth, pos.metadata["angle_deg"], shape, cfg["pitch_px"])
    assert len(pairs) == len(truth) == len(layout.trenches)
    assert ious.min() > 0.85
    ti, dj = map(list, zip(*pairs))
    assert np.array_equal(truth["direction"].to_numpy()[ti], layout.trenches["direction"].to_numpy()[dj])
    # the closed end found: the box's first row, the layout's margin (PDMS kept) back
    found = (layout.trenches["y_closed"].to_numpy()[dj]
             + layout.quality["closed_end_margin_px"] * layout.trenches["direction"].to_numpy()[dj])
    assert np.abs(truth["y_closed"].to_numpy()[ti] - found).max() < 1.0
    assert np.array_equal(truth["empty"].to_numpy()[ti], layout.trenches["empty"].to_numpy()[dj])


def test_two_sets_on_phase(two_sets):
    layout = detect_trenches(two_sets.movies["phase"][0], box_width=two_sets.metadata["box_width"])
    _check_phase(two_sets, layout)
    assert list(layout.sets["set"]) == [0, 1] and list(layout.sets["direction"]) == [1, -1]
    # set 0 has the smaller closed-end row; trenches ordered by (set, trench) and x
    t = layout.trenches
    assert t["y_closed"].iloc[0] < t["y_closed"].iloc[-1]
    for _, g in t.groupby("set"):
        assert list(g["trench"]) == list(range(len(g))) and np.all(np.diff(g["x_center"]) > 0)
    q = layout.quality
    assert q["confidence"] > 0.5 and q["pitch_regularity"] > 0.9 and q["n_trenches"] == len(t)
    assert q["empty_fraction"] == pytest.approx(two_sets.trenches["empty"].mean())


def test_one_set_direction_on_phase(one_set):
    layout = detect_trenches(one_set.movies["phase"][0])
    _check_phase(one_set, layout)
    assert len(layout.sets) == 1


def test_fluorescence_max_projection_finds_the_filled_trenches(two_sets):
    cfg = two_sets.metadata["config"]
    layout = detect_trenches(two_sets.movies["gfp"].max(axis=0), kind="fluorescence")
    assert layout.quality["may_miss_empty"] == 1.0
    filled = two_sets.trenches[~two_sets.trenches["empty"]]
    lay_filled = type(layout)(layout.angle_deg, layout.pitch, layout.sets,
                              layout.trenches[~layout.trenches["empty"]].reset_index(drop=True),
                              layout.quality, layout.image_shape)
    pairs, ious = match(lay_filled, filled.reset_index(drop=True), two_sets.metadata["angle_deg"],
                        (cfg["height"], cfg["width"]), cfg["pitch_px"])
    assert len(pairs) == len(filled) == len(lay_filled.trenches)
    assert np.median(ious) > 0.85


def test_drift_of_the_phase_movie(two_sets):
    movie = two_sets.movies["phase"]
    drifts = estimate_drift_stack(movie[0], movie)
    assert drifts.shape == (movie.shape[0], 2)
    assert np.abs(drifts[0]).max() < 1e-6
    assert np.linalg.norm(drifts - two_sets.drift, axis=1).max() < 0.3
    assert estimate_drift(movie[0], movie[2]) == pytest.approx(tuple(drifts[2]), abs=1e-9)


def test_crops_of_the_truth_match_geometry(two_sets):
    truth = two_sets.trenches
    t = 2
    frame = two_sets.movies["gfp"][t]
    crops = crop_trenches(frame, truth, drift_yx=two_sets.drift[t])  # angle from the column
    assert crops.shape == (len(truth), truth["height"].iloc[0], truth["width"].iloc[0])
    assert crops.dtype == frame.dtype
    for k, r in enumerate(truth.itertuples()):
        ref = crop_box(frame, r.x_center, r.y_closed, r.direction, r.height, r.width,
                       r.angle_deg, two_sets.drift[t])
        assert np.array_equal(crops[k], ref)
    # mother cells sit at the closed end: row 0 side of every filled crop is bright
    filled = crops[~truth["empty"].to_numpy()].astype(float)
    assert np.all(filled[:, :20].mean(axis=(1, 2)) > crops[truth["empty"].to_numpy()].mean())
