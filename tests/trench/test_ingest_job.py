"""The Ingest job on folders: layouts, metadata, growth, bad input, ND2 backends."""
import json
import shutil

import numpy as np
import pytest
import tifffile

from batchlib import JobError, run_workflow
from batchlib.io import open_file, read_attrs, read_table
from batchlib.trench.jobs import Ingest
from batchlib.trench.layout import ACQUISITION_ATTR
from batchlib.trench.synthetic import SyntheticConfig, simulate_position, write_acquisition

CFG = SyntheticConfig(height=192, width=160, n_positions=2, n_timepoints=4, channels=("phase", "gfp"),
                      seed=3, trench_length_px=60, n_sets=1)


@pytest.fixture(scope="module")
def truth():
    return [simulate_position(CFG, p) for p in range(CFG.n_positions)]


def ingest(raw, out, **kw):
    job = Ingest(output_ext=kw.pop("ext", ".h5"), **kw.pop("params", {}))
    return run_workflow("IngestTest", out, [job], input_folder=raw, **kw).jobs[0]


def status(out, job="Ingest"):
    return json.loads((out / "batchlib" / f"{job}.status").read_text())


@pytest.mark.parametrize("layout,ext", [("ome-tiff", ".h5"), ("tiff-stacks", ".h5"), ("tiff-sequence", ".n5")])
def test_round_trip_is_pixel_exact(tmp_path, truth, layout, ext):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, CFG, layout=layout, name="acq")
    shutil.rmtree(raw / "ground_truth", ignore_errors=True)
    # Sequence files carry no channel names: they are c0, c1 and the user marks the phase one.
    names = ["c0", "c1"] if layout == "tiff-sequence" else ["phase", "gfp"]
    result = ingest(raw, out, ext=ext, params={"phase_channels": [names[0]]})
    assert result.success
    containers = sorted(p.name for p in out.iterdir() if p.suffix == ext)
    assert len(containers) == CFG.n_positions, containers
    for p, name in enumerate(containers):
        with open_file(out / name, "r") as f:
            md = read_attrs(f)[ACQUISITION_ATTR]
            assert md["channels"] == names
            assert md["channel_kinds"] == ["phase", "fluorescence"]
            assert md["n_timepoints_ingested"] == CFG.n_timepoints
            for key, ch in zip(md["channel_keys"], ("phase", "gfp")):
                ds = f[f"raw/{key}"]
                assert ds.chunks[0] == 1 and tuple(ds.chunks[1:]) == ds.shape[1:]  # one frame per chunk
                np.testing.assert_array_equal(ds[:], truth[p].movies[ch])
            frames = read_table(f, "tables/frames")
            assert list(frames["t"]) == list(range(CFG.n_timepoints))


def test_metadata_from_ome_tiff(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, CFG, layout="ome-tiff", name="acq")
    ingest(raw, out)
    with open_file(out / "acq_pos001.h5", "r") as f:
        md = read_attrs(f)[ACQUISITION_ATTR]
    assert md["position"] == 1 and md["format"] == "ome-tiff"
    assert md["pixel_size_um"] == pytest.approx(CFG.pixel_size_um)
    assert md["shape_yx"] == [CFG.height, CFG.width] and md["dtype"] == "uint16"
    assert md["reader"] and md["source_file"].endswith("acq.ome.tif")
    assert isinstance(md["missing"], list)


def test_rerun_ingests_nothing_and_growth_appends_only_new_frames(tmp_path, truth):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, CFG, layout="tiff-sequence", name="acq")
    shutil.rmtree(raw / "ground_truth", ignore_errors=True)
    seq = raw / "acq"
    last = sorted(seq.glob("t003*"))
    held_back = tmp_path / "later"
    held_back.mkdir()
    for f in last:  # the microscope has not written timepoint 3 yet
        shutil.move(str(f), held_back / f.name)
    first = ingest(raw, out)
    # One unit per position: the sequence's two positions ingest independently.
    assert sorted(first.computed) == ["acq/#pos000", "acq/#pos001"] and first.success
    path = out / "acq_pos000.h5"
    with open_file(path, "r") as f:
        assert f["raw/c0"].shape[0] == 3
    mtime = path.stat().st_mtime_ns
    again = ingest(raw, out)
    assert again.computed == [] and path.stat().st_mtime_ns == mtime

    from batchlib.trench import readers

    reads = []
    original = readers.base.Acquisition.read_frame

    def counting(self, position, t, channel, z="max"):
        reads.append((position, t))
        return original(self, position, t, channel, z)

    for f in held_back.iterdir():
        shutil.move(str(f), seq / f.name)
    readers.base.Acquisition.read_frame = counting
    try:
        grown = ingest(raw, out)
    finally:
        readers.base.Acquisition.read_frame = original
    assert grown.computed == first.computed
    assert {t for _, t in reads} == {3}, "only the new timepoint is read"
    with open_file(path, "r") as f:
        assert f["raw/c0"].shape[0] == 4
        np.testing.assert_array_equal(f["raw/c0"][:], truth[0].movies["phase"])
        assert read_attrs(f)[ACQUISITION_ATTR]["n_timepoints_ingested"] == 4


