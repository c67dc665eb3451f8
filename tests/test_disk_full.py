"""A full disk never leaves an unrecoverable folder (issue 9, defects 1 and 7).

The tmpfs tests mount a small file system (root only) and skip with the
reason elsewhere; the others damage containers by hand and run anywhere.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from batchlib.io import open_file
from batchlib.status import clean_status_temporaries
from batchlib.testing import ImportArray, ScaleRaw, SumScaled, make_array_inputs
from batchlib.workflow import run_workflow

SCRIPT = """
import sys
from batchlib.testing import ImportArray, ScaleRaw, SumScaled
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, ext, reserve = sys.argv[1:5]
if reserve == "off":  # the fallback: HDF5 itself meets the full disk
    ScaleRaw.estimate_output_bytes = SumScaled.estimate_output_bytes = lambda self, *args: 0
jobs = [ImportArray(output_ext=ext), ScaleRaw(), SumScaled()]
sys.exit(main_exit_code(lambda: run_workflow("WF", folder, jobs, input_folder=inp, progress=False,
                                             status_interval_s=0.0)))
"""
SHAPE = (6, 96, 96)  # random uint16: ~110 kB raw, ~220 kB scaled per container


def run_script(folder, inp, ext, reserve="on"):
    env = dict(os.environ, BATCHLIB_RESERVE_MB=str(50_000 / (1 << 20)))
    return subprocess.run([sys.executable, "-c", SCRIPT, folder, inp, ext, reserve],
                          capture_output=True, text=True, env=env, timeout=120)


def snapshot(folder, ext):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*" + ext))):
        with open_file(path, "r") as f:
            out[os.path.basename(path)] = [f["raw"][:], f["scaled"][:], f["tables/total/total"][:]]
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk, leave_bytes) -> str:
    st = os.statvfs(disk)
    size = st.f_bavail * st.f_frsize - leave_bytes
    ballast = os.path.join(disk, "ballast")
    if size > 0:
        subprocess.run(["fallocate", "-l", str(size), ballast], check=True)
    return ballast


@pytest.mark.parametrize("ext,reserve", [(".h5", "on"), (".n5", "on"), (".h5", "off")])
def test_full_disk_then_rerun_finishes(tmp_path, small_disk, ext, reserve, monkeypatch):
    from batchlib.base import BatchJob

    monkeypatch.setattr(BatchJob, "reserve_margin_bytes", 50_000)  # as $BATCHLIB_RESERVE_MB below
    inp, ref = str(tmp_path / "in"), str(tmp_path / "ref")
    make_array_inputs(inp, 3, shape=SHAPE)
    jobs = lambda: [ImportArray(output_ext=ext), ScaleRaw(), SumScaled()]  # noqa: E731
    assert run_workflow("WF", ref, jobs(), input_folder=inp, progress=False).success
    expected = snapshot(ref, ext)
    folder = os.path.join(small_disk, "work")
    assert run_workflow("WF", folder, jobs()[:1], input_folder=inp, progress=False).success
    ballast = fill(small_disk, 300_000)  # room for about one container's "scaled"

    # In a process of its own: with reserve="off" HDF5 may crash the process.
    first = run_script(folder, inp, ext, reserve)
    if reserve == "on":
        # Stopped before writing: a clear message and exit code 1, no traceback, no crash.
        assert first.returncode == 1, first.stderr[-2000:]
        assert "disk full: " in first.stderr and " MB free" in first.stderr
        assert "Traceback" not in first.stderr
        assert not glob.glob(os.path.join(folder, "batchlib", ".*.tmp-*"))
    else:
        # HDF5 met the full disk itself; whatever the first run did (even a crash) the
        # rerun below must finish.
        assert first.returncode != 0

    os.remove(ballast)
    assert run_workflow("WF", folder, jobs(), input_folder=inp, progress=False).success
    assert not glob.glob(os.path.join(folder, "batchlib", ".*.tmp-*"))
    got = snapshot(folder, ext)
    assert got.keys() == expected.keys()
    for k in got:
        for a, b in zip(got[k], expected[k]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flags", [{}, {"ignore_invalid_inputs": True, "ignore_failed_outputs": True}])
def test_planning_survives_a_damaged_h5_and_rebuilds_it(tmp_path, flags):
    """A container that no longer opens: planning does not crash; the job that created it
    rebuilds it, with or without the ignore flags, and the jobs downstream redo it."""
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3, shape=(4, 16, 16))
    jobs = [ImportArray(), ScaleRaw(), SumScaled()]
    assert run_workflow("WF", folder, jobs, input_folder=inp, progress=False).success
    expected = snapshot(folder, ".h5")
    victim = os.path.join(folder, "im000001.h5")
    with open(victim, "r+b") as fh:
        fh.seek(os.path.getsize(victim) // 2)
        fh.write(b"\xff" * 4096)  # a stretch of metadata and data
        fh.seek(0)
        fh.write(b"\0" * 8)  # and the signature: the file no longer opens
    res = run_workflow("WF", folder, [ImportArray(), ScaleRaw(), SumScaled()], input_folder=inp,
                       progress=False, **flags)
    assert res.success
    assert [j.computed for j in res.jobs] == [["im000001.npy"], ["im000001.h5"], ["im000001.h5"]]
    got = snapshot(folder, ".h5")
    for k in got:
        for a, b in zip(got[k], expected[k]):
            np.testing.assert_array_equal(a, b)


def test_a_damaged_container_makes_downstream_jobs_invalid_not_a_crash(tmp_path):
    """Run alone, an on-container job reports an unreadable container as an invalid input."""
    from batchlib.errors import JobError

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 2, shape=(4, 16, 16))
    assert run_workflow("WF", folder, [ImportArray(), ScaleRaw()], input_folder=inp, progress=False).success
    with open(os.path.join(folder, "im000000.h5"), "r+b") as fh:
        fh.write(b"\0" * 8)
    with pytest.raises(JobError, match="im000000.h5: cannot be read"):
        ScaleRaw()(folder, progress=False)


def test_status_temporaries_of_dead_runs_are_removed(tmp_path):
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 2, shape=(2, 8, 8))
    sdir = os.path.join(folder, "batchlib")
    os.makedirs(sdir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = [os.path.join(sdir, f".ImportArray.status.tmp-{dead.pid}"),
                 os.path.join(sdir, f".WF.status.tmp-{dead.pid}")]
        kept = os.path.join(sdir, f".Other.status.tmp-{live.pid}")
        for p in stale + [kept]:
            open(p, "w").close()
        assert run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False).success
        assert not any(os.path.exists(p) for p in stale)
        assert os.path.exists(kept)  # its writer is alive
        live.kill()
        live.wait()
        assert clean_status_temporaries(sdir) == [os.path.basename(kept)]
    finally:
        live.kill()


def test_a_status_write_on_a_full_disk_leaves_no_temporary(tmp_path, monkeypatch):
    import errno

    from batchlib import status

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        status.write_json_atomic(tmp_path / "X.status", {"a": 1})
    assert os.listdir(tmp_path) == []


def test_reserve_space_extends_the_file_and_hdf5_gives_back_what_it_did_not_use(tmp_path):
    from batchlib.io import create_dataset
    from batchlib.io.space import DiskFullError, free_bytes, reserve_space

    path = str(tmp_path / "c.h5")
    with open_file(path, "w") as f:
        create_dataset(f, "a", data=np.arange(1000))
    size = os.path.getsize(path)
    reserve_space(path, 1 << 20)
    assert os.path.getsize(path) == size + (1 << 20)
    with open_file(path, "r") as f:  # a reserved tail does not disturb readers
        np.testing.assert_array_equal(f["a"][:], np.arange(1000))
    with open_file(path, "a") as f:  # HDF5 writes into it and truncates what it did not use
        create_dataset(f, "b", data=np.ones(5000))
    assert size < os.path.getsize(path) < size + (1 << 20)
    before = os.path.getsize(path)
    with pytest.raises(DiskFullError, match=r"disk full: .*c\.h5 \(.* MB free, about .* MB needed\)"):
        reserve_space(path, free_bytes(path) + (1 << 30))
    assert os.path.getsize(path) == before  # nothing kept from a failed reservation


def test_in_place_jobs_reserve_what_they_wrote_last_time(tmp_path, monkeypatch):
    from batchlib import base

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 1, shape=(4, 32, 32))
    assert run_workflow("WF", folder, [ImportArray(), ScaleRaw()], input_folder=inp, progress=False).success
    path = os.path.join(folder, "im000000.h5")
    from batchlib.records import read_record

    rec = read_record(path, "ScaleRaw")
    assert set(rec["datasets"]) == {"scaled", "tables/sums/name", "tables/sums/sum", "tables/sums/t"}
    assert rec["datasets"]["scaled"]["shape"] == [4, 32, 32] and rec["datasets"]["scaled"]["dtype"] == "float32"
    assert rec["input_nbytes"] > 0
    last = sum(d["nbytes"] for d in rec["datasets"].values())
    calls = []
    monkeypatch.setattr(base, "reserve_space", lambda p, n: calls.append((p, n)))
    res = run_workflow("WF", folder, [ImportArray(), ScaleRaw(factor=3.0)], input_folder=inp, progress=False)
    assert res.jobs[1].computed == ["im000000.h5"]
    assert calls == [(path, last + ScaleRaw.reserve_margin_bytes)]


def test_the_estimate_follows_the_growth_of_the_inputs(tmp_path):
    """Appending to outputs (inputs grew by a quarter) needs about that share, not all of it again."""
    from batchlib.base import Unit
    from batchlib.records import write_record

    path = str(tmp_path / "c.h5")
    with open_file(path, "w") as f:
        write_record(f, "ImportArray", {"datasets": {"raw": {"nbytes": 1000}, "t": {"nbytes": 200}},
                                        "input_nbytes": 4000})
    job = ImportArray()
    with open_file(path, "r") as f:
        grown = Unit("x", [], [], signature={"x.npy": {"size": 5000, "mtime_ns": 1}})
        same = Unit("x", [], [], signature={"x.npy": {"size": 4000, "mtime_ns": 2}})
        assert job.estimate_output_bytes(f, grown) == 2 * 1200 * 1000 // 4000  # twice the share
        assert job.estimate_output_bytes(f, same) == 1200  # a rewrite: all of it


def test_a_full_disk_while_writing_the_workflow_status_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    from batchlib import status
    from batchlib.io.space import DiskFullError
    from batchlib.workflow import main_exit_code

    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 1, shape=(2, 8, 8))
    real = status.write_json_atomic

    def full_for_workflow_status(path, data):
        if str(path).endswith("WF.status"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(status, "write_json_atomic", full_for_workflow_status)
    with pytest.raises(DiskFullError, match=r"WF stopped: disk full: .*WF.status \(.* MB free\)"):
        run_workflow("WF", folder, [ImportArray()], input_folder=inp, progress=False)
    assert main_exit_code(lambda: run_workflow("WF", folder, [ImportArray()], input_folder=inp,
                                               progress=False)) == 1
