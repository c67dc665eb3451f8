"""A cell the phase U-Net split at the chip's band by a box's open end is joined
(segmentation/open_end_bands.py); a division is not."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from batchlib.trench.segmentation.open_end_bands import join_across_open_end_bands

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _crops_and_labels(band_on_walls, upper_rows, seed=0, band_everywhere=True):
    """Four trenches of one frame: dark cells (rows 2-21 and 24-43) in a 60 x 20 crop
    (lumen columns 6-13, walls at 100 with noise 1); in the first, the second cell split
    at rows 49-52 into ``upper_rows`` above and a piece reaching the open end. Rows
    49-52 are bright (+40) and rows 56-59 dark (-40): across the walls too, the chip's
    band and the feeding channel's edge, in every trench (``band_everywhere``) or the
    first only; or, without ``band_on_walls``, in the first trench's lumen only (a
    septum)."""
    rng = np.random.default_rng(seed)
    crops = 100 + rng.normal(0, 1.0, (4, 1, 60, 20))
    crops[..., 6:14] = 60.0 + rng.normal(0, 1.0, (4, 1, 60, 8))
    cols = slice(None) if band_on_walls else slice(6, 14)
    which = slice(None) if band_on_walls and band_everywhere else 0
    crops[which, 0, 49:53, cols] += 40.0
    crops[which, 0, 56:60, cols] -= 40.0
    labels = np.zeros((4, 1, 60, 20), np.int32)
    for n in range(4):
        labels[n, 0, 2:22, 6:14], labels[n, 0, 24:44, 6:14] = 1, 2
    labels[0, 0, 24:44] = 0
    labels[0, 0, 49 - upper_rows:49, 6:14] = 2
    labels[0, 0, 53:60, 6:14] = 3
    return crops, labels


def test_a_cell_split_at_a_band_across_the_walls_is_joined():
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=10)
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 1 and out[0, 0].max() == 2
    rows = np.flatnonzero((out[0, 0] == 2).any(axis=1))
    assert rows[0] == 39 and rows[-1] == 59 and np.all(np.diff(rows) == 1)
    assert np.array_equal(out[1:], labels[1:])              # the other trenches as they were


def test_a_piece_as_long_as_a_cell_above_the_band_is_joined_too():
    # independent 1149: 12 of the 16 false splits left by a first version, which asked
    # the upper piece to be shorter than 0.7 of the frame's median cell, had one as long
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=25)
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 1 and out[0, 0].max() == 2
    assert np.flatnonzero((out[0, 0] == 2).any(axis=1)).tolist() == list(range(24, 60))


def test_a_septum_in_the_lumen_only_stays_a_division():
    for upper_rows in (10, 25):
        crops, labels = _crops_and_labels(band_on_walls=False, upper_rows=upper_rows)
        out, joined = join_across_open_end_bands(labels, crops)
        assert joined == 0 and np.array_equal(out, labels)


def test_a_septum_on_the_band_stays_a_division():
    # independent 1108 and 1085: the lumen's gap brightened beyond what the band on the
    # walls explains (a division at the band); 71 such splits were joined without this
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=10)
    crops[0, 0, 50:52, 6:14] += 30.0
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 0 and np.array_equal(out, labels)


def test_walls_bright_in_one_trench_only_are_no_band():
    # the chip's band lies across every trench of the frame; a wall brightening beside
    # one trench's gap is that trench's own (a septum's halo)
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=10, band_everywhere=False)
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 0 and np.array_equal(out, labels)


def test_a_septum_in_walls_that_climb_towards_the_open_end_stays_a_division():
    # generator mixed 7: walls brightening steadily towards the open end (uneven light)
    # reached half the gap's rise over their median in the last rows, and 45 real
    # divisions there were joined; the septum brightens the lumen beyond them
    crops, labels = _crops_and_labels(band_on_walls=False, upper_rows=10)
    crops[..., 56:60, 6:14] += 40.0                          # no dark edge either
    crops[..., 30:, :] += np.linspace(0, 60, 30)[:, None]    # lumen and walls alike
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 0 and np.array_equal(out, labels)


def test_pieces_far_apart_are_not_joined():
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=10)
    labels[0, 0, 39:49] = 0
    labels[0, 0, 30:38, 6:14] = 2                       # 11 rows above the band
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 0 and np.array_equal(out, labels)


def test_the_unet_joins_across_the_band_before_merging_fragments():
    """A septum a few rows above the band leaves the lower cell's piece above the band
    short enough for a fragment: merged first, it went to the cell above (independent
    1149: 24 such splits); joined first, the lower cell is whole."""
    from batchlib.trench.segmentation.fragments import merge_fragments
    from batchlib.trench.segmentation.torch_model import _tidied

    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=10)
    labels[0, 0, 39:49] = 0
    labels[0, 0, 24:41, 6:14] = 2                       # the upper cell, its septum at 41-42
    labels[0, 0, 43:49, 6:14] = 3                       # the lower cell above the band: 6 rows
    labels[0, 0, 53:60, 6:14] = 4                       # and in it, to the open end
    merged_first = merge_fragments(labels)
    assert np.flatnonzero((merged_first[0, 0] == 2).any(axis=1))[-1] == 48   # the old order
    out = _tidied(labels, crops, "phase")
    assert out[0, 0].max() == 3
    assert np.flatnonzero((out[0, 0] == 2).any(axis=1)).tolist() == list(range(24, 41))
    assert np.flatnonzero((out[0, 0] == 3).any(axis=1)).tolist() == list(range(43, 60))
    assert np.array_equal(out[1:], labels[1:])


def test_independent_1149_loses_its_open_end_splits():
    """Independent simulator 1149 (bands at every box's open end): F1 0.916 before the
    joins, 0.948 with the first version (upper pieces under 0.7 of a cell, joined after
    the fragments), 0.982 now."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent
    import independent_sim

    row = bench_independent.run_position(independent_sim.simulate(1149), 1149, "phase")
    assert row["F1"] >= 0.975 and row["count +-1"] >= 0.98, row


def test_pieces_whose_rows_overlap_are_judged_on_their_shared_rows():
    # slanted ends: the upper piece's last row lies below the lower piece's first
    # (independent 1001 crashed the call with an empty gap)
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=8)
    labels[0, 0, 49:53, 6:9] = 2
    labels[0, 0, 51:53, 10:14] = 3
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 1 and out[0, 0].max() == 2
