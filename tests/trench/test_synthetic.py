"""The synthetic acquisition generator and its ground truth."""
from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import tifffile

from batchlib.trench import geometry
from batchlib.trench.synthetic import (SyntheticConfig, load_ground_truth, simulate_position,
                                       write_acquisition)
from batchlib.trench.synthetic import cli

SMALL = dict(height=256, width=288, n_timepoints=8, channels=("phase", "gfp"))


@pytest.fixture(scope="module")
def pos():
    """Random angle, sub-pixel drift, defocused frames: the general case."""
    return simulate_position(SyntheticConfig(**SMALL, seed=3, focus_change_prob=0.3), position=1)


@pytest.fixture(scope="module")
def straight():
    """Angle 0 and whole-pixel drift: every crop is a plain slice of the frame."""
    cfg = SyntheticConfig(**SMALL, seed=5, angle_deg=0.0, drift_quantum_px=1.0,
                          drift_step_px=1.0, max_drift_px=3.0)
    return simulate_position(cfg, position=0)


def _crop(frame, tr, drift, order=0):
    return geometry.crop_box(frame, tr.x_center, tr.y_closed, tr.direction, tr.height, tr.width,
                             tr.angle_deg, drift, order=order)


def test_shapes_and_dtypes(pos):
    T, H, W = 8, 256, 288
    assert set(pos.movies) == {"phase", "gfp"}
    for movie in pos.movies.values():
        assert movie.shape == (T, H, W) and movie.dtype == np.uint16
    assert pos.frame_labels.shape == (T, H, W) and pos.frame_labels.dtype == np.int32
    tr = pos.trenches
    assert len(tr) >= 6
    assert pos.trench_labels.shape == (len(tr), T, tr.height[0], tr.width[0])
    assert pos.trench_labels.dtype == np.int32
    assert tr.height.nunique() == 1 and tr.width.nunique() == 1 and (tr.width == 32).all()
    assert pos.drift.shape == (T, 2) and np.all(pos.drift[0] == 0)
    assert 0 < np.abs(pos.drift).max() <= 3.0
    # ordered by (set, trench), trench = rank of x_center within its set
    assert list(zip(tr["set"], tr.trench)) == sorted(zip(tr["set"], tr.trench))
    for _, g in tr.groupby("set"):
        assert (np.diff(g.x_center) > 0).all() and list(g.trench) == list(range(len(g)))
    for col in ["t", "cell_id", "parent_id", "set", "trench", "row", "label", "length_px",
                "width_px", "centroid_y", "centroid_x", "gfp_amplitude", "gfp_mean_true"]:
        assert col in pos.cells.columns
    assert (pos.cells.area_px > 0).all()
    md = pos.metadata
    assert md["channels"] == ["phase", "gfp"] and md["pixel_size_um"] == 0.1
    assert len(md["stage_xyz"]) == 3 and abs(md["angle_deg"]) <= 3.0


def test_deterministic_per_seed_and_position(pos):
    cfg = SyntheticConfig(**SMALL, seed=3, focus_change_prob=0.3)
    again = simulate_position(cfg, position=1)
    for ch in pos.movies:
        np.testing.assert_array_equal(again.movies[ch], pos.movies[ch])
    np.testing.assert_array_equal(again.trench_labels, pos.trench_labels)
    pd.testing.assert_frame_equal(again.cells, pos.cells)
    other = simulate_position(SyntheticConfig(**SMALL, seed=4, focus_change_prob=0.3), position=1)
    assert not np.array_equal(other.movies["phase"], pos.movies["phase"])
    other_pos = simulate_position(cfg, position=0)
    assert not np.array_equal(other_pos.movies["gfp"], pos.movies["gfp"])


def test_two_sets_face_each_other(pos):
    tr = pos.trenches
    assert set(tr["set"]) == {0, 1}
    d0, d1 = (tr.loc[tr["set"] == s, "direction"].unique() for s in (0, 1))
    assert list(d0) == [1] and list(d1) == [-1]
    assert tr.loc[tr["set"] == 0, "y_closed"].max() < tr.loc[tr["set"] == 1, "y_closed"].min()
    # the feeding channel lies between the two sets' open ends
    f0, f1 = pos.metadata["feeding_channel_rows"]
    open0 = (tr.y_closed + tr.direction * (tr.height - 1))[tr["set"] == 0]
    open1 = (tr.y_closed + tr.direction * (tr.height - 1))[tr["set"] == 1]
    assert (open0 < f0).all() and (open1 > f1).all()


