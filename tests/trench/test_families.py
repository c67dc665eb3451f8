"""Scenario families of the synthetic generator, its new knobs and the seed split."""
from __future__ import annotations


import numpy as np
import pytest
import tifffile
from scipy import ndimage

from batchlib.trench import geometry
from batchlib.trench.synthetic import SyntheticConfig, simulate_position, write_acquisition
from batchlib.trench.synthetic.artefacts import jpeg_like, psf_tail
from batchlib.trench.synthetic.cells import blur, halo_blur, rod
from batchlib.trench.synthetic.families import (FAMILIES, sample_config, sample_configs, seeds,
                                                split_of)
from batchlib.trench.synthetic.chip import make_layout

SIZE = dict(height=384, width=384, n_timepoints=2)


@pytest.fixture(scope="module")
def rendered():
    """Every family once, at a held-out seed."""
    return {f: simulate_position(sample_config(f, 10000, **SIZE), 0) for f in FAMILIES}


def _phase(cfg):
    return next(c for c in cfg.channels if cfg.is_phase(c))


def test_every_family_renders_with_truth(rendered):
    assert len(FAMILIES) >= 14
    for family, pos in rendered.items():
        assert pos.metadata["family"] == family and pos.metadata["family_seed"] == 10000
        assert len(pos.trenches) >= 3, family
        assert pos.trench_labels.max() > 0, family
        for movie in pos.movies.values():
            assert movie.shape == (2, 384, 384) and movie.dtype == np.uint16
            assert movie.std() > 0, family


def test_family_is_deterministic_per_seed():
    for family in FAMILIES:
        a, b = sample_config(family, 10003, **SIZE), sample_config(family, 10003, **SIZE)
        assert a == b
        assert a != sample_config(family, 10004, **SIZE), family
    cfg = sample_config("mixed", 17, **SIZE)
    p, q = simulate_position(cfg, 0), simulate_position(cfg, 0)
    for ch in cfg.channels:
        np.testing.assert_array_equal(p.movies[ch], q.movies[ch])
    np.testing.assert_array_equal(p.trench_labels, q.trench_labels)


def test_families_differ_for_the_same_seed():
    cfgs = {f: sample_config(f, 10000, **SIZE) for f in FAMILIES}
    assert len({c.pitch_px for c in cfgs.values()}) == len(FAMILIES)
    # The rendering seed mixes in the family: angles and layouts are not shared.
    assert len({c.seed for c in cfgs.values()}) == len(FAMILIES)
    assert all(c.family_seed == 10000 and c.family == f for f, c in cfgs.items())
    angles = {round(make_layout(c, 0).angle_deg, 6) for c in cfgs.values()}
    assert len(angles) == len(FAMILIES)


def test_defaults_render_as_before():
    """``SyntheticConfig()`` with the new knobs at their defaults renders as before them.

    Figures recorded from the generator before the scenario knobs were added.
    """
    pos = simulate_position(SyntheticConfig(height=256, width=320, n_timepoints=3, seed=5), 0)
    assert int(pos.movies["phase"].astype(np.int64).sum()) == pytest.approx(237402610, rel=1e-6)
    assert int(pos.movies["gfp"].astype(np.int64).sum()) == pytest.approx(35493622, rel=1e-6)
    assert np.count_nonzero(pos.frame_labels) == 16716
    assert np.count_nonzero(pos.trench_labels) == 16774
    assert (len(pos.trenches), len(pos.cells)) == (12, 62)


def _lumen_and_wall(pos, cfg):
    """Mean phase counts of the lumen and of the walls in the boxes of empty trenches."""
    movie = pos.movies[_phase(cfg)][0]
    lumen, wall = [], []
    for tr in pos.trenches[pos.trenches["empty"]].itertuples():
        crop = geometry.crop_box(movie, tr.x_center, tr.y_closed, tr.direction, tr.height,
                                 tr.width, tr.angle_deg).astype(float)
        x = np.arange(tr.width) - (tr.width - 1) / 2
        lumen.append(crop[10:-10, np.abs(x) < cfg.trench_width_px / 2 - 2].mean())
        wall.append(crop[10:-10, np.abs(x) > cfg.trench_width_px / 2 + 2].mean())
    return np.mean(lumen), np.mean(wall)


