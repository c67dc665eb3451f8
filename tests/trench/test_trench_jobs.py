"""Trench jobs on folders: failures recorded in the status, drop_raw, options and errors."""
import json
import shutil

import numpy as np
import pytest
import tifffile

from batchlib import JobError, run_workflow
from batchlib.io import open_file, read_attrs, read_table
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, TrenchDetection
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

CFG = SyntheticConfig(height=320, width=320, n_positions=1, n_timepoints=3, channels=("phase", "gfp"),
                      seed=5)


def job_status(folder, job):
    return json.loads((folder / "batchlib" / f"{job}.status").read_text())


@pytest.fixture
def acquisition(tmp_path):
    raw = tmp_path / "raw"
    write_acquisition(raw, CFG, layout="ome-tiff", name="acq")
    shutil.rmtree(raw / "ground_truth")
    return raw


def workflow(raw, out, jobs, **kw):
    return run_workflow("Test", out, jobs, input_folder=raw, **kw)


def test_detection_failure_is_recorded_not_garbage(tmp_path, acquisition):
    raw, out = acquisition, tmp_path / "out"
    rng = np.random.default_rng(0)
    blank = rng.poisson(100, (3, 2, 320, 320)).astype(np.uint16)  # noise only: no trench array
    tifffile.imwrite(raw / "blank.tif", blank, imagej=True, metadata={"axes": "TCYX"})
    jobs = [Ingest(phase_channels=["phase"]), TrenchDetection(kind="phase")]
    with pytest.raises(JobError, match="blank_pos000"):
        workflow(raw, out, jobs)
    result = workflow(raw, out, jobs, ignore_failed_outputs=True)
    det = result.jobs[1]
    assert det.state == "failed_outputs" and list(det.failed) == ["blank_pos000.h5"]
    entry = job_status(out, "TrenchDetection")["files"]["blank_pos000.h5"]
    assert entry["state"] == "failed" and "TrenchDetectionError" in entry["error"]
    with open_file(out / "blank_pos000.h5", "r") as f:
        assert "tables/trenches" not in f  # no garbage boxes
    st = job_status(out, "TrenchDetection")
    assert st["counts"]["done"] == 1 and "acq_pos000.h5" not in st["files"]  # up to date: counted only
    assert (out / "qc" / "acq_pos000_trenches.png").stat().st_size > 10_000


def test_drop_raw_returns_space_and_causes_no_recomputation(tmp_path, acquisition):
    raw, out = acquisition, tmp_path / "out"
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress()]
    workflow(raw, out, jobs)
    path = out / "acq_pos000.h5"
    size_with_raw = path.stat().st_size
    with open_file(path, "r") as f:
        crops = f["trench_crops/phase"][:]
    dropped = [Ingest(), TrenchDetection(qc_plot=False), Compress(drop_raw=True, overview_factor=4)]
    result = workflow(raw, out, dropped)
    assert [j.computed for j in result.jobs] == [[], [], ["acq_pos000.h5"]]
    assert path.stat().st_size < 0.5 * size_with_raw
    with open_file(path, "r") as f:
        assert "raw" not in f and read_attrs(f)["raw_dropped"] is True
        assert f["overview/phase"].shape == (3, 80, 80)
        np.testing.assert_array_equal(f["trench_crops/phase"][:], crops)
    again = workflow(raw, out, dropped)
    assert [j.computed for j in again.jobs] == [[], [], []]


def test_gpu_is_opt_in_and_fails_clearly_without_one(tmp_path, acquisition):
    raw, out = acquisition, tmp_path / "out"
    base = [Ingest(), TrenchDetection(qc_plot=False), Compress()]
    workflow(raw, out, base + [Segment()])
    with open_file(out / "acq_pos000.h5", "r") as f:
        assert f["segmentation/cells"].dtype == np.uint16
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present: the error path cannot be exercised")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="Segment: gpu=True"):
        Segment(gpu=True)  # checked when the job is built, before any work


