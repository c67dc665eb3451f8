"""Planning is the framework's: the units_for hook, the mtime trigger, and jobs that
still define planning methods."""

import numpy as np
import pytest

from batchlib import BatchJob, run_job
from batchlib.base import Unit
from batchlib.container_job import KeySpec
from batchlib.io import create_dataset, open_file
from batchlib.planning import newest_mtime, stale_reason
from batchlib.testing import ImportArray, units_by_group, write_array_file


class StackGroups(BatchJob):
    """One unit per group of ``<group>_<i>.npy`` files, stacked into ``<group>.h5``."""

    output_keys = {"stack": KeySpec(ndim=3)}
    seen: list = []  # what units_for was given, per run (the job runs in this process)

    def units_for(self, input_folder, folder, previous):
        type(self).seen.append(dict(previous))
        return units_by_group(self, input_folder, folder)

    def run(self, input_files, output_files, **kwargs):
        with open_file(output_files[0], "a") as f:
            create_dataset(f, "stack", data=np.stack([np.load(p) for p in input_files]))


def test_units_for_groups_inputs_and_sees_the_previous_entries(tmp_path):
    inp, folder = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rng = np.random.default_rng(1)
    arrays = {f"{g}_{i}": rng.integers(0, 100, (4, 5)) for g in "ab" for i in range(3)}
    for name, a in arrays.items():
        write_array_file(inp / f"{name}.npy", a)
    StackGroups.seen = []
    job = StackGroups(input_pattern="*.npy")
    first = run_job(job, folder, input_folder=inp, progress=False)
    assert sorted(first.computed) == ["a", "b"] and StackGroups.seen[0] == {}
    with open_file(folder / "b.h5", "r") as f:
        np.testing.assert_array_equal(f["stack"][:], np.stack([arrays[f"b_{i}"] for i in range(3)]))
    again = run_job(job, folder, input_folder=inp, progress=False)
    assert again.computed == []
    previous = StackGroups.seen[1]
    assert sorted(previous) == ["a", "b"] and previous["a"]["outputs"] == ["a.h5"]
    assert previous["a"]["input_signature"] == job.input_signature(Unit("a", sorted(
        str(inp / f"a_{i}.npy") for i in range(3)), []))
    write_array_file(inp / "a_1.npy", arrays["a_1"] + 1)  # another size or mtime: group a only
    changed = run_job(job, folder, input_folder=inp, progress=False)
    assert changed.computed == ["a"]
    with open_file(folder / "a.h5", "r") as f:
        np.testing.assert_array_equal(f["stack"][1], arrays["a_1"] + 1)


@pytest.mark.parametrize("name,hook", [("list_units", "units_for"), ("check_unit", "input_signature"),
                                        ("stale_reason", "input_signature")])
def test_a_job_defining_a_planning_method_is_refused(name, hook):
    with pytest.raises(TypeError, match=f"defines \\['{name}'\\].*override {hook}"):
        type("OldJob", (ImportArray,), {name: lambda self, *a: None})


def test_mtime_trigger_reads_flat_and_per_file_signatures():
    job = ImportArray()
    rec = {"param_hash": job.param_hash, "version": job.version, "finished_ns": 100}
    per_file = Unit("x", [], [], signature={"x.npy": {"size": 3, "mtime_ns": 150}})
    flat = Unit("acq", [], [], signature={"n_files": 2, "size_bytes": 9, "mtime_ns": 90})
    assert stale_reason(job, per_file, rec, ("mtime",)) == "input newer than output"
    assert stale_reason(job, flat, rec, ("mtime",)) is None
    assert stale_reason(job, flat, dict(rec, finished_ns=80), ("mtime",)) == "input newer than output"
    # Other triggers are not consulted in mtime mode: a changed parameter hash is not stale.
    assert stale_reason(job, flat, dict(rec, param_hash="other"), ("mtime",)) is None
    assert stale_reason(job, flat, dict(rec, param_hash="other"), ("params",)) == "parameters changed"
    assert newest_mtime({"error": "gone"}) == 0
