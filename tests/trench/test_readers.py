"""Acquisition readers: real ND2, synthetic TIFF layouts, growth and bad input."""
import json
import os
import types

import numpy as np
import pytest
import tifffile

from batchlib.trench.readers import (DEFAULT_SEQUENCE_PATTERN, AcquisitionSource,
                                     InvalidAcquisitionError, find_acquisitions,
                                     open_acquisition)
from batchlib.trench.readers.base import complete_timepoints
from batchlib.trench.readers.nd2_backend import Nd2Acquisition

RNG = np.random.default_rng(7)


# --------------------------------------------------------------------------- helpers
def write_ome(path, n_pos=3, shape=(4, 2, 12, 14), names=("phase", "gfp")):
    """Multi-series OME-TIFF (TCYX per position) with names, pixel size, DeltaT, stage."""
    data = RNG.integers(0, 4000, (n_pos,) + shape, dtype=np.uint16)
    n_t, n_c = shape[:2]
    with tifffile.TiffWriter(path, ome=True) as w:
        for p in range(n_pos):
            planes = n_t * n_c
            w.write(data[p], metadata={
                "axes": "TCYX", "Channel": {"Name": list(names)},
                "PhysicalSizeX": 0.065, "PhysicalSizeY": 0.065,
                "Plane": {"DeltaT": [60.0 * (i // n_c) + 0.5 * (i % n_c) for i in range(planes)],
                          "DeltaTUnit": ["s"] * planes,
                          "PositionX": [1000.0 + p] * planes, "PositionXUnit": ["µm"] * planes,
                          "PositionY": [-50.0] * planes, "PositionYUnit": ["µm"] * planes}})
    return data


def write_imagej(path, shape=(3, 5, 2, 10, 12), labels=None):
    data = RNG.integers(0, 60000, shape, dtype=np.uint16)
    md = {"axes": "TZCYX", "spacing": 0.3, "unit": "um", "finterval": 120.0}
    if labels:
        md["Labels"] = labels
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.11, 1 / 0.11), metadata=md)
    return data


def write_sequence(folder, n_t=2, n_p=2, n_c=2, prefix="", shape=(9, 11)):
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for t in range(n_t):
        for p in range(n_p):
            for c in range(n_c):
                frames[p, t, c] = write_plane(folder / f"{prefix}t{t:03d}xy{p:02d}c{c}.tif", shape)
    return frames


def write_plane(path, shape=(9, 11)):
    img = RNG.integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, img)
    return img


# --------------------------------------------------------------------------- ND2 (real file)
@pytest.fixture(scope="module")
def cluster(shared_data):
    import nd2
    path = shared_data / "nd2" / "cluster.nd2"
    return path, nd2.imread(path)


@pytest.mark.parametrize("backend", ["nd2", "nd2reader"])
def test_nd2_backends_match_whole_file_read(cluster, backend):
    path, full = cluster  # full: (T, Z, C, Y, X)
    with open_acquisition(path, backend=backend) as acq:
        assert acq.reader == backend and acq.format == "nd2" and acq.name == "cluster"
        assert (acq.n_positions, acq.n_timepoints, acq.n_z, acq.shape_yx) == (1, 3, 10, (31, 38))
        assert acq.channels == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
        assert acq.dtype == np.uint16
        assert acq.pixel_size_um == pytest.approx(0.1678, abs=1e-4)
        assert acq.z_step_um == pytest.approx(0.5)
        for t in range(3):
            for c in range(2):
                for z in range(10):
                    np.testing.assert_array_equal(acq.read_frame(0, t, c, z=z), full[t, z, c])
                np.testing.assert_array_equal(acq.read_frame(0, t, c), full[t, :, c].max(axis=0))
        np.testing.assert_array_equal(acq.read_frame(0, 1, "FM 4-64/2% CHAPS", z=3), full[1, 3, 1])
        times = acq.times_s(0)
        assert times.shape == (3,) and np.all(np.diff(times) > 0)
        assert times[0] == pytest.approx(0.445, abs=1e-3)
        x, y, _ = acq.stage_xyz(0)
        assert x == pytest.approx(-26056.95, abs=0.01) and y == pytest.approx(-4155.46, abs=0.01)
        md = acq.position_metadata(0)
        json.dumps(md, allow_nan=False)
        assert md["z_reduction"] == "max" and md["n_timepoints"] == 3 and md["reader"] == backend


