"""The "all up to date" certificate (batchlib.certificate): a rerun with nothing to do skips
planning only while nothing it would read changed, writes the status a planned rerun
writes, and every change sends the next run through planning with the right result."""
import json
import os
import shutil

import numpy as np
import pytest

from batchlib import planning
from batchlib.io import open_file
from batchlib.records import delete_record
from batchlib.status import status_dir
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs, units_by_group, write_array_file
from batchlib.workflow import run_job, run_workflow

from test_batched_planning import SumBeside, WarnArray, touch

N = 6


@pytest.fixture
def planned(monkeypatch):
    """The number of times planning ran (one call per job run that planned)."""
    calls = []
    real = planning.plan_units

    def spy(*args, **kwargs):
        calls.append(args[0].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "plan_units", spy)
    return calls


def status_of(folder, name):
    data = json.loads((status_dir(folder) / f"{name}.status").read_text())
    for k in ("started", "finished", "duration_s"):
        data.pop(k)
    return data


def certified_folder(tmp_path, job_factory=WarnArray):
    """Inputs, a run that computes, and a rerun that finds everything up to date (and
    certifies it)."""
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    assert len(run_job(job_factory(), folder, input_folder=inp, progress=False).computed) == N
    assert not (status_dir(folder) / f"{job_factory().name}.uptodate").exists()  # it computed
    assert run_job(job_factory(), folder, input_folder=inp, progress=False).computed == []
    assert (status_dir(folder) / f"{job_factory().name}.uptodate").exists()
    return inp, folder


def test_a_rerun_of_a_certified_folder_skips_planning_and_writes_the_same_status(tmp_path, planned):
    inp, folder = certified_folder(tmp_path)
    planned_status = status_of(folder, "WarnArray")
    index = (status_dir(folder) / "WarnArray.index").read_bytes()
    planned.clear()
    res = run_job(WarnArray(), folder, input_folder=inp, progress=False)
    assert planned == [] and res.success and res.computed == []
    assert res.counts == {"done": N, "failed": 0, "invalid": 0, "pending": 0, "total": N,
                          "computed_this_run": 0}
    # the people's status is the one a planned rerun wrote: the warning is still listed
    assert status_of(folder, "WarnArray") == planned_status
    assert planned_status["files"] == {}
    assert (status_dir(folder) / "WarnArray.index").read_bytes() == index


def test_warnings_stay_listed_in_a_certified_rerun(tmp_path, planned):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, 10, shape=(2, 4, 4))  # im000008 is warned about
    for _ in range(2):
        run_job(WarnArray(), folder, input_folder=inp, progress=False)
    planned.clear()
    run_job(WarnArray(), folder, input_folder=inp, progress=False)
    assert planned == []
    files = status_of(folder, "WarnArray")["files"]
    assert list(files) == ["im000008.npy"] and files["im000008.npy"]["warnings"] == ["im000008 looks odd"]


def _change_input(inp, folder):
    write_array_file(inp / "im000001.npy", np.ones((3, 4, 4), "uint16"))
    return {"im000001.npy"}, N


def _touch_input(inp, folder):
    touch(inp / "im000002.npy")
    return {"im000002.npy"}, N


def _new_input(inp, folder):
    make_array_inputs(inp, 1, shape=(2, 4, 4), start=N)
    return {f"im{N:06d}.npy"}, N + 1


def _deleted_input(inp, folder):
    os.remove(inp / "im000003.npy")
    return set(), N - 1


def _deleted_output(inp, folder):
    os.remove(folder / "im000004.h5")
    return {"im000004.npy"}, N


def _record_removed(inp, folder):
    with open_file(folder / "im000005.h5", "a") as f:
        delete_record(f, "WarnArray")
    return {"im000005.npy"}, N


def _index_deleted(inp, folder):
    os.remove(status_dir(folder) / "WarnArray.index")
    return set(), N


def _unrelated_container(inp, folder):
    shutil.copy(folder / "im000000.h5", folder / "copy.h5")
    return set(), N


@pytest.mark.parametrize("change", [_change_input, _touch_input, _new_input, _deleted_input,
                                    _deleted_output, _record_removed, _index_deleted,
                                    _unrelated_container])
def test_any_change_sends_the_rerun_through_planning(tmp_path, planned, change):
    inp, folder = certified_folder(tmp_path)
    recomputed, total = change(inp, folder)
    planned.clear()
    res = run_job(WarnArray(), folder, input_folder=inp, progress=False)
    assert planned == ["WarnArray"]
    assert set(res.computed) == recomputed and res.counts["total"] == total and res.success
    # and the run after it, with nothing changed, certifies and is certified again
    run_job(WarnArray(), folder, input_folder=inp, progress=False)
    planned.clear()
    assert run_job(WarnArray(), folder, input_folder=inp, progress=False).counts["total"] == total
    assert planned == []


