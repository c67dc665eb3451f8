"""`batchlib export --format ome-zarr`: read back with ome-zarr-py, checked against the
containers and the generator's ground truth; incremental after new frames."""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ome_zarr")
zarr = pytest.importorskip("zarr")

from batchlib.io import open_file, read_attrs, read_table  # noqa: E402
from batchlib.trench.detection.crop import crop_trenches, paste_trenches  # noqa: E402
from batchlib.trench.export import LABEL_STRIDE, export_folder, load_napari_tracks  # noqa: E402
from batchlib.trench.synthetic import SyntheticConfig, load_ground_truth, write_acquisition  # noqa: E402

from test_workflow_e2e import load_workflow  # noqa: E402

T, LATER = 6, 2
CFG_A = SyntheticConfig(height=320, width=320, n_positions=1, n_timepoints=T, channels=("phase", "gfp"),
                        seed=3)
CFG_B = SyntheticConfig(height=288, width=288, n_positions=1, n_timepoints=3, channels=("phase", "gfp"),
                        seed=4)
META = {".zarray", ".zattrs", ".zgroup"}


def chunk_files(root: Path) -> dict:
    """Every chunk file below ``root``: relative path -> (mtime_ns, content digest)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in root.rglob("*") if p.is_file() and p.name not in META and not p.suffix == ".csv"}


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A (a TIFF sequence, the last frames held back) and B (OME-TIFF): workflow, export,
    the rest of A's frames, workflow, export again; and a one-shot export of the end state."""
    tmp = tmp_path_factory.mktemp("export")
    raw, out, later = tmp / "raw", tmp / "out", tmp / "later"
    write_acquisition(tmp / "a", CFG_A, layout="tiff-sequence", name="A")
    write_acquisition(tmp / "b", CFG_B, layout="ome-tiff", name="B", ground_truth=False)
    raw.mkdir()
    later.mkdir()
    shutil.move(str(tmp / "a" / "A"), raw / "A")
    shutil.move(str(tmp / "b" / "B.ome.tif"), raw / "B.ome.tif")
    for t in range(T - LATER, T):
        for f in (raw / "A").glob(f"t{t:03d}*"):
            shutil.move(str(f), later / f.name)
    wf = load_workflow()
    argv = ["--input_folder", str(raw), "--folder", str(out), "--executor", "serial",
            "--ingest_phase_channels", "c0", "phase", "--progress", "false", "--log_level", "WARNING"]
    assert wf.main(argv) == 0
    first, problems = export_folder(out)
    assert problems == []
    before = chunk_files(out / "export")
    for f in later.iterdir():
        shutil.move(str(f), raw / "A" / f.name)
    assert wf.main(argv) == 0
    second, problems = export_folder(out)
    assert problems == []
    oneshot, problems = export_folder(out, out=tmp / "oneshot")
    assert problems == []
    return {"out": out, "export": out / "export", "oneshot": tmp / "oneshot", "gt": tmp / "a" / "ground_truth",
            "first": first, "second": second, "before": before, "after": chunk_files(out / "export")}


def nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    image, labels = None, None
    for node in Reader(parse_url(str(path)))():
        if node.load(Label):
            labels = node
        elif node.data:
            image = node
    return image, labels


def scales(node):
    return [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]


def test_incremental_export_writes_only_the_new_frames(grown):
    a1 = next(r for r in grown["first"] if r["stem"] == "A_pos000")
    a2 = next(r for r in grown["second"] if r["stem"] == "A_pos000")
    b2 = next(r for r in grown["second"] if r["stem"] == "B_pos000")
    assert (a1["frames"], a1["written"]) == (T - LATER, T - LATER)
    assert (a2["frames"], a2["written"]) == (T, LATER)
    assert (b2["frames"], b2["written"]) == (CFG_B.n_timepoints, 0)
    before, after = grown["before"], grown["after"]
    # Every chunk of the first export is still there, byte for byte and not rewritten.
    assert before and all(after[k] == v for k, v in before.items())
    new = sorted(set(after) - set(before))
    assert new
    for key in new:  # e.g. A_pos000.ome.zarr/labels/cells/1/5/0/0/0: array path, then t
        parts = Path(key).parts
        assert parts[0].startswith("A_pos000"), key
        t = int(parts[4] if "labels" in parts else parts[2])
        assert T - LATER <= t < T, key


