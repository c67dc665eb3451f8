"""Status files: contents, recovery from damage, rate limiting, ``batchlib status``."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchlib import cli
from batchlib.status import JOB_SCHEMA, WORKFLOW_SCHEMA, JobStatus, summarize
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow


def run(folder, inp, jobs=None, **kwargs):
    jobs = jobs if jobs is not None else [ImportArray(), ScaleRaw()]
    return run_workflow("WF", folder, jobs, input_folder=inp, progress=False, **kwargs)


def load(folder, name):
    with open(os.path.join(folder, "batchlib", f"{name}.status")) as f:
        return json.load(f)


@pytest.fixture
def done(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 4)
    assert run(folder, inp).success
    return inp, folder


@pytest.mark.parametrize("damage", ["garbage", "deleted", "wrong_schema", "truncated"])
def test_damaged_status_is_rebuilt(done, damage):
    inp, folder = done
    mtimes = {p: os.stat(os.path.join(folder, p)).st_mtime_ns for p in os.listdir(folder) if p.endswith(".h5")}
    for name in ("ImportArray", "ScaleRaw"):
        # the summary for people and the index that reruns read
        for path in (os.path.join(folder, "batchlib", f"{name}.status"),
                     os.path.join(folder, "batchlib", f"{name}.index")):
            if damage == "garbage":
                Path(path).write_bytes(b"\x00\xff\xfe not json at all \x13\x37")
            elif damage == "deleted":
                os.remove(path)
            elif damage == "wrong_schema":
                Path(path).write_text(json.dumps({"schema": "something-else", "files": {}}))
            else:
                text = Path(path).read_text()
                Path(path).write_text(text[: len(text) // 2 - 1])
    res = run(folder, inp)
    assert res.success
    assert [j.computed for j in res.jobs] == [[], []]  # the completion records are the truth
    assert {p: os.stat(os.path.join(folder, p)).st_mtime_ns for p in mtimes} == mtimes
    for name in ("ImportArray", "ScaleRaw"):
        st = load(folder, name)
        assert st["schema"] == JOB_SCHEMA and st["state"] == "processed"
        assert st["counts"]["done"] == 4 and st["counts"]["computed_this_run"] == 0
        assert st["files"] == {}  # nothing computed, nothing wrong: counted only
        index = JobStatus(os.path.join(folder, "batchlib", f"{name}.status"), {"job": name}).index
        entries = dict(index.items())
        assert len(entries) == 4 and all(e["state"] == "done" and e["stamps"] for e in entries.values())
        assert all(index.fingerprint(k) for k in entries)
    log = Path(folder, "batchlib", "WF.log").read_text()
    if damage in ("garbage", "wrong_schema"):  # a truncated index is read up to its last whole line
        assert "is unreadable" in log and "rebuilding it from the completion records" in log
    # ... and the rebuilt status gives the fast path back: a third run also does nothing.
    assert [j.computed for j in run(folder, inp).jobs] == [[], []]


def test_job_status_contents(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    open(os.path.join(inp, "empty.npy"), "wb").close()
    res = run(folder, inp, [ImportArray(fail_on="im000001"), ScaleRaw(factor=1.5)],
              ignore_invalid_inputs=True, ignore_failed_outputs=True)
    assert res.state == "failed_outputs"
    st = load(folder, "ImportArray")
    for key in ("schema", "job", "class", "version", "params", "param_hash", "input_pattern",
                "folder", "input_folder", "rerun_triggers", "state", "started", "finished",
                "duration_s", "error", "counts", "files"):
        assert key in st, key
    assert st["job"] == "ImportArray" and st["class"] == "batchlib.testing.ImportArray"
    assert st["version"] == "1" and st["params"]["fail_on"] == "im000001"
    assert st["state"] == "failed_outputs" and st["finished"] and st["duration_s"] >= 0
    assert st["counts"] == {"done": 2, "failed": 1, "invalid": 1, "pending": 0, "total": 4,
                            "computed_this_run": 3}
    ok = st["files"]["im000000.npy"]
    assert ok["state"] == "done" and ok["outputs"] == ["im000000.h5"] and ok["this_run"]
    assert ok["duration_s"] >= 0 and ok["finished"] and ok["record"]["param_hash"] == st["param_hash"]
    assert ok["input_signature"]["im000000.npy"]["size"] > 0
    bad = st["files"]["im000001.npy"]
    assert bad["state"] == "failed" and "simulated failure" in bad["error"] and bad["traceback"]
    assert bad["duration_s"] >= 0
    inv = st["files"]["empty.npy"]
    assert inv["state"] == "invalid" and "empty" in inv["error"]
    scale = load(folder, "ScaleRaw")
    assert scale["params"] == {"factor": 1.5, "fail_on": ""} and scale["state"] == "processed"
    wf = load(folder, "WF")
    assert wf["schema"] == WORKFLOW_SCHEMA and wf["workflow"] == "WF"
    assert wf["state"] == "failed_outputs" and wf["started"] and wf["finished"]
    assert wf["options"]["ignore_failed_outputs"] is True
    assert [(j["name"], j["state"]) for j in wf["jobs"]] == [("ImportArray", "failed_outputs"),
                                                            ("ScaleRaw", "processed")]
    assert wf["jobs"][0]["counts"]["failed"] == 1 and wf["jobs"][0]["status_file"] == "ImportArray.status"


def test_status_is_valid_json_and_greppable(done):
    inp, folder = done
    text = Path(folder, "batchlib", "ImportArray.status").read_text()
    data = json.loads(text)
    for key in data["files"]:  # one line per file entry
        assert sum(1 for line in text.splitlines() if line.strip().startswith(json.dumps(key))) == 1


def test_status_saves_are_rate_limited(tmp_path):
    path = tmp_path / "J.status"
    st = JobStatus(path, {"job": "J"}, min_interval_s=60.0)
    st.set_file("a", state="done")
    st.save(force=True)
    first, mtime = path.read_text(), path.stat().st_mtime_ns
    st.set_file("b", state="failed", error="x")
    time.sleep(0.01)
    st.save()  # within the interval: not written
    assert path.read_text() == first and path.stat().st_mtime_ns == mtime
    st.save(force=True)
    assert json.loads(path.read_text())["counts"]["failed"] == 1
    st2 = JobStatus(tmp_path / "K.status", {"job": "K"}, min_interval_s=0.0)
    st2.save()
    st2.set_file("a", state="done")
    st2.save()
    assert json.loads((tmp_path / "K.status").read_text())["counts"]["done"] == 1
    # The previous file is read back as the cache of the next run.
    assert JobStatus(path, {"job": "J"}).cached("b") == {"state": "failed", "error": "x"}


@pytest.fixture
def troubled(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    with open(os.path.join(inp, "corrupt.npy"), "wb") as f:
        f.write(b"not an npy file")
    run(folder, inp, [ImportArray(fail_on="im000002"), ScaleRaw()],
        ignore_invalid_inputs=True, ignore_failed_outputs=True)
    return folder


def check_summary(text):
    assert "workflow WF: failed_outputs" in text
    lines = text.splitlines()
    imp = next(line for line in lines if line.startswith("ImportArray"))
    assert imp.split()[1:] == ["failed_outputs", "2", "1", "1", "0", "3"]  # this run: done + failed
    scale = next(line for line in lines if line.startswith("ScaleRaw"))
    assert scale.split()[1:] == ["processed", "2", "0", "0", "0", "2"]
    assert "ImportArray: failed  im000002.npy: RuntimeError: simulated failure on im000002.npy" in text
    assert "ImportArray: invalid corrupt.npy:" in text and "not a readable .npy file" in text
    assert "2 problem(s)" in text


def test_cli_status(troubled, capsys):
    assert cli.main(["status", troubled]) == 0
    out = capsys.readouterr()
    check_summary(out.out)
    assert "unreadable" not in out.err + out.out  # job and workflow files are told apart quietly
    assert summarize(troubled).count("problem(s)") == 1


def test_cli_status_console_script(troubled):
    exe = shutil.which("batchlib", path=os.path.dirname(sys.executable)) or shutil.which("batchlib")
    if exe is None:
        pytest.skip("the batchlib console script is not installed")
    out = subprocess.run([exe, "status", troubled], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    check_summary(out.stdout)


def test_cli_status_without_runs(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 0
    assert "no batchlib run has been recorded here" in capsys.readouterr().out


def test_summary_lists_at_most_max_listed(tmp_path, capsys):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 6)
    run(folder, inp, [ImportArray(fail_on="im")], ignore_failed_outputs=True)
    assert cli.main(["status", folder, "--max_listed", "2"]) == 0
    out = capsys.readouterr().out
    assert "6 problem(s)" in out and "... and 4 more" in out


def test_summary_flags_interrupted_and_unreadable(done):
    inp, folder = done
    path = Path(folder, "batchlib", "ScaleRaw.status")
    st = json.loads(path.read_text())
    st.update(state="running", finished=None)  # what a SIGKILLed run leaves
    path.write_text(json.dumps(st))
    Path(folder, "batchlib", "ImportArray.status").write_bytes(b"\x00garbage")
    text = summarize(folder)
    assert "ScaleRaw was interrupted" in text
    assert "unreadable status file(s), rebuilt by the next run: ImportArray.status" in text
    Path(folder, "batchlib", "WF.lock").write_text("{}")  # a run holds the lock: running is true
    assert "was interrupted" not in summarize(folder)


def test_workflow_name_must_differ_from_job_names(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 1)
    with pytest.raises(ValueError, match="status files would collide"):
        run_workflow("ImportArray", folder, [ImportArray()], input_folder=inp, progress=False)
    # A job run alone is a workflow of its own name, without a workflow status file.
    assert ImportArray()(folder, input_folder=inp, progress=False).success
    st = load(folder, "ImportArray")
    assert st["schema"] == JOB_SCHEMA and st["counts"]["done"] == 1


def test_status_of_the_other_kind_is_skipped_quietly(done, caplog):
    from batchlib.status import read_json

    inp, folder = done
    garbage = Path(folder, "batchlib", "X.status")
    garbage.write_text("{not json")
    with caplog.at_level("WARNING", logger="Workflow.status"):
        assert read_json(garbage, JOB_SCHEMA) is None
        assert len(caplog.records) == 1 and "is unreadable" in caplog.records[0].getMessage()
        assert read_json(Path(folder, "batchlib", "WF.status"), JOB_SCHEMA) is None
        assert read_json(Path(folder, "batchlib", "ImportArray.status"), WORKFLOW_SCHEMA) is None
        assert read_json(Path(folder, "batchlib", "ImportArray.status"), JOB_SCHEMA)["job"] == "ImportArray"
    assert len(caplog.records) == 1  # the other kind of status file is skipped quietly


class _WarningScale(ScaleRaw):
    """ScaleRaw that warns about every image it processes."""

    def process_container(self, container, path):
        super().process_container(container, path)
        self.warn(f"{Path(path).name}: looked odd")


def test_job_warnings_reach_the_status(tmp_path):
    """A warning raised while processing an image is kept with its status entry and listed."""
    raw = tmp_path / "raw"
    make_array_inputs(raw, 2)
    folder = tmp_path / "out"
    run_workflow("W", folder, [ImportArray(), _WarningScale()], input_folder=raw)
    st = json.loads((folder / "batchlib" / "_WarningScale.status").read_text())
    entries = st["files"].values()
    assert all(e["state"] == "done" for e in entries)
    assert sorted(w for e in entries for w in e["warnings"]) == ["im000000.h5: looked odd",
                                                                  "im000001.h5: looked odd"]
    text = summarize(folder)
    assert "_WarningScale: warning" in text and "looked odd" in text
    # a clean rerun keeps the entries (nothing recomputed) and their warnings
    run_workflow("W", folder, [ImportArray(), _WarningScale()], input_folder=raw)
    st = json.loads((folder / "batchlib" / "_WarningScale.status").read_text())
    assert all(e.get("warnings") for e in st["files"].values())


def test_no_op_rerun_reads_no_container_and_writes_no_index(done, monkeypatch):
    """Nothing changed: every input is found up to date from its fingerprint (a stat per
    file), no container is opened, and the index is not rewritten."""
    import batchlib.base
    import batchlib.container_job
    import batchlib.records

    inp, folder = done
    assert [j.computed for j in run(folder, inp).jobs] == [[], []]  # the stamps are now fingerprints
    index = Path(folder, "batchlib", "ImportArray.index")
    before = index.stat().st_mtime_ns, index.read_text()

    def no_open(*args, **kwargs):
        raise AssertionError("a container was opened on a no-op rerun")

    for module in (batchlib.base, batchlib.container_job, batchlib.records):
        monkeypatch.setattr(module, "open_file", no_open)
    res = run(folder, inp)
    assert [j.computed for j in res.jobs] == [[], []] and res.jobs[1].counts["done"] == 4
    assert (index.stat().st_mtime_ns, index.read_text()) == before


def test_a_container_replaced_behind_the_back_is_found_despite_equal_size_and_mtime(done):
    """A container swapped for another one of the same size, its mtime set back (``cp -p``,
    a restore from a backup): its inode differs, so neither the fingerprint nor the stamp
    matches, the records are read, and what they say is redone by both jobs."""
    import h5py
    import numpy as np

    inp, folder = done
    run(folder, inp)  # fingerprints stored
    a, b = os.path.join(folder, "im000000.h5"), os.path.join(folder, "im000001.h5")
    st = os.stat(a)
    assert os.stat(b).st_size == st.st_size
    copy = os.path.join(folder, ".swap")
    shutil.copy2(b, copy)
    os.replace(copy, a)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [os.stat(a).st_size, os.stat(a).st_mtime_ns] == [st.st_size, st.st_mtime_ns]
    res = run(folder, inp)
    assert res.jobs[0].computed == ["im000000.npy"] and res.jobs[1].computed == ["im000000.h5"]
    with h5py.File(a, "r") as f:
        np.testing.assert_array_equal(f["scaled"][:],
                                      np.load(os.path.join(inp, "im000000.npy")).astype("float32") * 2.0)


def test_index_appends_as_it_goes_and_reads_entries_lazily(tmp_path):
    from batchlib.status_index import StatusIndex

    path = tmp_path / "J.index"
    idx = StatusIndex(path, {"job": "J"})
    idx.put("a\tb", {"state": "done", "outputs": ["a.h5"]}, "f1", {"a": 1}, append=True)
    idx.put("c", {"state": "failed", "error": "x\ny", "outputs": ["c.h5"], "warnings": ["w"]},
            append=True)
    idx.flush()
    with open(path, "ab") as f:
        f.write(b'"torn')  # a kill in the middle of an append
    again = StatusIndex(path)
    assert again.load() and sorted(again.rows) == ["a\tb", "c"]
    assert again.entry("c") == {"state": "failed", "error": "x\ny", "outputs": ["c.h5"], "warnings": ["w"]}
    assert again.with_warnings(["c", "a\tb"]) == ["c"]
    assert again.fingerprint("a\tb") == "f1" and again.fingerprint("c") is None
    assert isinstance(again.rows["c"][3], tuple)  # not read until asked for
    from batchlib.status_index import digest
    assert again.outputs("a\tb", digest({"a": 1})) == ["a.h5"] and again.outputs("a\tb", "other") is None
    # a run that saw only "c", with a new entry for it: rewritten, "a\tb" dropped
    again.keep("c")
    again.finish()
    third = StatusIndex(path)
    assert third.load() and list(third.rows) == ["c"] and third.entry("c")["error"] == "x\ny"
    assert path.read_bytes().count(b"\n") == 2  # header and one row; the torn line is gone
