"""The inventory table and command."""
import argparse
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from batchlib.trench import inventory as inv


def _folder(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    data = np.arange(2 * 3 * 2 * 8 * 9, dtype=np.uint16).reshape(2, 3, 2, 8, 9)
    with tifffile.TiffWriter(root / "exp.ome.tif", ome=True) as w:
        for p in range(2):
            w.write(data[p], metadata={"axes": "TCYX", "Channel": {"Name": ["phase", "gfp"]},
                                       "PhysicalSizeX": 0.1, "TimeIncrement": 30.0})
    shutil.copy(root / "exp.ome.tif", root / "exp_copy.ome.tif")
    (root / "seq").mkdir()
    for t in range(2):
        for c in range(2):
            tifffile.imwrite(root / "seq" / f"t{t:03d}xy00c{c}.tif",
                             np.full((8, 9), t + c, np.uint8))
    (root / "broken.tif").write_bytes(b"not a tiff at all" * 10)
    return root


def test_inventory_rows_duplicates_and_errors(tmp_path):
    df = inv.inventory(_folder(tmp_path))
    assert list(df.columns) == inv.COLUMNS
    rows = df.set_index("name")
    assert list(df["name"]) == ["broken", "exp", "exp_copy", "seq"]
    exp = rows.loc["exp"]
    assert (exp["format"], exp["positions"], exp["timepoints"]) == ("ome-tiff", 2, 3)
    assert exp["channels"] == 2
    assert exp["channel_names"] == "phase; gfp" and exp["dtype"] == "uint16"
    assert (exp["size_y"], exp["size_x"], exp["files"]) == (8, 9, 1)
    assert exp["pixel_size_um"] == pytest.approx(0.1) and exp["time_span_s"] == pytest.approx(60.0)
    assert rows.loc["exp_copy", "duplicate_of"] == "exp" and exp["duplicate_of"] == ""
    seq = rows.loc["seq"]
    assert (seq["format"], seq["files"], seq["timepoints"]) == ("tiff-sequence", 4, 2)
    assert seq["channel_names"] == "c0; c1"
    assert np.isnan(seq["time_span_s"]) and pd.isna(seq["pixel_size_um"])
    broken = rows.loc["broken"]
    assert "broken.tif" in broken["error"] and "not a readable TIFF" in broken["error"]
    assert pd.isna(broken["positions"]) and broken["size_bytes"] == 170
    assert (df["error"] == "").sum() == 3


def test_inventory_without_hash(tmp_path):
    df = inv.inventory(_folder(tmp_path), hash_files=False)
    assert (df["duplicate_of"] == "").all()


def test_content_hash_streams_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (3 << 20))
    b.write_bytes(b"x" * (3 << 20))
    assert inv.content_hash([a]) == inv.content_hash([b]) != inv.content_hash([a, b])


def test_inventory_nd2(shared_data, tmp_path):
    folder = tmp_path / "nd2"
    folder.mkdir()
    (folder / "cluster.nd2").symlink_to(shared_data / "nd2" / "cluster.nd2")
    (folder / "empty.nd2").touch()
    df = inv.inventory(folder).set_index("name")
    row = df.loc["cluster"]
    assert (row["format"], row["positions"], row["timepoints"], row["channels"]) == ("nd2", 1, 3, 2)
    assert row["channel_names"] == "5-FAM/pH 9.0; FM 4-64/2% CHAPS"
    assert row["pixel_size_um"] == pytest.approx(0.1678, abs=1e-4) and row["time_span_s"] > 0
    assert "empty file" in df.loc["empty", "error"]


def test_main_prints_table_and_writes_csv(tmp_path, capsys, monkeypatch):
    root = _folder(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    parser = inv.configure_parser(argparse.ArgumentParser())
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert inv.main(parser.parse_args([str(root)])) == 0
    out = capsys.readouterr().out
    assert "exp_copy" in out and "4 acquisition(s), 1 unreadable" in out
    # Written to the current directory, never into the scanned (raw) folder.
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    written = pd.read_csv(work / "inventory.csv", keep_default_na=False)
    assert list(written["name"]) == ["broken", "exp", "exp_copy", "seq"]
    csv = tmp_path / "out.csv"
    assert inv.main(parser.parse_args([str(root), "--out", str(csv), "--no-hash"])) == 0
    assert (pd.read_csv(csv, keep_default_na=False)["duplicate_of"] == "").all()
    assert inv.main(parser.parse_args([str(tmp_path / "missing")])) == 2
    # Run from inside the raw folder without --out: refused, nothing written there.
    monkeypatch.chdir(root)
    assert inv.main(parser.parse_args(["."])) == 2
    assert "pass --out" in capsys.readouterr().err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