def test_unknown_channel_and_method_are_named(tmp_path, acquisition):
    raw, out = acquisition, tmp_path / "out"
    with pytest.raises(JobError, match="no channel 'dapi'"):
        workflow(raw, out, [Ingest(), TrenchDetection(channel="dapi")])
    base = [Ingest(), TrenchDetection(qc_plot=False), Compress()]
    with pytest.raises(ValueError, match="Segment: unknown segmentation method 'nope'"):
        Segment(method="nope")
    with pytest.raises(ValueError, match="does not accept parameter.*'lumen_widht'"):
        Segment(method="threshold", method_params='{"lumen_widht": 12}')
    result = workflow(raw, out, base + [Segment(method="threshold", method_params='{"lumen_width": 12}')])
    assert result.success


def test_measure_writes_container_and_folder_tables(tmp_path, acquisition):
    raw, out = acquisition, tmp_path / "out"
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(), Segment(), Measure()]
    workflow(raw, out, jobs)
    with open_file(out / "acq_pos000.h5", "r") as f:
        cells = read_table(f, "tables/cells/cells")
        trenches = read_table(f, "tables/trenches")
    import pandas as pd

    folder_table = pd.read_parquet(out / "tables" / "cells")
    assert len(folder_table) == len(cells) > 0
    assert set(cells["trench"]) <= set(trenches["trench"])
    assert (cells["time_s"].to_numpy() == cells["t"].to_numpy() * CFG.frame_interval_s).all()
    assert (cells["gfp_mean_bgsub"] > 0).mean() > 0.95


def test_compress_crops_equal_the_reference_cropper_bit_for_bit(tmp_path, acquisition):
    """The per-frame sampler (bilinear by scipy's own arithmetic, computed once per frame for
    all channels) changes no crop: every channel of every frame equals the one-call
    ``map_coordinates`` reference exactly, also when frames are appended later."""
    from batchlib.trench.detection.crop import crop_trenches_reference

    raw, out = acquisition, tmp_path / "out"
    workflow(raw, out, [Ingest(), TrenchDetection(qc_plot=False), Compress()])
    with open_file(out / "acq_pos000.h5", "r") as f:
        trenches = read_table(f, "tables/trenches")
        angle = float(read_attrs(f["tables/trenches"])["angle_deg"])
        drift = read_table(f, "tables/drift")[["dy", "dx"]].to_numpy()
        assert np.abs(drift - np.rint(drift)).max() > 0.01  # sub-pixel drift: interpolated
        for key in ("phase", "gfp"):
            movie, crops = f[f"raw/{key}"][:], f[f"trench_crops/{key}"][:]
            for t in range(movie.shape[0]):
                expected = crop_trenches_reference(movie[t], trenches, angle, tuple(drift[t]))
                np.testing.assert_array_equal(crops[:, t], expected)


def test_measure_appended_frames_measures_only_the_last_block(tmp_path, monkeypatch):
    """After new frames, Measure keeps the rows of the earlier full time blocks and measures
    from the block the new frames fall in; the tables equal a run from scratch."""
    import pandas as pd
    import batchlib.trench.measure as measure_module
    from batchlib.trench.jobs.stacks import CHUNK_T

    n_t = CHUNK_T + 4
    cfg = SyntheticConfig(height=256, width=320, n_positions=1, n_timepoints=n_t, channels=("phase", "gfp"),
                          seed=7)
    write_acquisition(tmp_path / "full", cfg, layout="tiff-sequence", name="A", ground_truth=False)
    jobs = lambda **kw: [Ingest(phase_channels=["c0"]), TrenchDetection(qc_plot=False), Compress(),  # noqa: E731
                         Segment(method="threshold"), Measure(**kw)]
    workflow(tmp_path / "full", tmp_path / "batch", jobs())
    raw = tmp_path / "raw" / "A"
    raw.mkdir(parents=True)
    for f in sorted((tmp_path / "full" / "A").glob("*.tif")):
        if int(f.name[1:4]) < n_t - 2:
            shutil.copy(f, raw / f.name)
    workflow(tmp_path / "raw", tmp_path / "live", jobs())
    for f in sorted((tmp_path / "full" / "A").glob("*.tif")):
        shutil.copy(f, raw / f.name)

    measured = []
    real = measure_module.measure_cells
    monkeypatch.setattr(measure_module, "measure_cells",
                        lambda labels, *a, **kw: measured.append(labels.shape[1]) or real(labels, *a, **kw))
    workflow(tmp_path / "raw", tmp_path / "live", jobs())
    assert measured == [4]  # frames 16-19: the block of the new frames only

    def tables(folder):
        with open_file(folder / "A_pos000.h5", "r") as f:
            return read_table(f, "tables/cells/cells"), read_table(f, "tables/trenches_t")

    for got, want in zip(tables(tmp_path / "live"), tables(tmp_path / "batch")):
        pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "live" / "tables" / "cells"),
                                  pd.read_parquet(tmp_path / "batch" / "tables" / "cells"))

    measured.clear()  # another percentile: everything is measured again
    workflow(tmp_path / "raw", tmp_path / "live", jobs(percentile=90.0))
    assert measured == [CHUNK_T, 4]

    # Labels found damaged by `batchlib verify` are segmented anew: so are the measurements
    from batchlib.verify import Damage, mark_for_recompute

    mark_for_recompute(tmp_path / "live" / "A_pos000.h5",
                       [Damage(tmp_path / "live" / "A_pos000.h5", "segmentation/cells", "Segment", "test")])
    measured.clear()
    res = workflow(tmp_path / "raw", tmp_path / "live", jobs(percentile=90.0))
    assert res.jobs[3].computed == ["A_pos000.h5"] and measured == [CHUNK_T, 4]