def test_lumen_polarity_is_flipped():
    for seed in (10000, 10001):
        dark = sample_config("dark_lumen", seed, **SIZE, empty_fraction=0.5)
        bright = sample_config("nominal", seed, **SIZE, empty_fraction=0.5)
        lum, wall = _lumen_and_wall(simulate_position(dark, 0), dark)
        assert lum < 0.8 * wall
        lum, wall = _lumen_and_wall(simulate_position(bright, 0), bright)
        assert lum > 1.5 * wall


def test_offset_sets_are_offset_by_a_fraction_of_the_pitch(rendered):
    cfg = sample_config("offset_sets", 10000, **SIZE)
    assert cfg.n_sets == 2 and 0.15 * cfg.pitch_px <= cfg.set_offset_px <= 0.85 * cfg.pitch_px
    tr = rendered["offset_sets"].trenches
    x0, x1 = tr[tr.set == 0].x_center.to_numpy(), tr[tr.set == 1].x_center.to_numpy()
    # Residues of set 1 positions against set 0's lattice (boxes are rounded to whole pixels).
    res = np.mod(x1[:, None] - x0[None, :1], cfg.pitch_px)
    assert np.all(np.abs(res - cfg.set_offset_px) <= 1.0)
    assert abs(rendered["offset_sets"].metadata["angle_deg"]) <= 2.0


def test_every_family_keeps_the_tilt_within_two_degrees():
    for family in FAMILIES:
        for seed in (10000, 10001, 10002):
            cfg = sample_config(family, seed, **SIZE)
            assert cfg.max_angle_deg == 2.0 and cfg.angle_deg is None
            assert abs(make_layout(cfg, 0).angle_deg) <= 2.0


def test_unnamed_channels_are_written_as_c0_c1(tmp_path):
    cfg = sample_config("unnamed_channels", 10000, height=192, width=192, n_timepoints=2,
                        n_positions=1, trench_length_px=60, feeding_channel_px=30)
    assert cfg.channels == ("c0", "c1") and len(cfg.phase_channels) == 1
    written = write_acquisition(tmp_path, cfg, layout="tiff-stacks", name="u")
    with tifffile.TiffFile(written["images"][0]) as tif:
        assert tif.imagej_metadata["Labels"][:2] == ["c0", "c1"]
    meta = simulate_position(cfg, 0).metadata
    assert sorted(meta["channel_kinds"].values()) == ["fluorescence", "phase"]
    assert meta["channel_kinds"][cfg.phase_channels[0]] == "phase"
    # Both channel orders occur across seeds.
    phases = {sample_config("unnamed_channels", s).phase_channels[0] for s in range(10000, 10020)}
    assert phases == {"c0", "c1"}


def test_jpeg_artefacts_present():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    frame = (1000 + 3 * xx + 2 * yy + rng.normal(0, 20, (128, 128))).astype(np.uint16)
    out = jpeg_like(frame, 30)
    assert out.dtype == np.uint16 and out.shape == frame.shape
    assert len(np.unique(out)) <= 256  # 8-bit levels
    # Steps between 8 x 8 blocks are larger than steps inside them.
    d = np.abs(np.diff(out.astype(float), axis=1))
    at_edges = d[:, 7::8].mean()
    inside = np.delete(d, np.s_[7::8], axis=1).mean()
    assert at_edges > 1.5 * inside
    assert np.abs(out.astype(float) - frame).mean() < 30
    # The family really writes such frames.
    cfg = sample_config("jpeg", 10000, **SIZE)
    assert 25 <= cfg.jpeg_quality <= 70
    movie = simulate_position(cfg, 0).movies["gfp"]
    assert len(np.unique(movie[0])) <= 256


def test_curved_and_tapered_rods():
    shape, h = (80, 40), 20.0
    win, th, _ = rod(shape, 40, 20, 2 * h + 10, 10, 0.0)
    straight = np.zeros(shape, np.float32)
    straight[win] = th
    win, th, inside = rod(shape, 40, 20, 2 * h + 10, 10, 0.0, curvature=0.01)
    full = np.zeros(shape, bool)
    full[win] = inside
    cx = lambda rows: np.mean(np.nonzero(full[rows])[1])  # noqa: E731
    # The axis is the parabola c / 2 (a^2 - h^2 / 3): rows 39-41 (a ~ 0) sit
    # c / 2 * 324.7 = 1.6 px off rows 21-23 (a ~ -18), which a straight rod does not.
    assert cx(slice(39, 42)) - cx(slice(21, 24)) == pytest.approx(-0.005 * 324.0, abs=0.4)
    plain = straight > 0
    assert np.mean(np.nonzero(plain[39:42])[1]) == pytest.approx(
        np.mean(np.nonzero(plain[21:24])[1]), abs=0.05)
    win, th, inside = rod(shape, 40, 20, 2 * h + 10, 10, 0.0, taper=0.2)
    full = np.zeros(shape, bool)
    full[win] = inside
    widths = full.sum(axis=1)
    assert widths[55] >= widths[25] + 2  # wider towards +a (larger rows at tilt 0)