def test_single_set_closed_end_down():
    cfg = SyntheticConfig(**SMALL, n_sets=1, single_set_direction=-1, seed=2)
    p = simulate_position(cfg)
    assert set(p.trenches["set"]) == {0} and (p.trenches.direction == -1).all()
    assert p.metadata["feeding_channel_rows"][1] < p.trenches.y_closed.min()


def test_raw_corners_follow_geometry(pos):
    for tr in pos.trenches.itertuples():
        corners = geometry.rotated_to_raw(
            geometry.box_corners(tr.x_center, tr.y_closed, tr.direction, tr.height, tr.width),
            tr.angle_deg, pos.frame_labels.shape[1:])
        np.testing.assert_allclose(corners[:, 0], [getattr(tr, f"raw_y{i}") for i in range(4)])
        np.testing.assert_allclose(corners[:, 1], [getattr(tr, f"raw_x{i}") for i in range(4)])
        # the box stays inside the frame at every drift
        for d in pos.drift:
            moved = corners + d
            assert moved.min() >= 0 and (moved <= np.array(pos.frame_labels.shape[1:]) - 1).all()


def _inside_polygon(points, poly, tol=1e-6):
    """Points inside a convex polygon given in order (either orientation)."""
    signs = []
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        edge, rel = b - a, points - a
        signs.append(edge[0] * rel[:, 1] - edge[1] * rel[:, 0])
    s = np.stack(signs)
    return (s >= -tol).all(0) | (s <= tol).all(0)


def test_frame_labels_inside_their_box(pos):
    row_of = dict(zip(pos.cells.cell_id, pos.cells.row))
    tr = pos.trenches
    n_checked = 0
    for t in range(len(pos.drift)):
        fl = pos.frame_labels[t]
        yi, xi = np.nonzero(fl)
        rows = np.array([row_of[c] for c in fl[yi, xi]])
        for row in np.unique(rows):
            r = tr.iloc[row]
            poly = np.column_stack([[r[f"raw_y{i}"] for i in range(4)],
                                    [r[f"raw_x{i}"] for i in range(4)]]) + pos.drift[t]
            sel = rows == row
            assert _inside_polygon(np.column_stack([yi[sel], xi[sel]]).astype(float), poly).all()
            n_checked += sel.sum()
        # every visible cell of the frame is in the raw labels
        ids = set(pos.cells.cell_id[pos.cells.t == t])
        assert set(np.unique(fl[fl > 0])) == ids
    assert n_checked > 1000


def test_trench_labels_are_exact_crops_without_interpolation(straight):
    assert np.any(straight.drift != 0) and np.all(straight.drift == np.round(straight.drift))
    for tr in straight.trenches.itertuples():
        for t in range(len(straight.drift)):
            crop = _crop(straight.frame_labels[t], tr, straight.drift[t])
            ids = np.unique(crop[crop > 0])
            expected = np.zeros_like(crop)
            # crop holds cell ids; the truth renumbers them 1..k from the closed end
            for c in ids:
                expected[crop == c] = straight.cells.label[
                    (straight.cells.cell_id == c) & (straight.cells.t == t)].iloc[0]
            np.testing.assert_array_equal(straight.trench_labels[tr.Index, t], expected)


def test_trench_labels_match_interpolated_crops(pos):
    agree = total = 0
    for tr in pos.trenches.itertuples():
        for t in range(len(pos.drift)):
            crop = _crop(pos.frame_labels[t], tr, pos.drift[t])
            truth = pos.trench_labels[tr.Index, t]
            cells = pos.cells[(pos.cells.t == t) & (pos.cells.row == tr.Index)]
            lut = np.zeros(max(crop.max(), 1) + 1, np.int32)
            lut[cells.cell_id] = cells.label
            agree += np.sum(lut[crop] == truth)
            total += crop.size
    assert agree / total > 0.98