def test_detection_qc_picture_is_not_redrawn_for_new_frames(tmp_path):
    """A phase reference is frame 0: new frames change the drift, not the picture, which is
    kept (a live cycle would spend 1-2 s a position redrawing it); damaged, it is drawn again."""
    cfg = SyntheticConfig(height=256, width=320, n_positions=1, n_timepoints=4, channels=("phase",), seed=8)
    write_acquisition(tmp_path / "full", cfg, layout="tiff-sequence", name="A", ground_truth=False)
    raw = tmp_path / "raw" / "A"
    raw.mkdir(parents=True)
    files = sorted((tmp_path / "full" / "A").glob("*.tif"))
    for f in files[:2]:
        shutil.copy(f, raw / f.name)
    jobs = [Ingest(phase_channels=["c0"]), TrenchDetection()]
    workflow(tmp_path / "raw", tmp_path / "out", jobs)
    picture = tmp_path / "out" / "qc" / "A_pos000_trenches.png"
    drawn, stamp = picture.read_bytes(), picture.stat().st_mtime_ns
    for f in files[2:]:
        shutil.copy(f, raw / f.name)
    res = workflow(tmp_path / "raw", tmp_path / "out", jobs)
    assert res.jobs[1].computed == ["A_pos000.h5"]  # the drift of the new frames
    with open_file(tmp_path / "out" / "A_pos000.h5", "r") as f:
        assert len(read_table(f, "tables/drift")) == 4
    assert picture.stat().st_mtime_ns == stamp  # not redrawn

    damaged = bytearray(drawn)
    damaged[len(damaged) // 2] ^= 0xFF
    picture.write_bytes(bytes(damaged))
    res = workflow(tmp_path / "raw", tmp_path / "out", jobs)
    assert res.jobs[1].computed == ["A_pos000.h5"] and picture.read_bytes() == drawn
    assert workflow(tmp_path / "raw", tmp_path / "out", jobs).jobs[1].computed == []  # and it stays


def test_closed_end_margin_is_an_option_and_recorded(tmp_path, acquisition):
    """--detect_closed_end_margin moves every box start; the margin is recorded with the
    layout (segmentation reads it), and changing it recomputes the detection."""
    def boxes(out, **params):
        assert workflow(acquisition, out, [Ingest(), TrenchDetection(qc_plot=False, **params)],
                        progress=False).success
        with open_file(out / "acq_pos000.h5", "r") as f:
            table = read_table(f, "tables/trenches")
            quality = read_attrs(f["tables/trenches"])["quality"]
        return table, quality

    default, q_default = boxes(tmp_path / "out")
    assert q_default["closed_end_margin_px"] == 1.5
    wider, q_wider = boxes(tmp_path / "out", closed_end_margin=4.0)
    assert q_wider["closed_end_margin_px"] == 4.0
    moved = (wider["y_closed"] - default["y_closed"]) * default["direction"]
    np.testing.assert_allclose(moved, -2.5, atol=1e-6)   # 2.5 px further out, into the PDMS


def test_segment_warns_when_fluorescence_cells_barely_stand_above_the_noise(tmp_path):
    """Below a contrast of about 5x the pixel noise the U-Net merges and splits touching
    cells (F1 0.97 at 4, 0.76 at 2.5 on generated data): Segment says so in the status
    and records the ratio with the labels; bright cells give no warning."""
    import dataclasses

    from batchlib.trench.report import build_report
    from batchlib.trench.segmentation.contrast import LOW_CONTRAST

    results = {}
    for amplitude in (400.0, 40.0):
        cfg = dataclasses.replace(CFG, height=384, width=384, fluor_amplitude=amplitude,
                                  read_noise=12.0, channels=("phase", "gfp"))
        raw, out = tmp_path / f"raw{amplitude:.0f}", tmp_path / f"out{amplitude:.0f}"
        write_acquisition(raw, cfg, layout="ome-tiff", name="acq", ground_truth=False)
        jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(),
                Segment(channel="gfp", method="unet")]
        assert workflow(raw, out, jobs, progress=False).success
        with open_file(out / "acq_pos000.h5", "r") as f:
            ratio = read_attrs(f["segmentation/cells"])["contrast_to_noise"]
        entry = job_status(out, "Segment")["files"]
        warnings = [w for e in entry.values() for w in e.get("warnings", [])]
        results[amplitude] = ratio, warnings
        build_report(out)
        page = (out / "report.html").read_text()
        assert ("Segment: 1 result(s) to look at" in page) == bool(warnings)
    bright, dim = results[400.0], results[40.0]
    assert bright[0] > 3 * LOW_CONTRAST and bright[1] == []
    assert 1.0 < dim[0] < LOW_CONTRAST
    noise = [w for w in dim[1] if "pixel noise" in w]
    assert len(noise) == 1 and "acq_pos000" in noise[0]


