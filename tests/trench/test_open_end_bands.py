"""A cell the phase U-Net split at the chip's band by a box's open end is joined
(segmentation/open_end_bands.py); a division is not."""
from __future__ import annotations

import numpy as np
import pytest

from batchlib.trench.segmentation.open_end_bands import join_across_open_end_bands


def _crops_and_labels(band_on_walls, upper_rows, seed=0):
    """Four trenches of one frame: dark cells (rows 2-21 and 24-43) in a 60 x 20 crop
    (lumen columns 6-13, walls at 100 with noise 1); in the first, the second cell split
    at rows 49-52 into ``upper_rows`` above and a piece reaching the open end, the rows
    between bright (+40) across the walls too or, without ``band_on_walls``, in the
    lumen only (a septum)."""
    rng = np.random.default_rng(seed)
    crops = 100 + rng.normal(0, 1.0, (4, 1, 60, 20))
    crops[..., 6:14] = 60.0 + rng.normal(0, 1.0, (4, 1, 60, 8))
    cols = slice(None) if band_on_walls else slice(6, 14)
    crops[0, 0, 49:53, cols] += 40.0
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


@pytest.mark.parametrize("band_on_walls,upper_rows", [(False, 10), (True, 25)])
def test_a_septum_or_a_newborn_above_the_band_stays_a_division(band_on_walls, upper_rows):
    # a bright gap in the lumen only is a septum; a piece as long as a newborn above a
    # band is a daughter cell (independent 1149: 24 real divisions inside its band)
    crops, labels = _crops_and_labels(band_on_walls, upper_rows)
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 0 and np.array_equal(out, labels)


def test_pieces_whose_rows_overlap_are_judged_on_their_shared_rows():
    # slanted ends: the upper piece's last row lies below the lower piece's first
    # (independent 1001 crashed the call with an empty gap)
    crops, labels = _crops_and_labels(band_on_walls=True, upper_rows=8)
    labels[0, 0, 49:53, 6:9] = 2
    labels[0, 0, 51:53, 10:14] = 3
    out, joined = join_across_open_end_bands(labels, crops)
    assert joined == 1 and out[0, 0].max() == 2
