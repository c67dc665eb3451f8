"""Container I/O: h5, n5 and zarr give the same results."""
import os

import numpy as np
import pandas as pd
import pytest

from batchlib.io import (COMPRESSIONS, container_format, create_dataset, grow_dataset, image_attrs,
                         open_file, read_attrs, read_image, read_table, write_attrs, write_image,
                         write_table)
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow

EXTS = [".h5", ".n5", ".zarr"]


@pytest.fixture(params=EXTS)
def container(request, tmp_path):
    with open_file(tmp_path / f"c{request.param}", "a") as f:
        yield f


def test_h5_and_n5_workflows_agree(tmp_path):
    inp = str(tmp_path / "in")
    arrays = make_array_inputs(inp, 3, shape=(4, 12, 10), dtype="uint16")
    for ext in (".h5", ".n5"):
        res = run_workflow("WF", str(tmp_path / ext[1:]), [ImportArray(output_ext=ext), ScaleRaw(factor=0.5)],
                           input_folder=inp, progress=False)
        assert res.success and len(res.jobs[1].computed) == 3
    for stem, data in arrays.items():
        with open_file(tmp_path / "h5" / f"{stem}.h5", "r") as a, open_file(tmp_path / "n5" / f"{stem}.n5", "r") as b:
            for key in ("raw", "scaled"):
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
                np.testing.assert_array_equal(a[key][:], b[key][:])
            np.testing.assert_array_equal(a["raw"][:], data)
            ta, tb = read_table(a, "tables/sums"), read_table(b, "tables/sums")
            assert ta["name"].str.replace(".h5", "").tolist() == tb["name"].str.replace(".n5", "").tolist()
            pd.testing.assert_frame_equal(ta.drop(columns="name"), tb.drop(columns="name"))
            assert read_attrs(a["batchlib/ScaleRaw"])["record"]["param_hash"] == \
                read_attrs(b["batchlib/ScaleRaw"])["record"]["param_hash"]


def full_table():
    ints = {f"{k}{bits}": pd.Series(np.array([np.iinfo(f"{k}{bits}").min, 0, 1, np.iinfo(f"{k}{bits}").max],
                                             dtype=f"{k}{bits}"))
            for k in ("int", "uint") for bits in (8, 16, 32, 64)}
    return pd.DataFrame({
        **ints,
        "float32": np.array([1.5, -0.0, np.nan, np.inf], dtype="float32"),
        "float64": np.array([np.pi, -1e300, np.nan, -np.inf]),
        "bool": [True, False, True, False],
        "str": pd.Series(["a", "ünïcödé ✓ 顕微鏡", None, ""]),
        "obj": pd.Series(["x", None, "🦠 cell", "long " * 50], dtype=object),
        "ns": pd.Series(np.array(["2024-01-01T00:00:00.123456789", "1970-01-01", "NaT",
                                  "2262-04-11T23:47:16.854775807"], dtype="datetime64[ns]")),
        "us": pd.to_datetime(["2024-05-06 07:08:09.123456", "2000-01-01", None, "1900-01-01"],
                             format="ISO8601"),
        "s": pd.Series(np.array(["2024-01-01T00:00:01", "NaT", "1969-12-31T23:59:59", "2030-06-01"],
                                dtype="datetime64[s]")),
    })


def test_table_round_trip(container):
    table = full_table()
    write_table(container, "tables/t", table)
    back = read_table(container, "tables/t")
    pd.testing.assert_frame_equal(back, table, check_exact=True)
    for col in table.columns:
        assert back[col].dtype == table[col].dtype, col
    assert back["obj"][1] is None and back["ns"][0] == table["ns"][0]
    assert back["ns"][0].nanosecond == 789
    # Some columns, in the order asked for.
    pd.testing.assert_frame_equal(read_table(container, "tables/t", columns=["str", "int8"]),
                                  table[["str", "int8"]])
    # Rewriting replaces the table (fewer rows, other columns).
    small = pd.DataFrame({"only": np.arange(2, dtype="int16")})
    write_table(container, "tables/t", small)
    pd.testing.assert_frame_equal(read_table(container, "tables/t"), small)


def test_empty_table_round_trip(container):
    empty = pd.DataFrame({"i": pd.Series([], dtype="int32"), "f": pd.Series([], dtype="float64"),
                          "b": pd.Series([], dtype=bool), "s": pd.Series([], dtype=object),
                          "t": pd.Series([], dtype="datetime64[ns]")})
    write_table(container, "empty", empty)
    back = read_table(container, "empty")
    assert len(back) == 0 and list(back.columns) == list(empty.columns)
    pd.testing.assert_frame_equal(back, empty)
    write_table(container, "nocols", pd.DataFrame())
    assert read_table(container, "nocols").shape == (0, 0)


