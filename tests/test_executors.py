"""Executors: serial, local processes and dask give the same outputs; results stream."""
import os

import numpy as np
import pandas as pd
import pytest

from batchlib.executors import (DaskExecutor, ProcessExecutor, SerialExecutor, make_executor)
from batchlib.io import open_file, read_table
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow

N_IMAGES = 10


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The same inputs through each executor: ``{executor: folder}``."""
    root = tmp_path_factory.mktemp("executors")
    inp = str(root / "in")
    arrays = make_array_inputs(inp, N_IMAGES, shape=(3, 16, 12))
    folders = {}
    for kind in ("serial", "processes", "dask"):
        folder = str(root / kind)
        res = run_workflow("WF", folder, [ImportArray(), ScaleRaw(factor=1.25)], input_folder=inp,
                           executor=kind, n_jobs=1 if kind == "serial" else 2, progress=False)
        assert res.success, kind
        assert [len(j.computed) for j in res.jobs] == [N_IMAGES, N_IMAGES], kind
        folders[kind] = folder
    return arrays, folders


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_same_outputs_as_serial(outputs, kind):
    arrays, folders = outputs
    for stem, data in arrays.items():
        with open_file(os.path.join(folders["serial"], stem + ".h5"), "r") as a, \
                open_file(os.path.join(folders[kind], stem + ".h5"), "r") as b:
            np.testing.assert_array_equal(a["raw"][:], data)
            for key in ("raw", "scaled"):
                assert a[key].dtype == b[key].dtype
                np.testing.assert_array_equal(a[key][:], b[key][:])
            pd.testing.assert_frame_equal(read_table(a, "tables/sums"), read_table(b, "tables/sums"))


def test_executor_status_is_complete(outputs):
    import json

    _, folders = outputs
    for kind, folder in folders.items():
        st = json.load(open(os.path.join(folder, "batchlib", "ScaleRaw.status")))
        assert st["counts"]["done"] == N_IMAGES and st["counts"]["computed_this_run"] == N_IMAGES, kind
        assert all(e["stamps"] and e["record"] for e in st["files"].values())
        wf = json.load(open(os.path.join(folder, "batchlib", "WF.status")))
        assert wf["options"]["executor"] == kind


def recording(items, submitted):
    for item in items:
        submitted.append(item)
        yield item


def check_streaming(executor, n):
    submitted, seen_at_first = [], None
    results = []
    for result in executor.map_unordered(abs, recording(range(-n, 0), submitted)):
        if seen_at_first is None:
            seen_at_first = len(submitted)
        results.append(result)
    assert sorted(results) == list(range(1, n + 1))
    assert len(submitted) == n
    # The first result came back while most items had not even been taken
    # from the generator: work is submitted in a bounded window, not all at once.
    assert seen_at_first <= n // 2, seen_at_first
    return seen_at_first


def test_processes_stream_results():
    with ProcessExecutor(2) as ex:
        first = check_streaming(ex, 30)
    assert first <= 2 * 2 + 1  # the window is 2 * n_jobs


def test_dask_streams_results():
    with DaskExecutor(n_workers=2) as ex:
        check_streaming(ex, 40)
        assert list(ex.map_unordered(abs, iter([]))) == []


def test_serial_and_factory():
    assert list(SerialExecutor().map_unordered(abs, [-1, -2])) == [1, 2]
    assert isinstance(make_executor("serial"), SerialExecutor)
    assert isinstance(make_executor("processes", n_jobs=1), SerialExecutor)
    with make_executor("processes", n_jobs=2) as ex:
        assert isinstance(ex, ProcessExecutor) and ex.n_workers == 2
        assert sorted(ex.map_unordered(abs, [-3, -1, -2])) == [1, 2, 3]
    with pytest.raises(ValueError):
        make_executor("threads")
    with pytest.raises(ValueError):
        ProcessExecutor(0)


class DroppingExecutor(SerialExecutor):
    """A broken executor that loses the last unit."""

    def map_unordered(self, fn, items, on_crash=None):
        items = list(items)
        for item in items[:-1]:
            yield fn(item)


def test_runner_refuses_lost_units(tmp_path):
    import json

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    with pytest.raises(RuntimeError, match="returned 2 results for 3 units"):
        ImportArray().run_in_folder(folder, inp, lambda: DroppingExecutor(), progress=False)
    st = json.load(open(os.path.join(folder, "batchlib", "ImportArray.status")))
    assert st["state"] == "errored" and st["counts"]["pending"] == 1


def test_a_dead_worker_fails_its_images_not_the_run(tmp_path):
    """A worker killed under an image (e.g. for memory) is a failed output, retried next run."""
    import json

    import numpy as np

    from batchlib import run_workflow
    from batchlib.testing import ImportArray, write_array_file

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(6):
        write_array_file(inp / f"img{i}.npy", np.full((2, 4, 4), i, np.uint16))
    result = run_workflow("W", out, [ImportArray(crash_on="img3")], input_folder=inp,
                          executor="processes", n_jobs=2, ignore_failed_outputs=True)
    job = result.jobs[0]
    assert job.state == "failed_outputs"
    assert "img3.npy" in job.failed and "worker process died" in job.failed["img3.npy"]
    status = json.loads((out / "batchlib" / "ImportArray.status").read_text())
    states = {k: e["state"] for k, e in status["files"].items()}
    assert states["img3.npy"] == "failed"
    assert sum(s == "done" for s in states.values()) + len(job.failed) == 6
    # Images lost with the pool are retried; with the crash gone everything completes.
    again = run_workflow("W", out, [ImportArray()], input_folder=inp, executor="processes", n_jobs=2)
    assert again.success and sorted(again.jobs[0].computed) == sorted(job.failed)


def test_slurm_job_script_carries_the_configured_resources():
    """SLURM itself is not available here; the job script dask-jobqueue would submit is."""
    pytest.importorskip("dask_jobqueue")
    from batchlib.executors import slurm_cluster

    cluster = slurm_cluster(queue="cpu", cores=8, memory="32GB", walltime="04:00:00", jobs=3,
                            account="mylab", scale=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p cpu" in script and "#SBATCH -A mylab" in script
    assert "#SBATCH -t 04:00:00" in script and "#SBATCH --cpus-per-task=8" in script
    assert "--nworkers 8" in script and "--nthreads 1" in script


def test_workers_run_one_thread_per_numeric_library(monkeypatch):
    """Worker processes share the cores: BLAS, OpenMP and numba get one thread each,
    unless the user set otherwise."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    with ProcessExecutor(2) as ex:
        names = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"]
        got = dict(zip(names, [ex._pool.submit(os.getenv, n).result() for n in names]))
    assert got == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "3"}


