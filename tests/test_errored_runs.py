"""A run that stops before or while planning (an output collision, Ctrl-C, a missing input
folder, invalid inputs) forgets nothing finished: the ``.index`` keeps the row of every
finished input and the ``.status`` counts it done, with the error and its reason."""
import json
import os
import shutil
from pathlib import Path

import pytest

import batchlib.base
import batchlib.container_job
import batchlib.records
from batchlib import planning
from batchlib.errors import JobError, OutputCollisionError
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow

N = 4


def run(folder, inp, **kwargs):
    jobs = [ImportArray(input_pattern="*"), ScaleRaw()]
    return run_workflow("WF", folder, jobs, input_folder=inp, progress=False, **kwargs)


def index_rows(folder, name) -> dict:
    """``{key: (fingerprint, entry)}`` of a job's index."""
    lines = Path(folder, "batchlib", f"{name}.index").read_text().splitlines()[1:]
    rows = {}
    for line in lines:
        key, fp, _, _, entry = line.split("\t", 4)
        rows[json.loads(key)] = (fp, json.loads(entry))
    return rows


def status(folder, name) -> dict:
    return json.loads(Path(folder, "batchlib", f"{name}.status").read_text())


@pytest.fixture
def done(tmp_path):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    assert run(folder, inp).success
    assert [j.computed for j in run(folder, inp).jobs] == [[], []]  # fingerprints stored
    keys = [f"im{i:06d}.npy" for i in range(N)]
    rows = index_rows(folder, "ImportArray")
    assert sorted(rows) == keys and all(fp != "-" and e["state"] == "done" for fp, e in rows.values())
    return inp, folder, keys


