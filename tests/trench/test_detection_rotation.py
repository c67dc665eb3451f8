"""Angle, pitch and trench centres on rendered stripe patterns with known truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from batchlib.trench.detection import detect_trenches, estimate_angle, estimate_pitch
from batchlib.trench.detection.pitch import fit_lattice
from batchlib.trench.geometry import raw_to_rotated


def render_stripes(angle, shape=(512, 512), pitch=30.0, lumen=10.0, x0=7.3, sets=((60, 280, 1),),
                   noise=4.0, seed=0, supersample=3):
    """Bright lumens (width ``lumen``) every ``pitch`` px in the rotated frame.

    ``sets`` are ``(first_row, last_row, direction)`` of each trench set in the
    rotated frame; the feeding channel side is a mid-grey band, the PDMS beyond
    the closed ends is dark like the walls. Rendered by supersampling, blurred
    like a microscope image. Returns the image and the true lumen axes.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    s = supersample
    yy, xx = np.mgrid[0:h * s, 0:w * s].astype(float)
    pts = np.stack([(yy - (s - 1) / 2) / s, (xx - (s - 1) / 2) / s], axis=-1)
    rot = raw_to_rotated(pts, angle, shape)
    yr, xr = rot[..., 0], rot[..., 1]
    phase = np.mod(xr - x0 + pitch / 2, pitch) - pitch / 2
    scene = np.full(yr.shape, 0.3)
    for y0, y1, direction in sets:
        rows = (yr >= y0 - 0.5) & (yr <= y1 + 0.5)
        scene[rows & (np.abs(phase) < lumen / 2)] = 1.0
        # feeding channel beyond the open end
        if direction == 1:
            scene[(yr > y1 + 0.5) & (yr < y1 + 60)] = 0.8
        else:
            scene[(yr < y0 - 0.5) & (yr > y0 - 60)] = 0.8
    img = scene.reshape(h, s, w, s).mean(axis=(1, 3))
    img = ndimage.gaussian_filter(img, 1.2) * 1000 + 200 + rng.normal(0, noise, shape)
    n = np.arange(np.ceil(-x0 / pitch), np.floor((w - 1 - x0) / pitch) + 1)
    return img.astype(np.float32), x0 + n * pitch


@pytest.mark.parametrize("angle", [0.0, 0.8, -1.7, 2.9, -4.2])
def test_angle_of_rotated_stripes(angle):
    img, _ = render_stripes(angle, sets=((40, 470, 1),))
    assert abs(estimate_angle(img) - angle) < 0.05


def test_angle_sign_follows_geometry():
    # the trench axis runs along raw (cos a, sin a): its column grows with the row for a > 0
    img, _ = render_stripes(2.0, sets=((20, 490, 1),), noise=0.5)
    smooth = ndimage.uniform_filter1d(img, 9, axis=1)
    c0 = 100 + int(np.argmax(smooth[40, 100:130]))
    c1 = c0 - 5 + int(np.argmax(smooth[470, c0 - 5:c0 + 25]))
    assert c1 - c0 == pytest.approx(430 * np.tan(np.deg2rad(2.0)), abs=2)
    assert estimate_angle(img) == pytest.approx(2.0, abs=0.05)


def test_pitch_of_periodic_profile():
    x = np.arange(600)
    prof = np.exp(-0.5 * ((np.mod(x - 3.0, 23.7) - 11.85) / 2.5) ** 2)
    pitch, periodicity = estimate_pitch(prof)
    assert pitch == pytest.approx(23.7, abs=0.15)
    assert periodicity > 0.8
    _, periodicity_noise = estimate_pitch(np.random.default_rng(1).normal(size=600))
    assert periodicity_noise < 0.2


def test_pitch_with_missing_trenches_is_not_a_multiple():
    # every third trench missing: the autocorrelation peaks at 3 pitches too
    x = np.arange(900)
    centres = 10 + 30.0 * np.arange(30)
    centres = centres[np.arange(30) % 3 != 2]
    prof = sum(np.exp(-0.5 * ((x - c) / 3.0) ** 2) for c in centres)
    assert estimate_pitch(prof)[0] == pytest.approx(30.0, abs=0.3)


def test_fit_lattice_recovers_offset_pitch_and_indices():
    rng = np.random.default_rng(2)
    idx = np.array([0, 1, 2, 4, 5, 8])
    x = 12.0 + 31.5 * idx + rng.normal(0, 0.05, idx.size)
    offset, pitch, index, res = fit_lattice(x, 31.0)
    assert pitch == pytest.approx(31.5, abs=0.05)
    assert offset == pytest.approx(12.0, abs=0.1)
    assert np.array_equal(index, idx)
    assert np.abs(res).max() < 0.2


