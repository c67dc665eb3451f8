"""The outer foot of a fluorescence trench's outermost cell (detection/ends.py: outer_foot),
the tips of a phase trench's outermost cells (_phase_cell_tips) and the closed end of a
well-loaded phase set (filled_ends.clear_closed_end)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from batchlib.trench.detection.ends import (CELL_REACH, LINE_FOLLOWS_TIPS_PX, _phase_cell_tips,
                                         _trench_ends, outer_foot)
from batchlib.trench.detection.filled_ends import clear_closed_end

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


def _phase_set(closed_end_rim, n=6, seed=0):
    """Contrast profiles (lumen minus walls, rows along axis 0) of ``n`` filled phase
    trenches without an empty one, the closed end at row 100 (the set's line drawn 4 px
    outside it, at 96), every mother's first row at 108 and its body 40 units dark (the
    walls' noise 1), as on independent simulator 1089: a bright halo between the closed
    end and the mother (rows 102-107) and, where ``closed_end_rim``, the end's own dark
    rim (rows 95-101, 12 dark) and a faint darkening of the PDMS column 10 px beyond it
    (3 dark)."""
    rows = np.arange(40.0, 260.0)
    level = np.zeros(rows.size)
    level[(rows >= 108) & (rows <= 250)] = -40.0
    level[(rows >= 102) & (rows < 108)] = 50.0
    if closed_end_rim:
        level[(rows >= 95) & (rows < 102)] = -12.0
        level[(rows >= 85) & (rows < 95)] = -3.0
    profile = ndimage.gaussian_filter1d(level, 1.0)
    rng = np.random.default_rng(seed)
    profs = profile[:, None] + rng.normal(0, 1.0, (rows.size, n))
    return rows, profs, np.ones(n, bool), (96.0, 250.0)


@pytest.mark.parametrize("closed_end_rim", [False, True])
def test_a_closed_ends_dark_rim_beyond_a_halo_is_not_taken_for_a_cell(closed_end_rim):
    rows, profs, filled, edges = _phase_set(closed_end_rim)
    tips, against_walls = _phase_cell_tips(rows, profs, filled, edges)
    assert against_walls
    # the mothers' own first rows (108, blurred), not the rim 8-13 px further out in the PDMS
    assert np.all(np.abs(tips[:, 0] - 108) <= 1.0)


def test_a_mothers_faint_fringe_against_the_walls_is_still_followed_out():
    # independent simulator 1009: dark mothers whose edge fades over a few rows; the box
    # must start beyond the fringe, down to a tenth of the mother's darkness (row 97),
    # not at the dark core
    rows = np.arange(40.0, 260.0)
    level = np.where((rows >= 100) & (rows <= 250), -20.0, 0.0)
    profile = ndimage.gaussian_filter1d(level, 2.0)
    profs = profile[:, None] + np.random.default_rng(1).normal(0, 0.3, (rows.size, 5))
    tips, _ = _phase_cell_tips(rows, profs, np.ones(5, bool), (101.0, 250.0))
    assert np.all((tips[:, 0] >= 94) & (tips[:, 0] <= 99))  # the half level lies at 99.5


def _set_with_faint_empty_ends(cells_beyond):
    """Contrast profiles of a phase set of 9 trenches (rows along axis 0), three of them
    empty, as on independent simulator 1116 (rounded closed ends at row 100): the empty
    lumens' contrast is a dark rim at the closed end (rows 100-102) and then fades to a
    sixth of its level for 10 px (rows 103-111), so their half level lies 11 px inside;
    the filled trenches' mothers begin ``cells_beyond`` px beyond that, behind a halo."""
    rows = np.arange(40.0, 260.0)
    empty_level = np.zeros(rows.size)
    empty_level[(rows >= 100) & (rows <= 102)] = -450.0
    empty_level[(rows >= 103) & (rows <= 111)] = -50.0
    empty_level[(rows >= 112) & (rows <= 250)] = -300.0
    first = 112.0 - cells_beyond
    cell_level = np.zeros(rows.size)
    cell_level[(rows >= first - 2) & (rows < first)] = 800.0
    cell_level[(rows >= first) & (rows <= 250)] = -2000.0
    rng = np.random.default_rng(3)
    empty = np.zeros(9, bool)
    empty[[2, 5, 7]] = True
    each = np.stack([ndimage.gaussian_filter1d(empty_level if e else cell_level, 1.0)
                     for e in empty], axis=1) + rng.normal(0, 20.0, (rows.size, 9))
    inside = (rows >= 130) & (rows <= 230)
    return rows, each, inside, ~empty, np.arange(9) * 40.0, (111.5, 250.5)


def test_a_set_line_far_inside_its_cells_moves_out_with_them_for_every_trench():
    # the empty lumens drew the line 11 px inside; the filled boxes clear their mothers
    # and the empty trenches' and any trench without a seen tip follow them out
    rows, each, inside, filled, centres, edges = _set_with_faint_empty_ends(11.0)
    top, _, _, from_empty, tip_push = _trench_ends(rows, each, inside, filled, centres,
                                                   edges, "phase")
    assert from_empty and tip_push[0] > 8.0
    assert np.all(top[filled] <= 100.0)
    assert np.all(np.abs(top[~filled] - np.median(top[filled])) <= 1.0)


