"""Damaged data is noticed: ``batchlib verify`` and the checks made while planning (issue 9, defect 6)."""
import glob
import os

import numpy as np
import pytest

from batchlib.cli import main as cli_main
from batchlib.container_job import BatchJobOnContainer, KeySpec
from batchlib.io import open_file
from batchlib.records import read_record
from batchlib.testing import ImportArray, ScaleRaw, SumScaled, make_array_inputs
from batchlib.verify import verify_folder
from batchlib.workflow import run_workflow

N = 3


def jobs(ext):
    return [ImportArray(output_ext=ext), ScaleRaw(), SumScaled()]


def run(folder, inp, ext, **kw):
    res = run_workflow("WF", folder, jobs(ext), input_folder=inp, progress=False, **kw)
    assert res.success
    return {j.name: sorted(j.computed) for j in res.jobs}


def snapshot(folder, ext):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*" + ext))):
        with open_file(path, "r") as f:
            out[os.path.basename(path)] = (f["raw"][:], f["scaled"][:], f["tables/total/total"][:])
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        for x, y in zip(a[k], b[k]):
            np.testing.assert_array_equal(x, y)


@pytest.fixture(params=[".h5", ".n5"])
def done(request, tmp_path):
    ext = request.param
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, N, shape=(4, 16, 16))
    run(folder, inp, ext)
    return folder, inp, ext, snapshot(folder, ext)


def flip_stored_byte(container, key):
    """Flip one byte in the middle of the first stored chunk of ``container[key]``."""
    if container.endswith(".h5"):
        import h5py

        with h5py.File(container, "r") as f:
            info = f[key].id.get_chunk_info(0)
        offset, target = info.byte_offset + info.size // 2, container
    else:
        target = sorted(p for p in glob.glob(os.path.join(container, key, "**"), recursive=True)
                        if os.path.isfile(p) and not p.endswith(".json"))[0]
        offset = os.path.getsize(target) // 2
    with open(target, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def chunk_files(container, key):
    return sorted(p for p in glob.glob(os.path.join(container, key, "**"), recursive=True)
                  if os.path.isfile(p) and not p.endswith(".json"))


@pytest.mark.parametrize("key,job,redone", [
    ("scaled", "ScaleRaw", {"ScaleRaw", "SumScaled"}),
    ("raw", "ImportArray", {"ImportArray", "ScaleRaw", "SumScaled"}),
])
def test_flipped_byte_is_found_and_exactly_that_container_is_recomputed(done, key, job, redone):
    folder, inp, ext, before = done
    victim = os.path.join(folder, "im000001" + ext)
    flip_stored_byte(victim, key)
    # Planning reads metadata only: the damage is not visible to it...
    assert run(folder, inp, ext) == {"ImportArray": [], "ScaleRaw": [], "SumScaled": []}
    # ...verify reads the data and finds it, naming the dataset and the job that wrote it.
    damages = verify_folder(folder, progress=False)
    assert [(os.path.basename(d.path), d.key, d.job) for d in damages] == [("im000001" + ext, key, job)]
    assert "checksum mismatch" in damages[0].reason
    assert read_record(victim, job) is None  # marked for recompute
    computed = run(folder, inp, ext)
    for name in ("ImportArray", "ScaleRaw", "SumScaled"):
        want = ["im000001.npy" if name == "ImportArray" else "im000001" + ext] if name in redone else []
        assert computed[name] == want, (name, computed)
    assert_same(snapshot(folder, ext), before)
    assert verify_folder(folder, progress=False) == []


def test_deleted_and_truncated_n5_chunks_are_found(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, N, shape=(4, 16, 16))
    run(folder, inp, ".n5")
    before = snapshot(folder, ".n5")
    os.remove(chunk_files(os.path.join(folder, "im000000.n5"), "scaled")[0])
    with open(chunk_files(os.path.join(folder, "im000002.n5"), "raw")[1], "r+b") as fh:
        fh.truncate(5)
    damages = verify_folder(folder, progress=False)
    found = sorted((os.path.basename(d.path), d.key, d.job) for d in damages)
    assert found == [("im000000.n5", "scaled", "ScaleRaw"), ("im000002.n5", "raw", "ImportArray")]
    computed = run(folder, inp, ".n5")
    assert computed == {"ImportArray": ["im000002.npy"], "ScaleRaw": ["im000000.n5", "im000002.n5"],
                        "SumScaled": ["im000000.n5", "im000002.n5"]}
    assert_same(snapshot(folder, ".n5"), before)


def test_deleted_output_of_the_last_job_is_noticed_while_the_status_is_trusted(tmp_path):
    """n5: the status cache's stamp covers only the records; the output keys are checked too."""
    import shutil

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, N, shape=(4, 16, 16))
    run(folder, inp, ".n5")
    before = snapshot(folder, ".n5")
    shutil.rmtree(os.path.join(folder, "im000001.n5", "tables", "total"))
    computed = run(folder, inp, ".n5")
    assert computed == {"ImportArray": [], "ScaleRaw": [], "SumScaled": ["im000001.n5"]}
    assert_same(snapshot(folder, ".n5"), before)


