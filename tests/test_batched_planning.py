"""Planning all units at once (planning.plan_units) decides exactly what planning one unit
at a time does: same units to compute with the same reasons, same invalid inputs, and the
same index and status files, over a folder with done, changed, deleted, new, failed,
invalid and warned-about units."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from batchlib.container_job import BatchJobOnContainer, KeySpec
from batchlib.errors import OutputCollisionError
from batchlib.io import create_dataset, open_file
from batchlib.planning import Fingerprints, fingerprint, list_units
from batchlib.records import delete_record
from batchlib.runner import JobRunner, RunOptions
from batchlib.status import JobStatus, status_dir
from batchlib.testing import ImportArray, units_by_group, ScaleRaw, make_array_inputs, write_array_file
from batchlib.workflow import run_job

N = 10


class WarnArray(ImportArray):
    """ImportArray that warns about ``im000008`` (its entry stays in the .status file)."""

    def process(self, input_file, output_file):
        if "im000008" in os.path.basename(input_file):
            self.warn("im000008 looks odd")
        super().process(input_file, output_file)


class SumBeside(BatchJobOnContainer):
    """Writes the sum of ``raw`` into ``sums/<container>.txt`` beside the containers."""

    input_keys = {"raw": KeySpec(ndim=3)}
    output_keys = {"done": KeySpec()}

    def folder_outputs(self, output_path):
        folder, name = os.path.split(output_path)
        return [os.path.join(folder, "sums", name + ".txt")]

    def process_container(self, container, path):
        os.makedirs(os.path.join(os.path.dirname(path), "sums"), exist_ok=True)
        Path(self.folder_outputs(path)[0]).write_text(str(int(container["raw"][:].sum())))
        create_dataset(container, "done", data=np.ones(1, "uint8"))


class StackPairs(ImportArray):
    """One unit per group of ``<group>_<i>.npy`` files (units_for), into ``<group>.h5``."""

    def units_for(self, input_folder, folder, previous):
        return units_by_group(self, input_folder, folder)

    def run(self, input_files, output_files, **kwargs):
        with open_file(output_files[0], "a") as f:
            create_dataset(f, "raw", data=np.concatenate([np.load(p) for p in input_files]))


def plan(job, folder, inp, batched, monkeypatch, **options) -> dict:
    """What one runner's plan decides and writes, with the status directory put back after."""
    sdir = status_dir(folder)
    saved = {p.name: p.read_bytes() for p in sdir.iterdir()}
    monkeypatch.setattr(JobRunner, "batched_planning", batched)
    runner = JobRunner(job, folder, inp, lambda: None, RunOptions(progress=False, **options))
    try:
        units, todo, invalid = runner.plan()
        error = None
    except OutputCollisionError as e:
        units, todo, invalid, error = [], [], {}, e.collisions
    else:
        runner.status.finish("processed")
    status = json.loads((sdir / f"{job.name}.status").read_text())
    for k in ("started", "finished", "duration_s"):
        status.pop(k)
    out = {"todo": [(u.key, u.outputs, u.signature, sorted(recs), runner.status.files[u.key]["reason"])
                    for u, recs in todo],
           "invalid": invalid, "n_units": len(units), "error": error, "status": status,
           "index": (sdir / f"{job.name}.index").read_bytes(),
           "unchanged": sorted(u for u in units if isinstance(u, str))}
    for p in sdir.iterdir():
        if p.name not in saved:
            p.unlink()
    for name, data in saved.items():
        (sdir / name).write_bytes(data)
    return out


def same_plan(job, folder, inp, monkeypatch, **options) -> dict:
    """The batched plan, after checking that planning one unit at a time gives the same."""
    one_by_one = plan(job, folder, inp, False, monkeypatch, **options)
    batched = plan(job, folder, inp, True, monkeypatch, **options)
    assert one_by_one["unchanged"] == []  # the reference never takes the shortcut
    for k in ("todo", "invalid", "n_units", "error", "status", "index"):
        assert batched[k] == one_by_one[k], k
    return batched


