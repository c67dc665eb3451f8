"""estimate_drift: sub-pixel translation, sign convention, stacks and reuse of the reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from batchlib.trench.detection import DriftEstimator, estimate_drift, estimate_drift_stack


def _scene(shape=(600, 520), seed=0):
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.random((shape[0] + 40, shape[1] + 40)), 3) * 4000
    return big


def _moved(big, d, shape, noise, rng):
    """Crop of ``big`` whose content is moved by ``+d`` (sub-pixel, spline shift)."""
    moved = ndimage.shift(big, d, order=3, mode="nearest")
    frame = moved[20:20 + shape[0], 20:20 + shape[1]]
    return (frame + rng.normal(0, noise, shape)).astype(np.float32)


@pytest.mark.parametrize("d", [(0.0, 0.0), (0.37, -0.81), (-2.6, 1.45), (4.2, 3.9)])
def test_sub_pixel_drift_and_sign(d):
    shape = (600, 520)
    rng = np.random.default_rng(1)
    big = _scene(shape)
    ref = _moved(big, (0, 0), shape, 20, rng)
    frame = _moved(big, d, shape, 20, rng)
    dy, dx = estimate_drift(ref, frame)
    assert np.hypot(dy - d[0], dx - d[1]) < 0.3
    assert abs(dy - d[0]) < 0.1 and abs(dx - d[1]) < 0.1


def test_stack_and_estimator_agree():
    shape = (300, 280)
    rng = np.random.default_rng(2)
    big = _scene(shape, seed=3)
    truth = np.array([(0, 0), (0.5, 0.2), (1.1, -0.4), (-0.7, 1.9)])
    frames = np.stack([_moved(big, d, shape, 5, rng) for d in truth])
    drifts = estimate_drift_stack(frames[0], frames)
    assert drifts.shape == (4, 2)
    assert np.abs(drifts - truth).max() < 0.2
    est = DriftEstimator(frames[0])
    assert np.allclose([est(f) for f in frames], drifts)
    # the function gives what the estimator gives (no state kept between calls)
    assert estimate_drift(frames[0], frames[2], prior=drifts[1]) == pytest.approx(tuple(drifts[2]))
    assert DriftEstimator(frames[0], prior=drifts[1])(frames[2]) == pytest.approx(tuple(drifts[2]))


def test_changed_reference_is_not_reused():
    shape = (256, 256)
    rng = np.random.default_rng(4)
    big = _scene(shape, seed=5)
    ref = _moved(big, (0, 0), shape, 1, rng)
    frame = _moved(big, (1.5, 0.0), shape, 1, rng)
    first = estimate_drift(ref, frame)
    ref[:] = _moved(big, (1.5, 0.0), shape, 1, rng)  # same array object, new content
    second = estimate_drift(ref, frame)
    assert first[0] == pytest.approx(1.5, abs=0.2)
    assert second[0] == pytest.approx(0.0, abs=0.2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        estimate_drift(np.zeros((64, 64)), np.zeros((64, 65)))


def test_incremental_movie_drift_equals_a_run_over_the_whole_movie():
    """A rerun on appended frames seeds its prior from the last stored row, so it
    decides every frame as one run over the whole movie does (bit for bit)."""
    from batchlib.trench.detection.movie import detect_in_movie, movie_drift
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    pos = simulate_position(SyntheticConfig(height=256, width=256, n_timepoints=6, channels=("phase",),
                                            n_sets=1, seed=3, drift_step_px=0.8), 0)
    movie = pos.movies["phase"]
    layout, reference = detect_in_movie(movie, "phase")
    whole = movie_drift(movie, reference, layout, "phase")
    first = movie_drift(movie[:3], reference, layout, "phase")
    rest = movie_drift(movie, reference, layout, "phase", start=3, previous=first)
    np.testing.assert_array_equal(rest, whole)
    assert np.abs(whole).max() > 0.3  # the movie does drift


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fluorescence_boxes_follow_both_sets_closed_ends_through_a_drifting_movie(seed):
    """Two facing sets, 8 frames drifting 3-5 px along the trenches, closed ends
    within the tip window of the image's edge. The maximum projection holds each
    set's tips at their outermost over the movie, so one rigid drift fitted one
    set only, and tips cut by the edge were not seen at all (the drift then came
    from the cross-correlation: boxes -11 to +8 px off). Now every filled box's
    closed end stays within a pixel of the truth in every frame."""
    from batchlib.trench.detection.movie import detect_in_movie, movie_drift
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    cfg = SyntheticConfig(height=512, width=512, n_timepoints=8, channels=("phase", "gfp"),
                          seed=seed, n_sets=2, angle_deg=0.8, drift_step_px=1.2,
                          max_drift_px=5.0)
    pos = simulate_position(cfg, 0)
    layout, reference = detect_in_movie(pos.movies["gfp"], "fluorescence")
    drift = movie_drift(pos.movies["gfp"], reference, layout, "fluorescence")
    a = np.deg2rad(cfg.angle_deg)

    def along(d):
        return np.cos(a) * d[:, 0] + np.sin(a) * d[:, 1]

    assert np.ptp(along(pos.drift)) > 2.5
    assert layout.quality["closed_end_frame_shift_px"] > 2.0   # a set was moved in
    boxes = layout.trenches
    margin = layout.quality["closed_end_margin_px"]
    truth = pos.trenches[~pos.trenches["empty"]]
    assert len(truth) >= 10
    for _, t in truth.iterrows():
        cost = np.abs(boxes["x_center"] - t["x_center"]) + 1e6 * (boxes["direction"] != t["direction"])
        box = boxes.iloc[int(np.argmin(cost.to_numpy()))]
        err = (box["y_closed"] + along(drift) - t["y_closed"] - along(pos.drift)) * t["direction"]
        assert np.all(np.abs(err + margin) <= 1.0), (t["x_center"], err + margin)


def _correlation_spectrum(peaks, shape=(64, 64)):
    """The spectrum whose inverse DFT is a sum of Gaussian peaks ``(dy, dx, height)``."""
    yy, xx = np.meshgrid(*(np.fft.fftfreq(n) * n for n in shape), indexing="ij")
    corr = sum(h * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / 2.0) for dy, dx, h in peaks)
    return np.fft.fft2(corr)


@pytest.mark.parametrize("near_height,want", [(0.95, (-1.0, 1.0)), (0.8, (-11.0, 1.0))])
def test_a_peak_next_to_the_expected_drift_wins_unless_far_lower(near_height, want):
    from batchlib.trench.detection.drift import _integer_peak

    # independent simulator 1090: cells that moved along their trenches correlate a
    # little better 20 px away (here 10) than the stage's true drift next to the prior
    c = _correlation_spectrum([(-1.0, 1.0, near_height), (-11.0, 1.0, 1.0)])
    assert tuple(_integer_peak(c, prior=(-0.5, 0.5), near=2.0)) == want
    # without a radius the highest peak is taken, as before
    assert tuple(_integer_peak(c, prior=(-0.5, 0.5))) == (-11.0, 1.0)


def test_phase_drift_is_not_taken_by_cells_moving_along_their_trenches():
    """Independent simulator 1090: in frame 6 the whole-frame correlation was highest at
    a shift of -21.6 px along the trenches (true -1.35) and frame 7 kept it as its prior;
    the crops of both frames started 20 px out in the PDMS."""
    import sys
    from pathlib import Path

    from batchlib.trench.detection.movie import detect_in_movie, movie_drift

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from independent_sim import simulate

    acq = simulate(1090)
    layout, reference = detect_in_movie(acq.phase, "phase")
    drift = movie_drift(acq.phase, reference, layout, "phase")
    assert np.abs(drift - acq.drift_yx).max() < 0.6, np.round(drift - acq.drift_yx, 2)


def _blobs_in_empty_boxes(movie, layout, seed):
    """``movie`` (float32) with a bright blob at a random place near the closed end of
    every empty box of ``layout`` in every frame (debris, a loose cell: no mother)."""
    a = np.deg2rad(layout.angle_deg)
    cy, cx = (movie.shape[1] - 1) / 2, (movie.shape[2] - 1) / 2
    yy, xx = np.mgrid[:movie.shape[1], :movie.shape[2]]
    rng = np.random.default_rng(seed)
    painted = movie.astype(np.float32)
    empty = layout.trenches[layout.trenches["empty"].to_numpy(bool)]
    for t in range(movie.shape[0]):
        for _, b in empty.iterrows():
            ry = b["y_closed"] + b["direction"] * rng.uniform(2, 30) - cy
            rx = b["x_center"] - cx
            y, x = cy + np.cos(a) * ry + np.sin(a) * rx, cx - np.sin(a) * ry + np.cos(a) * rx
            painted[t] += 3000.0 * np.exp(-(yy - y) ** 2 / 32.0 - (xx - x) ** 2 / 8.0)
    return painted


def test_a_fluorescence_drift_rests_on_the_filled_boxes_only():
    """The drift along the trenches is the median shift of the mother cells' tips; an
    empty box has no mother, and what its window finds (debris, a loose cell, noise)
    moves at random. A turned movie's empty box 8 gave a "tip" 40 rows or -3 rows from
    its closed end depending on a 3e-7 deg change of angle, and moved the frame's drift
    by 0.3 px. Here every empty box holds a bright blob at a random place in every frame:
    the drift is that of the layout without its empty boxes, bit for bit, and within
    0.1 px of the truth; counting the empty boxes' blobs (their flags cleared) changes it."""
    import copy

    from batchlib.trench.detection.movie import detect_in_movie, movie_drift
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    cfg = SyntheticConfig(height=512, width=512, n_timepoints=8, channels=("phase", "gfp"),
                          seed=1, n_sets=2, angle_deg=0.8, drift_step_px=1.2,
                          max_drift_px=5.0, empty_fraction=0.5)
    pos = simulate_position(cfg, 0)
    movie = pos.movies["gfp"]
    layout, reference = detect_in_movie(movie, "fluorescence")
    tr = layout.trenches
    empty = tr[tr["empty"].to_numpy(bool)]
    assert len(empty) >= 6 and len(tr) - len(empty) >= 6
    a = np.deg2rad(layout.angle_deg)
    painted = _blobs_in_empty_boxes(movie, layout, seed=0).astype(movie.dtype)

    def along(d):
        return np.cos(a) * d[:, 0] + np.sin(a) * d[:, 1]

    drift = movie_drift(painted, reference, layout, "fluorescence")
    filled_only = copy.deepcopy(layout)
    filled_only.trenches = tr[~tr["empty"].to_numpy(bool)].reset_index(drop=True)
    np.testing.assert_array_equal(drift, movie_drift(painted, reference, filled_only,
                                                     "fluorescence"))
    error = along(drift) - along(drift)[0] - (along(pos.drift) - along(pos.drift)[0])
    assert np.abs(error).max() <= 0.1, error
    flags_cleared = copy.deepcopy(layout)
    flags_cleared.trenches["empty"] = False
    assert not np.array_equal(drift, movie_drift(painted, reference, flags_cleared,
                                                 "fluorescence"))