def test_a_dataset_that_changed_shape_is_redone_at_planning(tmp_path):
    """The record lists what was written; a rewritten dataset of another shape is noticed cheaply."""
    from batchlib.io import create_dataset

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, N, shape=(4, 16, 16))
    run(folder, inp, ".h5")
    before = snapshot(folder, ".h5")
    with open_file(os.path.join(folder, "im000002.h5"), "a") as f:
        create_dataset(f, "scaled", data=np.zeros((2, 16, 16), "float32"))
    computed = run(folder, inp, ".h5")
    assert computed["ScaleRaw"] == ["im000002.h5"] and computed["ImportArray"] == []
    assert_same(snapshot(folder, ".h5"), before)


def test_an_unreadable_container_is_moved_aside_and_rebuilt(done):
    folder, inp, ext, before = done
    victim = os.path.join(folder, "im000000" + ext)
    if ext == ".h5":
        with open(victim, "r+b") as fh:  # the superblock: the file no longer opens
            fh.write(b"\0" * 64)
    else:
        with open(os.path.join(victim, "attributes.json"), "w") as fh:
            fh.write("{not json")
    damages = verify_folder(folder, progress=False)
    assert [(os.path.basename(d.path), d.key) for d in damages] == [("im000000" + ext, None)]
    assert os.path.exists(victim + ".damaged") and not os.path.exists(victim)
    computed = run(folder, inp, ext)
    assert computed == {"ImportArray": ["im000000.npy"], "ScaleRaw": ["im000000" + ext],
                        "SumScaled": ["im000000" + ext]}
    assert_same(snapshot(folder, ext), before)


def test_cli_reports_a_table_and_exit_code(done, capsys):
    folder, inp, ext, _ = done
    assert cli_main(["verify", folder]) == 0
    assert "no damage found" in capsys.readouterr().out
    flip_stored_byte(os.path.join(folder, "im000002" + ext), "scaled")
    # --job restricts the check to one job's outputs: ImportArray's are intact.
    assert cli_main(["verify", folder, "--job", "ImportArray", "--no_mark"]) == 0
    capsys.readouterr()
    assert cli_main(["verify", folder, "--no_mark"]) == 1
    out = capsys.readouterr().out
    assert "im000002" + ext in out and "scaled" in out and "ScaleRaw" in out and "not marked" in out
    assert read_record(os.path.join(folder, "im000002" + ext), "ScaleRaw") is not None
    assert cli_main(["verify", folder]) == 1
    assert "record removed: ScaleRaw, SumScaled" in capsys.readouterr().out
    assert read_record(os.path.join(folder, "im000002" + ext), "ScaleRaw") is None


def test_digests_of_an_unknown_algorithm_fall_back_to_decoding(tmp_path):
    """Records from another version (another checksum) are checked by reading, not flagged."""
    from batchlib.records import write_record

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 1, shape=(4, 16, 16))
    run(folder, inp, ".h5")
    path = os.path.join(folder, "im000000.h5")
    rec = read_record(path, "ScaleRaw")
    rec["datasets"] = {k: {**v, "digest": "otherhash:0123"} for k, v in rec["datasets"].items()}
    with open_file(path, "a") as f:
        write_record(f, "ScaleRaw", rec)
    assert verify_folder(folder, progress=False) == []


class DropScaled(BatchJobOnContainer):
    """Replaces ``scaled`` (ScaleRaw's) by its first frame, as Compress's drop_raw replaces raw."""

    input_keys = {}
    output_keys = {"first": KeySpec(ndim=2)}

    def process_container(self, container, path):
        from batchlib.io import create_dataset

        create_dataset(container, "first", data=container["scaled"][0])
        del container["scaled"]


def test_datasets_removed_on_purpose_by_a_later_job_are_not_damage(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 1, shape=(4, 16, 16))
    jobs = [ImportArray(), ScaleRaw(), DropScaled()]
    assert run_workflow("WF", folder, jobs, input_folder=inp, progress=False).success
    path = os.path.join(folder, "im000000.h5")
    assert read_record(path, "DropScaled")["removed"] == ["scaled"]
    assert verify_folder(folder, progress=False) == []
    with open_file(path, "a") as f:  # but a deletion nobody recorded is damage
        del f["raw"]
    assert [(d.key, d.job) for d in verify_folder(folder, progress=False, mark=False)] == [("raw", "ImportArray")]