def test_curved_cells_family_draws_per_cell_shapes():
    cfg = sample_config("curved_cells", 10000, **SIZE)
    plain = SyntheticConfig(**{**cfg.to_dict(), "cell_curvature_sd": 0.0, "cell_taper_sd": 0.0})
    a, b = simulate_position(cfg, 0), simulate_position(plain, 0)
    # Same cells (own random stream), different masks.
    assert a.cells[["t", "cell_id", "length_px"]].equals(b.cells[["t", "cell_id", "length_px"]])
    assert not np.array_equal(a.trench_labels, b.trench_labels)


def test_alternative_optics_has_heavier_tails():
    delta = np.zeros((101, 101), np.float32)
    delta[50, 50] = 1.0
    g, e = halo_blur(delta, 6.0, "gaussian"), halo_blur(delta, 6.0, "exponential")
    assert e[50, 50 + 24] > 3 * g[50, 50 + 24]
    assert e.sum() == pytest.approx(g.sum(), rel=1e-3)
    planes = np.zeros((1, 64, 64), np.float32)
    planes[0, 32, 32] = 100.0
    tail = psf_tail(planes, 0.2, 6.0)
    assert tail.sum() == pytest.approx(100.0, rel=1e-3)
    assert tail[0, 32, 32] == pytest.approx(80.0, abs=1.0) and tail[0, 32, 44] > 0
    np.testing.assert_array_equal(blur(delta, 0), delta)


def test_edge_partial_draws_cut_lumens():
    cfg = sample_config("edge_partial", 10000, **SIZE)
    lumens = make_layout(cfg, 0).lumens
    assert (lumens.row == -1).any() and (lumens.row >= 0).any()
    kinds = {sample_config("edge_partial", s).edge_trenches for s in range(10000, 10012)}
    assert kinds == {"cells", "empty"}


def test_edge_trenches_with_cells_stay_out_of_the_truth():
    import dataclasses
    cfg = dataclasses.replace(sample_config("edge_partial", 10000, height=384, width=384,
                                            n_timepoints=2), edge_trenches="cells",
                              empty_fraction=0.0)
    pos = simulate_position(cfg, 0)
    omit = simulate_position(dataclasses.replace(cfg, edge_trenches="omit"), 0)
    n = len(pos.trenches)
    # The same trenches are in the truth; the cut ones are not.
    assert pos.trenches[["x_center", "y_closed"]].equals(omit.trenches[["x_center", "y_closed"]])
    assert pos.metadata["n_trenches"] == n == pos.trench_labels.shape[0]
    assert pos.cells.row.max() < n and pos.lineage.row.max() < n
    labelled = np.isin(pos.frame_labels, pos.cells.cell_id.unique()) | (pos.frame_labels == 0)
    assert labelled.all()
    # Fluorescent cells outside every labelled pixel: the cells of the cut trenches.
    fl = pos.movies["gfp"][0].astype(float)
    bright = fl > np.percentile(fl, 50) + 0.5 * cfg.fluor_amplitude
    far = bright & ~ndimage.binary_dilation(pos.frame_labels[0] > 0, iterations=6)
    far_omit = (omit.movies["gfp"][0] > np.percentile(fl, 50) + 0.5 * cfg.fluor_amplitude) & \
        ~ndimage.binary_dilation(omit.frame_labels[0] > 0, iterations=6)
    assert far.sum() > far_omit.sum() + 50


def test_mother_cells_and_empty_trenches_in_truth(rendered):
    cells = rendered["nominal"].cells
    assert cells.mother.equals(cells.label == 1)
    per_frame = cells.groupby(["row", "t"]).mother.sum()
    assert (per_frame == 1).all()
    pos = rendered["nominal"]
    empty = pos.trenches["empty"].to_numpy()
    assert empty.any() and not pos.trench_labels[empty].any()