def test_labels_numbered_from_closed_end(pos):
    tl = pos.trench_labels
    for row in range(tl.shape[0]):
        for t in range(tl.shape[1]):
            lab = tl[row, t]
            k = lab.max()
            assert set(np.unique(lab)) == set(range(k + 1))
            if k:
                rows = np.array([np.nonzero(lab == i)[0].mean() for i in range(1, k + 1)])
                assert np.all(np.diff(rows) > 0) and rows.argmin() == 0
    c = pos.cells
    assert (c.groupby(["t", "row"]).centroid_y.apply(lambda s: s.is_monotonic_increasing)).all()
    consecutive = c.groupby(["t", "row"]).label.apply(lambda s: list(s) == list(range(1, len(s) + 1)))
    assert consecutive.all()


def test_empty_trenches_never_hold_cells(pos):
    tr = pos.trenches
    assert tr["empty"].any() and not tr["empty"].all()
    occupied = pos.trench_labels.reshape(len(tr), -1).max(axis=1) > 0
    np.testing.assert_array_equal(occupied, ~tr["empty"].to_numpy())


def test_fluorescence_only_in_cells(straight):
    cfg_offset = straight.metadata["camera_offset"]
    bg = straight.metadata["fluor_background"]
    gfp = straight.movies["gfp"]
    empty_means, cell_means, rel_err = [], [], []
    for tr in straight.trenches.itertuples():
        for t in range(len(straight.drift)):
            crop = _crop(gfp[t], tr, straight.drift[t]).astype(float)
            if tr.empty:
                empty_means.append(crop.mean())
                continue
            lab = straight.trench_labels[tr.Index, t]
            cells = straight.cells[(straight.cells.t == t) & (straight.cells.row == tr.Index)]
            for c in cells.itertuples():
                mean = crop[lab == c.label].mean()
                cell_means.append(mean)
                # truth = measured minus the local background, read on the walls
                local_bg = np.median(np.concatenate([crop[:, :4], crop[:, -4:]]))
                rel_err.append((mean - local_bg) / c.gfp_mean_true - 1)
    empty_means = np.array(empty_means)
    assert np.all(np.abs(empty_means - cfg_offset - bg) < 0.3 * bg + 3)
    assert np.median(cell_means) > cfg_offset + bg + 100
    assert abs(np.median(rel_err)) < 0.03


def test_phase_cells_dark_and_halo(straight):
    ph = straight.movies["phase"]
    inside, gaps = [], []
    for tr in straight.trenches.itertuples():
        if tr.empty:
            continue
        crop = _crop(ph[0], tr, straight.drift[0]).astype(float)
        lab = straight.trench_labels[tr.Index, 0]
        axis = (tr.width - 1) // 2
        col, lc = crop[:, axis - 1:axis + 2].mean(1), lab[:, axis]
        inside.append(col[lc > 0].mean())
        cell_rows = np.nonzero(lc)[0]
        between = np.arange(cell_rows.min(), cell_rows.max())
        gaps.extend(col[between[lc[between] == 0]])
    # cells are darker than the septa between them
    assert len(gaps) > 5 and np.mean(inside) < 0.8 * np.mean(gaps)


def test_focus_rim_moves_the_apparent_edge_and_defaults_to_none():
    """``phase_focus_rim_px2``: the defocus term brightens the cell's rim inside its edge
    (> 0) or darkens it there (< 0); the centre barely changes and 0 changes nothing."""
    from batchlib.trench.synthetic.cells import phase_term, rod

    thick = np.zeros((60, 40), np.float32)
    win, th, inside = rod(thick.shape, 30.0, 20.0, 30.0, 12.0, 0.0)
    thick[win] = th
    base = phase_term(thick, 1.2, 1.4, 8.0)
    assert np.array_equal(base, phase_term(thick, 1.2, 1.4, 8.0, focus_rim=0.0))
    rim_in = phase_term(thick, 1.2, 1.4, 8.0, focus_rim=2.0)
    rim_out = phase_term(thick, 1.2, 1.4, 8.0, focus_rim=-2.0)
    # along the row through the centre: the edge is at column 14 (centre 20, radius 6)
    edge_inside, centre = (30, 16), (30, 20)
    assert rim_in[edge_inside] > base[edge_inside] + 0.1 > rim_out[edge_inside] + 0.2
    assert abs(rim_in[centre] - base[centre]) < 0.1
    # and the other way round just outside it: the dark core looks narrower (> 0)
    edge_outside = (30, 14)
    assert rim_in[edge_outside] < base[edge_outside] - 0.1 < rim_out[edge_outside] - 0.2