def _bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.nd2").write_bytes(b"")
    (folder / "empty.tif").write_bytes(b"")
    (folder / "text.tif").write_text("this is not a tiff file\n" * 10)
    good = folder / "good.tif"
    tifffile.imwrite(good, np.zeros((3, 32, 32), np.uint16), imagej=True, metadata={"axes": "TYX"})
    truncated = folder / "truncated.tif"
    data = good.read_bytes()
    tifffile.imwrite(truncated, np.ones((3, 64, 64), np.uint16), imagej=True, metadata={"axes": "TYX"})
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 2])
    tifffile.imwrite(folder / "line.tif", np.arange(50, dtype=np.uint16))
    return data


def test_bad_inputs_stop_the_workflow_with_named_reasons(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _bad_files(raw)
    with pytest.raises(JobError) as err:
        ingest(raw, out)
    message = str(err.value)
    for name in ("empty.nd2", "empty.tif", "text.tif", "truncated.tif", "line.tif"):
        assert name in message
    assert "good.tif" not in message
    st = status(out)
    assert st["state"] == "invalid_inputs"
    assert st["files"]["empty.tif"]["state"] == "invalid"
    assert "empty" in st["files"]["empty.tif"]["error"]
    assert not list(out.glob("*.h5")), "nothing is processed when inputs are invalid"


def test_bad_inputs_are_skipped_with_the_flag(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _bad_files(raw)
    result = ingest(raw, out, ignore_invalid_inputs=True)
    assert result.state == "invalid_inputs"
    assert sorted(result.invalid) == sorted(["empty.nd2", "empty.tif", "text.tif", "truncated.tif",
                                             "line.tif"])
    assert [p.name for p in out.glob("*.h5")] == ["good_pos000.h5"]
    st = status(out)
    assert st["files"]["good.tif"]["state"] == "done"
    for name in result.invalid:
        entry = st["files"][name]
        assert entry["state"] == "invalid" and name in entry["error"]
    assert not list(out.glob(".*tmp*")), "no partial container is left behind"


@pytest.mark.parametrize("backend", ["nd2", "nd2reader"])
def test_nd2_into_containers(tmp_path, shared_data, backend):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    shutil.copy(shared_data / "nd2" / "cluster.nd2", raw / "cluster.nd2")
    result = ingest(raw, out, params={"backend": backend})
    assert result.success
    import nd2

    full = nd2.imread(str(shared_data / "nd2" / "cluster.nd2"))  # T Z C Y X
    with open_file(out / "cluster_pos000.h5", "r") as f:
        md = read_attrs(f)[ACQUISITION_ATTR]
        assert md["channels"] == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
        assert md["channel_kinds"] == ["fluorescence"] * 2 and md["channel_kind_sources"] == ["name"] * 2
        assert md["pixel_size_um"] == pytest.approx(0.1678, abs=1e-3)
        assert md["n_z"] == 10 and md["z_reduction"] == "max"
        # Frame times recorded by NIS-Elements (seconds from the start of the experiment).
        assert md["times_s"] == pytest.approx([0.445, 11.086, 21.740], abs=0.01)
        for c, key in enumerate(md["channel_keys"]):
            np.testing.assert_array_equal(f[f"raw/{key}"][:], full[:, :, c].max(axis=1))


def test_z_plane_selection(tmp_path, shared_data):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    shutil.copy(shared_data / "nd2" / "cluster.nd2", raw / "cluster.nd2")
    ingest(raw, out, params={"z_reduction": "4"})
    import nd2

    full = nd2.imread(str(shared_data / "nd2" / "cluster.nd2"))
    with open_file(out / "cluster_pos000.h5", "r") as f:
        key = read_attrs(f)[ACQUISITION_ATTR]["channel_keys"][1]
        np.testing.assert_array_equal(f[f"raw/{key}"][:], full[:, 4, 1])
    # A plane that does not exist is an invalid input, named.
    with pytest.raises(JobError, match="z plane 12"):
        ingest(raw, tmp_path / "out2", params={"z_reduction": "12"})


def test_positions_are_units_ingested_in_parallel(tmp_path, truth):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, CFG, layout="ome-tiff", name="acq")
    shutil.rmtree(raw / "ground_truth")
    result = ingest(raw, out, executor="processes", n_jobs=2)
    assert sorted(result.computed) == ["acq.ome.tif#pos000", "acq.ome.tif#pos001"]
    for p in range(CFG.n_positions):
        with open_file(out / f"acq_pos{p:03d}.h5", "r") as f:
            np.testing.assert_array_equal(f["raw/gfp"][:], truth[p].movies["gfp"])
    assert ingest(raw, out, executor="processes", n_jobs=2).computed == []


# --------------------------------------------------------------------------- channel names and kinds
def write_unnamed_stack(raw, truth, order=("phase", "gfp")):
    """One plain TIFF stack (no channel names) of position 0's movies: channels c0, c1."""
    raw.mkdir(parents=True, exist_ok=True)
    data = np.stack([truth[0].movies[ch] for ch in order], axis=1)
    tifffile.imwrite(raw / "plain.tif", data, metadata={"axes": "TCYX"}, photometric="minisblack")
    return data


def acquisition_md(path):
    with open_file(path, "r") as f:
        return read_attrs(f)[ACQUISITION_ATTR], sorted(f["raw"].keys())


def test_unnamed_channels_get_their_kind_from_the_pixels(tmp_path, truth):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_unnamed_stack(raw, truth, order=("gfp", "phase"))
    assert ingest(raw, out).success
    md, keys = acquisition_md(out / "plain_pos000.h5")
    assert md["channels"] == ["c0", "c1"] and md["channel_names_missing"]
    assert md["channel_kinds"] == ["fluorescence", "phase"]
    assert md["channel_kind_sources"] == ["data", "data"]
    assert all(c > 0.75 for c in md["channel_kind_confidence"]), md["channel_kind_confidence"]
    log = (out / "batchlib" / "IngestTest.log").read_text()
    assert "channel kinds c0: fluorescence (data, confidence" in log


def test_low_confidence_kind_is_a_warning_naming_the_option(tmp_path, truth, monkeypatch):
    from batchlib.trench.jobs import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "LOW_CONFIDENCE", 1.01)  # every guess is "unsure"
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_unnamed_stack(raw, truth)
    assert ingest(raw, out).success
    warnings = [line for line in (out / "batchlib" / "IngestTest.log").read_text().splitlines()
                if "WARNING" in line]
    assert len(warnings) == 2, warnings
    assert "channel c0 looks phase" in warnings[0] and "--ingest_channel_kinds" in warnings[0]
    # ... and kept with the image in the status, where `batchlib status` lists it
    entry = status(out)["files"]["plain.tif"]
    assert len(entry["warnings"]) == 2 and "channel c1 looks fluorescence" in entry["warnings"][1]


