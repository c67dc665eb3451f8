"""The HTML report: contents, per-position caching keyed on the completion records, and the
page in a real headless browser (skipped without Chromium)."""
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from batchlib.io import open_file, read_attrs, write_attrs
from batchlib.trench.report import build_report
from batchlib.trench.report.browser import find_chromium
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

ROOT = Path(__file__).resolve().parents[2]
CFG = SyntheticConfig(height=448, width=448, n_positions=2, n_timepoints=4, channels=("phase", "gfp"),
                      seed=5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    write_acquisition(tmp / "raw", CFG, layout="ome-tiff", name="exp", ground_truth=False)
    (tmp / "raw" / "broken.ome.tif").write_bytes(b"II*\0 not really a tiff")
    spec = importlib.util.spec_from_file_location("wf", ROOT / "workflows" / "trench_workflow.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)
    code = wf.main(["--input_folder", str(tmp / "raw"), "--folder", str(tmp / "out"), "--executor",
                    "serial", "--progress", "false", "--log_level", "WARNING",
                    "--ignore_invalid_inputs", "--track_max_gap", "2"])
    assert code == 2  # the broken file is invalid, the rest processed
    return tmp / "out"


def test_report_contents(folder):
    html = (folder / "report.html").read_text()
    assert "broken.ome.tif" in html  # every invalid input with its reason
    reason = re.search(r"<td><code>broken\.ome\.tif</code></td><td>invalid</td><td>([^<]+)</td>", html)
    assert reason and "broken.ome.tif" in reason.group(1), "no reason next to the invalid input"
    for job in ("Ingest", "TrenchDetection", "Compress", "Segment", "Measure", "Track"):
        assert f"<td>{job}</td>" in html
    assert "max_gap" in html and "<code>2</code>" in html  # job parameters listed
    assert "batchlib 0.1.0" in html
    assert html.count('<section class="position"') == 2
    # overlay, drift, cells per frame and kymographs per position; distributions and cycles
    images = re.findall(r'<img alt="([^"]+)" src="data:image/(?:png|jpeg);base64,', html)
    assert sorted(images) == sorted(["distributions", "cycles"] + [
        f"exp_pos00{p}.h5 {n}" for p in (0, 1) for n in ("overlay", "drift", "cells", "kymographs")])
    assert "http://" not in html and "https://" not in html  # offline: nothing fetched
    # the acquisition header: 2 positions, 4 frames, phase + gfp, 180 s apart
    row = re.search(r"<tr><td>exp</td>.*?</tr>", html, re.S).group(0)
    assert "<td>2</td><td>4</td>" in row and "phase (phase)" in row and "<td>180</td>" in row


def test_only_changed_positions_are_redrawn(folder):
    first = build_report(folder)
    assert first["redrawn"] == 0 and first["positions"] == 2  # the run's own report is current
    cached = {p.name: p.stat().st_mtime_ns for p in (folder / "report").glob("*_*.*")}
    # A job reran on position 1 only: its record has a new run id.
    with open_file(folder / "exp_pos001.h5", "a") as f:
        rec = read_attrs(f["batchlib/Track"])["record"]
        write_attrs(f["batchlib/Track"], {"record": {**rec, "run_id": "0123456789ab"}})
    second = build_report(folder)
    assert second["redrawn"] == 1
    now = {p.name: p.stat().st_mtime_ns for p in (folder / "report").glob("*_*.*")}
    assert all(now[n] == t for n, t in cached.items() if n.startswith("exp_pos000"))
    assert all(now[n] != t for n, t in cached.items() if n.startswith("exp_pos001"))
    assert second["bytes"] < 5e6


def test_an_unreadable_container_is_reported_not_fatal(folder, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(folder, copy)
    (copy / "exp_pos001.h5").write_bytes(b"garbage")
    r = build_report(copy)
    html = Path(r["path"]).read_text()
    assert "exp_pos001.h5" in html and "could not be read" in html
    assert html.count('alt="exp_pos000.h5 overlay"') == 1


def test_page_in_headless_chromium(folder, tmp_path):
    from batchlib.trench.report.browser import check_page

    if find_chromium() is None:
        pytest.skip("Chromium is not installed (CI installs the Debian package `chromium`; "
                    "`apt-get install chromium` to run this test)")
    shot = tmp_path / "report.png"
    result = check_page(folder / "report.html", screenshot=shot)
    assert result["errors"] == []
    assert len(result["images"]) == 10 and all(loaded for _, loaded, _ in result["images"])
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (1800, 1400)
    assert pixels.std() > 20  # figures drawn, not a blank page


def test_batchlib_report_command(folder, tmp_path, capsys):
    from batchlib.cli import main

    out = tmp_path / "elsewhere.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    assert "report written to" in capsys.readouterr().out
    assert out.read_text().count('<section class="position"') == 2
    assert main(["report", str(tmp_path / "missing")]) == 1


def test_summary_matches_the_tables_and_reads_only_changed_files(folder, tmp_path, monkeypatch):
    import shutil

    import pandas as pd

    from batchlib.trench import summary

    copy = tmp_path / "out"
    shutil.copytree(folder, copy, copy_function=shutil.copy2)
    cells = pd.concat([pd.read_parquet(p) for p in sorted((copy / "tables/cells").glob("*.parquet"))])
    cycles = pd.concat([pd.read_parquet(p) for p in sorted((copy / "tables/cycles").glob("*.parquet"))])
    done = cycles[cycles["complete"]]
    first = summary.folder_summary(copy)
    assert first["cell_rows"] == len(cells) > 0
    assert first["cells_first_frame"] == int((cells["t"] == 0).sum())
    assert first["cycles"]["cells"] == len(cycles) and first["cycles"]["complete"] == len(done)
    assert first["cycles"]["tau_min"] == pytest.approx(done["tau"].mean(), nan_ok=True)
    assert first["cycles"]["elong_rate_per_h"] == pytest.approx(done["elong_rate"].mean(), nan_ok=True)
    assert first["trenches"] > 0 and first["positions"] == 2

    def unread(path):
        raise AssertionError(f"{path} read although unchanged")

    for reader in ("_container_facts", "_cells_facts", "_cycles_facts"):
        monkeypatch.setattr(summary, reader, unread)
    # nothing changed: nothing read (compared as text: NaN means no complete cycle here)
    assert json.dumps(summary.folder_summary(copy)) == json.dumps(first)
    monkeypatch.undo()
    target = copy / "tables/cells/exp_pos000.parquet"
    pd.read_parquet(target).iloc[5:].to_parquet(target)  # a new identity: read again
    cells = pd.concat([pd.read_parquet(p) for p in sorted((copy / "tables/cells").glob("*.parquet"))])
    again = summary.folder_summary(copy)
    assert again["cell_rows"] == first["cell_rows"] - 5 == len(cells)
    assert again["cells_first_frame"] == int((cells["t"] == 0).sum())


def test_a_rerun_that_changes_nothing_imports_no_pandas(folder):
    import os
    import subprocess
    import sys

    before = (folder / "report.html").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "workflows" / "trench_workflow.py"),
                           "--input_folder", str(folder.parent / "raw"), "--folder", str(folder),
                           "--executor", "serial", "--progress", "false", "--log_level", "WARNING",
                           "--ignore_invalid_inputs", "--track_max_gap", "2"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "batchlib.trench.jobs" in imported  # the import log was read
    assert not {"pandas", "matplotlib", "torch"} & imported
    assert "cells in the first frame" in proc.stdout
    assert (folder / "report.html").stat().st_mtime_ns > before  # the page shows this run


def test_kymograph_image_is_8_bit_rgb_with_outlines_and_frame_separators():
    """8-bit RGB (the JPEG it ends in; a float image held 4-8 times the memory at the
    workflow's peak), cells outlined, a dark column between frames."""
    from batchlib.trench.report.figures import kymograph_image

    crops = np.random.default_rng(0).normal(100, 5, (3, 40, 12)).astype(np.float32)
    labels = np.zeros((3, 40, 12), np.uint16)
    labels[:, 5:20, 3:9] = 1
    rgb = kymograph_image(crops, labels)
    assert rgb.dtype == np.uint8 and rgb.shape == (80, 3 * 24, 3)
    outline = np.all(rgb == (255, 64, 26), axis=-1)
    assert outline[10:40, :24].any() and not outline[50:, :].any()   # around the cell only
    assert (rgb[:, 23] == 0).all() and (rgb[:, 47] == 0).all()      # frame separators
    assert 50 < rgb[60:, :22, 0].mean() < 205                        # the stretched background