def test_growth_and_division(pos):
    lin = pos.lineage.set_index("cell_id")
    daughters = lin[lin.parent_id > 0]
    assert len(daughters) >= 10
    assert daughters.parent_id.isin(lin.index).all()
    parents = lin.loc[daughters.parent_id]
    np.testing.assert_array_equal(parents.division_frame.to_numpy(),
                                  daughters.birth_frame.to_numpy())
    assert (parents.row.to_numpy() == daughters.row.to_numpy()).all()
    gap = SyntheticConfig().cell_gap_px
    for pid, sisters in daughters.groupby("parent_id"):
        assert len(sisters) == 2
        div = lin.loc[pid, "division_length_px"]
        assert sisters.birth_length_px.sum() + gap == pytest.approx(div)
        assert np.all(np.abs(sisters.birth_length_px / div - 0.5) < 0.15)
        # the mother's last observed length, grown one frame, is the division length
        last = pos.cells[pos.cells.cell_id == pid].sort_values("t").length_px
        if len(last):
            assert 0.35 < sisters.birth_length_px.iloc[0] / last.iloc[-1] < 0.75
    # lengths grow between frames
    c = pos.cells.sort_values(["cell_id", "t"])
    growth = c.groupby("cell_id").length_px.diff().dropna()
    assert (growth > 0).all()
    # founders are in the lineage with birth_frame -1, everyone has a row
    assert (lin.loc[lin.parent_id == 0, "birth_frame"] == -1).all()
    assert set(pos.cells.cell_id) <= set(lin.index)


def test_write_and_reload_ground_truth(tmp_path):
    cfg = SyntheticConfig(height=256, width=256, n_positions=2, n_timepoints=3, seed=1)
    written = write_acquisition(tmp_path, cfg, layout="ome-tiff", name="acq")
    assert [p.name for p in written["ground_truth"]] == ["acq_pos000", "acq_pos001"]
    for p, gt_dir in enumerate(written["ground_truth"]):
        ref = simulate_position(cfg, p)
        gt = load_ground_truth(gt_dir)
        np.testing.assert_array_equal(gt.frame_labels, ref.frame_labels)
        np.testing.assert_array_equal(gt.trench_labels, ref.trench_labels)
        np.testing.assert_array_equal(gt.drift, ref.drift)
        for name in ("trenches", "cells", "lineage"):
            pd.testing.assert_frame_equal(getattr(gt, name), getattr(ref, name), check_dtype=False)
        assert gt.metadata == json.loads(json.dumps(ref.metadata))


@pytest.fixture(scope="module")
def tiny_cfg():
    return SyntheticConfig(height=192, width=160, n_positions=2, n_timepoints=2,
                           channels=("phase", "gfp", "mcherry"), seed=7, trench_length_px=60)


@pytest.fixture(scope="module")
def tiny_movies(tiny_cfg):
    return [simulate_position(tiny_cfg, p).movies for p in range(tiny_cfg.n_positions)]


def _tcyx(movies, cfg):
    return np.stack([movies[ch] for ch in cfg.channels], axis=1)


def test_ome_tiff_round_trip(tmp_path, tiny_cfg, tiny_movies):
    out = write_acquisition(tmp_path, tiny_cfg, layout="ome-tiff", name="run",
                            ground_truth=False)
    assert out["images"] == [tmp_path / "run.ome.tif"] and out["ground_truth"] == []
    with tifffile.TiffFile(out["images"][0]) as tif:
        assert tif.is_ome and len(tif.series) == 2
        for p, s in enumerate(tif.series):
            assert s.axes == "TCYX" and s.shape == (2, 3, 192, 160)
            np.testing.assert_array_equal(s.asarray(), _tcyx(tiny_movies[p], tiny_cfg))
        root = ET.fromstring(tif.ome_metadata)
    pixels = root.findall(".//{*}Pixels")
    assert [c.get("Name") for c in pixels[0].findall("{*}Channel")] == ["phase", "gfp", "mcherry"]
    assert float(pixels[0].get("PhysicalSizeX")) == pytest.approx(0.1)
    assert float(pixels[0].get("TimeIncrement")) == pytest.approx(180.0)
    planes = pixels[1].findall("{*}Plane")
    assert float(planes[-1].get("DeltaT")) == pytest.approx(180.0)
    assert planes[0].get("PositionX") is not None


