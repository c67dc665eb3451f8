"""Ctrl-C under ``--executor processes``: a clean, quick stop (issue 9 defect 12).

A terminal's Ctrl-C signals the whole process group, workers included; the
test does the same (``killpg``) to a workflow started in its own session.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchlib.testing import ImportArray, make_array_inputs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from batchlib.testing import ImportArray
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, sleep_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.exit(main_exit_code(lambda: run_workflow(
    "WF", folder, [ImportArray(sleep_s=sleep_s)], input_folder=inp, executor="processes", n_jobs=2,
    progress=False, status_interval_s=0)))
"""
#: Each unit sleeps this long: a stop that waited for the running units would take at least this.
UNIT_S = 20.0


def start(folder, inp, sleep_s):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder), str(inp), str(sleep_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def wait_for(predicate, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def interrupt(proc):
    """Ctrl-C to the process group; ``(seconds to exit, stderr)``."""
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return time.monotonic() - t0, err


def running(pid):
    """Whether ``pid`` is a live process (a zombie awaiting its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pids(pid):
    """The spawned pool workers among the children of ``pid`` (not multiprocessing's resource
    tracker, which leaves on its own once its parent is gone)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    workers = []
    for child in out.split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(int(child))
    return workers


@pytest.mark.parametrize("when", ["while units run", "while workers start"])
def test_ctrl_c_stops_at_once_with_one_line(tmp_path, when):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(str(inp), 6, shape=(2, 8, 8))
    proc = start(folder, inp, UNIT_S)
    log = folder / "batchlib" / "WF.log"
    assert wait_for(lambda: log.exists() and "to compute" in log.read_text())
    if when == "while units run":
        # Both workers are up and busy with a unit each (spawned workers take a while to start).
        assert wait_for(lambda: len(worker_pids(proc.pid)) >= 2)
        time.sleep(1.5)
    workers = worker_pids(proc.pid)
    elapsed, err = interrupt(proc)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    after = lines[[i for i, line in enumerate(lines) if "to compute" in line][0] + 1:]
    assert len(after) == 1 and "interrupted" in after[0], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    # Far below one unit's duration: the running units were not waited for.
    assert elapsed < UNIT_S / 4, elapsed
    assert not (folder / "batchlib" / "WF.lock").exists()
    assert not [p for p in workers if running(p)]  # the workers were stopped too
    st = json.loads((folder / "batchlib" / "ImportArray.status").read_text())
    assert st["state"] == "errored" and "KeyboardInterrupt" in st["error"]
    # A rerun finishes everything.
    rerun = start(folder, inp, 0.0)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    st = json.loads((folder / "batchlib" / "ImportArray.status").read_text())
    assert st["state"] == "processed" and st["counts"]["done"] == 6
    assert sorted(p.name for p in folder.glob("*.h5")) == [f"{p.stem}.h5" for p in sorted(inp.glob("*.npy"))]


class _CtrlCInsideExtension(ImportArray):
    """Raises what Ctrl-C inside a Cython lock (h5py) surfaces as, on its second image."""

    def process(self, input_file, output_file):
        if input_file.endswith("im000001.npy"):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as e:
                raise SystemError("<cyfunction FastRLock.__exit__> returned a result with an "
                                  "exception set") from e
        return super().process(input_file, output_file)


def test_ctrl_c_inside_an_extension_is_an_interruption_not_a_failure(tmp_path):
    from batchlib.workflow import run_workflow

    inp = tmp_path / "in"
    make_array_inputs(inp, 3)
    with pytest.raises(KeyboardInterrupt):
        run_workflow("WF", tmp_path / "out", [_CtrlCInsideExtension()], input_folder=inp,
                     progress=False, status_interval_s=0)
    status = json.loads((tmp_path / "out" / "batchlib" / "_CtrlCInsideExtension.status").read_text())
    # the image being written when Ctrl-C came is not recorded as failed, and
    # nothing half-written is left for the next run to trust
    assert "im000001.npy" not in json.dumps({k: v for k, v in status.get("entries", {}).items()
                                             if v.get("state") == "failed"})
    assert not (tmp_path / "out" / "im000001.h5").exists()
    assert not (tmp_path / "out" / "batchlib" / "WF.lock").exists()
