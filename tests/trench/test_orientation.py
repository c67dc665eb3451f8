"""Trenches running left-right are found on the image turned a quarter and cropped upright
(detection/orientation.py, ``--detect_orientation``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from batchlib.io import open_file, read_attrs, read_table
from batchlib.trench.detection import TrenchDetectionError, crop_trenches, detect_trenches
from batchlib.trench.detection.movie import detect_in_movie, movie_drift
from batchlib.trench.segmentation.evaluate import match_labels
from batchlib.trench.synthetic import (SyntheticConfig, load_ground_truth, simulate_position,
                                       write_acquisition)

# non-square: the rotated frames of the raw and the turned image have different centres
CFG = SyntheticConfig(height=384, width=576, n_positions=1, n_timepoints=4,
                      channels=("phase", "gfp"), seed=11)


@pytest.fixture(scope="module")
def position():
    return simulate_position(CFG, 0)


def _crops(movie, kind):
    lay, ref = detect_in_movie(movie, kind, box_width=CFG.box_width)
    drift = movie_drift(movie, ref, lay, kind)
    crops = np.stack([crop_trenches(movie[t], lay, drift_yx=drift[t]) for t in range(len(movie))],
                     axis=1)
    return lay, crops.astype(float), drift


@pytest.mark.parametrize("kind, channel", [("phase", "phase"), ("fluorescence", "gfp")])
def test_a_movie_turned_a_quarter_gives_the_upright_crops(position, kind, channel):
    movie = np.asarray(position.movies[channel])
    upright, c0, d0 = _crops(movie, kind)
    assert "turned_quarter" not in upright.quality
    # turned clockwise: the detection turns it back exactly, the crops are the same samples
    # (but for a rounding of the sample coordinates: one grey level here and there)
    lay, c3, d3 = _crops(np.ascontiguousarray(np.rot90(movie, 3, axes=(1, 2))), kind)
    assert lay.quality["turned_quarter"] == 1.0
    assert lay.angle_deg == pytest.approx(upright.angle_deg - 90.0, abs=1e-9)
    assert lay.image_shape == (CFG.width, CFG.height)
    # each frame's drift is estimated again on the turned frames: the same to a few
    # hundredths of a pixel (fluorescence, frame 2: 0.015 px along the trenches, where
    # the mothers' tips are read to a tenth of a pixel), so that frame's crops may differ
    # by a few grey levels at the cells' edges
    assert np.abs(d3[:, ::-1] * [-1, 1] - d0).max() <= 0.03
    assert np.abs(c3[:, 0] - c0[:, 0]).max() <= 1.0     # the reference frame: the same drift
    assert np.abs(c3 - c0).max() <= 0.01 * c0.max() and np.mean(c3 != c0) < 0.05
    # counter-clockwise: the chip turned half a turn, each crop mirrored left-right
    lay, c1, _ = _crops(np.ascontiguousarray(np.rot90(movie, 1, axes=(1, 2))), kind)
    assert lay.quality["turned_quarter"] == 1.0 and len(lay.trenches) == len(upright.trenches)
    mirrored = c1[..., ::-1]
    diff = [min(np.abs(mirrored[j] - c0[i]).mean() for j in range(len(c1))) for i in range(len(c0))]
    assert np.max(diff) < 0.01 * c0.mean(), diff


def test_orientation_choices(position):
    frame = np.asarray(position.movies["phase"][0])
    turned = np.ascontiguousarray(np.rot90(frame))
    upright = detect_trenches(frame)
    with pytest.raises(TrenchDetectionError, match="no periodic trench pattern") as err:
        detect_trenches(turned, orientation="vertical")
    assert "turned a quarter" not in str(err.value)
    lay = detect_trenches(turned, orientation="horizontal")
    assert lay.angle_deg == pytest.approx(upright.angle_deg - 90.0, abs=0.01)
    # a known angle far from vertical means horizontal trenches
    known = detect_trenches(turned, angle_deg=lay.angle_deg, orientation="vertical")
    assert known.angle_deg == pytest.approx(lay.angle_deg, abs=1e-9)
    with pytest.raises(TrenchDetectionError, match="no periodic trench pattern"):
        detect_trenches(frame, orientation="horizontal")
    with pytest.raises(ValueError, match="orientation"):
        detect_trenches(frame, orientation="sideways")
    # neither way: the error gives both reasons
    noise = np.random.default_rng(0).normal(100, 5, (256, 320))
    with pytest.raises(TrenchDetectionError, match="nor with the image turned a quarter"):
        detect_trenches(noise)


def test_workflow_on_an_acquisition_with_trenches_running_left_right(tmp_path):
    """TIFF stacks turned a quarter: the workflow finds the trenches, its crops and cells
    agree with the turned ground truth, and the status says the position is done."""
    from test_workflow_e2e import load_workflow

    cfg = SyntheticConfig(height=384, width=448, n_positions=1, n_timepoints=4,
                          channels=("phase", "gfp"), seed=12)
    write_acquisition(tmp_path / "a", cfg, layout="tiff-stacks", name="H")
    files = sorted((tmp_path / "a").rglob("*.tif"))
    assert files
    for f in files:
        with tifffile.TiffFile(f) as tif:
            axes, data = tif.series[0].axes, tif.asarray()
        tifffile.imwrite(f, np.ascontiguousarray(np.rot90(data, 1, axes=(-2, -1))), imagej=True,
                         metadata={"axes": axes})
    gt = next((tmp_path / "a").rglob("ground_truth"))
    raw = tmp_path / "raw"
    (tmp_path / "a").rename(raw)
    gt = raw / gt.relative_to(tmp_path / "a")
    out = tmp_path / "out"
    argv = ["--input_folder", str(raw), "--folder", str(out), "--executor", "serial",
            "--ingest_phase_channels", "c0", "--progress", "false", "--log_level", "WARNING"]
    assert load_workflow().main(argv) == 0
    status = json.loads((out / "batchlib" / "TrenchDetection.status").read_text())
    (container,) = [k for k in status["files"]]
    assert status["files"][container]["state"] == "done"
    truth = load_ground_truth(next(gt.glob("*pos000*")))
    with open_file(next(out.glob("*.h5")), "r") as f:
        det = read_table(f, "tables/trenches")
        attrs = read_attrs(f["tables/trenches"])
        drift = read_table(f, "tables/drift")[["dy", "dx"]].to_numpy()
        labels = f["segmentation/cells"][:]
    assert attrs["quality"]["turned_quarter"] == 1.0
    assert attrs["angle_deg"] == pytest.approx(truth.metadata["angle_deg"] - 90.0, abs=0.1)
    assert len(det) == len(truth.trenches)
    true = np.stack([crop_trenches(np.rot90(truth.frame_labels[t]), det, attrs["angle_deg"],
                                   tuple(drift[t]), order=0) for t in range(labels.shape[1])],
                    axis=1)
    m = match_labels(true, labels.astype(np.int64))
    assert m.f1 >= 0.95 and m.mean_iou >= 0.85, (m.f1, m.mean_iou)


def test_the_real_molyso_frame_turned_either_way_gives_its_upright_boxes(shared_data):
    """Real phase contrast (six growth channels, ../shared/data), turned a quarter either
    way: the same six trenches at the same angle. Turned clockwise, detection turns it back
    to the upright image: the same crops. Counter-clockwise it works on the chip upside
    down, where the closed ends come out 6 px further out than upright (a property of
    the end search on this frame's bright end caps, the same on the frame flipped
    upside down without any turn)."""
    frame = tifffile.imread(shared_data / "phase_fov" / "molyso_example_frame.tif")
    upright = detect_trenches(frame)
    c0 = crop_trenches(frame, upright).astype(float)
    lay = detect_trenches(np.ascontiguousarray(np.rot90(frame, 3)))
    assert lay.quality["turned_quarter"] == 1.0 and lay.angle_deg == upright.angle_deg - 90
    crops = crop_trenches(np.ascontiguousarray(np.rot90(frame, 3)), lay).astype(float)
    assert np.abs(crops - c0).max() <= 1.0
    turned = np.ascontiguousarray(np.rot90(frame, 1))
    lay = detect_trenches(turned)
    assert lay.quality["turned_quarter"] == 1.0 and len(lay.trenches) == 6
    assert lay.angle_deg + 90 == pytest.approx(upright.angle_deg, abs=0.02)
    flipped = detect_trenches(np.ascontiguousarray(frame[::-1, ::-1]))
    # the axes where the flipped frame has them, in the turned frame's rotated columns
    d = (turned.shape[0] - turned.shape[1]) / 2.0
    np.testing.assert_allclose(np.sort(lay.trenches["x_center"]),
                               np.sort(flipped.trenches["x_center"]) - d, atol=0.05)