def test_nd2_backends_agree(cluster):
    path, _ = cluster
    with open_acquisition(path, backend="nd2") as a, \
            open_acquisition(path, backend="nd2reader") as b:
        for attr in ("n_positions", "n_timepoints", "n_z", "channels", "shape_yx", "dtype"):
            assert getattr(a, attr) == getattr(b, attr), attr
        assert a.pixel_size_um == pytest.approx(b.pixel_size_um)
        np.testing.assert_allclose(a.times_s(0), b.times_s(0), atol=1e-3)
        np.testing.assert_array_equal(a.times_s(0), a.times_s(0, use_cache=False))
        assert a.stage_xyz(0)[:2] == pytest.approx(b.stage_xyz(0)[:2])


def test_nd2_auto_uses_nd2_and_reads_frame_by_frame(cluster, monkeypatch):
    import nd2
    path, _ = cluster
    calls = []
    original = nd2.ND2File.read_frame
    monkeypatch.setattr(nd2.ND2File, "read_frame",
                        lambda self, i: calls.append(i) or original(self, i))
    monkeypatch.setattr(nd2.ND2File, "asarray", lambda *a, **k: pytest.fail("whole-file read"))
    monkeypatch.setattr(nd2.ND2File, "to_dask", lambda *a, **k: pytest.fail("whole-file read"))
    with open_acquisition(path) as acq:
        assert acq.reader == "nd2"
        acq.read_frame(0, 2, 1, z=4)
        assert calls == [24]  # t * Z + z
        calls.clear()
        acq.read_frame(0, 1, 0)
        assert calls == list(range(10, 20))


# --------------------------------------------------------------------------- ND2 growth (fake)
class FakeND2:
    """Stands in for nd2.ND2File: frame value = sequence index * 10 + channel."""

    def __init__(self, sizes, written):
        self.sizes = sizes
        self.dtype = np.uint16
        n_c = sizes.get("C", 1)
        self.attributes = types.SimpleNamespace(sequenceCount=written, componentCount=n_c)
        self.metadata = types.SimpleNamespace(channels=None)
        self.experiment = []
        self.read = []

    def read_frame(self, i):
        self.read.append(i)
        n_c, shape = self.sizes.get("C", 1), (self.sizes["Y"], self.sizes["X"])
        return np.stack([np.full(shape, i * 10 + c, np.uint16) for c in range(n_c)]).squeeze()

    def frame_metadata(self, i):
        time = types.SimpleNamespace(relativeTimeMs=1000.0 * i)
        return types.SimpleNamespace(channels=[types.SimpleNamespace(time=time, position=None)])

    def close(self):
        pass


@pytest.mark.parametrize("written, expected",
                         [(0, 0), (5, 0), (6, 1), (13, 2), (17, 2), (18, 3), (24, 4)])
def test_nd2_counts_only_complete_timepoints(written, expected):
    sizes = {"T": 4, "P": 2, "Z": 3, "C": 2, "Y": 4, "X": 5}
    acq = Nd2Acquisition("growing.nd2", handle=FakeND2(sizes, written))
    assert acq.n_timepoints == expected
    assert acq.channels == ["c0", "c1"] and acq.metadata["names_missing"]
    assert acq.pixel_size_um is None and acq.times_s(1).shape == (expected,)
    if expected:
        t = expected - 1
        seq = (t * 2 + 1) * 3 + 2  # ravel (t, p=1, z=2) over (T, P, Z)
        assert acq.read_frame(1, t, 1, z=2)[0, 0] == seq * 10 + 1
        assert acq.times_s(1)[t] == pytest.approx((t * 2 + 1) * 3)
        assert "pixel_size_um" in acq.position_metadata(1)["missing"]
    with pytest.raises(IndexError):
        acq.read_frame(0, expected, 0)


def test_nd2_metadata_from_fake_handle():
    fake = FakeND2({"T": 2, "C": 2, "Y": 4, "X": 5}, 2)
    vol = types.SimpleNamespace(axesCalibration=(0.2, 0.2, 1.0), axesCalibrated=(True, True, False))
    fake.metadata.channels = [types.SimpleNamespace(channel=types.SimpleNamespace(name="BF"),
                                                    volume=vol)] * 2
    acq = Nd2Acquisition("dup.nd2", handle=fake)
    assert acq.channels == ["BF_0", "BF_1"] and acq.metadata["channel_names_original"] == ["BF"] * 2
    assert acq.pixel_size_um == 0.2 and acq.z_step_um is None and acq.n_z == 1
    assert acq.stage_xyz(0) == (None, None, None)


