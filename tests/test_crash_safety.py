"""Killing a run (SIGKILL, SIGTERM) never leaves a half-written output counted as done."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from batchlib.io import open_file
from batchlib.records import read_record
from batchlib.testing import ImportArray, make_array_inputs
from batchlib.workflow import run_workflow

SCRIPT = """
import sys
from batchlib.testing import ImportArray
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, ext, sleep = sys.argv[1:5]
sys.exit(main_exit_code(lambda: run_workflow(
    "WF", folder, [ImportArray(output_ext=ext, sleep_s=float(sleep))], input_folder=inp,
    progress=False, status_interval_s=0.0)))
"""

N, FRAMES = 6, 8


def start(folder, inp, ext, sleep_s):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, folder, inp, ext, str(sleep_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def temporaries(folder):
    return glob.glob(os.path.join(folder, ".*.tmp-*"))


def finals(folder, ext):
    return sorted(p for p in glob.glob(os.path.join(folder, "*" + ext)))


def wait_for(predicate, proc, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("timed out waiting for the run")


def frames_written(tmp):
    """Frames with data in a half-written container (n5: chunk files present)."""
    try:
        if os.path.isdir(tmp):
            raw = os.path.join(tmp, "raw")
            return len(os.listdir(raw)) if os.path.isdir(raw) else 0
        return os.path.getsize(tmp)
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


@pytest.mark.parametrize("ext", [".h5", ".n5"])
def test_sigkill_mid_write_then_rerun(tmp_path, ext):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, N, shape=(FRAMES, 16, 16))
    proc = start(folder, inp, ext, sleep_s=0.03)  # ~0.25 s per image
    # Kill while the third image is half written (two are finished).
    wait_for(lambda: len(finals(folder, ext)) >= 2 and temporaries(folder)
             and frames_written(temporaries(folder)[0]) > 0, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    half = temporaries(folder)
    assert half, "the kill should have landed while a container was being written"
    lock = os.path.join(folder, "batchlib", "WF.lock")
    assert os.path.exists(lock)  # left behind by the killed run
    done_before = {os.path.basename(p) for p in finals(folder, ext)
                   if read_record(p, "ImportArray") is not None}
    assert len(done_before) >= 2
    assert done_before == {os.path.basename(p) for p in finals(folder, ext)}  # no record-less final

    # A half-written container under a final name (as a non-atomic writer
    # would leave it) must not count as done either.
    victim = sorted({s + ext for s in arrays} - done_before)[-1]
    os.rename(half[0], os.path.join(folder, victim))

    res = run_workflow("WF", folder, [ImportArray(output_ext=ext)], input_folder=inp, progress=False)
    assert res.success
    job = res.jobs[0]
    recomputed = {k.replace(".npy", ext) for k in job.computed}
    assert recomputed == {s + ext for s in arrays} - done_before  # done ones kept, the rest redone
    assert victim in recomputed
    assert not temporaries(folder)
    assert not os.path.exists(lock)
    log = open(os.path.join(folder, "batchlib", "WF.log")).read()
    assert "breaking a stale lock" in log
    for stem, data in arrays.items():
        path = os.path.join(folder, stem + ext)
        assert read_record(path, "ImportArray") is not None
        with open_file(path, "r") as f:
            np.testing.assert_array_equal(f["raw"][:], data)
    st = json.load(open(os.path.join(folder, "batchlib", "ImportArray.status")))
    assert st["state"] == "processed" and st["counts"]["done"] == N
    # And the next run has nothing to do.
    res = run_workflow("WF", folder, [ImportArray(output_ext=ext)], input_folder=inp, progress=False)
    assert res.jobs[0].computed == []


def test_sigkill_during_in_place_job_is_redone(tmp_path):
    """An on-container job killed mid-write: its record was removed first, so it is redone."""
    from batchlib.testing import ScaleRaw

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 2, shape=(2, 8, 8), dtype="uint8")
    assert run_workflow("WF", folder, [ImportArray(output_ext=".n5"), ScaleRaw()], input_folder=inp,
                        progress=False).success
    path = os.path.join(folder, "im000000.n5")
    # Simulate the state a kill inside ScaleRaw leaves: record removed, data half rewritten.
    with open_file(path, "a") as f:
        del f["batchlib/ScaleRaw"]
        f["scaled"][0] = -1
    res = run_workflow("WF", folder, [ImportArray(output_ext=".n5"), ScaleRaw()], input_folder=inp,
                       progress=False)
    assert res.jobs[0].computed == [] and res.jobs[1].computed == ["im000000.n5"]
    with open_file(path, "r") as f:
        np.testing.assert_allclose(f["scaled"][:], arrays["im000000"] * 2.0)


def test_sigterm_releases_lock_and_records_error(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    arrays = make_array_inputs(inp, 4, shape=(FRAMES, 8, 8))
    proc = start(folder, inp, ".h5", sleep_s=0.1)
    lock = os.path.join(folder, "batchlib", "WF.lock")
    # Signal while the *first* image is being written: the three after it keep
    # the run busy for 2.4 s more, however slowly the signal arrives.
    first = sorted(arrays)[0]
    wait_for(lambda: os.path.exists(lock) and any(first in os.path.basename(t)
                                                  for t in temporaries(folder)), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert not os.path.exists(lock)
    job = json.load(open(os.path.join(folder, "batchlib", "ImportArray.status")))
    assert job["state"] == "errored" and "SystemExit" in job["error"]
    wf = json.load(open(os.path.join(folder, "batchlib", "WF.status")))
    assert wf["state"] == "errored"
    # The rerun cleans up and completes.
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert res.success and not temporaries(folder)
    for stem, data in arrays.items():
        with open_file(os.path.join(folder, stem + ".h5"), "r") as f:
            np.testing.assert_array_equal(f["raw"][:], data)


def test_sigterm_swallowed_by_a_finalizer_still_stops_the_run(tmp_path):
    """The handler's SystemExit can land in a weakref callback or ``__del__``, where
    Python only prints it (seen 1 in 20 under load): the signal is also recorded, and
    the runner stops between units and jobs."""
    from batchlib.termination import sigterm_as_exit

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3, shape=(2, 8, 8))
    with sigterm_as_exit():
        try:
            signal.raise_signal(signal.SIGTERM)
        except SystemExit:
            pass  # as a finalizer would swallow it
        with pytest.raises(SystemExit) as exc:
            run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert exc.value.code == 128 + signal.SIGTERM
    assert finals(folder, ".h5") == []          # stopped before the first job
    wf = json.load(open(os.path.join(folder, "batchlib", "WF.status")))
    assert wf["state"] == "errored" and "SystemExit" in wf["error"]
    assert not os.path.exists(os.path.join(folder, "batchlib", "WF.lock"))
    # a later run in the same process is not stopped by the old signal
    with sigterm_as_exit():
        assert run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False).success


class _SwallowsSignal(ImportArray):
    """Receives ``signum`` while writing its first image and swallows the exception there."""

    signum, raised = signal.SIGTERM, SystemExit

    def process(self, input_file, output_file):
        super().process(input_file, output_file)
        if input_file.endswith("im000000.npy"):
            try:
                signal.raise_signal(self.signum)
            except self.raised:
                pass


class _SwallowsSigterm(_SwallowsSignal):
    pass


def test_sigterm_swallowed_inside_a_unit_stops_before_the_next(tmp_path):
    from batchlib.termination import sigterm_as_exit

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3, shape=(2, 8, 8))
    with sigterm_as_exit(), pytest.raises(SystemExit):
        run_workflow("WF", folder, [_SwallowsSigterm()], input_folder=inp, progress=False)
    assert [os.path.basename(p) for p in finals(folder, ".h5")] == ["im000000.h5"]
    job = json.load(open(os.path.join(folder, "batchlib", "_SwallowsSigterm.status")))
    assert job["state"] == "errored" and "SystemExit" in job["error"]
    assert job["files"]["im000000.npy"]["state"] == "done"   # the finished one is recorded


class _SwallowsCtrlC(_SwallowsSignal):
    signum, raised = signal.SIGINT, KeyboardInterrupt


def test_ctrl_c_swallowed_inside_a_unit_stops_before_the_next(tmp_path):
    """As for SIGTERM: a Ctrl-C whose KeyboardInterrupt a finalizer dropped stopped only
    the watch loop; a batch run went on to its end."""
    from batchlib.termination import sigterm_as_exit

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3, shape=(2, 8, 8))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with sigterm_as_exit(), pytest.raises(KeyboardInterrupt):
            run_workflow("WF", folder, [_SwallowsCtrlC()], input_folder=inp, progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    assert [os.path.basename(p) for p in finals(folder, ".h5")] == ["im000000.h5"]
    job = json.load(open(os.path.join(folder, "batchlib", "_SwallowsCtrlC.status")))
    assert job["state"] == "errored" and "KeyboardInterrupt" in job["error"]
    assert job["files"]["im000000.npy"]["state"] == "done"
    assert not os.path.exists(os.path.join(folder, "batchlib", "WF.lock"))
    # a Ctrl-C where SIGINT is ignored (a background job) is not taken over
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigterm_as_exit():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