def test_imagej_stacks_round_trip(tmp_path, tiny_cfg, tiny_movies):
    out = write_acquisition(tmp_path, tiny_cfg, layout="tiff-stacks", name="run",
                            ground_truth=False)
    assert [p.name for p in out["images"]] == ["run_xy00.tif", "run_xy01.tif"]
    for p, path in enumerate(out["images"]):
        with tifffile.TiffFile(path) as tif:
            assert tif.is_imagej and tif.series[0].axes == "TCYX"
            np.testing.assert_array_equal(tif.series[0].asarray(), _tcyx(tiny_movies[p], tiny_cfg))
            md = tif.imagej_metadata
            assert md["Labels"][:3] == ["phase", "gfp", "mcherry"]
            assert md["finterval"] == pytest.approx(180.0) and md["unit"] == "um"
            num, den = tif.pages[0].tags["XResolution"].value
            assert den / num == pytest.approx(0.1)


def test_tiff_sequence_round_trip(tmp_path, tiny_cfg, tiny_movies):
    out = write_acquisition(tmp_path, tiny_cfg, layout="tiff-sequence", name="run",
                            ground_truth=False)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == sorted(f"t{t:03d}xy{p:02d}c{c}.tif"
                           for t in range(2) for p in range(2) for c in range(3))
    assert len(out["images"]) == 12
    for p in range(2):
        for t in range(2):
            for c, ch in enumerate(tiny_cfg.channels):
                img = tifffile.imread(tmp_path / "run" / f"t{t:03d}xy{p:02d}c{c}.tif")
                assert img.ndim == 2
                np.testing.assert_array_equal(img, tiny_movies[p][ch][t])


def test_cli_writes_acquisition(tmp_path):
    parser = cli.configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--layout", "tiff-stacks", "--name", "x",
                              "--positions", "1", "--timepoints", "2", "--size", "200x180",
                              "--channels", "phase,gfp", "--sets", "1", "--seed", "3",
                              "--empty-fraction", "0.5", "--angle", "1.5"])
    assert cli.main(args) == 0
    assert (tmp_path / "x_xy00.tif").is_file()
    gt = load_ground_truth(tmp_path / "ground_truth" / "x_pos000")
    assert gt.metadata["angle_deg"] == 1.5 and gt.metadata["n_sets"] == 1
    bad = parser.parse_args(["--out", str(tmp_path), "--size", "40"])
    assert cli.main(bad) == 2


def test_rejects_impossible_configs():
    with pytest.raises(ValueError):
        SyntheticConfig(box_width=60, pitch_px=48)
    with pytest.raises(ValueError):
        SyntheticConfig(height=96, width=96)
    with pytest.raises(ValueError):
        SyntheticConfig(channels=("gfp", "gfp"))


def _column_profile_stats(img, rows):
    prof = img[rows].mean(axis=0)
    lo, hi = np.percentile(prof, [10, 90])
    spectrum = np.abs(np.fft.rfft(prof - prof.mean()))
    period = len(prof) / (np.argmax(spectrum[2:]) + 2)
    return hi / lo, np.mean(prof > (lo + hi) / 2), period


def test_phase_looks_like_real_frame(shared_data):
    """Across the trenches, real and synthetic phase frames show narrow bright lumens
    between dark PDMS walls, periodic at the trench pitch."""
    real = tifffile.imread(shared_data / "phase_fov" / "molyso_example_frame.tif").astype(float)
    cfg = SyntheticConfig(height=real.shape[0], width=real.shape[1], n_timepoints=1,
                          channels=("phase",), n_sets=1, single_set_direction=-1, seed=4)
    p = simulate_position(cfg)
    synth = p.movies["phase"][0].astype(float) - cfg.camera_offset
    tr = p.trenches.iloc[0]
    rows = slice(int(tr.y_closed - tr.height + 20), int(tr.y_closed - 20))
    for img, rr in ((real, slice(200, 360)), (synth, rows)):
        contrast, bright, period = _column_profile_stats(img, rr)
        assert contrast > 4 and 0.1 < bright < 0.4
    assert _column_profile_stats(synth, rows)[2] == pytest.approx(cfg.pitch_px, rel=0.05)
