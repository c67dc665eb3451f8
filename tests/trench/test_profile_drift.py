"""A phase frame's drift along the trenches is matched at the boxes' closed ends
(detection/profile_drift.py), not read off cells that moved."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchlib.trench.detection.profile_drift import closed_end_shift, phase_drift

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _frame(shift_y, shift_x=0.0, cells_at=(60.0, 90.0), seed=0):
    """A 160 x 200 chip: lumens (x 20, 50, ..., 170) whose blurred closed ends lie at
    row 40 + ``shift_y``, dark cells at ``cells_at`` rows below them (they move along
    the lumens between frames, the chip only by the drift)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:160, 0:200].astype(float)
    x = xx - shift_x
    lumen = np.abs(((x - 5) % 30) - 15) < 5
    image = 100.0 + 100.0 * lumen / (1 + np.exp(-(yy - 40 - shift_y) / 1.5))
    for row in cells_at:
        image -= 80.0 * lumen * np.exp(-0.5 * ((yy - 40 - shift_y - row) / 6.0) ** 2)
    return image + rng.normal(0, 1.0, image.shape)


BOXES = pd.DataFrame({"x_center": np.arange(20.0, 200.0, 30.0), "y_closed": 37.0})


def test_the_closed_ends_give_the_shift_along_the_trenches():
    reference = _frame(0.0)
    moved = _frame(1.3, cells_at=(66.0, 101.0), seed=1)      # the cells moved on
    shifts = closed_end_shift(reference, moved, BOXES, 0.0)
    assert np.allclose(shifts, 1.3, atol=0.1)
    # from a cross-correlation 2 px off along the trenches, right across them
    dy, dx = phase_drift(reference, moved, BOXES, 0.0, (-0.7, 0.0))
    assert abs(dy - 1.3) < 0.1 and dx == 0.0


def test_boxes_that_disagree_leave_the_cross_correlation_as_it_was():
    # half of the closed ends moved 2 px one way, half the other: no one drift
    reference = _frame(0.0)
    torn = np.concatenate([_frame(2.0, seed=1)[:, :95], _frame(-2.0, seed=2)[:, 95:]], axis=1)
    assert np.allclose(closed_end_shift(reference, torn, BOXES, 0.0), [2, 2, 2, -2, -2, -2],
                       atol=0.15)
    assert phase_drift(reference, torn, BOXES, 0.0, (0.4, 0.2)) == (0.4, 0.2)
    # too few boxes to tell
    moved = _frame(1.3, seed=1)
    assert phase_drift(reference, moved, BOXES.iloc[:2], 0.0, (0.4, 0.2)) == (0.4, 0.2)


@pytest.mark.parametrize("seed,worst_before", [(1041, 2.80), (1103, 2.25)])
def test_independent_positions_whose_cells_pulled_the_drift_along(seed, worst_before):
    """Independent simulator 1041 and 1103: the whole-frame cross-correlation was 2.8 and
    2.25 px off along the trenches in single frames (within 0.05 px across them)."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent
    import independent_sim

    from batchlib.trench.detection.movie import detect_in_movie, movie_drift

    acq = independent_sim.simulate(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout, reference = detect_in_movie(acq.phase, "phase",
                                            box_width=bench_independent.box_width(acq.pixel_size_um))
        drift = movie_drift(acq.phase, reference, layout, "phase")
    error = np.abs((drift - drift[0]) - (acq.drift_yx - acq.drift_yx[0]))
    assert error.max() < 0.3, (worst_before, error.max())


def test_independent_1103_keeps_its_mothers_whole_in_every_frame():
    """1103's frame 1 boxes started 2.25 px inside their closed ends: the Segment job read
    the lumen's start 7 rows in and 8 mothers lost 6-7 rows (mothers within 5 % 0.812)."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent
    import independent_sim

    row = bench_independent.run_position(independent_sim.simulate(1103), 1103, "phase")
    assert row["mother len 5%"] >= 0.95 and row["F1"] >= 0.99, row