def test_channel_names_and_kinds_options(tmp_path, truth):
    raw, out = tmp_path / "raw", tmp_path / "out"
    data = write_unnamed_stack(raw, truth)
    assert ingest(raw, out, params={"channel_names": ["bf", "green"],
                                    "channel_kinds": ["auto", "fluorescence"]}).success
    md, keys = acquisition_md(out / "plain_pos000.h5")
    assert md["channels"] == ["bf", "green"] and md["channel_names_file"] == ["c0", "c1"]
    assert md["channel_kinds"] == ["phase", "fluorescence"]
    assert md["channel_kind_sources"] == ["name", "option"]
    assert keys == ["bf", "green"]
    with open_file(out / "plain_pos000.h5", "r") as f:
        np.testing.assert_array_equal(f["raw/green"][:], data[:, 1])
    # Renamed again: the movies under the old names go.
    assert ingest(raw, out, params={"channel_names": ["phase", "gfp"]}).success
    md, keys = acquisition_md(out / "plain_pos000.h5")
    assert keys == ["gfp", "phase"] and md["channel_kinds"] == ["phase", "fluorescence"]


def test_channel_options_of_the_wrong_length_are_named(tmp_path, truth):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_unnamed_stack(raw, truth)
    with pytest.raises(JobError, match=r"channel_names gives 3 value\(s\) for 2 channel\(s\) \(c0, c1\)"):
        ingest(raw, out, params={"channel_names": ["a", "b", "c"]})
    entry = status(out)["files"]["plain.tif"]
    assert entry["state"] == "invalid" and "--ingest_channel_names" in entry["error"]
    with pytest.raises(ValueError, match="channel_kinds"):
        Ingest(channel_kinds=["phase", "brightfield"])
    with pytest.raises(ValueError, match="unique"):
        Ingest(channel_names=["a", "a"])


