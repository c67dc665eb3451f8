"""The folder lock: one run per workflow and folder; stale and foreign locks."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from batchlib.base import BatchJob
from batchlib.errors import JobError, LockError
from batchlib.lock import FolderLock
from batchlib.testing import ImportArray, make_array_inputs
from batchlib.workflow import EXIT_LOCKED, run_workflow

SCRIPT = """
import sys
from batchlib.testing import ImportArray
from batchlib.workflow import main_exit_code, run_workflow
folder, inp = sys.argv[1:3]
sys.exit(main_exit_code(lambda: run_workflow(
    "WF", folder, [ImportArray(sleep_s=0.05)], input_folder=inp, progress=False)))
"""


def lock_path(folder):
    return os.path.join(folder, "batchlib", "WF.lock")


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder, pid, host):
    os.makedirs(os.path.join(folder, "batchlib"), exist_ok=True)
    with open(lock_path(folder), "w") as f:
        json.dump({"pid": pid, "host": host, "started": "2020-01-01T00:00:00+0000",
                   "command": "old run"}, f)


@pytest.fixture
def dirs(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3, shape=(4, 8, 8))
    return inp, folder


#: A run that holds the lock while its first image waits for the test's go-ahead.
HOLDING_SCRIPT = """
import os, sys, time
from batchlib.testing import ImportArray
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, started, go = sys.argv[1:5]