def test_a_retried_unit_replaces_what_a_dead_attempt_left(tmp_path):
    """dask retries a unit whose worker died with the same plan: the temporary container the
    dead attempt left (here truncated, as a kill mid-write leaves it) must not fail the retry."""
    from batchlib.base import Unit, execute_unit

    inp, out = tmp_path / "in", tmp_path / "out"
    arrays = make_array_inputs(str(inp), 1)
    out.mkdir()
    job = ImportArray()
    stem = next(iter(arrays))
    unit = Unit(stem + ".npy", [str(inp / f"{stem}.npy")], [str(out / f"{stem}.h5")])
    plan = job.write_plan(unit, {})
    tmp = plan[0][1]
    with open(tmp, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 88)  # 96 bytes: an h5 file cut short
    result = execute_unit((job, unit, plan, {}))
    assert result["state"] == "done", result.get("error")
    with open_file(out / f"{stem}.h5", "r") as f:
        np.testing.assert_array_equal(f["raw"][:], arrays[stem])
    assert not os.path.exists(tmp)


def test_slurm_options_reach_the_job_script(tmp_path):
    """Config-file and command-line SLURM options become the #SBATCH lines the README lists."""
    pytest.importorskip("dask_jobqueue")
    from batchlib.config import workflow_options, workflow_parser
    from batchlib.executors import slurm_cluster

    conf = tmp_path / "slurm.conf"
    conf.write_text("input_folder = in\nfolder = out\nexecutor = slurm\nslurm_queue = cpu\n"
                    "slurm_cores = 8\nslurm_memory = 32GB\nslurm_jobs = 3\n"
                    "slurm_job_extra = [qos=long, constraint=skylake]\n")
    args = workflow_parser("t", []).parse_args(["-c", str(conf), "--slurm_walltime", "04:00:00"])
    slurm = workflow_options(args)["slurm"]
    assert slurm["log_directory"] == os.path.join("out", "batchlib", "slurm")
    slurm["log_directory"] = str(tmp_path / "logs")
    cluster = slurm_cluster(**slurm, scale=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p cpu", "#SBATCH -n 1", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 04:00:00", "#SBATCH --qos=long", "#SBATCH --constraint=skylake",
                 f"#SBATCH -o {tmp_path / 'logs'}/dask-worker-%J.out"):
        assert line in script, line
    assert "--nworkers 8" in script and "--nthreads 1" in script
    args = workflow_parser("t", []).parse_args(["-c", str(conf), "--slurm_job_extra=-C gpu"])
    assert workflow_options(args)["slurm"]["job_extra_directives"] == ["-C gpu"]