def test_incremental_export_equals_a_one_shot_export(grown):
    for name in ("A_pos000.ome.zarr", "A_pos000_trenches.ome.zarr", "B_pos000.ome.zarr"):
        a = zarr.open_group(str(grown["export"] / name), mode="r")
        b = zarr.open_group(str(grown["oneshot"] / name), mode="r")
        arrays = sorted(k for k, _ in a.arrays()) + [f"labels/cells/{k}" for k, _ in a["labels/cells"].arrays()]
        assert len(arrays) >= 2
        for key in arrays:
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=f"{name}/{key}")
        assert dict(a.attrs) == dict(b.attrs)
    assert (grown["export"] / "A_pos000_tracks.csv").read_text() == \
        (grown["oneshot"] / "A_pos000_tracks.csv").read_text()


def test_reads_back_with_the_ngff_reader(grown):
    image, labels = nodes(grown["export"] / "A_pos000.ome.zarr")
    um = {"type": "space", "unit": "micrometer"}
    # A sequence has no frame times: t in frames, without a unit.
    assert image.metadata["axes"] == [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
                                      {"name": "y", **um}, {"name": "x", **um}]
    assert [d.shape for d in image.data] == [(T, 2, 320, 320), (T, 2, 160, 160)]
    assert image.metadata["channel_names"] == ["c0", "c1"]
    px = CFG_A.pixel_size_um
    np.testing.assert_allclose(scales(image), [[1.0, 1.0, px, px], [1.0, 1.0, 2 * px, 2 * px]])
    assert [d.shape for d in labels.data] == [(T, 1, 320, 320), (T, 1, 160, 160)]
    with open_file(grown["out"] / "A_pos000.h5", "r") as f:
        np.testing.assert_array_equal(np.asarray(image.data[0][:, 1]), f["raw/c1"][:])
        np.testing.assert_array_equal(np.asarray(image.data[1][:, 0]), f["raw/c0"][:, ::2, ::2])
        seg = f["segmentation/cells"][:]
    full = np.asarray(labels.data[0])[:, 0]
    np.testing.assert_array_equal(np.asarray(labels.data[1])[:, 0], full[:, ::2, ::2])
    for t in range(T):  # every cell of the crops is in the frame, under its n * stride + label
        expected = {int(i) * LABEL_STRIDE + int(v) for i in range(seg.shape[0])
                    for v in np.unique(seg[i, t]) if v}
        assert set(np.unique(full[t])) - {0} == expected, t

    # B is an OME-TIFF: pixel size and frame interval in the metadata.
    image, labels = nodes(grown["export"] / "B_pos000.ome.zarr")
    assert image.metadata["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert image.metadata["axes"][2] == {"name": "y", "type": "space", "unit": "micrometer"}
    np.testing.assert_allclose(scales(image)[0], [CFG_B.frame_interval_s, 1.0, CFG_B.pixel_size_um,
                                                  CFG_B.pixel_size_um])
    assert scales(labels) == scales(image)
    assert image.metadata["channel_names"] == ["phase", "gfp"]


def test_full_frame_labels_match_the_ground_truth(grown):
    from batchlib.trench.segmentation.evaluate import match_labels

    truth = load_ground_truth(grown["gt"] / "A_pos000")
    _, labels = nodes(grown["export"] / "A_pos000.ome.zarr")
    full = np.asarray(labels.data[0])[:, 0]
    m = match_labels(truth.frame_labels[:T].astype(np.int64), full.astype(np.int64))
    precision, recall = len(m.iou) / m.n_pred, len(m.iou) / m.n_true
    assert precision >= 0.95 and m.mean_iou >= 0.8, (precision, m.mean_iou)
    assert recall >= 0.8, recall  # cells beyond the boxes' open ends are not segmented
    # Cropping the pasted frame again gives back the crops' labels.
    with open_file(grown["out"] / "A_pos000.h5", "r") as f:
        trenches = read_table(f, "tables/trenches")
        angle = read_attrs(f["tables/trenches"])["angle_deg"]
        drift = read_table(f, "tables/drift")[["dy", "dx"]].to_numpy()
        seg = f["segmentation/cells"][:]
    agree = []
    for t in range(T):
        again = crop_trenches(full[t], trenches, angle, tuple(drift[t]), order=0)
        n = np.arange(seg.shape[0])[:, None, None]
        want = np.where(seg[:, t] > 0, n * LABEL_STRIDE + seg[:, t], 0)
        agree.append(np.mean(again[want > 0] == want[want > 0]))
    assert min(agree) >= 0.97, agree


def test_trench_image_is_the_crops_side_by_side(grown):
    image, labels = nodes(grown["export"] / "A_pos000_trenches.ome.zarr")
    with open_file(grown["out"] / "A_pos000.h5", "r") as f:
        crops = f["trench_crops/c0"][:]
        seg = f["segmentation/cells"][:]
    n, _, h, w = crops.shape
    assert image.data[0].shape == (T, 2, h, n * w)
    img, lab = np.asarray(image.data[0]), np.asarray(labels.data[0])
    for i in (0, n // 2, n - 1):
        np.testing.assert_array_equal(img[:, 0, :, i * w:(i + 1) * w], crops[i])
        np.testing.assert_array_equal(lab[:, 0, :, i * w:(i + 1) * w],
                                      np.where(seg[i] > 0, i * LABEL_STRIDE + seg[i].astype(np.int64), 0))
    meta = zarr.open_group(str(grown["export"] / "A_pos000_trenches.ome.zarr"), mode="r").attrs["batchlib"]
    assert meta["trenches"]["x_start"][-1] == (n - 1) * w and meta["trench_width"] == w


def test_tracks_table_in_frame_coordinates(grown):
    csv = grown["export"] / "A_pos000_tracks.csv"
    df = pd.read_csv(csv)
    assert list(df.columns[:5]) == ["track_id", "t", "y", "x", "parent_track_id"]
    with open_file(grown["out"] / "A_pos000.h5", "r") as f:
        tracks = read_table(f, "tables/tracks/cells")
        cells = read_table(f, "tables/cells/cells")
    assert len(df) == len(tracks.drop_duplicates(["cell_id", "t"]))
    assert df["t"].max() == T - 1 and not df.duplicated(["track_id", "t"]).any()
    single = tracks.groupby(["cell_id", "t"]).filter(lambda g: len(g) == 1)
    joined = single.merge(cells, on=["n", "t", "label"]).merge(
        df, left_on=["cell_id", "t"], right_on=["track_id", "t"], suffixes=("", "_csv"))
    assert len(joined) == len(single)
    np.testing.assert_allclose(joined["y"], joined["frame_y"], atol=1e-3)
    np.testing.assert_allclose(joined["x"], joined["frame_x"], atol=1e-3)
    assert set(df["parent_track_id"]) - {0} <= set(df["track_id"])
    data, graph = load_napari_tracks(csv)
    assert data.shape == (len(df), 4)
    divided = df.loc[df["parent_track_id"] > 0, "track_id"].unique()
    assert sorted(graph) == sorted(int(i) for i in divided)
    world, _ = load_napari_tracks(csv, image=grown["export"] / "A_pos000.ome.zarr")
    # A sequence has no frame times (t stays in frames); y, x in micrometres.
    np.testing.assert_allclose(world, data * [1, 1, CFG_A.pixel_size_um, CFG_A.pixel_size_um])


def test_cli_positions_skips_and_errors(grown, tmp_path, capsys):
    from batchlib.cli import main

    assert main(["export", str(grown["out"]), "--positions", "nope*"]) == 1
    assert "matches nope*" in capsys.readouterr().err and "A_pos000" not in [p.name for p in tmp_path.iterdir()]
    assert main(["export", str(grown["out"]), "--format", "ome-zarr", "--positions", "B_pos000",
                 "--out", str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [
        "B_pos000.ome.zarr", "B_pos000_tracks.csv", "B_pos000_trenches.ome.zarr"]
    assert "3 frames (3 written now)" in capsys.readouterr().out
    assert main(["export", str(grown["out"]), "--positions", "B_pos000.h5", "--out", str(tmp_path / "cli")]) == 0
    assert "3 frames (0 written now)" in capsys.readouterr().out
    # A container whose segmentation is being rewritten (no Segment record) is skipped, saying why.
    folder = tmp_path / "busy"
    folder.mkdir()
    shutil.copy(grown["out"] / "B_pos000.h5", folder / "B_pos000.h5")
    with open_file(folder / "B_pos000.h5", "a") as f:
        del f["batchlib/Segment"]
    assert main(["export", str(folder)]) == 1
    assert "no Segment record" in capsys.readouterr().err


@pytest.mark.parametrize("angle, drift, min_agree", [(0.0, (2.0, -3.0), 1.0), (2.3, (0.4, -1.7), 0.97)])
def test_paste_inverts_crop(angle, drift, min_agree):
    rng = np.random.default_rng(0)
    trenches = pd.DataFrame({"x_center": [40.5, 80.5, 120.5], "y_closed": [20.0, 20.0, 140.0],
                             "direction": [1, 1, -1], "height": 60, "width": 16})
    crops = rng.integers(0, 5, size=(3, 60, 16)).astype(np.uint16)
    frame = paste_trenches(crops, trenches, (170, 160), angle_deg=angle, drift_yx=drift)
    back = crop_trenches(frame, trenches, angle, drift, order=0)
    inner = (slice(None), slice(1, -1), slice(1, -1))  # nearest-neighbour rounding at the box edges
    fg = crops[inner] > 0
    assert np.mean(back[inner][fg] == crops[inner][fg]) >= min_agree
    assert frame[crops.shape[1] + 30:, :20].max() == 0  # nothing outside the boxes


def test_n5_container_without_raw_exports_the_overview(tmp_path):
    """raw dropped (overview kept, 4x smaller) in an n5 container: the image is the overview,
    scaled 4x, and the labels stay at full resolution on the same world coordinates."""
    cfg = SyntheticConfig(height=256, width=256, n_positions=1, n_timepoints=2, channels=("phase",), seed=8)
    write_acquisition(tmp_path / "raw", cfg, layout="ome-tiff", name="C", ground_truth=False)
    out = tmp_path / "out"
    argv = ["--input_folder", str(tmp_path / "raw"), "--folder", str(out), "--container_ext", ".n5",
            "--compress_drop_raw", "true", "--progress", "false", "--log_level", "WARNING",
            "--detect_qc_plot", "false", "--track_qc_plot", "false"]
    assert load_workflow().main(argv) == 0
    results, problems = export_folder(out)
    assert problems == [] and results[0]["frames"] == 2
    image, labels = nodes(out / "export" / "C_pos000.ome.zarr")
    assert image.data[0].shape == (2, 1, 64, 64)
    assert labels.data[0].shape == (2, 1, 256, 256)
    px = cfg.pixel_size_um
    np.testing.assert_allclose(scales(image)[0], [cfg.frame_interval_s, 1, 4 * px, 4 * px])
    np.testing.assert_allclose(scales(labels)[0], [cfg.frame_interval_s, 1, px, px])
    with open_file(out / "C_pos000.n5", "r") as f:
        np.testing.assert_array_equal(np.asarray(image.data[0])[:, 0], f["overview/phase"][:])
        n_cells = sum(len(np.unique(f["segmentation/cells"][i, 0])) - 1 for i in range(f["segmentation/cells"].shape[0]))
    assert len(np.unique(np.asarray(labels.data[0])[0])) - 1 == n_cells > 0


def test_an_export_missing_an_array_is_written_again(grown, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(grown["export"], copy)
    shutil.rmtree(copy / "A_pos000.ome.zarr" / "labels" / "cells" / "1")
    (copy / "B_pos000_tracks.csv").unlink()
    results, problems = export_folder(grown["out"], positions=["A_pos000", "B_pos000"], out=copy)
    assert problems == []
    assert {r["stem"]: r["written"] for r in results} == {"A_pos000": T, "B_pos000": 0}
    a = zarr.open_group(str(copy / "A_pos000.ome.zarr"), mode="r")
    b = zarr.open_group(str(grown["oneshot"] / "A_pos000.ome.zarr"), mode="r")
    np.testing.assert_array_equal(a["labels/cells/1"][:], b["labels/cells/1"][:])
    assert (copy / "B_pos000_tracks.csv").read_text() == (grown["oneshot"] / "B_pos000_tracks.csv").read_text()
