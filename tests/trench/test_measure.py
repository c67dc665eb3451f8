import numpy as np
import pandas as pd
import pytest

from batchlib.trench.measure import focus_score, measure_cells, measure_trench_frames


def _stack():
    """Two trenches x three frames of 40 x 16 crops with hand-placed cells."""
    lab = np.zeros((2, 3, 40, 16), np.int32)
    lab[0, 0, 2:12, 4:10] = 1          # 10 x 6 rectangle
    lab[0, 0, 15:30, 5:11] = 2         # 15 x 6
    lab[0, 1, 0:40, 4:10] = 1          # fills the trench: no cell-free lumen
    lab[1, 2, 30:40, 3:8] = 1          # touches the open end
    rng = np.random.default_rng(0)
    gfp = rng.integers(100, 200, lab.shape).astype(np.uint16)
    rfp = rng.random(lab.shape).astype(np.float32)
    return lab, {"gfp": gfp, "rfp": rfp}


def test_per_cell_values_match_numpy():
    lab, ch = _stack()
    df = measure_cells(lab, ch)
    assert list(df[["n", "t", "label"]].itertuples(index=False, name=None)) == [
        (0, 0, 1), (0, 0, 2), (0, 1, 1), (1, 2, 1)]
    for row in df.itertuples():
        m = lab[row.n, row.t] == row.label
        ys, xs = np.nonzero(m)
        assert row.area == m.sum()
        assert row.centroid_y == pytest.approx(ys.mean())
        assert row.centroid_x == pytest.approx(xs.mean())
        for name, img in ch.items():
            v = img[row.n, row.t][m].astype(np.float64)
            assert getattr(row, f"{name}_total") == pytest.approx(v.sum())
            assert getattr(row, f"{name}_mean") == pytest.approx(v.mean())
            assert getattr(row, f"{name}_p95") == pytest.approx(np.percentile(v, 95))


def test_rectangle_length_width_and_units():
    lab, ch = _stack()
    df = measure_cells(lab, ch, pixel_size_um=0.065)
    first = df.iloc[0]
    assert (first.length_px, first.width_px) == (10, 6)
    assert first.length_um == pytest.approx(0.65)
    assert first.width_um == pytest.approx(0.39)
    assert first.area_um2 == pytest.approx(60 * 0.065 ** 2)
    assert df.at_open_end.tolist() == [False, False, True, True]
    assert measure_cells(lab, ch)[["length_um", "width_um"]].isna().all().all()
    stray = lab.copy()
    stray[0, 0, 5, 11] = 1                 # one pixel beside the cell: width unchanged
    assert measure_cells(stray).iloc[0].width_px == 6


def test_background_from_cell_free_lumen_pixels():
    lab, ch = _stack()
    df = measure_cells(lab, ch, dilate=2, min_background_pixels=10)
    # lumen columns of trench 0 are those its cells cover in any frame: 4..10
    free = np.ones((40, 16), bool)
    occupied = lab[0, 0] > 0
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            free &= ~np.roll(np.roll(np.pad(occupied, 2), dy, 0), dx, 1)[2:-2, 2:-2]
    free[:, :4] = False
    free[:, 11:] = False
    expected = np.median(ch["gfp"][0, 0][free].astype(float))
    row = df.iloc[0]
    assert row.gfp_background == pytest.approx(expected)
    assert row.gfp_mean_bgsub == pytest.approx(row.gfp_mean - expected)
    assert row.background_source == "trench"


def test_full_trench_falls_back_to_empty_trenches_of_the_frame():
    lab, ch = _stack()
    df = measure_cells(lab, ch)
    full = df[(df.n == 0) & (df.t == 1)].iloc[0]
    # frame 1: trench 1 is empty; its lumen columns come from its own cells (3..7)
    expected = np.median(ch["gfp"][1, 1][:, 3:8].astype(float))
    assert full.background_source == "empty_trenches"
    assert full.gfp_background == pytest.approx(expected)