@pytest.mark.parametrize("options", [{"force_recompute": True}, {"rerun_triggers": ("params",)}])
def test_force_and_other_triggers_are_not_certified(tmp_path, planned, options):
    inp, folder = certified_folder(tmp_path)
    planned.clear()
    res = run_job(WarnArray(), folder, input_folder=inp, progress=False, **options)
    assert len(res.computed) == (N if options.get("force_recompute") else 0)
    if not options.get("force_recompute"):
        assert planned == ["WarnArray"]  # the certificate was for other triggers


def test_other_parameters_are_not_certified(tmp_path, planned):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    for _ in range(2):
        run_job(ImportArray(), folder, input_folder=inp, progress=False)
        run_job(ScaleRaw(), folder, progress=False)
    planned.clear()
    assert len(run_job(ScaleRaw(factor=3.0), folder, progress=False).computed) == N
    assert planned == ["ScaleRaw"]


def test_a_run_that_fails_or_is_invalid_leaves_no_certificate(tmp_path, planned):
    inp, folder = certified_folder(tmp_path)
    cert = status_dir(folder) / "WarnArray.uptodate"
    os.remove(folder / "im000001.h5")
    res = run_job(WarnArray(fail_on="im000001"), folder, input_folder=inp, progress=False,
                  ignore_failed_outputs=True)
    assert list(res.failed) == ["im000001.npy"] and not cert.exists()
    res = run_job(WarnArray(fail_on="im000001"), folder, input_folder=inp, progress=False,
                  ignore_failed_outputs=True)
    assert list(res.failed) == ["im000001.npy"] and not cert.exists()  # failed last time: redone
    (inp / "bad.npy").write_bytes(b"")
    res = run_job(WarnArray(), folder, input_folder=inp, progress=False, ignore_invalid_inputs=True)
    assert res.computed == ["im000001.npy"] and list(res.invalid) == ["bad.npy"] and not cert.exists()


def test_a_killed_run_leaves_no_certificate_behind(tmp_path, planned, monkeypatch):
    inp, folder = certified_folder(tmp_path)
    touch(inp / "im000002.npy")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(planning, "check_unit", killed)
    with pytest.raises(KeyboardInterrupt):
        run_job(WarnArray(), folder, input_folder=inp, progress=False)
    assert not (status_dir(folder) / "WarnArray.uptodate").exists()


def test_jobs_on_containers_in_one_folder_are_certified_after_a_quiet_run(tmp_path, planned):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    jobs = lambda: [ImportArray(), ScaleRaw(), SumBeside()]  # noqa: E731
    for _ in range(2):
        assert run_workflow("W", folder, jobs(), input_folder=inp, progress=False).success
    planned.clear()
    res = run_workflow("W", folder, jobs(), input_folder=inp, progress=False)
    assert planned == [] and all(r.computed == [] and r.counts["done"] == N for r in res.jobs)
    # a file beside a container (SumBeside's table) changed: that job plans, redoes it
    (folder / "sums" / "im000003.h5.txt").write_text("0")
    res = run_workflow("W", folder, jobs(), input_folder=inp, progress=False)
    assert planned == ["SumBeside"] and res.jobs[2].computed == ["im000003.h5"]
    assert (folder / "sums" / "im000003.h5.txt").read_text() != "0"


def test_jobs_with_own_units_or_hashed_inputs_get_no_certificate(tmp_path):
    class Groups(ImportArray):
        def units_for(self, input_folder, folder, previous):
            return units_by_group(self, input_folder, folder)

    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, 4, shape=(1, 3, 3))
    for job in (Groups, lambda: ImportArray(hash_inputs=True), lambda: ImportArray(output_ext=".n5")):
        for _ in range(3):
            assert run_job(job(), folder, input_folder=inp, progress=False).success
        assert not list(status_dir(folder).glob("*.uptodate"))


def test_a_job_whose_files_beside_cannot_be_guessed_plans_as_before(tmp_path, planned):
    class Odd(SumBeside):
        def folder_outputs(self, output_path):
            if os.path.basename(output_path) == "x.h5":
                raise ValueError("only real container names")
            return super().folder_outputs(output_path)

    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    run_job(ImportArray(), folder, input_folder=inp, progress=False)
    for _ in range(3):
        assert run_job(Odd(), folder, progress=False).success
    assert planned.count("Odd") == 3 and not (status_dir(folder) / "Odd.uptodate").exists()
