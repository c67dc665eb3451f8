"""Incremental reruns: only what is new, changed or stale is recomputed."""
import json
import os
import time

import numpy as np
import pytest

from batchlib.io import create_dataset, open_file, read_table
from batchlib.records import read_record
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs, write_array_file
from batchlib.workflow import run_workflow

N = 4


def run(folder, inp, jobs=None, ext=".h5", **kwargs):
    jobs = jobs if jobs is not None else [ImportArray(output_ext=ext), ScaleRaw()]
    kwargs.setdefault("progress", False)
    return run_workflow("WF", folder, jobs, input_folder=inp, **kwargs)


def computed(result):
    return {job.name: sorted(job.computed) for job in result.jobs}


def job_status(folder, name):
    with open(os.path.join(folder, "batchlib", f"{name}.status")) as f:
        return json.load(f)


def output_mtimes(folder):
    """mtime_ns of every file of every container (n5 containers are directories)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "batchlib" or root != str(folder)]
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, folder)] = os.stat(p).st_mtime_ns
    return out


def stems(n, start=0):
    return [f"im{i:06d}" for i in range(start, start + n)]


@pytest.fixture(params=[".h5", ".n5"])
def ext(request):
    return request.param


@pytest.fixture
def setup(tmp_path, ext):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, N)
    first = run(folder, inp, ext=ext)
    assert first.success and first.exit_code == 0
    assert computed(first) == {"ImportArray": [s + ".npy" for s in stems(N)],
                               "ScaleRaw": [s + ext for s in stems(N)]}
    return inp, folder, arrays


def check_outputs(folder, arrays, ext, factor=2.0):
    for stem, data in arrays.items():
        with open_file(os.path.join(folder, stem + ext), "r") as f:
            np.testing.assert_array_equal(f["raw"][:], data)
            np.testing.assert_allclose(f["scaled"][:], data.astype("float32") * factor)
            table = read_table(f, "tables/sums")
            np.testing.assert_allclose(table["sum"], (data.astype("float32") * factor).sum(axis=(1, 2)))


def test_first_run_then_nothing_to_do(setup, ext):
    inp, folder, arrays = setup
    check_outputs(folder, arrays, ext)
    for name in ("ImportArray", "ScaleRaw"):
        st = job_status(folder, name)
        assert st["state"] == "processed"
        assert st["counts"]["done"] == N and st["counts"]["computed_this_run"] == N
    before = output_mtimes(folder)
    assert len(before) >= N

    second = run(folder, inp, ext=ext)
    assert second.success
    assert computed(second) == {"ImportArray": [], "ScaleRaw": []}
    for name in ("ImportArray", "ScaleRaw"):
        st = job_status(folder, name)
        assert st["state"] == "processed"
        assert st["counts"]["done"] == N and st["counts"]["total"] == N
        assert st["counts"]["computed_this_run"] == 0
        assert not any(e.get("this_run") for e in st["files"].values())
    assert output_mtimes(folder) == before  # not a byte rewritten


def test_new_inputs_only(setup, ext):
    inp, folder, arrays = setup
    arrays.update(make_array_inputs(inp, 2, start=N, seed=7))
    res = run(folder, inp, ext=ext)
    assert computed(res) == {"ImportArray": [s + ".npy" for s in stems(2, N)],
                             "ScaleRaw": [s + ext for s in stems(2, N)]}
    assert job_status(folder, "ImportArray")["counts"]["computed_this_run"] == 2
    check_outputs(folder, arrays, ext)


def test_changed_input_reprocesses_it_and_downstream(setup, ext):
    inp, folder, arrays = setup
    stem = stems(N)[1]
    arrays[stem] = arrays[stem] + 1
    write_array_file(os.path.join(inp, stem + ".npy"), arrays[stem])
    res = run(folder, inp, ext=ext)
    assert computed(res) == {"ImportArray": [stem + ".npy"], "ScaleRaw": [stem + ext]}
    check_outputs(folder, arrays, ext)

    # Touching (a newer mtime, same bytes) also counts as a change by default.
    path = os.path.join(inp, stems(N)[2] + ".npy")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = run(folder, inp, ext=ext)
    assert computed(res) == {"ImportArray": [stems(N)[2] + ".npy"], "ScaleRaw": [stems(N)[2] + ext]}


def test_parameter_change_reprocesses(setup, ext):
    inp, folder, arrays = setup
    res = run(folder, inp, [ImportArray(output_ext=ext), ScaleRaw(factor=3.0)])
    assert computed(res) == {"ImportArray": [], "ScaleRaw": [s + ext for s in stems(N)]}
    check_outputs(folder, arrays, ext, factor=3.0)
    assert job_status(folder, "ScaleRaw")["files"][stems(N)[0] + ext]["record"]["param_hash"] \
        == ScaleRaw(factor=3.0).param_hash
    # Options that do not affect the result (affects_result=False) change nothing.
    res = run(folder, inp, [ImportArray(output_ext=ext, sleep_s=0.001), ScaleRaw(factor=3.0, fail_on="zz")])
    assert computed(res) == {"ImportArray": [], "ScaleRaw": []}


def test_force_recompute(setup, ext):
    inp, folder, arrays = setup
    res = run(folder, inp, ext=ext, force_recompute=True)
    assert computed(res) == {"ImportArray": [s + ".npy" for s in stems(N)],
                             "ScaleRaw": [s + ext for s in stems(N)]}
    check_outputs(folder, arrays, ext)
    assert computed(run(folder, inp, ext=ext)) == {"ImportArray": [], "ScaleRaw": []}


def test_mtime_trigger(setup, ext):
    inp, folder, arrays = setup
    triggers = ("mtime",)
    # A parameter change alone does not make outputs stale in mtime mode ...
    res = run(folder, inp, [ImportArray(output_ext=ext), ScaleRaw(factor=5.0)], rerun_triggers=triggers)
    assert computed(res) == {"ImportArray": [], "ScaleRaw": []}
    check_outputs(folder, arrays, ext, factor=2.0)
    # ... an input newer than its output does.
    path = os.path.join(inp, stems(N)[3] + ".npy")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3600 * 10**9))
    res = run(folder, inp, [ImportArray(output_ext=ext), ScaleRaw(factor=5.0)], rerun_triggers=triggers)
    assert computed(res) == {"ImportArray": [stems(N)[3] + ".npy"], "ScaleRaw": [stems(N)[3] + ext]}
    with open_file(os.path.join(folder, stems(N)[3] + ext), "r") as f:
        np.testing.assert_allclose(f["scaled"][:], arrays[stems(N)[3]] * 5.0)


def test_version_bump_reprocesses(setup, ext):
    inp, folder, arrays = setup
    job = ScaleRaw()
    job.version = "2"
    res = run(folder, inp, [ImportArray(output_ext=ext), job])
    assert computed(res) == {"ImportArray": [], "ScaleRaw": [s + ext for s in stems(N)]}
    rec = read_record(os.path.join(folder, stems(N)[0] + ext), "ScaleRaw")
    assert rec["version"] == "2"
    imp = ImportArray(output_ext=ext)
    imp.version = "7"
    res = run(folder, inp, [imp, job])
    assert computed(res) == {"ImportArray": [s + ".npy" for s in stems(N)],
                             "ScaleRaw": [s + ext for s in stems(N)]}


@pytest.mark.parametrize("ext", [".h5"])
def test_hash_inputs(tmp_path, ext):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 3)
    jobs = lambda: [ImportArray(output_ext=ext, hash_inputs=True), ScaleRaw()]  # noqa: E731
    assert len(run(folder, inp, jobs()).jobs[0].computed) == 3
    sig = job_status(folder, "ImportArray")["files"][stems(3)[0] + ".npy"]["input_signature"]
    assert "blake2b" in sig[stems(3)[0] + ".npy"]
    # Touch without changing the bytes: nothing to do.
    for stem in stems(3):
        path = os.path.join(inp, stem + ".npy")
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    res = run(folder, inp, jobs())
    assert computed(res) == {"ImportArray": [], "ScaleRaw": []}
    # Same size, other bytes: recomputed.
    stem = stems(3)[0]
    arrays[stem] = arrays[stem][::-1].copy()
    write_array_file(os.path.join(inp, stem + ".npy"), arrays[stem])
    res = run(folder, inp, jobs())
    assert computed(res) == {"ImportArray": [stem + ".npy"], "ScaleRaw": [stem + ext]}
    check_outputs(folder, arrays, ext)
    # Without hashing a touch is a change again.
    path = os.path.join(inp, stems(3)[1] + ".npy")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    res = run(folder, inp, [ImportArray(output_ext=ext), ScaleRaw()])
    assert stems(3)[1] + ".npy" in res.jobs[0].computed


def test_rewrite_output_with_another_shape(setup, ext):
    inp, folder, arrays = setup
    # New input shape: the container is rebuilt with the new shapes.
    stem = stems(N)[0]
    arrays[stem] = np.arange(5 * 6 * 7, dtype="uint16").reshape(5, 6, 7)
    write_array_file(os.path.join(inp, stem + ".npy"), arrays[stem])
    res = run(folder, inp, ext=ext)
    assert computed(res) == {"ImportArray": [stem + ".npy"], "ScaleRaw": [stem + ext]}
    check_outputs(folder, arrays, ext)
    # In place: the on-container job overwrites "scaled" and its table with other shapes.
    stem = stems(N)[1]
    path = os.path.join(folder, stem + ext)
    arrays[stem] = np.ones((2, 3, 4), dtype="uint16")
    with open_file(path, "a") as f:
        create_dataset(f, "raw", data=arrays[stem])  # replaces a (3, 8, 8) dataset
    res = run(folder, inp, [ScaleRaw()], force_recompute=True)
    assert res.success and stem + ext in res.jobs[0].computed
    with open_file(path, "r") as f:
        assert f["scaled"].shape == (2, 3, 4)
        assert len(read_table(f, "tables/sums")) == 2


@pytest.mark.parametrize("triggers", [("mtime",), ("input", "params", "version", "mtime")])
def test_mtime_trigger_with_jobs_downstream_on_the_same_containers(tmp_path, ext, triggers):
    """A job downstream writing later into a container is not an input of the jobs before it:
    with ScaleRaw -> SumScaled on the containers, a rerun computes nothing (it recomputed
    ScaleRaw, then SumScaled, on every run, as SumScaled's record was newer than ScaleRaw's)."""
    from batchlib.testing import SumScaled

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 2)
    jobs = lambda: [ImportArray(output_ext=ext), ScaleRaw(), SumScaled()]  # noqa: E731
    all_of = {"ImportArray": [s + ".npy" for s in stems(2)], "ScaleRaw": [s + ext for s in stems(2)],
              "SumScaled": [s + ext for s in stems(2)]}
    none = {"ImportArray": [], "ScaleRaw": [], "SumScaled": []}
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == all_of
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == none
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == none
    # The upstream input rewritten (newer than every record): all three recompute that
    # image, once.
    stem = stems(2)[1]
    path = os.path.join(inp, stem + ".npy")
    arrays[stem] = arrays[stem] + 1
    write_array_file(path, arrays[stem])
    os.utime(path, ns=(time.time_ns(), time.time_ns()))  # not a coarse file-system clock's
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == {
        "ImportArray": [stem + ".npy"], "ScaleRaw": [stem + ext], "SumScaled": [stem + ext]}
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == none
    check_outputs(folder, arrays, ext)
    # A job in the middle rerun (forced) is newer than what reads it: SumScaled follows, only it.
    res = run(folder, inp, [ScaleRaw()], rerun_triggers=triggers, force_recompute=True)
    assert sorted(res.jobs[0].computed) == all_of["ScaleRaw"]
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == {
        "ImportArray": [], "ScaleRaw": [], "SumScaled": all_of["SumScaled"]}
    assert computed(run(folder, inp, jobs(), rerun_triggers=triggers)) == none
    with open_file(os.path.join(folder, stem + ext), "r") as f:
        assert read_table(f, "tables/total")["total"][0] == pytest.approx(arrays[stem].sum() * 2.0)