def test_cells_a_little_beyond_the_line_move_their_own_boxes_only():
    rows, each, inside, filled, centres, edges = _set_with_faint_empty_ends(2.0)
    top, _, _, from_empty, tip_push = _trench_ends(rows, each, inside, filled, centres,
                                                   edges, "phase")
    assert from_empty and 0.0 < tip_push[0] <= LINE_FOLLOWS_TIPS_PX
    assert np.all(top[filled] <= 109.0)
    # the empty lumens keep their own line
    assert np.all(np.abs(top[~filled] - 111.5) <= 1.0)


def test_a_sharp_mother_against_the_walls_is_not_followed_into_the_blurs_tail():
    # held-out mixed 10402: mothers 150 times the walls' noise dark, blurred by the PSF;
    # followed out while a sigma darker, the tips lay in the blur's tail 2.5 px beyond
    # the poles (2 % of the cells' darkness) and 11 of 48 boxes started 2.5 px out
    rows = np.arange(40.0, 260.0)
    level = np.where((rows >= 100) & (rows <= 250), -150.0, 0.0)
    profile = ndimage.gaussian_filter1d(level, 1.25)
    profs = profile[:, None] + np.random.default_rng(2).normal(0, 0.3, (rows.size, 5))
    tips, against_walls = _phase_cell_tips(rows, profs, np.ones(5, bool), (99.5, 250.0))
    assert against_walls
    # the half level lies at 99.5: the tip row within a pixel of it, not three out
    assert np.all((tips[:, 0] >= 98) & (tips[:, 0] <= 100)), tips[:, 0]


def _well_loaded_set(n_bright=3, seed=4):
    """A phase set of 10 trenches, none flagged empty, its closed end at row 43, the
    line drawn inside at row 50 (rows along axis 0, contrast lumen minus walls; the
    walls' noise 3): filled lumens bright at the end's halo (rows 43-49) and dark with
    cells from row 50; ``n_bright`` lumens empty and bright from row 43; and a faint
    dark band in the PDMS before the end (rows 32-42, 15 dark), as on independent
    simulator 1140."""
    rows = np.arange(3.0, 460.0)
    filled = np.where(rows >= 50, -60.0, np.where(rows >= 43, 80.0, 0.0))
    empty = np.where(rows >= 43, 80.0, 0.0)
    band = np.where((rows >= 32) & (rows < 43), -15.0, 0.0)
    rng = np.random.default_rng(seed)
    each = np.stack([ndimage.gaussian_filter1d((empty if i < n_bright else filled) + band, 1.0)
                     for i in range(10)], axis=1) + rng.normal(0, 3.0, (rows.size, 10))
    return dict(direction=1, rows=rows, excess=each, empty=np.zeros(10, bool), y_top=50.0,
                y_bottom=440.0, top_each=np.full(10, 50.0), bottom_each=np.full(10, 440.0))


@pytest.mark.parametrize("n_bright", [0, 3])
def test_a_well_loaded_sets_line_moves_out_to_its_lumens_not_a_band_in_the_pdms(n_bright):
    # the lumens' mean contrast: dark cells and bright empty lumens cancel, and at half
    # of what is left the faint band 11 px out in the PDMS counted as the closed end
    # (1140: every box of the set 12 px out); each lumen's own magnitude does not cancel
    s = _well_loaded_set(n_bright)
    moved = clear_closed_end(s)
    assert 5.0 <= moved <= 8.0 and np.all(np.abs(s["top_each"] - 43.0) <= 1.0), s["top_each"]


def _haloed_set(halo, seed=0):
    """A phase set of 12 filled trenches whose closed end is at row 43: a bright halo
    (rows 43-44, ``halo``) at the mother's pole, her dark body from row 45 (-4400), the
    line drawn inside at row 47; walls' noise 100. As on independent simulator 1225."""
    rows = np.arange(3.0, 460.0)
    filled = ndimage.gaussian_filter1d(
        np.where(rows >= 45, -4400.0, np.where(rows >= 43, halo, 0.0)), 0.7)
    rng = np.random.default_rng(seed)
    each = filled[:, None] + rng.normal(0, 100.0, (rows.size, 12))
    return dict(direction=1, rows=rows, excess=each, empty=np.zeros(12, bool), y_top=47.0,
                y_bottom=440.0, top_each=np.full(12, 47.0), bottom_each=np.full(12, 440.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_bright_pole_halo_beyond_a_filled_sets_line_moves_it_out(seed):
    # without a halo the line goes out to the mothers' dark bodies and nothing is said
    plain = _haloed_set(0.0, seed)
    clear_closed_end(plain)
    assert abs(np.median(plain["top_each"]) - 44.5) < 0.5
    assert plain["closed_end_halo_beyond_px"] < 0.5
    assert plain["closed_end_pole_halo_px"] == 0.0
    # with one, the smoothed contrast (halo and body blended) stops the line 2 px inside
    # the end; read less smoothed, the contrast rises at the halo, 2-4 px further out,
    # and falls off at once beyond it (the poles'): the line moves out to the end
    haloed = _haloed_set(4000.0, seed)
    clear_closed_end(haloed)
    assert abs(np.median(haloed["top_each"]) - 43.0) <= 1.0
    assert 2.0 <= haloed["closed_end_pole_halo_px"] <= 4.5
    assert haloed["closed_end_halo_beyond_px"] < 2.0     # nothing left to warn about