def test_background_modes():
    lab, ch = _stack()
    const = measure_cells(lab, ch, background=50.0)
    assert (const.gfp_background == 50.0).all()
    assert np.allclose(const.gfp_mean_bgsub, const.gfp_mean - 50.0)
    empty = measure_cells(lab, ch, background="empty_trenches")
    # frame 0: trench 1 is empty; frame 2: trench 0 is empty
    exp0 = np.median(ch["gfp"][1, 0][:, 3:8].astype(float))
    assert empty[empty.t == 0].gfp_background.tolist() == pytest.approx([exp0, exp0])
    mask = np.array([[False, False, False], [False, False, False]])
    none = measure_cells(lab, ch, background="empty_trenches", empty_trench_mask=mask)
    assert none.gfp_background.isna().all()
    with pytest.raises(ValueError, match="background"):
        measure_cells(lab, ch, background="median")


def test_no_channels_and_no_cells():
    lab, _ = _stack()
    df = measure_cells(lab)
    assert len(df) == 4 and "gfp_mean" not in df
    empty = measure_cells(np.zeros((2, 2, 20, 10), np.int32), {"gfp": np.ones((2, 2, 20, 10))})
    assert len(empty) == 0 and "gfp_mean_bgsub" in empty.columns


def test_leading_dims_and_shape_errors():
    lab, ch = _stack()
    one = measure_cells(lab[0, 0], {"gfp": ch["gfp"][0, 0]})
    assert one[["n", "t"]].to_numpy().tolist() == [[0, 0], [0, 0]]
    three = measure_cells(lab[0], {"gfp": ch["gfp"][0]})
    assert three.t.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="shape"):
        measure_cells(lab, {"gfp": ch["gfp"][0]})


def test_vectorised_matches_per_crop_loop():
    rng = np.random.default_rng(1)
    lab = np.zeros((5, 4, 64, 16), np.int32)
    for n in range(5):
        for t in range(4):
            y = 0
            for k in range(rng.integers(0, 4)):
                ln = int(rng.integers(5, 15))
                lab[n, t, y:y + ln, 5:5 + int(rng.integers(3, 7))] = k + 1
                y += ln + 2
    img = rng.random(lab.shape)
    df = measure_cells(lab, {"c": img}).set_index(["n", "t", "label"])
    rows = []
    for n in range(5):
        for t in range(4):
            for k in np.unique(lab[n, t])[1:]:
                mask = lab[n, t] == k
                v = img[n, t][mask]
                row_px = mask.sum(axis=1)
                rows.append(((n, t, k), v.size, v.sum(), np.percentile(v, 95),
                             np.median(row_px[row_px > 0])))
    assert len(rows) == len(df)
    for key, area, total, p95, width in rows:
        assert df.loc[key, "area"] == area
        assert df.loc[key, "c_total"] == pytest.approx(total)
        assert df.loc[key, "c_p95"] == pytest.approx(p95)
        assert df.loc[key, "width_px"] == width


def test_trench_frames_counts_and_focus():
    lab, ch = _stack()
    df = measure_trench_frames(lab, ch, focus_channel="rfp")
    assert isinstance(df, pd.DataFrame)
    assert df.cell_count.tolist() == [2, 1, 0, 0, 0, 1]
    assert np.allclose(df.gfp_mean, ch["gfp"].reshape(6, -1).mean(axis=1))
    assert np.isfinite(df.focus).all()
    assert measure_trench_frames(lab).focus.isna().all()
    with pytest.raises(KeyError, match="focus_channel"):
        measure_trench_frames(lab, ch, focus_channel="dapi")


def test_focus_score_prefers_sharp_images():
    from scipy import ndimage
    rng = np.random.default_rng(2)
    sharp = 100 + 50 * (rng.random((64, 32)) > 0.5)
    blurred = ndimage.gaussian_filter(sharp.astype(float), 2)
    assert focus_score(sharp) > focus_score(blurred)
    assert focus_score(sharp * 3.0) == pytest.approx(focus_score(sharp))


def test_sparse_label_values():
    """Labels unique over a whole stack (large values) are measured per crop too."""
    lab = np.zeros((2, 2, 20, 8), np.int64)
    lab[0, 0, 2:6, 2:5] = 1_000_000
    lab[1, 1, 10:15, 2:6] = 7_654_321
    df = measure_cells(lab, {"c": np.ones(lab.shape)})
    assert df[["n", "t", "label", "area"]].to_numpy().tolist() == [
        [0, 0, 1_000_000, 12], [1, 1, 7_654_321, 20]]