def _mothers_merged_with_a_daughter(crops, kind, **params):
    """The classical segmentation with the mother merged with the cell below it in every
    other trench (merging all of them would double every length, not widen their span)."""
    from batchlib.trench.segmentation import segment_trenches

    labels = segment_trenches(crops, method="threshold", kind=kind, **params)
    labels[::2] = np.where(labels[::2] == 2, 1, labels[::2])
    return labels


def _segment_figure_and_warnings(tmp_path, methods, figure, n_timepoints):
    """Segment a generated phase position with each of ``methods`` (threshold-style
    parameters); per method, the ``figure`` recorded with the labels and the status's
    warnings."""
    raw = tmp_path / "raw"
    cfg = SyntheticConfig(height=512, width=512, n_positions=1, n_timepoints=n_timepoints,
                          channels=("phase",), seed=3)
    write_acquisition(raw, cfg, layout="ome-tiff", name="acq", ground_truth=False)
    seen = {}
    for method in methods:
        out = tmp_path / method
        jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(),
                Segment(method=method, method_params={"lumen_width": 12})]
        assert workflow(raw, out, jobs, progress=False).success
        with open_file(out / "acq_pos000.h5", "r") as f:
            value = read_attrs(f["segmentation/cells"])[figure]
        seen[method] = value, [w for e in job_status(out, "Segment")["files"].values()
                               for w in e.get("warnings", [])]
    return seen


def test_segment_warns_when_mother_lengths_do_not_look_like_growth(tmp_path):
    """Mother cells span about 2x in length (birth to division); a segmentation that
    merges some of them with a daughter spans far more, and Segment says so (the same
    check flagged every generated tuning position where the U-Net's F1 fell below 0.97)."""
    from batchlib.trench.segmentation import register_method
    from batchlib.trench.segmentation.mother_lengths import WIDE_SPREAD

    register_method("merges_mothers", _mothers_merged_with_a_daughter)
    seen = _segment_figure_and_warnings(tmp_path, ("threshold", "merges_mothers"),
                                        "mother_length_spread", 6)
    for method, (_, warnings) in seen.items():
        assert [("mother cells' lengths span" in w) for w in warnings] == \
            ([True] if method == "merges_mothers" else []), warnings
    assert seen["threshold"][0] < 2.5 < WIDE_SPREAD < seen["merges_mothers"][0]