def test_table_errors(container):
    with pytest.raises(ValueError):
        write_table(container, "bad", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(ValueError):
        write_table(container, "bad", pd.DataFrame({"a/b": [1]}))
    with pytest.raises(KeyError):
        read_table(container, "nope")
    create_dataset(container, "plain", data=np.zeros(3))
    container.require_group("grp")
    with pytest.raises(ValueError):
        read_table(container, "grp")


def test_table_from_numpy_columns(container):
    """A mapping of numeric and bool arrays is written as the same DataFrame would be."""
    cols = {"t": np.arange(4, dtype=np.int64), "time_s": np.array([0.0, 1.5, np.nan, 4.0]),
            "ok": np.array([True, False, True, True]), "u": np.arange(4, dtype=np.uint16)}
    write_table(container, "from_arrays", cols)
    write_table(container, "from_frame", pd.DataFrame(cols))
    back = read_table(container, "from_arrays")
    pd.testing.assert_frame_equal(back, read_table(container, "from_frame"), check_exact=True)
    assert read_attrs(container["from_arrays"]) == read_attrs(container["from_frame"])
    write_table(container, "none", {})
    assert read_table(container, "none").shape == (0, 0)
    # strings and datetimes need a DataFrame; ragged columns are refused; a refused
    # table leaves the old one in place
    for bad, err in (({"s": np.array(["a", "b"])}, TypeError),
                     ({"a": np.arange(3), "b": np.arange(2)}, ValueError),
                     ({"a": np.zeros((2, 2))}, ValueError)):
        with pytest.raises(err, match="from_arrays"):
            write_table(container, "from_arrays", bad)
        pd.testing.assert_frame_equal(read_table(container, "from_arrays"), back)


def test_ingest_does_not_import_pandas(tmp_path):
    """Ingest writes its one table from numpy columns: pandas was 0.3 s of its 2 s run
    (4 positions x 60 frames x 2 channels x 1024^2, benchmarks/bench_perf.py --rows ingest)."""
    import subprocess
    import sys

    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    write_acquisition(tmp_path / "raw", SyntheticConfig(height=256, width=256, n_timepoints=2, n_positions=1),
                      layout="ome-tiff", name="a", ground_truth=False)
    code = ("import sys; from batchlib.trench.jobs import Ingest; "
            f"r = Ingest()({str(tmp_path / 'out')!r}, input_folder={str(tmp_path / 'raw')!r}, "
            "progress=False); assert r.success, r.state; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
    assert len(list((tmp_path / "out").glob("*.h5"))) == 1


@pytest.mark.parametrize("ext", [".h5", ".n5"])
def test_image_pyramid(tmp_path, ext):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4000, size=(2, 256, 200)).astype("uint16")
    labels = rng.integers(0, 5, size=(256, 200)).astype("uint32")
    with open_file(tmp_path / f"img{ext}", "a") as f:
        write_image(f, "images/phase", image, resolution=(0.065, 0.065), unit="micrometer")
        write_image(f, "images/labels", labels, is_label=True, n_scales=2, visible=False)
        write_image(f, "images/square", image[0, :, :128].repeat(2, axis=1))  # 256 x 256
    with open_file(tmp_path / f"img{ext}", "r") as f:
        group = f["images/phase"]
        # Halved while Y and X stay >= 64 pixels: 200 -> 100 (-> 50 would be too small).
        assert sorted(group.keys()) == ["s0", "s1"]
        assert [group[f"s{i}"].shape for i in range(2)] == [(2, 256, 200), (2, 128, 100)]
        assert group["s0"].chunks == (1, 256, 200)
        np.testing.assert_array_equal(read_image(f, "images/phase"), image)
        s1 = image.reshape(2, 128, 2, 100, 2).mean(axis=(2, 4)).astype("uint16")
        np.testing.assert_array_equal(read_image(f, "images/phase", scale=1), s1)
        np.testing.assert_array_equal(read_image(f, "images/phase", scale=0, roi=np.s_[1, :5, 3:9]),
                                      image[1, :5, 3:9])
        attrs = image_attrs(f, "images/phase")
        assert attrs["multiScale"] is True and attrs["downsamplingFactors"] == [[1, 1], [2, 2]]
        assert attrs["resolution"] == [0.065, 0.065] and attrs["unit"] == "micrometer"
        assert attrs["visible"] is True and attrs["isLabel"] is False
        lo, hi = attrs["contrastLimits"]
        assert 0 <= lo < hi <= 4000
        square = f["images/square"]
        assert [square[k].shape for k in sorted(square.keys())] == [(256, 256), (128, 128), (64, 64)]
        assert image_attrs(f, "images/square")["downsamplingFactors"] == [[1, 1], [2, 2], [4, 4]]
        lab = image_attrs(f, "images/labels")
        assert lab["isLabel"] is True and lab["visible"] is False
        np.testing.assert_array_equal(read_image(f, "images/labels", scale=1), labels[::2, ::2])
        with pytest.raises(KeyError):
            read_image(f, "images/phase", scale=2)


def chunk_mtimes(ds_dir):
    out = {}
    for root, _, files in os.walk(ds_dir):
        for name in files:
            if name not in ("attributes.json", ".zarray", ".zattrs"):
                p = os.path.join(root, name)
                out[os.path.relpath(p, ds_dir)] = os.stat(p).st_mtime_ns
    return out


@pytest.mark.parametrize("ext", EXTS)
def test_grow_dataset_keeps_existing_frames(tmp_path, ext):
    frames = np.arange(5 * 6 * 7, dtype="uint16").reshape(5, 6, 7)
    path = tmp_path / f"g{ext}"
    with open_file(path, "a") as f:
        ds = create_dataset(f, "raw/phase", shape=(3, 6, 7), dtype="uint16", chunks=(1, 6, 7), growable=True)
        for t in range(3):
            ds[t] = frames[t]
    before = chunk_mtimes(path / "raw" / "phase") if ext != ".h5" else None
    if before is not None:
        assert len(before) == 3
    with open_file(path, "a") as f:
        ds = grow_dataset(f, "raw/phase", 5)
        assert ds.shape == (5, 6, 7)
        for t in (3, 4):
            ds[t] = frames[t]
    if before is not None:
        after = chunk_mtimes(path / "raw" / "phase")
        assert {k: after[k] for k in before} == before  # old chunk files not rewritten
        assert len(after) == 5
    with open_file(path, "r") as f:
        np.testing.assert_array_equal(f["raw/phase"][:], frames)


@pytest.mark.parametrize("ext", [".h5", ".n5"])
def test_grow_dataset_other_axis(tmp_path, ext):
    data = np.arange(4 * 6, dtype="float32").reshape(4, 6)
    with open_file(tmp_path / f"a{ext}", "a") as f:
        ds = create_dataset(f, "x", data=data[:, :3], chunks=(4, 1), growable=1)
        ds = grow_dataset(f, "x", 6, axis=1)
        ds[:, 3:] = data[:, 3:]
    with open_file(tmp_path / f"a{ext}", "r") as f:
        np.testing.assert_array_equal(f["x"][:], data)


NESTED = {"int": 3, "float": 2.5, "str": "ünï", "bool": True, "none": None, "list": [1, 2.5, "x", None],
          "dict": {"a": {"b": [1, {"c": None}]}, "empty": {}}, "np": np.int64(7), "npf": np.float32(0.5),
          "array": np.arange(3)}


def test_attrs_round_trip(container):
    group = container.require_group("g")
    write_attrs(group, NESTED)
    back = read_attrs(group)
    expected = dict(NESTED, np=7, npf=0.5, array=[0, 1, 2])
    assert {k: back[k] for k in expected} == expected
    assert isinstance(back["np"], int) and isinstance(back["bool"], bool)
    write_attrs(container, {"top": {"x": [1]}})
    assert read_attrs(container)["top"] == {"x": [1]}


@pytest.mark.parametrize("compression", COMPRESSIONS + ("default",))
def test_create_dataset_replaces_and_compresses(container, compression):
    create_dataset(container, "d", data=np.zeros((3, 4), dtype="uint8"), compression=compression)
    data = np.random.default_rng(0).integers(0, 60000, size=(5, 6, 7)).astype("uint16")
    create_dataset(container, "d", data=data, compression=compression)  # other shape and dtype
    assert container["d"].shape == (5, 6, 7) and container["d"].dtype == np.uint16
    np.testing.assert_array_equal(container["d"][:], data)


def test_container_helpers(tmp_path):
    assert [container_format(f"x{e}") for e in (".h5", ".hdf5", ".n5", ".zarr", ".N5")] == \
        ["h5", "h5", "n5", "zarr", "n5"]
    assert container_format(str(tmp_path / "dir.n5") + "/") == "n5"
    with pytest.raises(ValueError):
        container_format("x.tif")
    with pytest.raises(FileNotFoundError):
        open_file(tmp_path / "missing.n5", "r")
    with pytest.raises(OSError):
        open_file(tmp_path / "missing.h5", "r")


def test_a_fresh_process_reads_compressed_h5(tmp_path):
    """Workers are spawned: reading must register the compression filters itself."""
    import subprocess
    import sys

    path = tmp_path / "c.h5"
    with open_file(path, "w") as f:
        create_dataset(f, "x", data=np.arange(1000, dtype=np.uint16).reshape(10, 100))
    code = ("from batchlib.io import open_file; import numpy as np; "
            f"f = open_file({str(path)!r}, 'r'); print(int(f['x'][:].sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == sum(range(1000))


@pytest.mark.parametrize("ext,compression,direct", [(".h5", "blosc-lz4", True), (".h5", "blosc-zstd", True),
                                                    (".h5", "gzip", False), (".n5", "blosc-lz4", False)])
def test_stream_frames_writes_exactly_what_it_reads(tmp_path, ext, compression, direct):
    from batchlib.io.frames import _direct_compressor, stream_frames

    rng = np.random.default_rng(1)
    movie = rng.poisson(200, (2, 7, 33, 40)).astype(np.uint16)  # C, T, Y, X
    reads = []

    def read(t, c):
        reads.append((t, c))
        return movie[c, t]

    with open_file(tmp_path / f"m{ext}", "a") as f:
        dss = [create_dataset(f, f"raw/{c}", shape=(7, 33, 40), dtype=np.uint16, chunks=(1, 33, 40),
                              growable=True, compression=compression) for c in range(2)]
        assert (_direct_compressor(dss[0]) is not None) == direct
        order = [(t, c) for t in range(7) for c in range(2)]
        stream_frames(dss, read, order, window=3)
        assert reads == order  # read once each, in order, by one thread
    with open_file(tmp_path / f"m{ext}", "r") as f:  # a fresh handle: through the HDF5 filters
        for c in range(2):
            np.testing.assert_array_equal(f[f"raw/{c}"][:], movie[c])


def test_content_hash_keeps_the_recorded_digest(tmp_path):
    """Input signatures and folder-output records store this digest: its meaning must not change."""
    import hashlib

    from batchlib.io.checksum import content_hash

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"world")
    (tmp_path / "d" / "a").write_bytes(b"hello ")
    expected = hashlib.blake2b(b"hello world", digest_size=16).hexdigest()
    assert content_hash(tmp_path / "d" / "a") == hashlib.blake2b(b"hello ", digest_size=16).hexdigest()
    assert content_hash(tmp_path / "d") == expected  # files below a directory, sorted
    assert content_hash([tmp_path / "d" / "a", tmp_path / "d" / "b"]) == expected


def test_atomic_path_replaces_on_success_and_leaves_the_old_file_on_failure(tmp_path):
    from batchlib.io.files import atomic_path, is_temporary, remove_leftovers, temporary_pid

    target = tmp_path / "sub" / "t.txt"
    with atomic_path(target) as tmp:
        assert is_temporary(tmp.name) and tmp.suffix == ".txt" and temporary_pid(tmp.name) == os.getpid()
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "new"
    assert sorted(os.listdir(target.parent)) == ["t.txt"]  # no temporary left
    # a directory (n5/zarr) is replaced as a whole
    d = tmp_path / "c.n5"
    for content in ("a", "b"):
        with atomic_path(d) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text(content)
    assert (d / "x").read_text() == "b" and sorted(os.listdir(tmp_path)) == ["c.n5", "sub"]
    # leftovers: a dead writer's temporary goes, a foreign name stays
    (tmp_path / ".t.txt.tmp-999999999-abc.txt").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    assert remove_leftovers(tmp_path) == [".t.txt.tmp-999999999-abc.txt"]
    assert (tmp_path / ".hidden").exists()


def test_dataset_paths_lists_every_dataset_below_the_keys(container):
    from batchlib.io.checksum import dataset_paths, iter_datasets

    for key in ("b/x", "a/z/deep", "a/y", "top"):
        create_dataset(container, key, data=np.zeros(3, np.uint8))
    container.require_group("empty")
    assert dataset_paths(container) == ["a/y", "a/z/deep", "b/x", "top"]
    assert dataset_paths(container, ["a", "top", "missing"]) == ["a/y", "a/z/deep", "top"]
    assert dataset_paths(container, ["/a/z/deep"]) == ["a/z/deep"]
    assert [p for p, ds in iter_datasets(container, ["a"])] == ["a/y", "a/z/deep"]
    assert all(ds.shape == (3,) for _, ds in iter_datasets(container))
