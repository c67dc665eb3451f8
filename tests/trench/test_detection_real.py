"""The real molyso phase frame, clear failures, the layout's serialisation and the QC figure."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from batchlib.trench.detection import (TrenchDetectionError, TrenchLayout, detect_trenches,
                                       plot_detection)

# Raw-frame column of each growth channel's axis at row 250, read off the image
# (channel centres measured at rows 165 and 350 by hand: they lean by ~1.2 deg).
MOLYSO_X_AT_ROW_250 = [32.4, 94.1, 155.8, 217.1, 278.2, 340.1]
MOLYSO_FILLED = [2, 3]  # the channels holding cells


def _axis_x_at_row(trenches, row):
    """Raw column where each box's axis crosses raw ``row`` (from its raw corners)."""
    top_y = (trenches["raw_y0"] + trenches["raw_y1"]) / 2
    top_x = (trenches["raw_x0"] + trenches["raw_x1"]) / 2
    bot_y = (trenches["raw_y2"] + trenches["raw_y3"]) / 2
    bot_x = (trenches["raw_x2"] + trenches["raw_x3"]) / 2
    f = (row - top_y) / (bot_y - top_y)
    return (top_x + f * (bot_x - top_x)).to_numpy()


@pytest.fixture(scope="module")
def molyso(shared_data):
    return tifffile.imread(shared_data / "phase_fov" / "molyso_example_frame.tif")


def test_molyso_frame_every_growth_channel(molyso, tmp_path):
    assert molyso.shape == (526, 388) and molyso.dtype == np.uint8
    layout = detect_trenches(molyso)  # defaults: auto pitch, box width 32
    t = layout.trenches
    assert len(t) == len(MOLYSO_X_AT_ROW_250)
    np.testing.assert_allclose(_axis_x_at_row(t, 250.0), MOLYSO_X_AT_ROW_250, atol=3.0)
    assert layout.pitch == pytest.approx(61.5, abs=1.5)
    assert layout.angle_deg == pytest.approx(1.2, abs=0.3)
    # feeding channel at the top: the trenches point up from their closed ends
    assert list(layout.sets["direction"]) == [-1]
    assert layout.sets["y_open"].iloc[0] == pytest.approx(137, abs=6)
    assert list(np.flatnonzero(~t["empty"].to_numpy())) == MOLYSO_FILLED
    assert layout.quality["confidence"] > 0.5
    path = tmp_path / "molyso_qc.png"
    plot_detection(molyso, layout, path, title="molyso example frame")
    assert path.stat().st_size > 10_000
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_blank_frame_fails_with_a_reason():
    with pytest.raises(TrenchDetectionError, match="blank"):
        detect_trenches(np.full((300, 300), 1000, np.uint16))
    with pytest.raises(TrenchDetectionError, match="periodic"):
        detect_trenches(np.random.default_rng(0).normal(1000, 20, (300, 300)))


def _debris(seed, n=512):
    rng = np.random.default_rng(seed)
    img = np.full((n, n), 1000.0)
    yy, xx = np.ogrid[:n, :n]
    for _ in range(rng.integers(20, 80)):
        y, x = rng.uniform(0, n, 2)
        s, a = rng.uniform(2, 12), rng.uniform(-500, 800)
        img += a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    return img + rng.normal(0, 10, img.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["phase", "fluorescence"])
def test_debris_only_frame_fails(seed, kind):
    with pytest.raises(TrenchDetectionError) as err:
        detect_trenches(_debris(seed), kind=kind)
    assert "trench" in err.value.reason and len(err.value.reason) > 30


def test_debris_with_a_forced_pitch_still_fails():
    with pytest.raises(TrenchDetectionError, match="no rows with trenches"):
        detect_trenches(_debris(3), pitch=40.0)


def test_too_few_trenches(molyso):
    with pytest.raises(TrenchDetectionError, match="too few trenches"):
        detect_trenches(molyso, min_trenches=7)


def test_layout_round_trips_through_json(molyso):
    layout = detect_trenches(molyso)
    back = TrenchLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
    assert back.angle_deg == layout.angle_deg and back.image_shape == layout.image_shape
    pd.testing.assert_frame_equal(back.trenches, layout.trenches)
    pd.testing.assert_frame_equal(back.sets, layout.sets)
    assert back.quality == layout.quality


def test_molyso_frame_either_polarity_and_self_check(molyso):
    """The same real frame with its contrast inverted gives the same boxes; the
    self-check passes on both and refuses the lumen polarity forced wrong."""
    plain = detect_trenches(molyso)
    inverted = detect_trenches(molyso.max() - molyso)
    assert plain.quality["self_check"] == inverted.quality["self_check"] == 1.0
    np.testing.assert_allclose(inverted.trenches["x_center"], plain.trenches["x_center"], atol=1.0)
    np.testing.assert_allclose(inverted.trenches["y_closed"], plain.trenches["y_closed"], atol=2.0)
    with pytest.raises(TrenchDetectionError, match="self-check failed"):
        detect_trenches(molyso, lumen="dark")