def _only_the_left_half(crops, kind, lumen_width=None, **params):
    """The threshold method's cells with their right halves cut off: it does not treat
    the two sides of a trench alike."""
    from batchlib.trench.segmentation import segment_trenches

    labels = segment_trenches(crops, method="threshold", kind=kind, lumen_width=lumen_width,
                              **params)
    labels[..., crops.shape[-1] // 2:] = 0
    return labels


def test_segment_warns_when_the_crops_mirrored_give_other_cells(tmp_path):
    """Segment segments each block's first frame again mirrored left-right and records
    how many cells the two agree on: a method that does not treat both sides of a
    trench alike is warned about in the status; the threshold method is not."""
    from batchlib.trench.segmentation import register_method
    from batchlib.trench.segmentation.mirror import LOW_AGREEMENT

    register_method("only_the_left_half", _only_the_left_half)
    seen = _segment_figure_and_warnings(tmp_path, ("threshold", "only_the_left_half"),
                                        "mirror_agreement", 3)
    for method, (_, warnings) in seen.items():
        assert [("mirrored left-right" in w) for w in warnings] == \
            ([True] if method == "only_the_left_half" else []), warnings
    assert seen["only_the_left_half"][0] < 0.1 < LOW_AGREEMENT < seen["threshold"][0]


def _marks_a_given_background(crops, kind, background=None):
    """A cell over every crop when Segment passed the empty trenches' reference."""
    return np.full(crops.shape, 0 if background is None else 1, np.int32)


def test_segment_does_not_trust_empty_flags_detection_could_not_decide(tmp_path, acquisition):
    """Dark lumens with faint cells: every trench's texture was barely above the walls',
    all were flagged empty, and Segment took the cells for what recurs in empty trenches
    (the chip) and removed them (held-out mixed 10027: F1 0.01). Detection now says when
    its flags are unclear (``empty_flags_clear``), and Segment then does without them."""
    from batchlib.io import write_attrs, write_table
    from batchlib.trench.segmentation import register_method

    register_method("given_background", _marks_a_given_background)
    out = tmp_path / "out"
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress()]
    assert workflow(acquisition, out, jobs, progress=False).success
    path = out / "acq_pos000.h5"
    with open_file(path, "r") as f:
        assert read_attrs(f["tables/trenches"])["quality"]["empty_flags_clear"] == 1.0
    counts = {}
    for clear in (1.0, 0.0):
        with open_file(path, "a") as f:
            table = read_table(f, "tables/trenches")
            attrs = read_attrs(f["tables/trenches"])
            table["empty"] = np.arange(len(table)) % 2 == 0   # half flagged empty...
            write_table(f, "tables/trenches", table)
            attrs["quality"]["empty_flags_clear"] = clear   # ...clearly, or not
            write_attrs(f["tables/trenches"], attrs)
        name = f"clear{int(clear)}"
        assert workflow(acquisition, out, [Segment(method="given_background", name=name)],
                        progress=False).success
        with open_file(path, "r") as f:
            counts[clear] = int(np.count_nonzero(f[f"segmentation/{name}"][:]))
        warnings = [w for e in job_status(out, "Segment")["files"].values()  # this run's
                    for w in e.get("warnings", [])]
        assert any("could not tell empty trenches" in w for w in warnings) == (clear == 0.0)
    assert counts[1.0] > 0 and counts[0.0] == 0   # the empty trenches' reference: used, not used


def test_segment_redoes_its_frames_when_the_empty_flags_change(tmp_path, acquisition):
    """The labels depend on TrenchDetection's empty flags (and on whether they are clear)
    as well as on the crops, and the layout hash that the crops' basis holds leaves the
    flags out (a fluorescence rerun on new frames can flag a trench anew while every box
    stays). When Segment runs again, its earlier frames are kept only if the flags are
    the same."""
    from batchlib.io import write_attrs
    from batchlib.trench.segmentation import register_method

    register_method("given_background", _marks_a_given_background)
    out = tmp_path / "out"
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(),
            Segment(method="given_background")]
    assert workflow(acquisition, out, jobs, progress=False).success
    path = out / "acq_pos000.h5"

    def segment_again():  # what the workflow calls when Segment has frames to add
        with open_file(path, "a") as f:
            jobs[-1].process_container(f, str(path))
        with open_file(path, "r") as f:
            ds = f["segmentation/cells"]
            return int(np.count_nonzero(ds[:])), read_attrs(ds)["stack_id"]

    with open_file(path, "r") as f:
        stack = read_attrs(f["segmentation/cells"])["stack_id"]
    before = segment_again()
    assert before[0] > 0 and before[1] == stack       # the clear flags used; frames kept
    with open_file(path, "a") as f:
        attrs = read_attrs(f["tables/trenches"])
        attrs["quality"]["empty_flags_clear"] = 0.0
        write_attrs(f["tables/trenches"], attrs)
    after = segment_again()
    assert after[0] == 0 and after[1] != stack        # every frame redone without them


