"""ignore_invalid_inputs and ignore_failed_outputs: what stops a run, what is recorded."""
import json
import os

import numpy as np
import pytest

from batchlib.errors import JobError
from batchlib.io import open_file, read_table
from batchlib.records import read_record
from batchlib.testing import ImportArray, ScaleRaw, SumScaled, make_array_inputs
from batchlib.workflow import EXIT_ERROR, EXIT_INCOMPLETE, main_exit_code, run_workflow


def run(folder, inp, jobs, **kwargs):
    return run_workflow("WF", folder, jobs, input_folder=inp, progress=False, **kwargs)


def status(folder, name):
    with open(os.path.join(folder, "batchlib", f"{name}.status")) as f:
        return json.load(f)


class RecordingImport(ImportArray):
    """ImportArray that remembers which inputs were handed to ``run`` (serial executor)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []  # per job: no state shared between tests

    def run(self, input_files, output_files, **kwargs):
        self.seen.extend(os.path.basename(p) for p in input_files)
        return super().run(input_files, output_files, **kwargs)


@pytest.fixture
def bad_inputs(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 3)
    with open(os.path.join(inp, "corrupt.npy"), "wb") as f:
        f.write(b"\x93NUMPY garbage that is not an array header")
    open(os.path.join(inp, "empty.npy"), "wb").close()
    return inp, folder, arrays


def test_invalid_inputs_stop_the_run(bad_inputs):
    inp, folder, _ = bad_inputs
    with pytest.raises(JobError) as info:
        run(folder, inp, [ImportArray(), ScaleRaw()])
    err = info.value
    assert err.job == "ImportArray" and err.kind == "invalid inputs"
    assert set(err.problems) == {"corrupt.npy", "empty.npy"}
    msg = str(err)
    assert "empty.npy" in msg and "file is empty (0 bytes)" in msg
    assert "corrupt.npy" in msg and "not a readable .npy file" in msg
    assert "--ignore_invalid_inputs" in msg
    st = status(folder, "ImportArray")
    assert st["state"] == "invalid_inputs"
    assert st["files"]["empty.npy"]["state"] == "invalid"
    assert "file is empty" in st["files"]["empty.npy"]["error"]
    assert "not a readable .npy file" in st["files"]["corrupt.npy"]["error"]
    assert st["counts"]["invalid"] == 2
    assert not [p for p in os.listdir(folder) if p.endswith(".h5")]  # nothing was run
    assert status(folder, "WF")["state"] == "errored"
    # As a script: the error exit code and the message on stderr.
    assert main_exit_code(lambda: run(folder, inp, [ImportArray()])) == EXIT_ERROR


def test_invalid_inputs_ignored(bad_inputs):
    inp, folder, arrays = bad_inputs
    recording = RecordingImport()
    res = run(folder, inp, [recording, ScaleRaw()], ignore_invalid_inputs=True)
    assert not res.success and res.exit_code == EXIT_INCOMPLETE == 2
    assert res.state == "invalid_inputs"
    imp, scale = res.jobs
    assert sorted(imp.computed) == sorted(s + ".npy" for s in arrays)
    assert set(imp.invalid) == {"corrupt.npy", "empty.npy"}
    assert sorted(recording.seen) == sorted(s + ".npy" for s in arrays)  # never handed to run
    assert len(scale.computed) == 3 and scale.success
    st = status(folder, "RecordingImport")
    assert st["state"] == "invalid_inputs"
    assert st["files"]["empty.npy"]["state"] == "invalid" and "empty" in st["files"]["empty.npy"]["error"]
    assert st["files"]["corrupt.npy"]["state"] == "invalid"
    assert st["counts"]["done"] == 3 and st["counts"]["invalid"] == 2
    assert status(folder, "WF")["state"] == "invalid_inputs"
    for stem, data in arrays.items():
        with open_file(os.path.join(folder, stem + ".h5"), "r") as f:
            np.testing.assert_array_equal(f["raw"][:], data)
    # A rerun still reports them and computes nothing else.
    recording = RecordingImport()
    res = run(folder, inp, [recording, ScaleRaw()], ignore_invalid_inputs=True)
    assert res.exit_code == 2 and recording.seen == [] and not res.jobs[1].computed
    assert main_exit_code(lambda: run(folder, inp, [RecordingImport()], ignore_invalid_inputs=True)) == 2


def test_failed_outputs_stop_the_run(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    with pytest.raises(JobError) as info:
        run(folder, inp, [ImportArray(fail_on="im000001"), ScaleRaw()])
    err = info.value
    assert err.kind == "failed outputs" and list(err.problems) == ["im000001.npy"]
    assert "im000001.npy" in str(err) and "simulated failure" in str(err)
    assert "--ignore_failed_outputs" in str(err)
    st = status(folder, "ImportArray")
    assert st["state"] == "failed_outputs" and "im000001.npy" in st["error"]
    entry = st["files"]["im000001.npy"]
    assert entry["state"] == "failed" and "RuntimeError: simulated failure" in entry["error"]
    assert "Traceback" in entry["traceback"] and "simulated failure" in entry["traceback"]
    assert not os.path.exists(os.path.join(folder, "im000001.h5"))
    assert not [p for p in os.listdir(folder) if ".tmp-" in p]
    assert not os.path.exists(os.path.join(folder, "batchlib", "ScaleRaw.status"))  # never started
    assert main_exit_code(lambda: run(folder, inp, [ImportArray(fail_on="im000001")])) == EXIT_ERROR


def test_failed_outputs_ignored_then_retried(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 4)
    res = run(folder, inp, [ImportArray(fail_on="im000001"), ScaleRaw(fail_on="im000002")],
              ignore_failed_outputs=True)
    assert not res.success and res.exit_code == 2 and res.state == "failed_outputs"
    imp, scale = res.jobs
    assert sorted(imp.computed) == ["im000000.npy", "im000002.npy", "im000003.npy"]
    assert list(imp.failed) == ["im000001.npy"] and "simulated failure" in imp.failed["im000001.npy"]
    assert sorted(scale.computed) == ["im000000.h5", "im000003.h5"]
    assert list(scale.failed) == ["im000002.h5"]
    for name, key in (("ImportArray", "im000001.npy"), ("ScaleRaw", "im000002.h5")):
        st = status(folder, name)
        assert st["state"] == "failed_outputs"
        assert st["files"][key]["state"] == "failed"
        assert "simulated failure" in st["files"][key]["error"]
        assert "Traceback" in st["files"][key]["traceback"]
        assert st["counts"]["failed"] == 1
    # The failure is fixed: only the failed files are retried.
    res = run(folder, inp, [ImportArray(), ScaleRaw()])
    assert res.success
    assert res.jobs[0].computed == ["im000001.npy"]
    assert sorted(res.jobs[1].computed) == ["im000001.h5", "im000002.h5"]
    for stem, data in arrays.items():
        with open_file(os.path.join(folder, stem + ".h5"), "r") as f:
            np.testing.assert_allclose(f["scaled"][:], data * 2.0)
    assert not any(run(folder, inp, [ImportArray(), ScaleRaw()]).jobs[i].computed for i in (0, 1))


def test_downstream_sees_upstream_failure_as_invalid_input(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    # First run: ScaleRaw fails on one container, so "scaled" was never written there.
    res = run(folder, inp, [ImportArray(), ScaleRaw(fail_on="im000001"), SumScaled()],
              ignore_failed_outputs=True, ignore_invalid_inputs=True)
    total = res.jobs[2]
    assert sorted(total.computed) == ["im000000.h5", "im000002.h5"]
    reason = total.invalid["im000001.h5"]
    assert "'scaled' is missing" in reason and "no completion record" in reason
    st = status(folder, "SumScaled")
    assert st["files"]["im000001.h5"]["state"] == "invalid"
    assert "'scaled'" in st["files"]["im000001.h5"]["error"]

    # Without --ignore_invalid_inputs the downstream job stops and names the container.
    with pytest.raises(JobError) as info:
        run(folder, inp, [ImportArray(), ScaleRaw(fail_on="im000001"), SumScaled()],
            ignore_failed_outputs=True)
    assert info.value.job == "SumScaled" and "im000001.h5" in info.value.problems

    # Everything fixed, then a rerun of the in-place job with new parameters
    # fails: its old "scaled" is still there but no longer counts as done.
    assert run(folder, inp, [ImportArray(), ScaleRaw(), SumScaled()]).success
    res = run(folder, inp, [ImportArray(), ScaleRaw(factor=3.0, fail_on="im000002"), SumScaled()],
              ignore_failed_outputs=True, ignore_invalid_inputs=True)
    with open_file(os.path.join(folder, "im000002.h5"), "r") as f:
        assert "scaled" in f  # the old data, without a record
    assert read_record(os.path.join(folder, "im000002.h5"), "ScaleRaw") is None
    reason = res.jobs[2].invalid["im000002.h5"]
    assert "'scaled' is present but incomplete" in reason


def test_failed_rebuild_invalidates_the_old_output(tmp_path):
    """A job that rebuilds containers and fails on a changed input must not leave
    the old container looking done to downstream jobs."""
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 2)
    assert run(folder, inp, [ImportArray(), ScaleRaw()]).success
    np.save(os.path.join(inp, "im000000.npy"), arrays["im000000"] + 1)  # changed ...
    res = run(folder, inp, [ImportArray(fail_on="im000000"), ScaleRaw()],  # ... and failing
              ignore_failed_outputs=True, ignore_invalid_inputs=True)
    assert list(res.jobs[0].failed) == ["im000000.npy"]
    path = os.path.join(folder, "im000000.h5")
    assert read_record(path, "ImportArray") is None
    assert "im000000.h5" in res.jobs[1].invalid
    assert "'raw' is present but incomplete" in res.jobs[1].invalid["im000000.h5"]
    # Fixed: recomputed with the new input, downstream too.
    res = run(folder, inp, [ImportArray(), ScaleRaw()])
    assert res.success and res.jobs[0].computed == ["im000000.npy"] and res.jobs[1].computed == ["im000000.h5"]
    with open_file(path, "r") as f:
        np.testing.assert_array_equal(f["raw"][:], arrays["im000000"] + 1)
        assert read_table(f, "tables/sums")["name"].tolist() == ["im000000.h5"] * 3