class ImportArray(ImportArray):
    def process(self, input_file, output_file):
        open(started, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
        super().process(input_file, output_file)

sys.exit(main_exit_code(lambda: run_workflow(
    "WF", folder, [ImportArray()], input_folder=inp, progress=False)))
"""


def wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.01)


def test_two_concurrent_runs(dirs, tmp_path):
    """The second run starts while the first is certainly running (no timing race)."""
    inp, folder = dirs
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    first = subprocess.Popen([sys.executable, "-c", HOLDING_SCRIPT, folder, inp, started, go],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(started)  # the first run holds the lock and waits inside its first image
        second = subprocess.run([sys.executable, "-c", SCRIPT, folder, inp], capture_output=True,
                                text=True, timeout=60)
    finally:
        open(go, "w").close()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, (out, err)
    assert second.returncode == EXIT_LOCKED, (second.stdout, second.stderr)
    assert "is locked by another run" in second.stderr
    assert f"pid {first.pid} on {socket.gethostname()}" in second.stderr
    assert not os.path.exists(lock_path(folder))
    st = json.load(open(os.path.join(folder, "batchlib", "ImportArray.status")))
    assert st["state"] == "processed" and st["counts"]["done"] == 3


def test_stale_lock_on_this_host_is_broken(dirs):
    inp, folder = dirs
    pid = dead_pid()
    write_lock(folder, pid, socket.gethostname())
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert res.success
    assert not os.path.exists(lock_path(folder))
    log = open(os.path.join(folder, "batchlib", "WF.log")).read()
    assert "breaking a stale lock" in log and f"pid {pid}" in log


def test_foreign_lock_refused_then_broken(dirs):
    inp, folder = dirs
    write_lock(folder, 12345, "another-host.example.org")
    with pytest.raises(LockError) as info:
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    msg = str(info.value)
    assert "pid 12345 on another-host.example.org" in msg and "--break_lock" in msg
    assert os.path.exists(lock_path(folder))  # not ours to remove
    assert not os.path.exists(os.path.join(folder, "batchlib", "ImportArray.status"))  # nothing ran
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False, break_lock=True)
    assert res.success and not os.path.exists(lock_path(folder))


def test_live_lock_on_this_host_is_not_broken(dirs):
    inp, folder = dirs
    write_lock(folder, os.getppid(), socket.gethostname())  # alive
    with pytest.raises(LockError) as info:
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False, break_lock=True)
    assert "--lock_timeout" in str(info.value)
    assert os.path.exists(lock_path(folder))


def test_lock_timeout_waits(dirs):
    inp, folder = dirs
    held = FolderLock(lock_path(folder)).acquire()
    threading.Timer(1.2, held.release).start()
    t0 = time.monotonic()
    with pytest.raises(LockError):
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False, lock_timeout=0.3)
    assert time.monotonic() - t0 >= 0.3
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False, lock_timeout=10)
    assert res.success and time.monotonic() - t0 >= 1.2
    assert not os.path.exists(lock_path(folder))


def test_lock_contents(tmp_path):
    lock = FolderLock(tmp_path / "batchlib" / "X.lock")
    with lock:
        info = json.loads((tmp_path / "batchlib" / "X.lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["started"] and "command" in info
        assert not [p for p in os.listdir(tmp_path / "batchlib") if p != "X.lock"]  # no temporaries
        with pytest.raises(LockError):
            FolderLock(tmp_path / "batchlib" / "X.lock").acquire()
    assert not (tmp_path / "batchlib" / "X.lock").exists()


class Interrupted(BatchJob):
    """A job that is interrupted with Ctrl-C while it runs."""

    def __init__(self, **kwargs):
        super().__init__(input_pattern="*.npy", **kwargs)

    def process(self, input_file, output_file):
        raise KeyboardInterrupt


def test_lock_removed_after_normal_exit_error_and_interrupt(dirs, tmp_path):
    inp, folder = dirs
    assert run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False).success
    assert not os.path.exists(lock_path(folder))

    open(os.path.join(inp, "empty.npy"), "wb").close()
    with pytest.raises(JobError):
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert not os.path.exists(lock_path(folder))
    os.remove(os.path.join(inp, "empty.npy"))

    folder2 = str(tmp_path / "out2")
    with pytest.raises(KeyboardInterrupt):
        run_workflow("WF", folder2, [Interrupted()], input_folder=inp, progress=False)
    assert not os.path.exists(lock_path(folder2))
    st = json.load(open(os.path.join(folder2, "batchlib", "Interrupted.status")))
    assert st["state"] == "errored" and "KeyboardInterrupt" in st["error"]
    assert json.load(open(os.path.join(folder2, "batchlib", "WF.status")))["state"] == "errored"


@pytest.mark.parametrize("content", ['[1, 2, 3]', 'garbage \x00\x01 not json', '{"pid": "abc", "host": "%s"}',
                                     '{"pid": 1.5, "host": "%s"}', '{"pid": -4, "host": "%s"}', '"a string"'])
def test_malformed_lock_is_broken_with_a_message(dirs, content):
    inp, folder = dirs
    os.makedirs(os.path.join(folder, "batchlib"), exist_ok=True)
    with open(lock_path(folder), "w") as f:
        f.write(content.replace("%s", socket.gethostname()))
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert res.success and res.jobs[0].counts["done"] == 3
    assert not os.path.exists(lock_path(folder))
    log = open(os.path.join(folder, "batchlib", "WF.log")).read()
    assert "breaking a stale lock" in log and "unreadable" in log


def test_malformed_lock_in_a_script_exits_cleanly(dirs):
    inp, folder = dirs
    os.makedirs(os.path.join(folder, "batchlib"), exist_ok=True)
    with open(lock_path(folder), "w") as f:
        f.write('[{"pid": 1}]')
    proc = subprocess.run([sys.executable, "-c", SCRIPT, folder, inp], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_lock_records_the_process_start_time(tmp_path):
    from batchlib.lock import process_start_ticks

    with FolderLock(tmp_path / "X.lock"):
        info = json.loads((tmp_path / "X.lock").read_text())
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc on this system: start times are not recorded")
    assert info["pid_start_ticks"] == process_start_ticks(os.getpid()) > 0


def test_lock_naming_a_reused_live_pid_is_stale(dirs):
    """A live pid whose start time differs from the recorded one belongs to another process."""
    from batchlib.lock import process_start_ticks

    inp, folder = dirs
    if process_start_ticks(os.getppid()) is None:
        pytest.skip("no /proc on this system: pid reuse cannot be told")
    write_lock(folder, os.getppid(), socket.gethostname())  # alive ...
    info = json.load(open(lock_path(folder)))
    info["pid_start_ticks"] = process_start_ticks(os.getppid()) + 12345  # ... but not the holder
    json.dump(info, open(lock_path(folder), "w"))
    res = run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert res.success and not os.path.exists(lock_path(folder))
    # The same live pid with its true start time is a live holder: not broken.
    write_lock(folder, os.getppid(), socket.gethostname())
    info = json.load(open(lock_path(folder)))
    info["pid_start_ticks"] = process_start_ticks(os.getppid())
    json.dump(info, open(lock_path(folder), "w"))
    with pytest.raises(LockError):
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
