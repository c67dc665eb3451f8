"""No silent data loss (issue 9): output names, folder-level outputs, unsafe names.

Small generated acquisitions (256 px frames, 3 frames) keep these fast.
"""
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchlib import run_workflow
from batchlib.errors import OutputCollisionError
from batchlib.io import open_file, read_table
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, TrenchDetection, export_csv
from batchlib.trench.jobs.measure import read_cells
from batchlib.trench.summary import folder_summary, format_summary
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

ROOT = Path(__file__).resolve().parents[2]
CFG = SyntheticConfig(height=256, width=256, n_positions=2, n_timepoints=3, channels=("phase", "gfp"),
                      seed=5)
SMALL = SyntheticConfig(height=256, width=256, n_positions=1, n_timepoints=2, channels=("phase",), seed=1)


def make(folder, name, cfg=CFG, layout="ome-tiff"):
    """Write one generated acquisition into ``folder`` (no ground truth)."""
    write_acquisition(folder, cfg, layout=layout, name=name, ground_truth=False)
    return folder


def all_jobs(**detect):
    return [Ingest(), TrenchDetection(**detect), Compress(), Segment(), Measure()]


def status(folder, job):
    return json.loads((Path(folder) / "batchlib" / f"{job}.status").read_text())


def computed(folder, job):
    return sorted(k for k, e in status(folder, job)["files"].items() if e.get("this_run"))