@pytest.mark.parametrize("angle", [0.0, 1.3, -2.2])
def test_centres_pitch_and_closed_end_of_one_set(angle):
    img, axes = render_stripes(angle, pitch=30.0, sets=((80, 330, 1),))
    lay = detect_trenches(img, box_width=20)
    assert abs(lay.angle_deg - angle) < 0.05
    assert lay.pitch == pytest.approx(30.0, abs=0.05)
    t = lay.trenches
    assert len(lay.sets) == 1 and set(t["direction"]) == {1}
    # every detected centre is a true axis, to a fraction of a pixel
    err = np.abs(t["x_center"].to_numpy()[:, None] - axes[None, :]).min(axis=1)
    assert err.max() < 0.3
    # all trenches whose box fits in the frame are found
    assert len(t) >= len(axes) - 3
    assert lay.sets["y_closed"].iloc[0] == pytest.approx(80, abs=1.5)
    assert lay.sets["y_open"].iloc[0] == pytest.approx(330, abs=2.0)
    assert (t["height"] == t["height"].iloc[0]).all() and (t["width"] == 20).all()


def test_two_facing_sets_get_opposite_directions():
    img, axes = render_stripes(0.6, shape=(600, 480), pitch=32.0,
                               sets=((30, 230, 1), (370, 570, -1)))
    lay = detect_trenches(img)
    assert list(lay.sets["direction"]) == [1, -1]
    assert lay.sets["y_closed"].to_numpy() == pytest.approx([30, 570], abs=1.5)
    for s in (0, 1):
        x = lay.trenches.loc[lay.trenches["set"] == s, "x_center"].to_numpy()
        assert np.abs(x[:, None] - axes[None, :]).min(axis=1).max() < 0.3
        # trench index follows x_center
        assert np.all(np.diff(x) > 0)


@pytest.mark.parametrize("direction", [1, -1])
def test_single_set_direction_from_the_end_structure(direction):
    sets = ((60, 300, 1),) if direction == 1 else ((200, 440, -1),)
    img, _ = render_stripes(-1.1, sets=sets)
    lay = detect_trenches(img)
    assert list(lay.sets["direction"]) == [direction]
    closed = 60 if direction == 1 else 440
    assert lay.sets["y_closed"].iloc[0] == pytest.approx(closed, abs=1.5)


@pytest.mark.parametrize("lumen", ["auto", "dark"])
def test_dark_lumens_are_found_by_their_width(lumen):
    # inverted contrast: lumens darker than the walls, no cells to give texture
    img, axes = render_stripes(1.3, pitch=30.0, sets=((80, 330, 1),))
    inverted = (img.max() + img.min() - img).astype(np.float32)
    lay = detect_trenches(inverted, box_width=20, lumen=lumen)
    x = lay.trenches["x_center"].to_numpy()
    assert np.abs(x[:, None] - axes[None, :]).min(axis=1).max() < 0.3
    assert list(lay.sets["direction"]) == [1]


@pytest.mark.parametrize("seed,angle", [(2, -1.6), (3, -1.6), (3, 0.9)])
def test_fluorescence_angle_of_short_sets_from_the_closed_end_line(seed, angle):
    """Few short trenches (130 px, 8 filled): the cell columns' lean alone was
    0.26-0.64 deg off here (held-out geometry seeds: up to 1.8 deg, confident);
    the straight line of the mother tips at the closed ends corrects it."""
    from batchlib.trench.detection.movie import detect_in_movie
    from batchlib.trench.synthetic import SyntheticConfig, simulate_position

    cfg = SyntheticConfig(height=768, width=1024, n_timepoints=3, channels=("phase", "gfp"),
                          seed=seed, n_sets=1, pitch_px=80.0, trench_width_px=18.0,
                          trench_length_px=130, cell_width_px=13.5, angle_deg=angle,
                          empty_fraction=0.35, tilt_sd_deg=2.0)
    pos = simulate_position(cfg, 0)
    layout, _ = detect_in_movie(pos.movies["gfp"], "fluorescence")
    assert abs(layout.angle_deg - angle) <= 0.05
    assert layout.quality["end_line_correction_deg"] != 0.0
    assert (~layout.trenches["empty"]).sum() == 8