def touch(path, seconds=1):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def make_mixed(tmp_path, ext, triggers=("input", "params", "version"), downstream=True):
    """A folder after runs over N inputs (one failed, one invalid), then changed:
    im000001 rewritten, im000002's output deleted, im000004's output touched, im000005
    deleted, im000006's record removed, im000007 touched, im000010 new."""
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, N, shape=(2, 4, 4))
    (inp / "bad.npy").write_bytes(b"")
    opts = dict(progress=False, ignore_invalid_inputs=True, rerun_triggers=triggers)
    for round in range(2):  # the second finds every job's outputs up to date, as the last job left them
        first = run_job(WarnArray(output_ext=ext, fail_on="im000003"), folder, input_folder=inp,
                        ignore_failed_outputs=True, **opts)
        assert list(first.failed) == ["im000003.npy"] and len(first.computed) == (N - 1 if round == 0 else 0)
        if downstream:
            run_job(ScaleRaw(), folder, **opts)
            run_job(SumBeside(), folder, **opts)
    write_array_file(inp / "im000001.npy", np.ones((3, 4, 4), "uint16"))
    os.remove(inp / "im000005.npy")
    if ext == ".h5":
        os.remove(folder / f"im000002{ext}")
    else:
        shutil.rmtree(folder / f"im000002{ext}")
    touch(folder / f"im000004{ext}")
    with open_file(folder / f"im000006{ext}", "a") as f:
        delete_record(f, "WarnArray")
    touch(inp / "im000007.npy")
    make_array_inputs(inp, 1, shape=(2, 4, 4), start=N)
    return inp, folder, ext


@pytest.fixture(params=[".h5", ".n5"])
def mixed(request, tmp_path):
    return make_mixed(tmp_path, request.param)


def test_batched_planning_of_a_mixed_folder_is_the_reference(mixed, monkeypatch):
    inp, folder, ext = mixed
    res = same_plan(WarnArray(output_ext=ext), folder, inp, monkeypatch, ignore_invalid_inputs=True)
    reasons = {key: reason for key, _, _, _, reason in res["todo"]}
    assert reasons == {"im000001.npy": "input changed", "im000002.npy": f"output im000002{ext} missing",
                       "im000003.npy": "failed last time",
                       "im000006.npy": f"im000006{ext} has no completion record (unfinished)",
                       "im000007.npy": "input changed", "im000010.npy": f"output im000010{ext} missing"}
    assert list(res["invalid"]) == ["bad.npy"] and res["n_units"] == N + 1
    # The shortcut was taken: unchanged units are only keys. A touched h5 file is checked;
    # the identity of an n5 directory is that of its records, which touching it leaves.
    touched = ["im000004.npy"] if ext == ".n5" else []
    assert res["unchanged"] == sorted(["im000000.npy", "im000008.npy", "im000009.npy"] + touched)
    assert res["status"]["files"]["im000008.npy"]["warnings"] == ["im000008 looks odd"]
    assert res["status"]["counts"] == {"done": 4, "failed": 0, "invalid": 1, "pending": 6, "total": 11,
                                       "computed_this_run": 0}
    rows = [json.loads(line.split(b"\t")[0]) for line in res["index"].splitlines()[1:]]
    assert "im000005.npy" not in rows and len(rows) == N + 1


@pytest.mark.parametrize("options", [{"rerun_triggers": ("mtime",)}, {"rerun_triggers": ("params",)},
                                     {"rerun_triggers": ("input", "params", "version", "mtime")},
                                     {"force_recompute": True}, {"ignore_invalid_inputs": False}])
def test_batched_planning_under_every_trigger(tmp_path, monkeypatch, options):
    triggers = options.get("rerun_triggers", ("input", "params", "version"))
    inp, folder, ext = make_mixed(tmp_path, ".h5", triggers, downstream=False)
    res = same_plan(WarnArray(output_ext=ext), folder, inp, monkeypatch, **options)
    if options.get("force_recompute"):
        assert len(res["todo"]) == N and res["unchanged"] == []
    else:
        assert {"im000002.npy", "im000003.npy", "im000010.npy"} <= {k for k, *_ in res["todo"]}
        assert "im000000.npy" in res["unchanged"]
    # Under other triggers, the fingerprints taken under these do not match: all is checked.
    other = ("params",) if triggers != ("params",) else ("input", "params", "version")
    res = same_plan(WarnArray(output_ext=ext), folder, inp, monkeypatch, rerun_triggers=other)
    assert res["unchanged"] == [] and res["todo"]


@pytest.mark.parametrize("job", [ScaleRaw(), ScaleRaw(factor=3.0), SumBeside()], ids=["same", "params", "beside"])
def test_batched_planning_of_jobs_on_containers(mixed, monkeypatch, job):
    inp, folder, ext = mixed
    res = same_plan(job, folder, folder, monkeypatch, ignore_invalid_inputs=True)
    if job.param_values.get("factor", 2.0) == 2.0:
        # im000003 (failed upstream) and im000002 (deleted) have no outputs to check;
        # those whose container was rewritten or lost its record are checked.
        assert res["unchanged"] and "im000000" + ext in res["unchanged"]
    else:
        assert res["unchanged"] == []
    # A file beside a container changed: that container only is redone.
    if isinstance(job, SumBeside):
        (folder / "sums" / f"im000009{ext}.txt").write_text("0")
        res = same_plan(job, folder, folder, monkeypatch, ignore_invalid_inputs=True)
        assert any(k == f"im000009{ext}" for k, *_ in res["todo"])