def load_workflow():
    spec = importlib.util.spec_from_file_location("trench_workflow", ROOT / "workflows" / "trench_workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- output names -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dotted(tmp_path_factory):
    """A two-position acquisition named with dots, through the whole workflow."""
    tmp = tmp_path_factory.mktemp("dotted")
    make(tmp / "raw", "exp.v2")
    res = run_workflow("W", tmp / "out", all_jobs(), input_folder=tmp / "raw", progress=False)
    assert res.success
    return tmp / "out"


def test_dotted_name_keeps_every_position(dotted):
    out = dotted
    assert sorted(p.name for p in out.glob("*.h5")) == ["exp.v2_pos000.h5", "exp.v2_pos001.h5"]
    assert sorted(p.name for p in (out / "tables" / "cells").glob("*.parquet")) == \
        ["exp.v2_pos000.parquet", "exp.v2_pos001.parquet"]
    assert sorted(p.name for p in (out / "qc").glob("*.png")) == \
        ["exp.v2_pos000_trenches.png", "exp.v2_pos001_trenches.png"]
    # The folder-wide table holds every row of both containers.
    per_container = []
    for p in (0, 1):
        with open_file(out / f"exp.v2_pos{p:03d}.h5", "r") as f:
            per_container.append(read_table(f, "tables/cells/cells"))
    cells = read_cells(out)
    assert len(cells) == sum(map(len, per_container)) and all(len(t) for t in per_container)
    assert sorted(cells["position"].unique()) == [0, 1]
    assert set(cells["container"]) == {"exp.v2_pos000.h5", "exp.v2_pos001.h5"}
    assert set(cells["acquisition"]) == {"exp.v2"}


def test_same_file_name_in_two_subfolders_gives_two_outputs(tmp_path):
    raw = tmp_path / "raw"
    one = SMALL
    make(raw / "day1", "exp", one)
    make(raw / "day2", "exp", dataclasses.replace(one, seed=2))
    out = tmp_path / "out"
    assert Ingest()(out, input_folder=raw, progress=False).success
    assert sorted(p.name for p in out.glob("*.h5")) == ["day1__exp_pos000.h5", "day2__exp_pos000.h5"]
    import tifffile

    for day in ("day1", "day2"):
        truth = tifffile.imread(raw / day / "exp.ome.tif")
        with open_file(out / f"{day}__exp_pos000.h5", "r") as f:
            movie = f[f"raw/{f['raw'].keys().__iter__().__next__()}"][:]
        assert np.array_equal(movie, truth.reshape(movie.shape)), day
    # Both are done and stay done: nothing is recomputed.
    res = Ingest()(out, input_folder=raw, progress=False)
    assert res.computed == [] and res.counts["done"] == 2


def test_two_inputs_mapping_to_one_output_is_a_hard_error(tmp_path):
    raw = tmp_path / "raw"
    one = SMALL
    make(raw / "day1", "exp", one)
    make(raw, "day1__exp", one)  # flattens to the same name as day1/exp.ome.tif
    out = tmp_path / "out"
    with pytest.raises(OutputCollisionError) as info:
        run_workflow("W", out, [Ingest()], input_folder=raw, progress=False)
    msg = str(info.value)
    assert "day1__exp_pos000.h5" in msg and "day1/exp.ome.tif" in msg and "day1__exp.ome.tif" in msg
    assert not list(out.glob("*.h5")) and not list(out.glob(".*"))  # nothing written
    assert status(out, "Ingest")["state"] == "errored"
    # The script: one clear message, exit 1, no traceback.
    proc = subprocess.run([sys.executable, str(ROOT / "workflows" / "trench_workflow.py"),
                           "--input_folder", str(raw), "--folder", str(tmp_path / "out2"),
                           "--progress", "false"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert proc.returncode == 1, proc.stderr
    assert "would be written by more than one input" in proc.stderr and "Traceback" not in proc.stderr


def test_generic_job_keeps_dotted_names_apart(tmp_path):
    from batchlib.testing import ImportArray

    inp = tmp_path / "in"
    inp.mkdir()
    np.save(inp / "exp.v2.npy", np.ones((2, 4, 4), np.float32))
    np.save(inp / "exp.v3.npy", np.zeros((2, 4, 4), np.float32))
    res = ImportArray()(tmp_path / "out", input_folder=inp, progress=False)
    assert res.success and sorted(p.name for p in (tmp_path / "out").glob("*.h5")) == \
        ["exp.v2.h5", "exp.v3.h5"]


# -- folder-level outputs ---------------------------------------------------------------------


@pytest.fixture
def done(dotted, tmp_path):
    """A private copy of the processed folder (the module fixture stays intact)."""
    out = tmp_path / "out"
    shutil.copytree(dotted, out, copy_function=shutil.copy2)
    raw = dotted.parent / "raw"
    return raw, out


def rerun(raw, out):
    res = run_workflow("W", out, all_jobs(), input_folder=raw, progress=False)
    assert res.success
    return {j.name: sorted(j.computed) for j in res.jobs}


def test_a_copied_folder_is_up_to_date(done):
    raw, out = done
    assert rerun(raw, out) == {"Ingest": [], "TrenchDetection": [], "Compress": [], "Segment": [],
                               "Measure": []}


def test_deleted_parquet_is_rebuilt_for_its_container_only(done):
    raw, out = done
    target = out / "tables" / "cells" / "exp.v2_pos001.parquet"
    before = pd.read_parquet(target)
    target.unlink()
    assert rerun(raw, out) == {"Ingest": [], "TrenchDetection": [], "Compress": [], "Segment": [],
                               "Measure": ["exp.v2_pos001.h5"]}
    pd.testing.assert_frame_equal(pd.read_parquet(target), before)


def test_truncated_parquet_is_reported_then_rebuilt(done):
    raw, out = done
    target = out / "tables" / "cells" / "exp.v2_pos000.parquet"
    before = pd.read_parquet(target)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    summary = folder_summary(out)  # no traceback: the damage is reported
    assert any("exp.v2_pos000.parquet: damaged" in p for p in summary["problems"])
    assert "damaged" in format_summary(summary)
    with pytest.raises(ValueError, match="exp.v2_pos000.parquet: cannot be read"):
        read_cells(out)
    assert rerun(raw, out)["Measure"] == ["exp.v2_pos000.h5"]
    pd.testing.assert_frame_equal(pd.read_parquet(target), before)
    assert folder_summary(out)["problems"] == []


def test_same_size_edit_of_a_parquet_is_detected(done):
    raw, out = done
    target = out / "tables" / "cells" / "exp.v2_pos000.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))  # same size, new mtime, other content
    assert rerun(raw, out)["Measure"] == ["exp.v2_pos000.h5"]
    assert target.read_bytes() != bytes(data)


def test_deleted_qc_picture_is_redrawn(done):
    raw, out = done
    picture = out / "qc" / "exp.v2_pos001_trenches.png"
    picture.unlink()
    computed_jobs = rerun(raw, out)
    assert computed_jobs["TrenchDetection"] == ["exp.v2_pos001.h5"]
    assert computed_jobs["Ingest"] == [] and picture.stat().st_size > 1000
    # With qc_plot off the pictures are not required: nothing is recomputed.
    picture.unlink()
    res = run_workflow("W", out, all_jobs(qc_plot=False), input_folder=raw, progress=False)
    assert res.success and res.jobs[1].computed == []


def test_qc_pictures_asked_for_later_are_drawn(tmp_path):
    raw = make(tmp_path / "raw", "exp")
    out = tmp_path / "out"
    assert run_workflow("W", out, [Ingest(), TrenchDetection(qc_plot=False)], input_folder=raw,
                        progress=False).success
    assert not (out / "qc").exists()
    res = run_workflow("W", out, [Ingest(), TrenchDetection()], input_folder=raw, progress=False)
    assert sorted(res.jobs[1].computed) == ["exp_pos000.h5", "exp_pos001.h5"]
    assert len(list((out / "qc").glob("exp_pos00?_trenches.png"))) == 2


def test_csv_export_has_a_completion_record(done):
    raw, out = done
    csv = export_csv(out)
    rows = pd.read_csv(csv)
    assert len(rows) == len(read_cells(out)) > 0
    mtime = csv.stat().st_mtime_ns
    assert export_csv(out) == csv and csv.stat().st_mtime_ns == mtime  # up to date: not rewritten
    csv.write_text(csv.read_text()[:100])  # damaged
    export_csv(out)
    assert len(pd.read_csv(csv)) == len(rows)
    csv.unlink()
    export_csv(out)
    assert len(pd.read_csv(csv)) == len(rows)
    # A rebuilt parquet makes the export stale.
    (out / "tables" / "cells" / "exp.v2_pos000.parquet").unlink()
    rerun(raw, out)
    mtime = csv.stat().st_mtime_ns
    export_csv(out)
    assert csv.stat().st_mtime_ns != mtime and len(pd.read_csv(csv)) == len(rows)


def test_orphan_parquet_is_reported(done):
    raw, out = done
    shutil.copy(out / "tables" / "cells" / "exp.v2_pos000.parquet", out / "tables" / "cells" / "exp.parquet")
    problems = folder_summary(out)["problems"]
    assert any("exp.parquet: no container exp.*" in p for p in problems), problems


# -- names that become paths or keys ----------------------------------------------------------


@pytest.mark.parametrize("bad", ["../../x", "a/b", "..", ".hidden", "", "a b", "x..y"])
def test_unsafe_names_are_refused_at_once(bad):
    with pytest.raises(ValueError, match="not a valid name|a name is required"):
        Segment(name=bad)
    with pytest.raises(ValueError, match="not a valid name|a name is required"):
        Measure(segmentation=bad)


def test_unsafe_segment_name_on_the_command_line(tmp_path):
    raw = make(tmp_path / "raw", "exp", SMALL)
    for opt, value in (("--segment_name", "../../x"), ("--measure_segmentation", "a/b"),
                       ("--workflow_name", "../wf")):
        proc = subprocess.run([sys.executable, str(ROOT / "workflows" / "trench_workflow.py"),
                               "--input_folder", str(raw), "--folder", str(tmp_path / "out"), opt, value],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{value!r} is not a valid name" in proc.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_good_names_pass():
    assert Segment(name="cells_v2.1-b").param_values["name"] == "cells_v2.1-b"
    with pytest.raises(ValueError, match="identifier"):
        Segment(identifier="../x")
    from batchlib.trench.layout import channel_keys

    assert channel_keys(["..", ".", ".hidden", "GFP"]) == ["channel", "channel_1", "hidden", "GFP"]


# -- TIFF sequences: gaps and incomplete timepoints -------------------------------------------


def plane(path, value=7, shape=(64, 64)):
    import tifffile

    tifffile.imwrite(path, np.full(shape, value, np.uint16))


def small_sequence(folder, n_t=4, n_p=2, channels=("c0", "c1")):
    folder.mkdir(parents=True)
    for t in range(n_t):
        for p in range(n_p):
            for c in range(len(channels)):
                plane(folder / f"t{t:03d}xy{p:02d}c{c}.tif", value=t * 10 + c)
    return folder


def test_sequence_with_a_missing_file_is_invalid_naming_it(tmp_path):
    from batchlib.trench.readers import InvalidAcquisitionError, find_acquisitions, open_acquisition

    seq = small_sequence(tmp_path / "raw" / "run")
    (seq / "t001xy01c1.tif").unlink()
    (src,) = find_acquisitions(tmp_path / "raw")
    with pytest.raises(InvalidAcquisitionError, match=r"gap: 1 file\(s\) missing.*t001xy01c1\.tif"):
        open_acquisition(src)
    out = tmp_path / "out"
    from batchlib import JobError

    with pytest.raises(JobError) as info:
        run_workflow("W", out, [Ingest()], input_folder=tmp_path / "raw", progress=False)
    assert "t001xy01c1.tif" in str(info.value) and not list(out.glob("*.h5"))
    files = status(out, "Ingest")["files"]
    assert {e["state"] for e in files.values()} == {"invalid"}
    assert all("t001xy01c1.tif" in e["error"] for e in files.values())
    # Restored: every frame is ingested.
    plane(seq / "t001xy01c1.tif", value=11)
    res = run_workflow("W", out, [Ingest()], input_folder=tmp_path / "raw", progress=False)
    assert res.success
    with open_file(out / "run_pos001.h5", "r") as f:
        movie = f["raw/c1"][:]
    assert movie.shape[0] == 4 and list(movie[:, 0, 0]) == [1, 11, 21, 31]


def test_sequence_missing_a_whole_timepoint_is_invalid(tmp_path):
    from batchlib.trench.readers import InvalidAcquisitionError, open_acquisition

    seq = small_sequence(tmp_path / "run", n_t=5)
    for f in seq.glob("t002*"):
        f.unlink()  # no file carries the label 2 any more
    with pytest.raises(InvalidAcquisitionError) as info:
        open_acquisition(seq)
    msg = str(info.value)
    assert "4 file(s) missing" in msg and "only 2 leading timepoint(s)" in msg
    assert all(f"t002xy0{p}c{c}.tif" in msg for p in (0, 1) for c in (0, 1))


def test_last_timepoint_still_arriving_is_not_a_gap(tmp_path):
    from batchlib.trench.readers import open_acquisition

    seq = small_sequence(tmp_path / "run", n_t=3)
    plane(seq / "t003xy00c0.tif")
    plane(seq / "t003xy01c1.tif")
    with open_acquisition(seq) as acq:
        assert acq.n_timepoints == 3


@pytest.fixture(scope="module")
def growing(tmp_path_factory):
    """A two-position sequence (3 frames) through the whole workflow."""
    tmp = tmp_path_factory.mktemp("growing")
    write_acquisition(tmp / "gen", dataclasses.replace(CFG, n_timepoints=4), layout="tiff-sequence",
                      name="A", ground_truth=False)
    later = tmp / "later"
    later.mkdir()
    for f in (tmp / "gen" / "A").glob("t003*"):
        shutil.move(str(f), later / f.name)
    shutil.move(str(tmp / "gen" / "A"), tmp / "raw")
    res = run_workflow("W", tmp / "out", all_jobs(), input_folder=tmp / "raw", progress=False)
    assert res.success and sorted(res.jobs[0].computed) == ["./#pos000", "./#pos001"]
    return tmp


def run_counts(tmp):
    res = run_workflow("W", tmp / "out", all_jobs(), input_folder=tmp / "raw", progress=False)
    assert res.success
    return {j.name: len(j.computed) for j in res.jobs}


def test_incremental_recomputes_only_what_changed(growing):
    tmp = growing
    later = sorted((tmp / "later").iterdir())
    assert len(later) == 4  # t003 x 2 positions x 2 channels
    nothing = {"Ingest": 0, "TrenchDetection": 0, "Compress": 0, "Segment": 0, "Measure": 0}
    assert run_counts(tmp) == nothing
    # One file of a new timepoint: the timepoint is incomplete, nothing changed.
    shutil.copy2(later[0], tmp / "raw" / later[0].name)
    assert run_counts(tmp) == nothing
    # The timepoint completes: both positions gain a frame.
    for f in later[1:]:
        shutil.copy2(f, tmp / "raw" / f.name)
    assert run_counts(tmp) == {k: 2 for k in nothing}
    with open_file(tmp / "out" / "raw_pos001.h5", "r") as f:
        assert f["raw/c0"].shape[0] == 4
    # One rewritten file of position 1: only position 1 is recomputed.
    import tifffile

    target = tmp / "raw" / "t001xy01c1.tif"
    img = tifffile.imread(target)
    tifffile.imwrite(target, img[::-1].copy())
    assert run_counts(tmp) == {k: 1 for k in nothing}
    st = status(tmp / "out", "Ingest")["files"]
    assert sorted(k for k, e in st.items() if e.get("this_run")) == ["./#pos001"]
    with open_file(tmp / "out" / "raw_pos001.h5", "r") as f:
        assert np.array_equal(f["raw/c1"][1], img[::-1])


# -- implausible images -----------------------------------------------------------------------


def huge_tiff(path, side=100000):
    """A well-formed TIFF header claiming ``side`` x ``side`` pixels, in a few bytes."""
    import struct

    import tifffile

    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), rowsperstrip=64)
    with tifffile.TiffFile(path) as t:
        tags = t.pages[0].tags
        patch = [(tags[n].valueoffset, tags[n].dtype) for n in ("ImageWidth", "ImageLength", "RowsPerStrip")]
    data = bytearray(Path(path).read_bytes())
    for offset, dtype in patch:
        struct.pack_into("<I" if dtype == 4 else "<H", data, offset, side if dtype == 4 else 65535)
    Path(path).write_bytes(bytes(data))


def ingest_problem(raw, tmp_path, ext=".h5"):
    """The reason Ingest gives for the one bad input of ``raw``."""
    from batchlib import JobError

    with pytest.raises(JobError) as info:
        run_workflow("W", tmp_path / "out", [Ingest(output_ext=ext)], input_folder=raw, progress=False)
    (entry,) = status(tmp_path / "out", "Ingest")["files"].values()
    assert entry["state"] == "invalid", entry
    return str(info.value), entry["error"]


def test_absurd_dimensions_are_refused_at_validation(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    huge_tiff(raw / "huge.tif")
    msg, reason = ingest_problem(raw, tmp_path)
    assert "100000 x 100000 pixels" in reason and "probably corrupted" in reason and "huge.tif" in reason
    assert "invalid inputs" in msg and not list((tmp_path / "out").glob("*.h5"))


def test_one_pixel_imagej_file_is_named_too_small(tmp_path):
    import tifffile

    raw = tmp_path / "raw"
    raw.mkdir()
    tifffile.imwrite(raw / "tiny.tif", np.zeros((1, 1), np.uint16), imagej=True)
    _, reason = ingest_problem(raw, tmp_path)
    assert "frames of 1 x 1 pixels are too small" in reason


@pytest.mark.parametrize("where", ["some pixels", "one frame"])
def test_float_movie_with_nan_is_refused_naming_the_frame(tmp_path, where):
    import tifffile

    raw = tmp_path / "raw"
    raw.mkdir()
    movie = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    if where == "some pixels":
        movie[0, 5:10, 5:10] = np.nan
    else:
        movie[1] = np.inf
    tifffile.imwrite(raw / "m.tif", movie, imagej=True, metadata={"axes": "TYX"})
    from batchlib import JobError

    with pytest.raises(JobError) as info:
        run_workflow("W", tmp_path / "out", [Ingest()], input_folder=raw, progress=False)
    (entry,) = status(tmp_path / "out", "Ingest")["files"].values()
    t, n = (0, 25) if where == "some pixels" else (1, 64 * 64)
    assert f"frame t={t}" in entry["error"] and f"{n} of 4096 pixels are NaN or infinite" in entry["error"]
    assert entry["state"] == "invalid" and "argmin" not in str(info.value)
    assert not list((tmp_path / "out").glob("*.h5"))


def test_channel_named_dotdot_stays_inside_an_n5_container(tmp_path):
    raw = make(tmp_path / "raw", "exp", dataclasses.replace(SMALL, channels=("phase", "..")))
    out = tmp_path / "out"
    assert run_workflow("W", out, [Ingest(output_ext=".n5")], input_folder=raw, progress=False).success
    with open_file(out / "exp_pos000.n5", "r") as f:
        assert sorted(f["raw"].keys()) == ["channel", "phase"]
        from batchlib.io import read_attrs

        md = read_attrs(f)["acquisition"]
        assert md["channels"] == ["phase", ".."] and md["channel_keys"] == ["phase", "channel"]
    assert sorted(p.name for p in out.iterdir()) == ["batchlib", "exp_pos000.n5"]


def test_two_containers_sharing_a_folder_output_is_a_hard_error(done):
    """exp.v2_pos000.h5 and exp.v2_pos000.hdf5 would both write tables/cells/exp.v2_pos000.parquet."""
    raw, out = done
    shutil.copy2(out / "exp.v2_pos000.h5", out / "exp.v2_pos000.hdf5")
    parquet = out / "tables" / "cells" / "exp.v2_pos000.parquet"
    before = parquet.read_bytes()
    with pytest.raises(OutputCollisionError) as info:
        run_workflow("W", out, [Measure()], input_folder=raw, progress=False)
    assert "exp.v2_pos000.parquet" in str(info.value) and "exp.v2_pos000.hdf5" in str(info.value)
    assert parquet.read_bytes() == before


def test_sequence_positions_share_one_validation(tmp_path, monkeypatch):
    """Per-position signatures must not make Ingest open the acquisition once per position to validate."""
    import batchlib.trench.jobs.ingest as ingest_module

    small_sequence(tmp_path / "raw" / "run", n_t=2, n_p=3)
    opened = []
    real = ingest_module.open_acquisition
    monkeypatch.setattr(ingest_module, "open_acquisition", lambda *a, **k: opened.append(1) or real(*a, **k))
    assert Ingest()(tmp_path / "out", input_folder=tmp_path / "raw", progress=False).success
    assert len(opened) == 3 + 1  # one per position ingested, one to validate them all