def _mothers_only(crops, kind, **params):
    """The classical segmentation keeping only the mother of every crop (at most 20 rows:
    these crops are short, 115 rows)."""
    from batchlib.trench.segmentation import segment_trenches

    labels = segment_trenches(crops, method="threshold", kind=kind, **params)
    rows = np.arange(crops.shape[-2])[:, None]
    return np.where((labels == 1) & (rows < 20), 1, 0)


def test_segment_warns_when_the_cells_found_fill_little_of_their_trenches(tmp_path, acquisition):
    """Cells grow until they fill their trench; a segmentation that finds the mothers
    and misses the cells below them (held-out mixed 10023, phase: F1 0.08, fill 0.10)
    is warned about; the classical method's full answer is not."""
    from batchlib.trench.segmentation import register_method
    from batchlib.trench.segmentation.fill import LOW_FILL

    register_method("mothers_only", _mothers_only)
    out = tmp_path / "out"
    fills = {}
    for method in ("threshold", "mothers_only"):
        seg = Segment(method=method, method_params={"lumen_width": 12}, name=method)
        assert workflow(acquisition, out, [Ingest(), TrenchDetection(qc_plot=False), Compress(),
                                           seg], progress=False).success
        with open_file(out / "acq_pos000.h5", "r") as f:
            fills[method] = read_attrs(f[f"segmentation/{method}"])["trench_fill"]
        warnings = [w for e in job_status(out, "Segment")["files"].values()
                    for w in e.get("warnings", [])]
        assert any("fill only" in w for w in warnings) == (method == "mothers_only"), warnings
    assert fills["mothers_only"] < LOW_FILL < 0.8 < fills["threshold"]


def test_segment_judges_lumen_lookalikes_against_each_sets_empty_lumens(tmp_path, acquisition,
                                                                        monkeypatch):
    """Two trench sets face the main channel from either side, and one set's empty lumens
    can look unlike the other's (independent simulator 1012, 1055: their open-end
    shading or a dark empty lumen kept as cells). Segment hands the look-alike check
    every crop's own set's reference (``empty_trenches.references_by_set``), with the
    position's first frames for a set's lone empty trench."""
    from batchlib.io import write_table
    from batchlib.trench.segmentation import empty_trenches

    out = tmp_path / "out"
    assert workflow(acquisition, out, [Ingest(), TrenchDetection(qc_plot=False), Compress()],
                    progress=False).success
    path = out / "acq_pos000.h5"
    with open_file(path, "a") as f:
        table = read_table(f, "tables/trenches")
        n = len(table)
        sets = (np.arange(n) >= n // 2).astype(int)
        empty = np.zeros(n, bool)
        empty[[0, 1, n // 2]] = True        # two empty trenches in set 0, one in set 1
        table["set"], table["empty"] = sets, empty
        write_table(f, "tables/trenches", table)
        shape = f["trench_crops/phase"].shape
    seen = []
    real = empty_trenches.references_by_set

    def spy(crops, empty, sets, first=None, background=None):
        ref = real(crops, empty, sets, first, background)
        seen.append((np.asarray(empty).copy(), np.asarray(sets).copy(), np.shape(first), ref))
        return ref

    monkeypatch.setattr(empty_trenches, "references_by_set", spy)
    assert workflow(acquisition, out, [Segment(method="threshold")], progress=False).success
    assert seen, "Segment did not ask for the sets' references"
    flags, given_sets, first, ref = seen[0]
    np.testing.assert_array_equal(flags, empty)
    np.testing.assert_array_equal(given_sets, sets)
    assert first == (n, shape[1], *shape[2:])                 # all 3 frames are the first ones
    with open_file(path, "r") as f:
        crops = f["trench_crops/phase"][:].astype(np.float32)
    assert ref.shape == crops.shape
    # set 1's lone empty trench is its own reference; set 0's, the median of its two
    np.testing.assert_allclose(ref[n - 1, 0], np.median(crops[n // 2], axis=0))
    np.testing.assert_allclose(ref[2, 1], np.median(crops[[0, 1], 1], axis=0))