def test_seed_split():
    assert split_of(0) == split_of(999) == "tuning"
    assert split_of(10000) == "heldout"
    with pytest.raises(ValueError, match="neither split"):
        split_of(5000)
    with pytest.raises(ValueError, match="neither split"):
        sample_config("nominal", 1000)
    assert seeds("heldout", 3) == [10000, 10001, 10002] and seeds("tuning", 2, 5) == [5, 6]
    assert not set(seeds("tuning", 1000)) & set(seeds("heldout", 1000))
    with pytest.raises(ValueError):
        seeds("tuning", 1001)


def test_bad_family_and_overrides():
    with pytest.raises(ValueError, match="unknown family"):
        sample_config("nope", 10000)
    with pytest.raises(ValueError, match="unknown SyntheticConfig field"):
        sample_config("nominal", 10000, heigth=100)
    got = sample_configs(["jpeg", "low_snr"], n_seeds=2, n_timepoints=1)
    assert [(f, s) for f, s, _ in got] == [("jpeg", 10000), ("jpeg", 10001),
                                           ("low_snr", 10000), ("low_snr", 10001)]
    assert all(c.n_timepoints == 1 for *_, c in got)
    with pytest.raises(ValueError, match="phase_lumen"):
        SyntheticConfig(phase_lumen="grey")


# -- scoring helpers used by the benchmarks -----------------------------------------
def test_truth_boxes_score_perfectly():
    from batchlib.trench.synthetic.scoring import (closed_end_errors, count_labels,
                                                   labels_in_boxes, match_boxes, mother_top_rows)
    cfg = SyntheticConfig(height=256, width=288, n_timepoints=2, seed=5, angle_deg=0.0,
                          drift_quantum_px=1.0, drift_step_px=1.0)
    pos = simulate_position(cfg, 0)
    tr = pos.trenches
    shape = pos.frame_labels.shape[1:]
    pairs, ious = match_boxes(tr, 0.0, tr, 0.0, shape, cfg.pitch_px)
    assert pairs == [(i, i) for i in range(len(tr))] and np.allclose(ious, 1.0)
    np.testing.assert_allclose(closed_end_errors(tr, tr, pairs, 0.0, shape), 0.0, atol=1e-9)
    # A box moved 3 px towards the open end starts 3 px inside; into the wall: negative.
    for shift in (3, -2):
        moved = tr.copy()
        moved["y_closed"] += shift * moved["direction"]
        raw = np.stack([geometry.rotated_to_raw(geometry.box_corners(
            r.x_center, r.y_closed, r.direction, r.height, r.width), 0.0, shape)
            for r in moved.itertuples()])
        for k in range(4):
            moved[f"raw_y{k}"], moved[f"raw_x{k}"] = raw[:, k, 0], raw[:, k, 1]
        np.testing.assert_allclose(closed_end_errors(moved, tr, pairs, 0.0, shape), shift,
                                   atol=1e-9)
    # The truth sampled on the true boxes is the crop truth (ids aside), frame by frame.
    for t in range(2):
        got = labels_in_boxes(pos.frame_labels[t], tr, 0.0, pos.drift[t])
        np.testing.assert_array_equal(got > 0, pos.trench_labels[:, t] > 0)
        np.testing.assert_array_equal(count_labels(got), count_labels(pos.trench_labels[:, t]))
    top = mother_top_rows(pos.trench_labels)
    empty = tr["empty"].to_numpy()
    assert np.isnan(top[empty]).all() and (top[~empty] <= 3).all()


def test_truth_on_shifted_boxes_costs_a_perfect_segmentation_iou():
    """What the detected-box scores can reach: the truth of a box off the pixel grid is the
    frame's labels sampled at the nearest pixel, and each of its boundaries is then up to
    half a pixel from the cell's. A perfect segmentation (the cell rasterised on the box's
    own grid) of rods 7-13 px wide scores a mean IoU of about 0.93 against it; on whole-pixel
    boxes 1.0 (docs/benchmarks.md, "Scores on detected boxes")."""
    from batchlib.trench.synthetic.cells import rod

    rng = np.random.default_rng(0)
    grid = np.mgrid[0:64, 0:48].astype(float)
    ious = []
    for _ in range(200):
        cy, cx, length, width = rng.uniform(28, 36), rng.uniform(21, 27), rng.uniform(15, 35), \
            rng.uniform(7, 13)
        tilt = rng.uniform(-0.05, 0.05)
        frame = np.zeros((64, 48), np.int32)
        win, _, inside = rod(frame.shape, cy, cx, length, width, tilt)
        frame[win][inside] = 1
        dy, dx = rng.uniform(-0.5, 0.5, 2)
        sampled = frame[np.clip(np.rint(grid[0] + dy).astype(int), 0, 63),
                        np.clip(np.rint(grid[1] + dx).astype(int), 0, 47)]
        perfect = np.zeros_like(frame)
        win, _, inside = rod(frame.shape, cy - dy, cx - dx, length, width, tilt)
        perfect[win][inside] = 1
        ious.append(((sampled > 0) & (perfect > 0)).sum() / ((sampled > 0) | (perfect > 0)).sum())
    assert 0.90 < np.mean(ious) < 0.96 and np.min(ious) < 0.9


