"""Channel options of the workflow: unnamed channels, c1 stays c1, wrong names stop at once, lumen."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from batchlib import JobError, run_workflow
from batchlib.io import open_file, read_attrs, read_table
from batchlib.trench.jobs import Ingest, TrenchDetection
from batchlib.trench.synthetic import SyntheticConfig, simulate_position

ROOT = Path(__file__).resolve().parents[2]
CFG = SyntheticConfig(height=320, width=320, n_positions=1, n_timepoints=2, channels=("phase", "gfp"),
                      seed=5)


@pytest.fixture(scope="module")
def pos():
    return simulate_position(CFG, 0)


@pytest.fixture(scope="module")
def wf():
    path = ROOT / "workflows" / "trench_workflow.py"
    spec = importlib.util.spec_from_file_location("trench_workflow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_stack(raw, pos, order):
    """A TIFF stack without channel names: channels c0, c1 in ``order``."""
    raw.mkdir(parents=True)
    data = np.stack([pos.movies[ch] for ch in order], axis=1)
    tifffile.imwrite(raw / "plain.tif", data, metadata={"axes": "TCYX"}, photometric="minisblack")


def sequence(raw, pos, files):
    """A TIFF sequence whose channel numbers are ``files`` {number: generated channel}."""
    raw.mkdir(parents=True)
    for t in range(CFG.n_timepoints):
        for c, ch in files.items():
            tifffile.imwrite(raw / f"t{t:03d}xy01c{c}.tif", pos.movies[ch][t], photometric="minisblack")


def offsets(pos, out, name):
    """Distance of every true trench centre to the nearest detected box centre."""
    with open_file(out / name, "r") as f:
        det = read_table(f, "tables/trenches")
        attrs = read_attrs(f["tables/trenches"])
    true_x = pos.trenches["x_center"].to_numpy()
    return np.abs(true_x[:, None] - det["x_center"].to_numpy()[None, :]).min(axis=1), attrs


def test_unnamed_phase_channel_is_found_and_used_for_detection(tmp_path, pos):
    """The phase movie second and unnamed: detected as phase, chosen by default, boxes on the lumens."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    plain_stack(raw, pos, order=("gfp", "phase"))
    result = run_workflow("T", out, [Ingest(), TrenchDetection(qc_plot=False)], input_folder=raw)
    assert result.success
    dist, attrs = offsets(pos, out, "plain_pos000.h5")
    assert (attrs["channel"], attrs["kind"]) == ("c1", "phase")
    assert dist.max() < 2.0, dist  # on the lumens, not on the walls (pitch/2 = 24 px away)


def test_sequence_c1_stays_c1_with_the_example_config(tmp_path, pos, wf):
    """configs/tiff_sequence_example.conf names c1: the file channel c1 (phase here), not the second."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    sequence(raw, pos, {1: "phase", 2: "gfp"})
    args = wf.build_parser().parse_args(["-c", str(ROOT / "configs" / "tiff_sequence_example.conf"),
                                         "--input_folder", str(raw), "--folder", str(out),
                                         "--container_ext", ".h5", "--detect_qc_plot", "false"])
    jobs = wf.build_jobs(args)
    assert wf.channel_option_problems(args, jobs[0]) == []
    assert run_workflow("T", out, jobs[:2], input_folder=raw).success
    dist, attrs = offsets(pos, out, "raw_pos000.h5")
    assert attrs["channel"] == "c1" and dist.max() < 2.0
    with open_file(out / "raw_pos000.h5", "r") as f:
        md = read_attrs(f)["acquisition"]
        assert md["channels"] == ["c1", "c2"]
        np.testing.assert_array_equal(f["raw/c2"][:], pos.movies["gfp"])


def test_a_channel_that_is_not_there_stops_the_workflow_at_once(tmp_path, pos, wf, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    plain_stack(raw, pos, order=("phase", "gfp"))
    code = wf.main(["-c", str(ROOT / "configs" / "demo.conf"), "--input_folder", str(raw),
                    "--folder", str(out), "--demo", "false", "--detect_channel", "phase",
                    "--segment_channel", "phase"])
    assert code == 1
    err = capsys.readouterr().err
    assert "plain.tif: no channel 'phase'; channels found: c0, c1. Set --detect_channel" in err
    assert "--segment_channel" in err
    assert not out.exists() or not list(out.glob("*.h5"))  # nothing ran
    # Naming the channels makes the same config work.
    args = wf.build_parser().parse_args(["-c", str(ROOT / "configs" / "demo.conf"), "--input_folder",
                                         str(raw), "--folder", str(out), "--demo", "false",
                                         "--detect_channel", "phase", "--ingest_channel_names",
                                         "phase", "gfp"])
    assert wf.channel_option_problems(args, wf.build_jobs(args)[0]) == []


def test_detection_on_a_missing_channel_is_an_invalid_input_listing_the_channels(tmp_path, pos):
    raw, out = tmp_path / "raw", tmp_path / "out"
    plain_stack(raw, pos, order=("phase", "gfp"))
    run_workflow("T", out, [Ingest()], input_folder=raw)
    with pytest.raises(JobError, match="invalid inputs"):
        run_workflow("T", out, [Ingest(), TrenchDetection(channel="phase")], input_folder=raw)
    entry = json.loads((out / "batchlib" / "TrenchDetection.status").read_text())["files"]["plain_pos000.h5"]
    assert entry["state"] == "invalid"
    assert "no channel 'phase'; channels found: c0 (phase), c1 (fluorescence)" in entry["error"]
    assert "--detect_channel" in entry["error"]


def test_lumen_option_reaches_detection(tmp_path, pos):
    """The generator's lumens are bright: 'bright' finds them; 'dark' puts the boxes on the walls
    (or is rejected by the detection's own checks), never silently on the lumens."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    plain_stack(raw, pos, order=("phase", "gfp"))
    run_workflow("T", out, [Ingest(), TrenchDetection(lumen="bright", qc_plot=False)], input_folder=raw)
    dist, attrs = offsets(pos, out, "plain_pos000.h5")
    assert attrs["lumen_option"] == "bright" and dist.max() < 2.0
    result = run_workflow("T", out, [Ingest(), TrenchDetection(lumen="dark", qc_plot=False)],
                          input_folder=raw, ignore_failed_outputs=True)
    if result.jobs[1].success:
        dist, attrs = offsets(pos, out, "plain_pos000.h5")
        assert attrs["lumen_option"] == "dark"
        assert np.median(dist) > CFG.pitch_px / 4, dist
    with pytest.raises(ValueError, match="lumen"):
        TrenchDetection(lumen="grey")