def test_nd2_frames_without_data_and_odd_loops():
    fake = FakeND2({"T": 4, "Z": 2, "Y": 4, "X": 5}, 8)
    fake._rdr = types.SimpleNamespace(_frame_offsets={0: 1, 1: 1, 2: 1, 3: 1, 5: 1})
    assert Nd2Acquisition("gap.nd2", handle=fake).n_timepoints == 2  # frame 4 has no data
    fake = FakeND2({"T": 4, "Y": 4, "X": 5}, 4)
    fake.experiment = [types.SimpleNamespace(count=2), types.SimpleNamespace(count=2)]
    fake.sizes = {"T": 2, "Y": 4, "X": 5}
    with pytest.raises(InvalidAcquisitionError, match="loop structure"):
        Nd2Acquisition("odd.nd2", handle=fake)


def test_complete_timepoints_follows_loop_order():
    # positions outermost: t=0 is complete only once the last position has started
    assert complete_timepoints("PTZ", (2, 4, 3), 13) == 0
    assert complete_timepoints("PTZ", (2, 4, 3), 15) == 1
    assert complete_timepoints("TPZ", (4, 2, 3), 24) == 4
    assert complete_timepoints("Z", (3,), 3) == 1


def test_nd2_refuses_rgb():
    fake = FakeND2({"T": 2, "Y": 4, "X": 5, "S": 3}, 2)
    fake.attributes.componentCount = 3
    with pytest.raises(InvalidAcquisitionError, match="RGB"):
        Nd2Acquisition("rgb.nd2", handle=fake)


# --------------------------------------------------------------------------- TIFF layouts
def test_ome_tiff_multi_series(tmp_path):
    data = write_ome(tmp_path / "exp.ome.tif")
    with open_acquisition(tmp_path / "exp.ome.tif") as acq:
        assert (acq.name, acq.format, acq.reader) == ("exp", "ome-tiff", "tifffile")
        assert (acq.n_positions, acq.n_timepoints, acq.n_z, acq.shape_yx) == (3, 4, 1, (12, 14))
        assert acq.channels == ["phase", "gfp"] and not acq.metadata["names_missing"]
        assert acq.pixel_size_um == pytest.approx(0.065)
        for p in range(3):
            for t in range(4):
                for c in range(2):
                    np.testing.assert_array_equal(acq.read_frame(p, t, c), data[p, t, c])
        np.testing.assert_allclose(acq.times_s(2), [0, 60, 120, 180])
        assert acq.stage_xyz(2) == (1002.0, -50.0, None)
        md = acq.position_metadata(2)
        json.dumps(md, allow_nan=False)
        assert md["missing"] == ["stage_z_um"] and md["z_reduction"] == "none"


def test_imagej_hyperstack_z_reduction_and_streaming(tmp_path, monkeypatch):
    data = write_imagej(tmp_path / "stack_xy00.tif", labels=["phase", "gfp"] * 15)
    with open_acquisition(tmp_path / "stack_xy00.tif") as acq:
        assert acq.format == "imagej-tiff" and acq.name == "stack_xy00"
        assert (acq.n_positions, acq.n_timepoints, acq.n_z) == (1, 3, 5)
        assert acq.channels == ["phase", "gfp"]
        assert acq.pixel_size_um == pytest.approx(0.11) and acq.z_step_um == pytest.approx(0.3)
        np.testing.assert_allclose(acq.times_s(0), [0, 120, 240])
        calls = []
        for cls in (tifffile.TiffPage, tifffile.TiffFrame):
            original = cls.asarray
            monkeypatch.setattr(cls, "asarray", lambda self, *a, _o=original, **k:
                                calls.append(1) or _o(self, *a, **k))
        np.testing.assert_array_equal(acq.read_frame(0, 2, 1, z=3), data[2, 3, 1])
        assert len(calls) == 1
        np.testing.assert_array_equal(acq.read_frame(0, 1, 0), data[1, :, 0].max(axis=0))
        assert len(calls) == 6
        assert acq.position_metadata(0, z=2)["z_reduction"] == "plane 2"
        assert acq.stage_xyz(0) == (None, None, None)