def test_cli_writes_a_family(tmp_path):
    import argparse

    from batchlib.trench.synthetic import cli, load_ground_truth
    parser = cli.configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--layout", "tiff-sequence", "--name", "f",
                              "--positions", "1", "--timepoints", "2", "--size", "320",
                              "--family", "unnamed_channels", "--seed", "10002"])
    assert cli.main(args) == 0
    gt = load_ground_truth(tmp_path / "ground_truth" / "f_pos000")
    assert gt.metadata["family"] == "unnamed_channels" and gt.metadata["family_seed"] == 10002
    assert gt.metadata["channels"] == ["c0", "c1"]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "t000xy00c0.tif", "t000xy00c1.tif", "t001xy00c0.tif", "t001xy00c1.tif"]
    bad = parser.parse_args(["--out", str(tmp_path), "--family", "jpeg", "--seed", "5000"])
    assert cli.main(bad) == 2


@pytest.mark.parametrize("size", [256, 512, 2048])
def test_every_family_gives_a_valid_config_for_many_seeds(size):
    for family in FAMILIES:
        for seed in list(range(0, 30)) + list(range(10000, 10030)):
            cfg = sample_config(family, seed, height=size, width=size)
            assert cfg.box_width <= cfg.pitch_px and cfg.cell_width_px + 1 <= cfg.trench_width_px
            assert cfg.resolved_trench_length() >= 2 * cfg.birth_length_px


def test_files_without_channel_names(tmp_path):
    import xml.etree.ElementTree as ET
    cfg = sample_config("unnamed_channels", 10001, height=192, width=192, n_timepoints=2,
                        n_positions=1, trench_length_px=60, feeding_channel_px=30)
    stacks = write_acquisition(tmp_path / "s", cfg, layout="tiff-stacks", channel_names=False)
    with tifffile.TiffFile(stacks["images"][0]) as tif:
        assert "Labels" not in (tif.imagej_metadata or {})
        assert tif.series[0].shape == (2, 2, 192, 192)
    ome = write_acquisition(tmp_path / "o", cfg, layout="ome-tiff", channel_names=False)
    with tifffile.TiffFile(ome["images"][0]) as tif:
        root = ET.fromstring(tif.ome_metadata)
        channels = [e for e in root.iter() if e.tag.endswith("Channel")]
        assert len(channels) == 2 and not any("Name" in e.attrib for e in channels)
    named = write_acquisition(tmp_path / "n", cfg, layout="ome-tiff")
    with tifffile.TiffFile(named["images"][0]) as tif:
        root = ET.fromstring(tif.ome_metadata)
        assert [e.attrib.get("Name") for e in root.iter() if e.tag.endswith("Channel")] == \
            ["c0", "c1"]


def test_mixed_of_combines_only_the_families_named():
    """A model trained on the 'combined' family must still never see the held-out
    conditions (JPEG, other optics): ``mixed_of`` restricts what ``mixed`` combines."""
    from batchlib.trench.segmentation.training import HELDOUT_FAMILIES

    trained = [f for f in FAMILIES if f not in HELDOUT_FAMILIES]
    dark = 0
    for seed in range(40):
        cfg = sample_config("mixed", seed, mixed_of=trained)
        assert cfg.jpeg_quality == 0 and cfg.halo_model == "gaussian"
        dark += cfg.phase_lumen == "dark"
    assert 5 < dark < 30      # the trained families are combined as in mixed
    # plain mixed does draw the held-out ones
    assert any(sample_config("mixed", s).jpeg_quality for s in range(40))
    with pytest.raises(ValueError, match="mixed_of"):
        sample_config("nominal", 0, mixed_of=trained)
    # a restricted mix shares no draws or layout with 'mixed' for the same seed
    assert sample_config("mixed", 3, mixed_of=trained).seed != sample_config("mixed", 3).seed