def test_closed_end_line_lean_and_its_refusals():
    from batchlib.trench.detection.end_line import closed_end_angle_error, end_line_lean

    rng = np.random.default_rng(0)
    x = np.arange(20.0, 1000.0, 45.0)
    lean = 0.12
    tips = 300.0 + np.tan(np.deg2rad(lean)) * x + rng.normal(0, 0.3, x.size)
    tips[::4] -= rng.uniform(15, 40, tips[::4].size)   # a quarter without a mother at the end
    est, err, n = end_line_lean(x, tips)
    assert n == x.size - tips[::4].size
    assert abs(est - lean) <= 3 * err and err < 0.05
    # an open end: the outermost cells scatter by many pixels, no line
    assert np.isnan(end_line_lean(x, 300.0 + rng.normal(0, 8.0, x.size))[0])
    assert np.isnan(end_line_lean(x[:4], tips[:4])[0])     # too few tips
    # two sets: each its own line, both leaning alike; a set without a line is skipped
    sets = np.repeat([0, 1, 2], x.size)
    xs = np.tile(x, 3)
    other = 700.0 + np.tan(np.deg2rad(lean)) * x + rng.normal(0, 0.3, x.size)
    est2, err2, n2 = closed_end_angle_error(
        xs, np.r_[tips, other, np.full(x.size, np.nan)], sets)
    assert abs(est2 - lean) <= 3 * err2 and err2 < err and n2 == n + x.size


def test_a_few_mothers_tips_give_an_honest_standard_error():
    """Mothers' gaps to the closed end vary from trench to trench: a set of six to twelve
    tips scattering a few tenths of a pixel about a square line must claim a lean beyond
    two standard errors no more often than Student's t allows for that many tips (each
    claim moves the angle the wrong way, unwarned)."""
    from scipy import stats

    from batchlib.trench.detection.angle_refinement import MOTHER_TIP_LINE
    from batchlib.trench.detection.end_line import end_line_lean

    rng = np.random.default_rng(7)
    claimed, old_claimed, expected, n_sets = 0, 0, 0.0, 600
    for _ in range(n_sets):
        n = int(rng.integers(6, 13))
        x = np.sort(rng.uniform(0.0, 900.0, n))
        tips = 150.0 + rng.normal(0.0, rng.uniform(0.2, 0.6), n)   # no lean at all
        lean, err, _ = end_line_lean(x, tips, **MOTHER_TIP_LINE)
        claimed += bool(np.isfinite(lean) and abs(lean) > 2 * err)
        lean, err, _ = end_line_lean(x, tips, max_scatter_px=1.5)   # the robust sigma's
        old_claimed += bool(np.isfinite(lean) and abs(lean) > 2 * err)
        expected += 2 * stats.t.sf(2.0, n - 2) / n_sets
    assert claimed / n_sets < expected + 0.03
    # the robust sigma, floored at a tenth of a pixel, claimed about one set in five
    assert old_claimed / n_sets > expected + 0.05
    # a real lean over such tips is still measured
    x = np.linspace(60.0, 940.0, 10)
    tips = 150.0 + np.tan(np.deg2rad(0.15)) * x + 0.4 * np.resize([1, -1, 0, -1, 1], x.size)
    lean, err, n = end_line_lean(x, tips, **MOTHER_TIP_LINE)
    assert n == 10 and abs(lean - 0.15) <= 3 * err and abs(lean) > 2 * err


def test_independent_1528s_bulging_mother_tips_do_not_turn_a_right_angle():
    """Independent simulator 1528, fluorescence, rounded ends: the tips (rotated rows) of
    the two sets' mothers in the frame straightened 0.029 deg short of the true angle. The
    upper set's tips bulge by a pixel; kept six of seven, they said -0.168 +- 0.010 deg,
    and the angle was moved to 0.136 deg off."""
    from batchlib.trench.detection.angle_refinement import MOTHER_TIP_LINE
    from batchlib.trench.detection.end_line import closed_end_angle_error

    x = [187, 275, 363, 451, 538, 803, 890, 64, 152, 239, 327, 503, 591, 678, 767, 855, 943]
    tips = [144.44, 145.84, 145.7, 145.12, 145.26, 144.28, 144.05,
            854.1, 854.46, 854.72, 854.77, 853.49, 854.82, 854.82, 852.83, 852.92, 854.32]
    sets = np.repeat([0, 1], [7, 10])
    error, stderr, n = closed_end_angle_error(x, tips, sets, max_scatter_px=1.5)
    assert abs(error) > 2 * stderr and abs(error - -0.029) > 0.1    # the old reading
    error, stderr, n = closed_end_angle_error(x, tips, sets, **MOTHER_TIP_LINE)
    assert n == 17
    # either no correction or one that leaves the angle within 0.05 deg
    assert abs(error) <= 2 * stderr or abs(error - -0.029) <= 0.05