def test_real_unnamed_files_get_the_right_kind(tmp_path, shared_data):
    """The real fluorescence chamber movie and the real phase frame, both without channel names."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    shutil.copy(shared_data / "chamber_stack" / "example_stack.tiff", raw / "chamber.tiff")
    frame = tifffile.imread(shared_data / "phase_fov" / "molyso_example_frame.tif")
    tifffile.imwrite(raw / "molyso.tif", frame)
    assert ingest(raw, out).success
    for name, kind in (("chamber", "fluorescence"), ("molyso", "phase")):
        md, _ = acquisition_md(out / f"{name}_pos000.h5")
        assert md["channels"] == ["c0"] and md["channel_kinds"] == [kind], name
        assert md["channel_kind_sources"] == ["data"] and md["channel_kind_confidence"][0] > 0.9


def test_kinds_decided_once_are_kept_for_new_frames(tmp_path, truth, monkeypatch):
    from batchlib.trench.jobs import ingest as ingest_module

    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()

    def write_frames(ts):
        for p in range(2):
            for t in ts:
                for c, ch in enumerate(("phase", "gfp")):
                    tifffile.imwrite(raw / f"t{t:03d}xy{p:02d}c{c}.tif", truth[p].movies[ch][t])

    write_frames(range(2))
    calls = []
    decide = ingest_module.kind_from_data
    monkeypatch.setattr(ingest_module, "kind_from_data", lambda frames: calls.append(1) or decide(frames))
    assert ingest(raw, out).success and len(calls) == 2  # one decision per channel
    write_frames(range(2, 4))
    # Even with the first position's container gone, the other one's decisions are used.
    shutil.rmtree(out / "raw_pos000.h5", ignore_errors=True)
    (out / "raw_pos000.h5").unlink(missing_ok=True)
    grown = ingest(raw, out)
    assert sorted(grown.computed) == ["./#pos000", "./#pos001"]
    assert len(calls) == 2, "the recorded decisions are reused, no frame is classified again"
    for p in range(2):
        md, _ = acquisition_md(out / f"raw_pos{p:03d}.h5")
        assert md["channel_kinds"] == ["phase", "fluorescence"] and md["n_timepoints_ingested"] == 4
        assert md["channel_kind_sources"] == ["data", "data"]


def test_mtime_trigger_reads_the_acquisition_signature(tmp_path):
    """Ingest signs a whole acquisition (one flat ``mtime_ns``): the mtime trigger reads it."""
    import os

    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, CFG, layout="ome-tiff", name="acq")
    assert sorted(ingest(raw, out).computed) == ["acq.ome.tif#pos000", "acq.ome.tif#pos001"]
    # In mtime mode a parameter change alone does not make the outputs stale ...
    same = ingest(raw, out, params={"channel_names": ["ph", "gfp"]}, rerun_triggers=("mtime",))
    assert same.computed == [] and same.success
    # ... an acquisition newer than its containers does.
    path = raw / "acq.ome.tif"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3600 * 10**9))
    newer = ingest(raw, out, rerun_triggers=("mtime",))
    assert sorted(newer.computed) == ["acq.ome.tif#pos000", "acq.ome.tif#pos001"]
    assert ingest(raw, out, rerun_triggers=("mtime",)).computed == []
