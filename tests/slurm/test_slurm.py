"""The trench workflow on a real (single-node) Slurm cluster through dask-jobqueue.

Same outputs as a serial run, the worker jobs seen by ``squeue`` and ``sacct``;
a worker job killed mid-run loses nothing: the rerun completes the folder.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "trench_workflow.py"
CFG = SyntheticConfig(height=288, width=288, n_positions=4, n_timepoints=3, channels=("phase",), seed=21)
JOBS = ("Ingest", "TrenchDetection", "Compress", "Segment", "Measure", "Track")
RUN_TIMEOUT = 420


def workflow(raw, out, *extra):
    return [sys.executable, str(WORKFLOW), "--input_folder", str(raw), "--folder", str(out),
            "--progress", "false", "--log_level", "WARNING", "--detect_qc_plot", "false",
            "--track_qc_plot", "false", *extra]


def on_slurm(jobs, folder):
    # Short walltime: a worker left behind by a broken run ends by itself.
    return ["--executor", "slurm", "--slurm_cores", "1", "--slurm_jobs", str(jobs),
            "--slurm_memory", "2GB", "--slurm_walltime", "00:10:00",
            "--slurm_job_extra", f"comment=batchlib-test-{Path(folder).name}"]


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc, timeout=RUN_TIMEOUT):
    """Exit code and output of ``proc``; a run still going after ``timeout`` is stopped and fails."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # its lock is released, its jobs cancelled
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the workflow did not finish within {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


class Queue(threading.Thread):
    """Polls ``squeue`` while a run goes on: ``{job id: (name, comment, states seen)}``."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen, self.stop = {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.poll()
            time.sleep(0.3)

    def poll(self):
        r = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%k"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            job, name, state, comment = line.split("|", 3)
            self.seen.setdefault(job, (name, comment, set()))[2].add(state)
        return r.stdout

    def running(self, comment):
        return [j for j, (_, c, states) in list(self.seen.items()) if c == comment and "RUNNING" in states]


def completed_jobs(comment_ids, timeout=30) -> dict:
    """``{job id: state}`` from ``sacct -c`` (the job completion log) for the given job ids."""
    deadline, states = time.time() + timeout, {}
    while time.time() < deadline:
        r = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobID,JobName,State"],
                           capture_output=True, text=True)
        states = {line.split("|")[0]: line.split("|")[2] for line in r.stdout.splitlines() if "|" in line}
        if set(comment_ids) <= set(states):
            break
        time.sleep(0.5)
    return {j: states.get(j) for j in comment_ids}


def datasets(path):
    """Every dataset of an h5 container except the completion records (their run ids differ)."""
    import h5py

    from batchlib.io import open_file  # registers the compression filters

    out = {}
    with open_file(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                     and not name.startswith("batchlib/") else None)
    return out


def assert_same_results(folder, reference):
    names = sorted(p.name for p in Path(reference).glob("*.h5"))
    assert names and sorted(p.name for p in Path(folder).glob("*.h5")) == names
    for name in names:
        a, b = datasets(Path(folder) / name), datasets(Path(reference) / name)
        assert sorted(a) == sorted(b), name
        for key in a:
            if a[key].dtype.kind == "f":
                # Float columns computed with a matrix product (frame_y/x) may differ in
                # the last bit: BLAS runs single-threaded in the dask workers.
                np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12, err_msg=f"{name}: {key}")
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    for sub in ("tables/cells", "tables/tracks", "tables/cycles"):
        import pandas as pd

        for p in sorted((Path(reference) / sub).glob("*.parquet")):
            pd.testing.assert_frame_equal(pd.read_parquet(Path(folder) / sub / p.name), pd.read_parquet(p),
                                          check_exact=False, rtol=1e-12, atol=1e-12)


def job_counts(folder):
    out = {}
    for job in JOBS:
        st = json.loads((Path(folder) / "batchlib" / f"{job}.status").read_text())
        out[job] = (st["state"], st["counts"]["done"], st["counts"]["total"])
    return out


@pytest.fixture(scope="module")
def acquisition(tmp_path_factory):
    """A small generated acquisition and the serial run's results on it."""
    tmp = tmp_path_factory.mktemp("slurm")
    write_acquisition(tmp / "raw", CFG, layout="ome-tiff", name="S", ground_truth=False)
    code, out = finish(start(workflow(tmp / "raw", tmp / "serial")))
    assert code == 0, out
    return tmp


def test_workflow_on_slurm_equals_serial(slurm, acquisition):
    folder = acquisition / "on_slurm"
    comment = f"batchlib-test-{folder.name}"
    n_jobs = min(2, os.cpu_count() or 1)  # the node has a core per job
    queue = Queue()
    queue.start()
    try:
        code, out = finish(start(workflow(acquisition / "raw", folder, *on_slurm(n_jobs, folder))))
    finally:
        queue.stop.set()
        queue.join()
    assert code == 0, out
    assert_same_results(folder, acquisition / "serial")
    assert all(v == ("processed", CFG.n_positions, CFG.n_positions) for v in job_counts(folder).values())
    ours = {j: v for j, v in queue.seen.items() if v[1] == comment}
    # squeue saw the worker jobs dask-jobqueue submitted, running.
    assert len(ours) == n_jobs and all(name == "dask-worker" and "RUNNING" in states
                                  for name, _, states in ours.values()), queue.seen
    # sacct (the job completion log) has them too, cancelled when the run closed its cluster.
    assert set(completed_jobs(list(ours)).values()) <= {"CANCELLED", "COMPLETED"}, completed_jobs(list(ours))
    status = json.loads((folder / "batchlib" / "TrenchWorkflow.status").read_text())
    assert status["options"]["executor"] == "slurm"
    logs = sorted(p.name for p in (folder / "batchlib" / "slurm").iterdir())
    assert {f"dask-worker-{j}.out" for j in ours} <= set(logs), logs


def test_killed_worker_jobs_lose_nothing(slurm, acquisition):
    """All worker jobs are cancelled while images are being written: new jobs replace them
    (the run goes on), and whatever the first run could not finish, the rerun does."""
    folder = acquisition / "killed"
    comment = f"batchlib-test-{folder.name}"
    queue = Queue()
    queue.start()
    n_jobs = min(2, os.cpu_count() or 1)  # the node has a core per job
    proc = start(workflow(acquisition / "raw", folder, *on_slurm(n_jobs, folder)))
    killed = []
    deadline = time.time() + RUN_TIMEOUT
    try:
        while time.time() < deadline and proc.poll() is None:
            running = queue.running(comment)
            if len(running) == n_jobs and any(folder.glob("*.h5")):
                killed = sorted(running)
                subprocess.run(["scancel", *killed], check=True)
                break
            time.sleep(0.2)
        assert killed and proc.poll() is None, "the run ended before its worker jobs could be cancelled"
        code, out = finish(proc)
    finally:
        queue.stop.set()
        queue.join()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    # 0: the units of the dead workers were redone on the new ones; 1 or 2: some were
    # recorded as failed (e.g. a container damaged in the kill), for the rerun to redo.
    assert code in (0, 1, 2), out
    assert set(completed_jobs(killed).values()) == {"CANCELLED"}
    ours = [j for j, v in queue.seen.items() if v[1] == comment]
    assert len(ours) > n_jobs, f"no worker job replaced the cancelled ones: {queue.seen}"
    # The rerun completes the folder; nothing is lost or different from a serial run.
    code, out = finish(start(workflow(acquisition / "raw", folder, *on_slurm(1, folder))))
    assert code == 0, out
    assert all(v == ("processed", CFG.n_positions, CFG.n_positions) for v in job_counts(folder).values())
    assert_same_results(folder, acquisition / "serial")
    assert not list(folder.glob(".*tmp*")), "a temporary container was left behind"
