"""Frames blurred by a focus slip whose cells were merged are named (segmentation/sharpness.py)."""
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from batchlib.trench.segmentation.doubts import block_figures, judge
from batchlib.trench.segmentation.sharpness import blurred_frames, frame_sharpness

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _rods(n=30, t=8, h=120, w=16, cells=6, blurred=(), sigma=2.5, seed=0):
    """Fluorescence crops of ``cells`` rods per trench with one-row gaps, and their labels;
    the frames in ``blurred`` blurred by ``sigma`` px."""
    rng = np.random.default_rng(seed)
    crops = np.full((n, t, h, w), 100.0)
    labels = np.zeros((n, t, h, w), int)
    length = (h - 10) // cells
    for k in range(cells):
        r0 = 2 + k * length
        crops[:, :, r0:r0 + length - 2, 5:11] = 600.0
        labels[:, :, r0:r0 + length - 2, 5:11] = k + 1
    for f in blurred:
        crops[:, f] = ndimage.gaussian_filter(crops[:, f], (0, sigma, sigma))
    crops += rng.normal(0, 5, crops.shape)
    return crops, labels


def _merged(labels, frames, share):
    """``labels`` with the first two cells of ``share`` of the trenches merged in ``frames``."""
    out = labels.copy()
    n = int(round(share * labels.shape[0]))
    for f in frames:
        block = out[:n, f]
        block[block >= 2] -= 1
    return out


def test_blurred_frames_are_told_from_sharp_ones():
    crops, _ = _rods(blurred=(3, 6))
    sharpness = frame_sharpness(crops)
    assert blurred_frames(sharpness).tolist() == [3, 6]
    assert sharpness[3] < 0.6 * np.median(sharpness)


def test_a_focus_slip_that_merged_cells_is_named():
    """Two blurred frames with cells merged in half the trenches (8 % fewer cells: under
    the 20 % that frame_counts names alone) are warned about, by frame."""
    crops, labels = _rods(blurred=(5, 6))
    figures, warnings = judge([block_figures(crops, _merged(labels, (5, 6), 0.5),
                                             "fluorescence", first_frame=10)])
    assert figures["frames_blurred_out_of_line"] == 2 and figures["frames_out_of_line"] == 0
    assert any("blurred" in w and "frame 15, 16" in w for w in warnings), warnings


def test_blur_alone_or_a_count_dip_alone_is_not_named():
    crops, labels = _rods(blurred=(5, 6))
    figures, _ = judge([block_figures(crops, labels, "fluorescence")])   # right cells
    assert figures["frames_blurred_out_of_line"] == 0
    sharp, _ = _rods()
    figures, _ = judge([block_figures(sharp, _merged(labels, (5, 6), 0.5), "fluorescence")])
    assert figures["frames_blurred_out_of_line"] == 0                    # nothing blurred


def test_the_generators_focus_slip_is_warned_about():
    """Generated mixed 3 (fluorescence, true boxes): frame 6 is blurred by a 3.1 px focus
    slip and the U-Net merged 11 % of its cells (F1 0.84 in that frame); no other check
    warned. Frames 0-5 and 7 are segmented with F1 1.0 and are not named."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_segmentation as bench
    from batchlib.trench.synthetic import simulate_position
    from batchlib.trench.synthetic.families import sample_config

    cfg = sample_config("mixed", 3, height=768, width=768, n_timepoints=8, n_positions=1)
    pos = simulate_position(cfg, 0)
    channel = bench.channels_of(cfg)[1]
    crops = bench.crops_of(pos, (channel,))[channel]
    pred, extra = bench.segment(crops, "fluorescence", cfg.trench_width_px,
                                pos.trenches["empty"].to_numpy(bool), "unet",
                                pixel_size_um=cfg.pixel_size_um)
    figures, warnings = judge([block_figures(crops, pred, "fluorescence", **extra)])
    assert figures["frames_blurred_out_of_line"] == 1
    assert any("blurred" in w and "(frame 6)" in w for w in warnings), warnings