def test_batched_planning_with_hashed_inputs_and_units_for(tmp_path, monkeypatch):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, 4, shape=(1, 3, 3))
    run_job(ImportArray(hash_inputs=True), folder, input_folder=inp, progress=False)
    touch(inp / "im000000.npy")  # same bytes: still up to date, through the check
    write_array_file(inp / "im000001.npy", np.zeros((1, 3, 3), "uint16"))  # same size, other bytes
    res = same_plan(ImportArray(hash_inputs=True), folder, inp, monkeypatch)
    assert [k for k, *_ in res["todo"]] == ["im000001.npy"]
    assert res["unchanged"] == ["im000002.npy", "im000003.npy"]

    groups, gfolder = tmp_path / "groups", tmp_path / "gout"
    for g in "abc":
        make_array_inputs(groups, 2, shape=(1, 3, 3), prefix=f"{g}_")
    run_job(StackPairs(), gfolder, input_folder=groups, progress=False)
    touch(groups / "b_000001.npy")
    res = same_plan(StackPairs(), gfolder, groups, monkeypatch)
    assert [k for k, *_ in res["todo"]] == ["b"] and res["unchanged"] == ["a", "c"]


def test_batched_planning_refuses_an_output_collision_with_an_unchanged_unit(tmp_path, monkeypatch):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, 2, shape=(1, 3, 3))
    run_job(ImportArray(input_pattern="*"), folder, input_folder=inp, progress=False)
    (inp / "im000001.txt").write_text("not an array")  # would be written to im000001.h5 too
    res = same_plan(ImportArray(input_pattern="*"), folder, inp, monkeypatch)
    assert res["error"] == {str(folder / "im000001.h5"): ["im000001.npy", "im000001.txt"]}


def test_fingerprints_are_those_of_fingerprint(mixed):
    inp, folder, ext = mixed
    if ext == ".h5":  # an input that cannot be read (its signature is the error) with an output
        os.symlink(inp / "nowhere", inp / "gone.npy")
        shutil.copy(folder / "im000000.h5", folder / "gone.h5")
    for job, where in [(WarnArray(output_ext=ext), inp), (ImportArray(output_ext=ext, hash_inputs=True), inp),
                       (ScaleRaw(), folder), (SumBeside(), folder)]:
        triggers = ("params", "input")
        status = JobStatus(status_dir(folder) / "Other.status", {"job": "Other"})  # an empty cache
        units = list_units(job, str(where), str(folder), status)
        batch = Fingerprints(job, triggers)
        assert len(units) >= N - 2
        if ext == ".h5" and not isinstance(job, BatchJobOnContainer):
            assert [u.key for u in units if "error" in u.signature] == ["gone.npy"]
        written = 0
        for unit in units:
            expected = fingerprint(job, unit, triggers)
            recorded = [os.path.relpath(o, folder) for o in unit.outputs]
            assert batch.get(unit.signature, unit.outputs) == expected
            if batch.plain and len(recorded) == 1 and recorded[0].endswith(".h5"):
                assert batch.of_plain_input(unit.inputs[0], recorded[0], str(folder)) == expected, unit.key
                written += 1
        # Written directly: the default hooks and h5 containers, nothing beside them.
        plain = ext == ".h5" and not isinstance(job, SumBeside) and not job.param_values.get("hash_inputs")
        assert written == (len(units) if plain else 0)
        status.index.close()


def test_batched_planning_of_names_that_need_quoting(tmp_path, monkeypatch):
    inp, folder = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    names = ["it's", 'say "hi"', "grüße näme", "back\\slash"]
    for i, name in enumerate(names):
        write_array_file(inp / f"{name}.npy", np.full((1, 2, 2), i, "uint8"))
    run_job(ImportArray(), folder, input_folder=inp, progress=False)
    res = same_plan(ImportArray(), folder, inp, monkeypatch)
    assert res["todo"] == [] and res["unchanged"] == sorted(f"{n}.npy" for n in names)
    touch(inp / "it's.npy")
    res = same_plan(ImportArray(), folder, inp, monkeypatch)
    assert [(k, r) for k, *_, r in res["todo"]] == [("it's.npy", "input changed")]
