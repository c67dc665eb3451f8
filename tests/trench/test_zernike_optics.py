"""Phase contrast formed from first principles (``synthetic/zernike.py``) and the
``zernike_optics`` family built on it."""
import numpy as np
import pytest

from batchlib.trench.synthetic import simulate_position
from batchlib.trench.synthetic.cells import rod
from batchlib.trench.synthetic.families import sample_config
from batchlib.trench.synthetic.zernike import ZernikeOptics, zernike_intensity, zernike_log_factor


def _cell_profile(optics, phase=0.6, width=10.0):
    """Intensity across the middle of a vertical rod ``width`` px wide centred on column 40."""
    s = 2
    shape = (120 * s, 80 * s)
    win, th, _ = rod(shape, 60 * s + 0.5, 40 * s + 0.5, 40 * s, width * s, 0.0)
    fine = np.zeros(shape, np.float32)
    fine[win] = phase * th
    return np.exp(zernike_log_factor(fine, optics, s))[60]


def _dark_core_width(profile):
    """Width (px, interpolated) of the run below half-way between the core's minimum and
    the brightest halo beside it."""
    lo, hi = profile.min(), profile.max()
    level = (lo + hi) / 2
    centre = int(np.argmin(profile))
    def crossing(step):
        i = centre
        while profile[i + step] < level:
            i += step
        return i + step * (level - profile[i]) / (profile[i + step] - profile[i])
    return crossing(1) - crossing(-1)


def test_empty_medium_images_as_one():
    img = zernike_intensity(np.zeros((64, 64), np.float32), ZernikeOptics(), supersample=2)
    assert img.shape == (32, 32)
    np.testing.assert_allclose(img, 1.0, atol=1e-5)


def test_cells_dark_inside_a_bright_halo_and_a_wall_phase_cancels_in_the_ratio():
    p = _cell_profile(ZernikeOptics())
    assert p[40] < 0.4          # the core
    assert p[40 - 7:40 - 4].max() > 1.3 and p[40 + 4:40 + 7].max() > 1.3   # the halo
    assert abs(p[2] - 1.0) < 0.25   # the medium far away
    # a uniform phase offset images as empty medium: only differences are seen
    flat = zernike_intensity(np.full((80, 80), 0.7, np.float32), ZernikeOptics(), 2)
    np.testing.assert_allclose(flat, 1.0, atol=1e-5)


def test_where_the_edge_lies_on_the_profile_depends_on_the_optics():
    """The same 10-px cell: the dark core measured at half its contrast is narrower or
    wider than the cell depending on the ring and the focus, so no intensity rule fits
    every microscope (why the family exists)."""
    widths = {name: _dark_core_width(_cell_profile(o, phase)) for name, (o, phase) in {
        "nominal": (ZernikeOptics(), 0.6),
        "wide ring, thin cell": (ZernikeOptics(ring_width=0.3, ring_radius=0.5), 0.3),
        "low cutoff, defocus, thick cell": (ZernikeOptics(cutoff=0.16, defocus_waves=0.3), 0.8)
    }.items()}
    assert widths["low cutoff, defocus, thick cell"] - widths["wide ring, thin cell"] > 1.5, widths
    assert all(7.5 < w < 10.5 for w in widths.values()), widths   # the cell is 10 px wide


def test_zernike_family_renders_its_truth_and_leaves_mixed_alone():
    cfg = sample_config("zernike_optics", 10000, height=256, width=256, n_timepoints=2,
                        n_positions=1)
    assert cfg.cell_optics == "zernike" and cfg.zernike_wall_phase_rad != 0
    pos = simulate_position(cfg, 0)
    empirical = simulate_position(
        sample_config("zernike_optics", 10000, height=256, width=256, n_timepoints=2,
                      n_positions=1, cell_optics="empirical"), 0)
    # same cells and labels, another image
    np.testing.assert_array_equal(pos.trench_labels, empirical.trench_labels)
    assert not np.array_equal(pos.movies["phase"], empirical.movies["phase"])
    # cells are darker than the lumen around them in the crops
    from batchlib.trench.geometry import crop_box
    inside, outside = [], []
    for i, r in enumerate(pos.trenches.itertuples()):
        lab = pos.trench_labels[i, 0]
        if lab.max() == 0:
            continue
        c = crop_box(pos.movies["phase"][0], r.x_center, r.y_closed, r.direction, int(r.height),
                     int(r.width), r.angle_deg, pos.drift[0]).astype(float)
        inside.append(np.median(c[lab > 0]))
        outside.append(np.percentile(c[lab == 0], 90))
    assert inside and np.median(np.array(inside) / np.array(outside)) < 0.6
    # 'mixed' never draws the family (its seeds keep what they drew before it existed)
    assert all(sample_config("mixed", s).cell_optics == "empirical" for s in range(60))


def test_bad_cell_optics_is_refused():
    with pytest.raises(ValueError, match="cell_optics"):
        sample_config("nominal", 0, cell_optics="zernik")


def test_shipped_unet_masks_are_not_narrow_under_physical_phase_contrast():
    """Tuning seed 902 of ``zernike_optics``: the weights shipped before this family
    drew every mask 1.2 px narrow there (mean IoU 0.87); the shipped weights, trained
    with the family, are within half a pixel (0.93)."""
    from batchlib.trench.geometry import crop_box
    from batchlib.trench.segmentation import segment_trenches
    from batchlib.trench.segmentation.evaluate import match_labels
    from batchlib.trench.segmentation.threshold import empty_background

    cfg = sample_config("zernike_optics", 902, height=384, width=384, n_timepoints=2,
                        n_positions=1)
    pos = simulate_position(cfg, 0)
    movie, tr = pos.movies["phase"], pos.trenches
    crops = np.stack([[crop_box(movie[t], r.x_center, r.y_closed, r.direction, int(r.height),
                                int(r.width), pos.metadata["angle_deg"], pos.drift[t])
                       for t in range(movie.shape[0])] for r in tr.itertuples()])
    empty = tr["empty"].to_numpy(bool)
    labels = segment_trenches(crops, method="unet", kind="phase",
                              background=empty_background(crops, empty))
    truth = pos.trench_labels
    ious = np.concatenate([match_labels(truth[n, t], labels[n, t]).iou
                           for n in range(len(tr)) for t in range(crops.shape[1])])
    widths_true = (truth > 0).sum(-1).ravel()     # cell pixels in each row of each crop
    widths_pred = (labels > 0).sum(-1).ravel()
    assert len(ious) >= 100
    assert abs(np.mean(widths_pred[widths_true > 0] - widths_true[widths_true > 0])) <= 0.5
    assert np.mean(ious) >= 0.9