def test_the_tip_scatter_that_orients_a_single_set_counts_filled_boxes_only():
    """:func:`.closed_end_drift.tip_scatter` tells the closed end from the open one (the
    mothers' tips stay put at the closed end). An empty box has no mother: a blob
    painted at a random place near the closed end of every empty box in every frame
    would make the closed end look as restless as an open one. The scatter is that of
    the filled boxes alone, and well under a pixel; with the empty flags cleared (the
    blobs counted) it is larger."""
    import copy

    from batchlib.trench.detection.closed_end_drift import tip_scatter
    from batchlib.trench.detection.movie import detect_in_movie
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    cfg = SyntheticConfig(height=512, width=512, n_timepoints=3, channels=("phase", "gfp"),
                          seed=5, n_sets=1, angle_deg=0.5, empty_fraction=0.5)
    movie = simulate_position(cfg, 0).movies["gfp"]
    layout, reference = detect_in_movie(movie, "fluorescence")
    tr = layout.trenches
    empty = tr[tr["empty"].to_numpy(bool)]
    assert len(empty) >= 4 and len(tr) - len(empty) >= 4
    frames = list(_blobs_in_empty_boxes(movie, layout, seed=1))
    scatter = tip_scatter(reference, frames, tr, layout.angle_deg)
    filled = tr[~tr["empty"].to_numpy(bool)]
    assert scatter == tip_scatter(reference, frames, filled, layout.angle_deg)
    assert scatter < 1.0
    cleared = copy.deepcopy(tr)
    cleared["empty"] = False
    assert tip_scatter(reference, frames, cleared, layout.angle_deg) > scatter
