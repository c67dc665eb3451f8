"""The outer foot of a fluorescence trench's outermost cell (detection/ends.py: outer_foot)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from batchlib.trench.detection.ends import CELL_REACH, outer_foot

ROWS = np.arange(200, 300, dtype=float)


def cells(*spans, sigma=1.5):
    """A blurred profile of cells ``(first row, last row, level)`` along ROWS."""
    p = np.zeros(ROWS.size)
    for a, b, level in spans:
        p[(ROWS >= a) & (ROWS <= b)] = level
    return ndimage.gaussian_filter1d(p, sigma)


@pytest.mark.parametrize("mother_level", [140.0, 160.0, 250.0])
def test_a_dim_mother_below_a_bright_daughter_is_not_cut(mother_level):
    # the mother (rows 220-250) at a fifth to 0.4 of the level of the daughter touching it
    # (rows 251-280): a shoulder on the daughter's flank, as in held-out curved_cells 10167
    p = cells((220, 250, mother_level), (251, 280, 660.0))
    foot = outer_foot(ROWS, p, 221.0, +1, reach=CELL_REACH)
    assert 217.0 <= foot < 220.0  # in the mother's own tail, outside its first row
    if mother_level < 0.3 * 660:  # at the daughter's level the walk goes through the mother
        assert outer_foot(ROWS, p, 221.0, +1) > 220.0
    # the same trench pointing the other way
    flipped = outer_foot(ROWS, p[::-1].copy(), 278.0, -1, reach=CELL_REACH)
    assert flipped == pytest.approx(ROWS[0] + ROWS[-1] - foot)


def test_the_outermost_cell_brighter_than_the_next_keeps_its_own_foot():
    p = cells((220, 250, 660.0), (253, 280, 150.0))
    lone = outer_foot(ROWS, cells((220, 250, 660.0)), 221.0, +1)
    assert outer_foot(ROWS, p, 221.0, +1) == pytest.approx(lone)
    assert outer_foot(ROWS, p, 221.0, +1, reach=CELL_REACH) == pytest.approx(lone)


def test_noise_on_a_single_cell_moves_its_foot_by_less_than_a_pixel():
    clean = cells((220, 270, 300.0))
    ref = outer_foot(ROWS, clean, 221.0, +1, reach=CELL_REACH)
    rng = np.random.default_rng(1)
    feet = [outer_foot(ROWS, ndimage.gaussian_filter1d(clean + rng.normal(0, 15.0, ROWS.size), 1.0),
                       221.0, +1, reach=CELL_REACH) for _ in range(200)]
    assert np.max(np.abs(np.array(feet) - ref)) < 1.0


def test_a_dim_mother_beyond_a_dip_is_found_from_the_outside():
    # a gap between the mother and the daughter: from the daughter's peak the walk stops
    # in the dip and says nothing about the mother; from the outside in, the mother is found
    p = cells((220, 248, 150.0), (253, 280, 660.0))
    assert outer_foot(ROWS, p, 221.0, +1) > 248.0
    assert 217.0 <= outer_foot(ROWS, p, 221.0, +1, reach=CELL_REACH) < 220.0


def test_without_profile_beyond_the_end_the_brightest_peak_is_used():
    p = cells((203, 248, 150.0), (251, 280, 660.0))
    # the set's end at row 204: only 4 rows of the profile lie beyond it
    assert outer_foot(ROWS, p, 204.0, +1, reach=CELL_REACH) == outer_foot(ROWS, p, 204.0, +1)