def no_open(monkeypatch):
    """Make opening a container fail (a rerun that finds all up to date opens none)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a container was opened")

    for module in (batchlib.base, batchlib.container_job, batchlib.records):
        monkeypatch.setattr(module, "open_file", refuse)


def test_an_output_collision_keeps_the_index_and_status(done, monkeypatch):
    inp, folder, keys = done
    before = Path(folder, "batchlib", "ImportArray.index").read_bytes()
    (inp / "im000001.txt").write_text("not an array")  # would be written to im000001.h5 too
    with pytest.raises(OutputCollisionError) as info:
        run(folder, inp)
    msg = str(info.value)
    assert f"{folder / 'im000001.h5'} <- im000001.npy and im000001.txt" in msg
    # Nothing finished is forgotten: the index is as it was, the status counts all done.
    assert Path(folder, "batchlib", "ImportArray.index").read_bytes() == before
    st = status(folder, "ImportArray")
    assert st["state"] == "errored" and st["error"] == msg
    assert st["counts"]["done"] == N and st["counts"]["total"] == N and st["files"] == {}
    # The collision removed: nothing to do, found from the index without opening a container.
    os.remove(inp / "im000001.txt")
    no_open(monkeypatch)
    res = run(folder, inp)
    assert res.success and [j.computed for j in res.jobs] == [[], []]
    assert res.jobs[0].counts["done"] == N and res.jobs[1].counts["done"] == N


def test_ctrl_c_while_planning_keeps_what_it_did_not_reach(done, monkeypatch):
    inp, folder, keys = done
    shutil.copy(inp / "im000000.npy", inp / "im000002.npy")  # changed inputs: checked
    shutil.copy(inp / "im000000.npy", inp / "im000003.npy")
    real = planning.check_unit

    def interrupted(job, unit, *args):
        if unit.key == "im000003.npy":
            raise KeyboardInterrupt
        return real(job, unit, *args)

    monkeypatch.setattr(planning, "check_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(folder, inp)
    rows = index_rows(folder, "ImportArray")
    # im000002 was found changed before Ctrl-C; im000003 was not reached: as it was.
    assert {k: e["state"] for k, (_, e) in rows.items()} == {
        "im000000.npy": "done", "im000001.npy": "done", "im000002.npy": "pending", "im000003.npy": "done"}
    st = status(folder, "ImportArray")
    assert st["state"] == "errored" and "KeyboardInterrupt" in st["error"]
    assert st["counts"]["done"] == 3 and st["counts"]["pending"] == 1 and st["counts"]["total"] == N
    monkeypatch.undo()
    res = run(folder, inp)
    assert res.success and res.jobs[0].computed == ["im000002.npy", "im000003.npy"]
    assert [j.counts["done"] for j in res.jobs] == [N, N]


def test_a_missing_input_folder_keeps_the_index_and_status(done, monkeypatch):
    inp, folder, keys = done
    before = Path(folder, "batchlib", "ImportArray.index").read_bytes()
    moved = inp.with_name("elsewhere")
    os.rename(inp, moved)  # e.g. a share not mounted
    with pytest.raises(FileNotFoundError, match="input folder .* does not exist"):
        run(folder, inp)
    assert Path(folder, "batchlib", "ImportArray.index").read_bytes() == before
    st = status(folder, "ImportArray")
    assert st["state"] == "errored" and str(inp) in st["error"] and st["counts"]["done"] == N
    os.rename(moved, inp)
    no_open(monkeypatch)
    res = run(folder, inp)
    assert res.success and [j.computed for j in res.jobs] == [[], []]


def test_invalid_inputs_keep_the_index_and_status(done, monkeypatch):
    inp, folder, keys = done
    (inp / "bad.npy").write_bytes(b"")
    with pytest.raises(JobError, match="bad.npy: .*bad.npy: file is empty"):
        run(folder, inp)
    rows = index_rows(folder, "ImportArray")
    assert {k: e["state"] for k, (_, e) in rows.items()} == {**dict.fromkeys(keys, "done"), "bad.npy": "invalid"}
    st = status(folder, "ImportArray")
    assert st["state"] == "invalid_inputs" and "bad.npy" in st["error"]
    assert st["counts"]["done"] == N and st["counts"]["invalid"] == 1
    assert list(st["files"]) == ["bad.npy"]
    os.remove(inp / "bad.npy")
    no_open(monkeypatch)
    res = run(folder, inp)
    assert res.success and [j.computed for j in res.jobs] == [[], []]


def test_rows_not_reached_keep_their_state_and_what_people_must_see(tmp_path):
    """Unit level: failed and warned-about inputs not reached stay listed in the status, as
    they were; a run that listed every input drops the rows it did not see (inputs gone)."""
    from batchlib.status import JobStatus

    path = tmp_path / "J.status"
    first = JobStatus(path, {"job": "J"})
    first.set_file("a", fingerprint="f" * 24, state="done", outputs=["a.h5"])
    first.set_file("b", state="failed", outputs=["b.h5"], error="simulated failure on b")
    first.set_file("c", fingerprint="c" * 24, state="done", outputs=["c.h5"], warnings=["c looks odd"])
    first.set_file("d", state="done", outputs=["d.h5"])  # done, no fingerprint (migrated)
    first.all_listed()
    first.finish("processed")
    errored = JobStatus(path, {"job": "J"})
    errored.set_file("a", state="pending", reason="input changed", outputs=["a.h5"])
    errored.finish("errored", error="KeyboardInterrupt: ")
    st = json.loads(path.read_text())
    assert st["counts"]["done"] == 2 and st["counts"]["failed"] == 1 and st["counts"]["pending"] == 1
    assert st["files"]["b"] == {"state": "failed", "outputs": ["b.h5"], "error": "simulated failure on b"}
    assert st["files"]["c"]["warnings"] == ["c looks odd"] and "d" not in st["files"]
    assert sorted(JobStatus(path, {"job": "J"}).index.rows) == ["a", "b", "c", "d"]
    listed = JobStatus(path, {"job": "J"})
    listed.set_file("a", state="pending", outputs=["a.h5"])
    listed.all_listed()
    listed.finish("errored", error="KeyboardInterrupt: ")
    assert sorted(JobStatus(path, {"job": "J"}).index.rows) == ["a"]
