"""Cells lie in single file: objects beside a cell are dropped, and many of them warned about."""
import sys
from pathlib import Path

import numpy as np
import pytest

from batchlib.trench.segmentation.doubts import block_figures, judge
from batchlib.trench.segmentation.single_file import SIDE_SHARE, drop_side_objects, side_objects

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _stack_of_cells(n=6, t=3, h=80, w=20):
    """Crops holding 3 cells each, 8 px wide, end to end along the axis."""
    labels = np.zeros((n, t, h, w), np.int32)
    for k, (a, b) in enumerate([(2, 22), (23, 45), (46, 64)], start=1):
        labels[..., a:b, 6:14] = k
    return labels


def test_objects_beside_cells_go_and_cells_in_file_stay():
    labels = _stack_of_cells()
    blobs = labels.copy()
    blobs[0, 0, 8:18, 15:19] = 4       # beside the first cell, in its rows
    blobs[2, 1, 30:38, 1:5] = 4        # beside the second, on the other side
    out, n_crops = drop_side_objects(blobs)
    assert n_crops == 2
    np.testing.assert_array_equal(out, labels)
    # cells alone are never "beside" each other, however they lean or differ in size
    leaning = labels.copy()
    leaning[1, 2, 23:45] = 0
    leaning[1, 2, 23:45, 9:17] = 2     # shifted 3 px off the axis
    leaning[1, 2, 46:49] = 0           # a short newborn
    assert not side_objects(leaning).any()
    same, n = drop_side_objects(leaning)
    assert n == 0 and same is leaning


def test_the_larger_object_of_a_side_by_side_pair_stays():
    lab = np.zeros((1, 40, 20), np.int32)
    lab[0, 5:30, 5:12] = 1                # a cell on the axis
    lab[0, 8:20, 12:15] = 2               # a sliver beside it
    out, _ = drop_side_objects(lab)
    assert int(out.max()) == 1 and int((out == 1).sum()) == 25 * 7
    # two side-by-side objects of similar size (a wide trench's two cells) both stay
    lab[0, 5:30, 12:18] = 2
    assert not side_objects(lab).any()


@pytest.mark.parametrize("name", ["bacmman_xy001_p0049_seg_otsu", "delta_xy001_p0033_seg_otsu",
                                  "delta_xy001_p0033_seg_unet"])
def test_real_label_stacks_hold_no_object_beside_a_cell(shared_data, name):
    """Real mother-machine labels of three tools: every cell in single file."""
    tifffile = pytest.importorskip("tifffile")
    truth = tifffile.imread(shared_data / "label_stacks" / f"{name}.tif").astype(np.int64)
    assert truth.max() > 0
    assert not side_objects(truth).any()


def test_many_trench_frames_with_objects_beside_cells_are_warned_about():
    labels = _stack_of_cells(n=10, t=2)
    figures, warnings = judge([block_figures(None, labels, "phase", side_crops=2)])
    assert figures["side_objects_share"] == pytest.approx(0.1) and SIDE_SHARE == 0.1
    assert any("beside a cell" in w for w in warnings)
    figures, warnings = judge([block_figures(None, labels, "phase", side_crops=1)])
    assert figures["side_objects_share"] == pytest.approx(0.05)
    assert not any("beside a cell" in w for w in warnings)
    # counted per block, judged over the position
    figures, _ = judge([block_figures(None, labels, "phase", side_crops=1),
                        block_figures(None, labels, "phase", side_crops=3)])
    assert figures["side_objects_share"] == pytest.approx(0.1)
    figures, _ = judge([block_figures(None, labels, "phase")])
    assert "side_objects_share" not in figures


def test_independent_optics_objects_in_the_walls_halo_dropped_and_warned(monkeypatch):
    """Independent simulator seed 1051 (0.138 µm pixels, cells 6.2 px wide, NA 0.97): shown
    its crops resized to 33 columns and padded at the right to 40, as before resized crops
    were cut to the trained width, the U-Net found objects in the wall's halo beside the
    cells in most trench-frames; they are dropped and warned about. Cut to 32 columns, it
    finds almost none, and the cells' scores are better still."""
    from batchlib.trench.segmentation import scale

    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent as bench
    from bench_segmentation import _segment_kwargs, plausibility, score, segment
    from independent_sim import simulate

    from batchlib.trench.detection.crop import crop_trenches
    from batchlib.trench.detection.movie import detect_in_movie, movie_drift
    from batchlib.trench.segmentation import segment_trenches
    from batchlib.trench.segmentation.evaluate import match_labels

    acq = simulate(1051, n_frames=4)
    layout, ref = detect_in_movie(acq.phase, "phase", box_width=bench.box_width(acq.pixel_size_um))
    drift = movie_drift(acq.phase, ref, layout, "phase")
    crops = np.stack([crop_trenches(acq.phase[t], layout, drift_yx=drift[t])
                      for t in range(len(acq.phase))], axis=1)
    truth, mothers = bench.truth_crops(acq, layout, drift)
    args = (crops, "phase", layout.quality["lumen_width_px"], None, "unet",
            layout.quality["closed_end_margin_px"], acq.pixel_size_um)
    with monkeypatch.context() as m:
        m.setattr(scale, "TRAINED_WIDTH_PX", 10_000)  # no cut: padded to 40 as before
        labels, extra = segment(*args)
        kept = segment_trenches(crops, method="unet", kind="phase", **_segment_kwargs(*args))
    trench_frames = crops.shape[0] * crops.shape[1]
    assert extra["side_crops"] >= 0.5 * trench_frames
    before, after = score(truth, kept, mothers), score(truth, labels, mothers)
    # no cell lost, the objects beside them gone (8 frames: count 0.49 -> 0.86, F1 0.80 -> 0.88)
    assert match_labels(truth, labels).tp == match_labels(truth, kept).tp
    assert after["F1"] > before["F1"] + 0.05, (before, after)
    assert after["count +-1"] >= before["count +-1"] + 0.2, (before, after)
    assert plausibility(crops, labels, "phase", extra)["flagged"]
    # at the trained width
    cut, cut_extra = segment(*args)
    assert cut_extra["side_crops"] < 0.1 * trench_frames
    assert score(truth, cut, mothers)["F1"] >= after["F1"]