def test_plain_tiffs(tmp_path, shared_data):
    img = write_plane(tmp_path / "single.tif")
    with open_acquisition(tmp_path / "single.tif") as acq:
        assert (acq.format, acq.n_timepoints, acq.channels) == ("tiff", 1, ["c0"])
        assert acq.pixel_size_um is None and np.isnan(acq.times_s(0)).all()
        np.testing.assert_array_equal(acq.read_frame(0, 0, 0), img)
    tifffile.imwrite(tmp_path / "shaped.tif", np.zeros((3, 2, 5, 6), np.uint16),
                     metadata={"axes": "TCYX"})
    with open_acquisition(tmp_path / "shaped.tif") as acq:
        assert (acq.n_timepoints, acq.n_channels) == (3, 2)
    with open_acquisition(shared_data / "chamber_stack" / "example_stack.tiff") as acq:
        assert (acq.n_timepoints, acq.shape_yx) == (10, (256, 256))
        assert acq.metadata["axes_assumed"]


# --------------------------------------------------------------------------- sequences and growth
def test_sequence_discovery_reading_and_growth(tmp_path):
    frames = write_sequence(tmp_path / "run1", n_t=2, n_p=2, n_c=2)
    (sources,) = [find_acquisitions(tmp_path)]
    assert len(sources) == 1
    src = sources[0]
    assert (src.name, src.format, src.key, len(src.files)) == ("run1", "tiff-sequence", "run1/", 8)
    sig = src.signature()
    assert sig["n_files"] == 8 and sig["size_bytes"] > 0
    with open_acquisition(src) as acq:
        assert (acq.n_positions, acq.n_timepoints, acq.channels, acq.n_z) == (2, 2, ["c0", "c1"], 1)
        assert acq.metadata["names_missing"]
        np.testing.assert_array_equal(acq.read_frame(1, 1, 0), frames[1, 1, 0])
        assert np.isnan(acq.times_s(0)).all()
        assert len(acq.position_metadata(1)["source_files"]) == 4
    # a new timepoint with one channel missing is not counted; an empty file is not a frame
    for p in range(2):
        write_plane(tmp_path / "run1" / f"t002xy{p:02d}c0.tif")
    (tmp_path / "run1" / "t002xy00c1.tif").touch()
    src2 = find_acquisitions(tmp_path)[0]
    assert src2.signature() != sig
    with open_acquisition(src2) as acq:
        assert acq.n_timepoints == 2
    for p in range(2):
        write_plane(tmp_path / "run1" / f"t002xy{p:02d}c1.tif")
    with open_acquisition(find_acquisitions(tmp_path)[0]) as acq:
        assert acq.n_timepoints == 3 and acq.metadata["n_files"] == 12


def test_sequence_prefixes_and_stacks_that_match_the_pattern(tmp_path):
    write_sequence(tmp_path, n_t=1, n_p=1, n_c=2, prefix="exp1_")
    write_sequence(tmp_path, n_t=2, n_p=1, n_c=1, prefix="exp2_")
    tifffile.imwrite(tmp_path / "stk_t000xy00c0.tif", np.zeros((4, 5, 6), np.uint16),
                    photometric="minisblack", metadata={"axes": "TYX"})
    write_plane(tmp_path / "lonely.tif")
    sources = {s.name: s for s in find_acquisitions(tmp_path)}
    assert set(sources) == {"exp1", "exp2", "stk_t000xy00c0", "lonely"}
    assert sources["exp1"].key == "./exp1" and sources["exp2"].format == "tiff-sequence"
    assert sources["stk_t000xy00c0"].format == "tiff"
    with open_acquisition(tmp_path / "exp2_t001xy00c0.tif") as acq:  # a member opens its sequence
        assert acq.name == "exp2" and acq.n_timepoints == 2
    with open_acquisition(sources["stk_t000xy00c0"]) as acq:
        assert acq.n_timepoints == 4


def test_sequence_channels_keep_the_file_numbers(tmp_path):
    """Files ...c1.tif and ...c2.tif are channels c1 and c2 (not c0 and c1)."""
    frames = {}
    for t in range(2):
        for c in (1, 2):
            frames[t, c] = write_plane(tmp_path / f"t{t:03d}xy01c{c}.tif")
    with open_acquisition(find_acquisitions(tmp_path)[0]) as acq:
        assert acq.channels == ["c1", "c2"] and acq.metadata["names_missing"]
        assert acq.metadata["channel_labels"] == ["1", "2"]
        np.testing.assert_array_equal(acq.read_frame(0, 1, "c2"), frames[1, 2])
        np.testing.assert_array_equal(acq.read_frame(0, 0, "c1"), frames[0, 1])
        assert "channels" in acq.position_metadata(0)["missing"]


