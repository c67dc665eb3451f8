"""Live mode: a simulated microscope writes timepoints while the workflow watches the folder.

The final tables must equal a batch run on the complete data, also when the
watching process is killed (SIGKILL) in the middle and started again.
"""
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from batchlib.trench.synthetic import SyntheticConfig, write_acquisition
from batchlib.watch import FileTracker, watch

ROOT = Path(__file__).resolve().parents[2]
T = 5
CFG = SyntheticConfig(height=448, width=448, n_positions=1, n_timepoints=T, channels=("phase", "gfp"),
                      seed=21)
# threshold, not the U-Net: the U-Net scales its input by the median contrast of the crops it
# is given at once (torch_model.normalise), so frames segmented when appended get another scale
# than in one batch run and ~1 % of their cells differ by a pixel (Segment's doing, not live mode's).
OPTS = ["--executor", "serial", "--ingest_phase_channels", "c0", "--progress", "false",
        "--log_level", "INFO", "--export_csv", "true", "--segment_method", "threshold"]
LIVE = ["--watch", "--watch_poll_s", "0.2", "--watch_stable_s", "0.6"]


def load_workflow():
    spec = importlib.util.spec_from_file_location("trench_workflow", ROOT / "workflows" / "trench_workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acquisition(tmp_path_factory):
    """The complete acquisition, and the batch run's tables on it."""
    tmp = tmp_path_factory.mktemp("live")
    write_acquisition(tmp / "full", CFG, layout="tiff-sequence", name="A", ground_truth=False)
    wf = load_workflow()
    assert wf.main(["--input_folder", str(tmp / "full"), "--folder", str(tmp / "batch"), *OPTS]) == 0
    return {"tmp": tmp, "files": sorted((tmp / "full" / "A").glob("*.tif")), "wf": wf,
            "batch": tables(tmp / "batch")}


def tables(folder):
    out = {}
    for kind in ("cells", "cycles", "tracks"):
        df = pd.concat([pd.read_parquet(p) for p in sorted((folder / "tables" / kind).glob("*.parquet"))])
        keys = [c for c in ("container", "n", "t", "label", "cell_id") if c in df]
        out[kind] = df.sort_values(keys).reset_index(drop=True)
    return out


def assert_same_tables(got, want):
    for kind in want:
        pd.testing.assert_frame_equal(got[kind], want[kind], check_dtype=False, obj=kind)


def microscope(files, raw, interval_s, start_t=0, stop=None, delay_s=0.0):
    """Write the timepoints from ``start_t`` on into ``raw/A`` every ``interval_s`` (after
    ``delay_s``); each file lands in two halves with a pause, like a slow network write."""
    time.sleep(delay_s)
    dest = raw / "A"
    dest.mkdir(parents=True, exist_ok=True)
    for t in range(start_t, T):
        for f in [f for f in files if f.name.startswith(f"t{t:03d}")]:
            data = f.read_bytes()
            with open(dest / f.name, "wb") as out:
                out.write(data[: len(data) // 2])
                out.flush()
                time.sleep(0.15)
                out.write(data[len(data) // 2:])
        if stop is not None and stop.is_set():
            return
        time.sleep(interval_s)


def test_file_tracker_waits_for_stable_nonempty_files(tmp_path):
    clock = [0.0]
    tracker = FileTracker(tmp_path, stable_s=2.0, clock=lambda: clock[0])
    (tmp_path / "a.tif").write_bytes(b"x" * 10)
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / ".hidden").write_bytes(b"x")
    stats, stable = tracker.poll()
    assert set(map(os.path.basename, stats)) == {"a.tif", "empty.tif"} and stable == set()
    clock[0] = 2.5
    assert {os.path.basename(p) for p in tracker.poll()[1]} == {"a.tif"}  # the empty one never
    with open(tmp_path / "a.tif", "ab") as f:  # grows: stable again only 2 s later
        f.write(b"y")
    clock[0] = 3.0
    assert tracker.poll()[1] == set()
    clock[0] = 5.1
    assert {os.path.basename(p) for p in tracker.poll()[1]} == {"a.tif"}


def test_watch_hides_unready_files_and_ends_when_idle(tmp_path):
    (tmp_path / "a.nd2").write_bytes(b"not yet")
    (tmp_path / "b.tif").write_bytes(b"data")
    seen = []
    cycles = watch(tmp_path, lambda hidden: seen.append({os.path.basename(p) for p in hidden}),
                   ready=lambda p: not p.endswith(".nd2"), poll_s=0.05, stable_s=0.1,
                   idle_timeout_s=0.5)
    assert cycles == 1 and seen == [{"a.nd2"}]  # one cycle, the ND2 hidden from it


def test_nd2_being_written_waits_until_it_opens(tmp_path):
    from batchlib.trench.live import input_ready

    src = ROOT.parent / "shared" / "data" / "nd2" / "cluster.nd2"
    if not src.exists():
        pytest.skip(f"{src} absent")
    data = src.read_bytes()
    partial = tmp_path / "growing.nd2"
    partial.write_bytes(data[: int(len(data) * 0.9)])  # no chunk map yet: nd2 refuses it
    assert not input_ready(partial)
    partial.write_bytes(data)
    assert input_ready(partial)
    assert input_ready(tmp_path / "any.tif")


def test_live_session_equals_batch_run(acquisition, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    writer = threading.Thread(target=microscope, args=(acquisition["files"], raw, 1.0))
    writer.start()
    code = acquisition["wf"].main(["--input_folder", str(raw), "--folder", str(out), *OPTS, *LIVE,
                                   "--watch_idle_timeout", "4"])
    writer.join()
    assert code == 0
    assert_same_tables(tables(out), acquisition["batch"])
    log = (out / "batchlib" / "TrenchWorkflow.log").read_text()
    cycles = [line for line in log.splitlines() if "Workflow.watch: cycle" in line]
    assert len(cycles) >= 2, log[-3000:]  # data arrived over several cycles...
    # ...every frame counted once, and no cycle ran the workflow twice over the same data
    assert sum(int(line.split(": cycle ")[1].split(": ")[1].split()[0]) for line in cycles) == T
    assert not (out / "batchlib" / "TrenchWorkflow.lock").exists()
    assert (out / "report.html").stat().st_size > 10_000


def test_killed_session_resumes(acquisition, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    files = acquisition["files"]
    microscope(files, raw, 0.0, start_t=0)  # everything written except...
    for f in (raw / "A").glob(f"t{T - 1:03d}*"):
        f.unlink()  # ...the last timepoint, written after the restart
    argv = [sys.executable, str(ROOT / "workflows" / "trench_workflow.py"), "--input_folder", str(raw),
            "--folder", str(out), *OPTS, *LIVE]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed while Segment or a later job runs: the first cycle is half done.
        deadline = time.time() + 120
        while not (out / "batchlib" / "Segment.status").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "batchlib" / "TrenchWorkflow.lock").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / "batchlib" / "TrenchWorkflow.lock").exists()  # left behind by the kill
    writer = threading.Thread(target=microscope, args=(files, raw, 0.0, T - 1), kwargs={"delay_s": 3.0})
    writer.start()
    proc = subprocess.run([*argv, "--watch_idle_timeout", "4"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, input="")
    writer.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "breaking a stale lock" in proc.stderr
    assert_same_tables(tables(out), acquisition["batch"])


def test_sigterm_ends_the_session_and_releases_the_lock(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "workflows" / "trench_workflow.py"),
                             "--input_folder", str(raw), "--folder", str(out), *OPTS, *LIVE],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / "batchlib" / "TrenchWorkflow.lock"
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated: watching stopped" in err
    assert not lock.exists()


def test_a_sequence_timepoint_is_ready_with_all_its_files(tmp_path):
    from batchlib.trench.live import complete_timepoints

    d = str(tmp_path / "A")
    names = ["t000xy00c0.tif", "t000xy00c1.tif", "t001xy00c0.tif", "t001xy00c1.tif", "other.nd2"]
    present = {os.path.join(d, n) for n in names}
    ready = present - {os.path.join(d, "t001xy00c1.tif")}  # still being written
    got = {os.path.basename(p) for p in complete_timepoints(ready, present)}
    assert got == {"t000xy00c0.tif", "t000xy00c1.tif", "other.nd2"}
    # A file of t000 rewritten while t001 is complete: both wait (hiding t000 alone would
    # look like a gap); a file simply missing holds nothing back (a real gap, for Ingest).
    ready = present - {os.path.join(d, "t000xy00c0.tif")}
    assert {os.path.basename(p) for p in complete_timepoints(ready, present)} == {"other.nd2"}
    present2 = present - {os.path.join(d, "t000xy00c0.tif")}
    got = {os.path.basename(p) for p in complete_timepoints(present2, present2)}
    assert got == {"t000xy00c1.tif", "t001xy00c0.tif", "t001xy00c1.tif", "other.nd2"}


def _default_sigint():
    """In the child: SIGINT as in a terminal. A test run in the background (`pytest &`) passes
    SIGINT on ignored, and a test that started workers may leave it blocked in this process."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_within_a_cycle_stops_cleanly(acquisition, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    microscope(acquisition["files"], raw, 0.0)
    proc = subprocess.Popen([sys.executable, str(ROOT / "workflows" / "trench_workflow.py"),
                             "--input_folder", str(raw), "--folder", str(out), *OPTS, *LIVE],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while not (out / "batchlib" / "Compress.status").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # the first cycle is running
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        status = Path(f"/proc/{os.getpid()}/status").read_text() if Path("/proc").is_dir() else ""
        pytest.fail(f"the session ignored SIGINT; this process: "
                    f"{[ln for ln in status.splitlines() if ln.startswith('Sig')]}; stderr: {err[-3000:]}")
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: watching stopped" in err
    log = (out / "batchlib" / "TrenchWorkflow.log").read_text()
    # Ctrl-C stops the run it lands in; one Python drops (raised inside a weakref
    # callback) stops the session right after that cycle, before any other
    assert "workflow TrenchWorkflow interrupted" in log or log.count("Workflow.watch: cycle ") <= 1
    assert not (out / "batchlib" / "TrenchWorkflow.lock").exists()


def test_a_ctrl_c_dropped_inside_a_cycle_still_stops_watching(tmp_path):
    """Python drops a KeyboardInterrupt raised inside a weakref callback or __del__
    (it prints "Exception ignored in ..."); the session kept watching once that way.
    The session notes Ctrl-C itself and stops after the cycle."""
    from batchlib.watch import watch

    (tmp_path / "a.tif").write_bytes(b"x")
    calls = []

    def cycle(hidden):
        calls.append(1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)                      # the handler runs here
        except KeyboardInterrupt:
            pass                                 # ...and the interrupt is dropped

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh session
    try:
        with pytest.raises(KeyboardInterrupt):
            watch(tmp_path, cycle, poll_s=0.01, stable_s=0.0, idle_timeout_s=5)
        assert calls == [1]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_dropped_sigterm_still_ends_the_session(tmp_path):
    """The same for SIGTERM (seen once in CI-like runs: the session watched on until the
    test's 30 s timeout): the signal is recorded, and the loop stops at its next check."""
    from batchlib.termination import sigterm_as_exit
    from batchlib.watch import watch

    (tmp_path / "a.tif").write_bytes(b"x")
    calls = []

    def cycle(hidden):
        calls.append(1)
        try:
            signal.raise_signal(signal.SIGTERM)
        except SystemExit:
            pass                                 # dropped, as a finalizer would

    with sigterm_as_exit(), pytest.raises(SystemExit) as exc:
        watch(tmp_path, cycle, poll_s=0.01, stable_s=0.0, idle_timeout_s=5)
    assert exc.value.code == 128 + signal.SIGTERM
    assert calls == [1]


def test_file_tracker_says_when_the_next_file_becomes_stable(tmp_path):
    clock = [0.0]
    tracker = FileTracker(tmp_path, stable_s=2.0, clock=lambda: clock[0])
    assert tracker.next_stable_in() is None  # nothing seen
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "empty.tif").write_bytes(b"")  # never stable: must not make the loop spin
    tracker.poll()
    clock[0] = 0.5
    assert tracker.next_stable_in() == pytest.approx(1.5)
    clock[0] = 2.0
    tracker.poll()
    assert tracker.next_stable_in() is None  # a.tif is stable now


def test_watching_wakes_when_a_file_becomes_stable_not_at_the_next_poll(tmp_path):
    """With a poll interval far longer than the settle time, the cycle still starts
    about stable_s after the file appeared."""
    (tmp_path / "a.tif").write_bytes(b"data")
    started, seen = time.monotonic(), []
    watch(tmp_path, lambda hidden: seen.append(time.monotonic() - started), poll_s=30.0, stable_s=0.3,
          max_cycles=1)
    assert len(seen) == 1 and seen[0] < 10.0  # not 30 s: woken when a.tif settled


def _conf(path, folder_args, options):
    """A config file with ``--name value`` pairs as ``name = value`` lines."""
    pairs = list(zip(options[::2], options[1::2]))
    lines = [f"{k.lstrip('-')} = {v}" for k, v in [*zip(folder_args[::2], folder_args[1::2]), *pairs]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_batchlib_watch_command_runs_the_workflow_live(acquisition, tmp_path):
    """`batchlib watch -c x.conf` is `trench_workflow.py -c x.conf --watch`: a session
    that ends by itself after the idle timeout, with the batch run's results."""
    from batchlib.cli import main

    raw, out = tmp_path / "raw", tmp_path / "out"
    microscope(acquisition["files"], raw, 0.0)
    conf = _conf(tmp_path / "live.conf", ["--input_folder", raw, "--folder", out], OPTS)
    code = main(["watch", "-c", str(conf), "--watch_poll_s", "0.2", "--watch_stable_s", "0.3",
                 "--watch_idle_timeout", "2"])
    assert code == 0
    assert_same_tables(tables(out), acquisition["batch"])
    log = (out / "batchlib" / "TrenchWorkflow.log").read_text()
    assert "Workflow.watch: cycle 1: 5 new frame(s)" in log and "watching ends after 1 cycle(s)" in log
    assert not (out / "batchlib" / "TrenchWorkflow.lock").exists()


def test_batchlib_watch_command_errors(tmp_path, capsys):
    from batchlib.cli import main

    assert main(["watch", "--workflow", str(tmp_path / "none.py"), "--input_folder", str(tmp_path)]) == 1
    assert "none.py does not exist" in capsys.readouterr().err
    script = tmp_path / "nomain.py"
    script.write_text("x = 1\n")
    assert main(["watch", "--workflow", str(script)]) == 1
    assert "has no main(argv)" in capsys.readouterr().err


def test_watchdog_backend_picks_up_new_files_with_the_same_results(acquisition, tmp_path):
    pytest.importorskip("watchdog")
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    writer = threading.Thread(target=microscope, args=(acquisition["files"], raw, 1.0))
    writer.start()
    # a poll interval longer than the session: only file events (and files settling) wake it
    code = acquisition["wf"].main(["--input_folder", str(raw), "--folder", str(out), *OPTS, "--watch",
                                   "--watch_backend", "watchdog", "--watch_poll_s", "60",
                                   "--watch_stable_s", "0.6", "--watch_idle_timeout", "4"])
    writer.join()
    assert code == 0
    assert_same_tables(tables(out), acquisition["batch"])
    log = (out / "batchlib" / "TrenchWorkflow.log").read_text()
    assert "file events" in log
    cycles = [line for line in log.splitlines() if "Workflow.watch: cycle" in line]
    frames = sum(int(line.split(": cycle ")[1].split(": ")[1].split()[0]) for line in cycles)
    assert len(cycles) >= 2 and frames == T, log[-3000:]


def test_watchdog_wakes_on_a_new_file(tmp_path):
    pytest.importorskip("watchdog")
    from batchlib.watch import Waker

    waker = Waker(tmp_path, "watchdog")
    try:
        timer = threading.Timer(0.3, lambda: (tmp_path / "new.tif").write_bytes(b"x"))
        timer.start()
        started = time.monotonic()
        waker.wait(30.0)
        assert time.monotonic() - started < 10.0 and (tmp_path / "new.tif").exists()
        timer.join()
    finally:
        waker.close()


def test_watchdog_backend_missing_is_a_clear_error(acquisition, tmp_path, monkeypatch, capsys):
    from batchlib.watch import check_backend

    monkeypatch.setitem(sys.modules, "watchdog", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "watchdog.observers", None)
    with pytest.raises(ValueError, match=r"needs the watchdog package \(pip install 'batchlib\[live\]'"):
        check_backend("watchdog")
    check_backend("poll")  # needs nothing
    with pytest.raises(ValueError, match="unknown watch backend 'inotify'"):
        check_backend("inotify")
    out = tmp_path / "out"
    code = acquisition["wf"].main(["--input_folder", str(tmp_path), "--folder", str(out), *OPTS, "--watch",
                                   "--watch_backend", "watchdog"])
    assert code == 1
    assert "needs the watchdog package" in capsys.readouterr().err
    assert not (out / "batchlib" / "TrenchWorkflow.lock").exists()


def test_watchdog_backend_needs_an_existing_folder(tmp_path):
    pytest.importorskip("watchdog")
    from batchlib.watch import check_backend

    with pytest.raises(ValueError, match="watches an existing folder"):
        check_backend("watchdog", tmp_path / "absent")
