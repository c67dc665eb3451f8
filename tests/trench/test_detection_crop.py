"""crop_trenches: all boxes of a frame at once, identical to geometry.crop_box."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batchlib.trench.detection import TrenchLayout, crop_trenches
from batchlib.trench.detection import crop as crop_module
from batchlib.trench.geometry import crop_box


def _boxes(rng, n, shape, height=40, width=12):
    h, w = shape
    return pd.DataFrame({
        "x_center": rng.uniform(-5, w + 5, n), "y_closed": rng.uniform(-5, h - 10, n),
        "direction": rng.choice([-1, 1], n), "height": height, "width": width})


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32, np.float64, ">u2", np.float16])
@pytest.mark.parametrize("angle, drift", [(1.7, (0.3, -1.2)), (-3.0, (2.5, 0.75)), (0.0, (0.5, 0.0))])
def test_equals_crop_box_per_trench(dtype, angle, drift):
    rng = np.random.default_rng(3)
    frame = (rng.random((120, 160)) * 250).astype(dtype)
    boxes = _boxes(rng, 25, frame.shape)
    crops = crop_trenches(frame, boxes, angle, drift)
    assert crops.shape == (25, 40, 12) and crops.dtype == frame.dtype
    ref = np.stack([crop_box(frame, r.x_center, r.y_closed, r.direction, r.height, r.width,
                             angle, drift) for r in boxes.itertuples()])
    if np.issubdtype(dtype, np.integer):
        assert np.array_equal(crops, ref)
    else:  # same formula, evaluated in another order: equal to the last bit or two
        np.testing.assert_allclose(crops, ref, rtol=1e-6, atol=1e-6)


def test_angle_zero_whole_pixels_is_a_plain_slice(monkeypatch):
    rng = np.random.default_rng(4)
    frame = rng.normal(size=(100, 90)).astype(np.float32)
    boxes = pd.DataFrame({"x_center": [10.5, 40.5, 70.5], "y_closed": [5, 94, 20],
                          "direction": [1, -1, 1], "height": 30, "width": 8})

    def no_interpolation(*args, **kwargs):
        raise AssertionError("map_coordinates must not be used for whole-pixel boxes")

    monkeypatch.setattr(crop_module.ndimage, "map_coordinates", no_interpolation)
    crops = crop_trenches(frame, boxes, 0.0, (2.0, -3.0))
    # content moved by +drift: the box is read at +drift in the raw frame
    # columns x_center - 3.5 .. + 3.5, rows from the closed end, then moved by the drift
    assert np.array_equal(crops[0], frame[7:37, 4:12])
    assert np.array_equal(crops[1], frame[96:66:-1, 34:42])  # closed end at row 0
    assert np.array_equal(crops[2], frame[22:52, 64:72])


def test_outside_samples_get_cval():
    frame = np.ones((50, 50), np.uint16)
    boxes = pd.DataFrame({"x_center": [1.5], "y_closed": [40], "direction": [1], "height": 20,
                          "width": 8})
    crops = crop_trenches(frame, boxes, 0.0, cval=0)
    assert crops[0, :10, 2:].min() == 1 and crops[0, 10:].max() == 0
    assert crops[0, :, :2].max() == 0  # columns -2 and -1


def test_layout_angle_and_dataframe_angle_column():
    rng = np.random.default_rng(5)
    frame = rng.random((80, 80)).astype(np.float32)
    boxes = pd.DataFrame({"set": 0, "trench": [0, 1], "x_center": [20.0, 50.0],
                          "y_closed": [10.0, 10.0], "direction": 1, "height": 30, "width": 10})
    layout = TrenchLayout(2.0, 30.0, pd.DataFrame(), boxes, {}, frame.shape)
    a = crop_trenches(frame, layout, drift_yx=(0.5, 0.5))
    b = crop_trenches(frame, boxes.assign(angle_deg=2.0), drift_yx=(0.5, 0.5))
    c = crop_trenches(frame, boxes, 2.0, (0.5, 0.5))
    assert np.array_equal(a, c) and np.array_equal(b, c)
    with pytest.raises(ValueError, match="angle_deg"):
        crop_trenches(frame, boxes)


def test_boxes_must_share_their_shape():
    boxes = pd.DataFrame({"x_center": [10.0, 30.0], "y_closed": [5, 5], "direction": [1, 1],
                          "height": [20, 21], "width": [8, 8]})
    with pytest.raises(ValueError, match="height and width"):
        crop_trenches(np.zeros((40, 40)), boxes, 0.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32, np.float64, ">u2", np.float16])
@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("angle, drift", [(1.7, (0.3, -1.2)), (-3.0, (2.5, 0.75)), (0.0, (0.5, 0.0)),
                                          (0.0, (2.0, -3.0))])
def test_fast_paths_equal_the_one_call_reference_bit_for_bit(dtype, order, angle, drift):
    """Boxes partly outside the frame, so that edge samples take scipy's path and the
    interior ones the bilinear one: together exactly what one map_coordinates call gives."""
    rng = np.random.default_rng(5)
    frame = (rng.random((120, 160)) * 250).astype(dtype)
    boxes = _boxes(rng, 25, frame.shape)
    fast = crop_trenches(frame, boxes, angle, drift, order=order)
    ref = crop_module.crop_trenches_reference(frame, boxes, angle, drift, order=order)
    assert fast.dtype == ref.dtype
    np.testing.assert_array_equal(fast, ref)
    sampler = crop_module.CropSampler(boxes, angle, frame.shape, drift, order)
    np.testing.assert_array_equal(sampler.crop(frame[::-1].copy()),  # reused for another channel
                                  crop_module.crop_trenches_reference(frame[::-1].copy(), boxes, angle,
                                                                      drift, order=order))