def test_sequence_pattern_is_configurable(tmp_path):
    for t in range(3):
        for ch in ("phase", "gfp"):
            write_plane(tmp_path / f"img_{t}_{ch}.tif")
    pattern = r"img_(?P<t>\d+)_(?P<channel>[a-z]+)\.tif"
    (src,) = find_acquisitions(tmp_path, sequence_pattern=pattern)
    with open_acquisition(src) as acq:
        assert acq.channels == ["gfp", "phase"] and acq.n_positions == 1 and acq.n_timepoints == 3
    assert len(find_acquisitions(tmp_path, sequence_pattern=None)) == 6
    with pytest.raises(ValueError, match="group 't'"):
        find_acquisitions(tmp_path, sequence_pattern=r"img_(?P<x>\d+)")
    assert DEFAULT_SEQUENCE_PATTERN.startswith("(?i)")


def test_find_acquisitions_names_keys_and_signature(tmp_path):
    write_ome(tmp_path / "a.ome.tif", n_pos=1)
    (tmp_path / "sub").mkdir()
    write_imagej(tmp_path / "sub" / "b.tiff")
    (tmp_path / ".hidden").mkdir()
    write_plane(tmp_path / ".hidden" / "x.tif")
    (tmp_path / "notes.txt").write_text("ignored")
    sources = find_acquisitions(tmp_path)
    assert [(s.key, s.name, s.format) for s in sources] == [
        ("a.ome.tif", "a", "ome-tiff"), ("sub/b.tiff", "b", "imagej-tiff")]
    sig = sources[1].signature()
    with open(tmp_path / "sub" / "b.tiff", "ab") as fh:
        fh.write(b"\0" * 10)
    assert sources[1].signature()["size_bytes"] == sig["size_bytes"] + 10
    assert [s.key for s in find_acquisitions(tmp_path, recursive=False)] == ["a.ome.tif"]


# --------------------------------------------------------------------------- bad input
def _bad_files(tmp_path):
    good = tmp_path / "good.tif"
    write_imagej(good, shape=(2, 1, 1, 32, 32))
    raw = good.read_bytes()
    cases = {
        "empty.nd2": (b"", "empty"),
        "empty.tif": (b"", "empty"),
        "truncated.tif": (raw[: len(raw) // 2], "truncated|corrupt"),
        "text.tif": (b"this is not an image\n" * 20, "not a readable TIFF"),
        "text.nd2": (b"this is not an image\n" * 20, "not a readable ND2"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    tifffile.imwrite(tmp_path / "oned.tif", np.arange(12, dtype=np.uint16))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "qq.tif", np.zeros((2, 3, 8, 9), np.uint8),
                     photometric="minisblack")
    cases.update({"oned.tif": (None, "need Y and X"), "rgb.tif": (None, "RGB"),
                  "qq.tif": (None, "unsupported axes")})
    return {name: reason for name, (_, reason) in cases.items()}


def test_bad_input_raises_invalid_acquisition(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(InvalidAcquisitionError, match=reason) as info:
            open_acquisition(tmp_path / name).close()
        assert str(info.value).startswith(str(tmp_path / name) + ": "), info.value


def test_bad_sequence_member_and_backend_mismatch(tmp_path):
    write_sequence(tmp_path / "s", n_t=2, n_p=1, n_c=1)
    (tmp_path / "s" / "t001xy00c0.tif").write_bytes(b"garbage" * 10)
    with open_acquisition(tmp_path / "s") as acq:
        with pytest.raises(InvalidAcquisitionError, match="t001xy00c0.tif"):
            acq.read_frame(0, 1, 0)
    with pytest.raises(ValueError, match="backend"):
        open_acquisition(tmp_path / "s", backend="nd2")
    with pytest.raises(InvalidAcquisitionError, match="not found"):
        open_acquisition(AcquisitionSource("x", "nd2", [tmp_path / "missing.nd2"], "missing.nd2"))


def test_zero_length_axis(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 8, 9), np.uint8))
    with pytest.raises(InvalidAcquisitionError, match="zero-length"):
        open_acquisition(tmp_path / "zero.tif")
    assert os.path.getsize(tmp_path / "zero.tif") > 0
