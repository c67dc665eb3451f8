"""Live mode: poll an input folder, run a workflow whenever new data are complete.

The framework part: which files have stopped changing (:class:`FileTracker`)
and the loop that calls a workflow cycle when the set of ready files changed
(:func:`watch`). What "ready" means beyond "stable" (an ND2 file that opens,
a TIFF sequence timepoint with all its files) is the domain's business: it
passes ``ready(path)`` and its cycle receives the files that are not ready,
to be hidden from the jobs.

Polling (``os.scandir`` + ``stat``) is the default: it works the same on
local disks and network shares (NFS, SMB), where inotify sees nothing of what
other machines write. The ``watchdog`` backend (the optional ``watchdog``
package) only changes how the loop *waits*: a file-system event wakes it at
once instead of after the poll interval; what is stable and ready is decided
by the same scan either way. Both wake up exactly when a file that is still
settling would become stable, not at the next poll after it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .termination import raise_if_terminated, sigterm_as_exit

logger = logging.getLogger("Workflow.watch")

#: How a session waits for new data: ``poll`` (sleep ``poll_s`` between scans) or
#: ``watchdog`` (wake on file-system events, with a scan every ``poll_s`` as well).
BACKENDS = ("poll", "watchdog")


def scan(root) -> dict:
    """``{absolute path: (size, mtime_ns)}`` of the files below ``root`` (hidden ones skipped)."""
    out = {}
    stack = [Path(root)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:  # removed while we looked
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file():
                    st = e.stat()
                    out[os.path.abspath(e.path)] = (st.st_size, st.st_mtime_ns)
            except OSError:
                continue
    return out


class FileTracker:
    """Remembers each file's last (size, mtime) and since when it has not changed.

    A file is *stable* when its size and mtime have not changed for
    ``stable_s`` seconds of this process's own clock (so clock skew between a
    file server and this machine does not matter), and it is not empty.
    """

    def __init__(self, root, stable_s: float = 5.0, clock=time.monotonic):
        self.root, self.stable_s, self.clock = Path(root), float(stable_s), clock
        self.seen: dict = {}  # path -> (stat, first seen with that stat)
        self.stable: set = set()  # the stable paths of the last poll

    def poll(self) -> tuple[dict, set]:
        """``(stats, stable paths)`` now."""
        now = self.clock()
        stats = scan(self.root)
        self.seen = {p: (st, self.seen[p][1] if p in self.seen and self.seen[p][0] == st else now)
                     for p, st in stats.items()}
        stable = {p for p, (st, since) in self.seen.items()
                  if st[0] > 0 and now - since >= self.stable_s}
        self.stable = stable
        return stats, stable

    def next_stable_in(self) -> float | None:
        """Seconds until a non-empty file that was settling at the last poll is stable (0: it
        is by now, e.g. after a long cycle; None: no file was settling)."""
        now = self.clock()
        waits = [since + self.stable_s - now for p, (st, since) in self.seen.items()
                 if st[0] > 0 and p not in self.stable]
        return max(min(waits), 0.0) if waits else None


def check_backend(backend: str, folder=None) -> None:
    """Raise ValueError, saying what to do, if ``backend`` is unknown or not installed, or
    (watchdog) ``folder`` is given and is not an existing folder."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown watch backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "watchdog":
        try:
            import watchdog.observers  # noqa: F401
        except ImportError as e:
            raise ValueError("the watch backend 'watchdog' needs the watchdog package "
                             "(pip install 'batchlib[live]' or pip install watchdog); "
                             f"the default backend 'poll' needs nothing ({e})") from None
        if folder is not None and not os.path.isdir(folder):
            raise ValueError(f"the watch backend 'watchdog' watches an existing folder; {folder} is "
                             "not one (create it, or use the default backend 'poll', which waits for it)")


class Waker:
    """How the loop waits between scans: a sleep (polling), or until a file event.

    ``wait(timeout)`` returns after ``timeout`` seconds, when ``stop`` is set, or
    (watchdog) as soon as something changed below the folder. Events of files
    being only read (opened, closed without writing: Ingest reading the inputs)
    do not wake it.
    """

    def __init__(self, folder, backend: str = "poll", stop: threading.Event | None = None):
        check_backend(backend, folder)
        self.stop, self.backend, self.observer = stop, backend, None
        self.changed = threading.Event()
        if backend == "watchdog":
            self.observer = _observe(folder, self.changed)

    def wait(self, timeout: float) -> None:
        if self.observer is None:
            if self.stop is not None:
                self.stop.wait(timeout)
            else:
                time.sleep(timeout)
            return
        end = time.monotonic() + timeout
        # At most ten scans a second while a file is being written (an event per write).
        time.sleep(min(0.1, max(timeout, 0.0)))
        while not (self.stop is not None and self.stop.is_set()):
            left = end - time.monotonic()
            if left <= 0 or self.changed.wait(min(left, 0.1)):
                break
        self.changed.clear()

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)


def _observe(folder, changed: threading.Event):
    """A started watchdog observer that sets ``changed`` on every write below ``folder``."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            if event.event_type not in ("opened", "closed_no_write"):
                changed.set()

    # watchdog logs an ERROR when an event arrives while its observer stops (a race
    # of its own, harmless here): keep it out of the session's output.
    logging.getLogger("watchdog.observers.inotify").addFilter(_stop_race)
    observer = Observer()
    try:
        observer.schedule(Handler(), str(folder), recursive=True)
        observer.start()
    except OSError as e:  # e.g. the inotify watch limit
        raise ValueError(f"the watch backend 'watchdog' cannot watch {folder}: {e} "
                         "(use the default backend 'poll')") from e
    return observer


def _stop_race(record: logging.LogRecord) -> bool:
    return "called when the thread is inactive" not in record.getMessage()


@dataclass
class CycleReport:
    """What a cycle did, for the one log line per cycle."""

    new_frames: int = 0
    state: str = "processed"
    extra: dict = field(default_factory=dict)


def watch(folder, run_cycle, ready=None, select=None, poll_s: float = 2.0, stable_s: float = 5.0,
          idle_timeout_s: float | None = None, stop: threading.Event | None = None,
          max_cycles: int | None = None, log=None, backend: str = "poll") -> int:
    """Poll ``folder`` and call ``run_cycle(hidden)`` whenever its ready files changed.

    Parameters
    ----------
    folder : path-like
        The input folder.
    run_cycle : callable
        ``run_cycle(hidden: set of absolute paths) -> CycleReport``: runs the
        workflow on everything but ``hidden`` (files not stable or not ready).
        An exception other than KeyboardInterrupt/SystemExit is logged and the
        session goes on waiting (the data may be fixed); the same files are not
        retried until something changes.
    ready : callable, optional
        ``ready(path) -> bool`` for a stable file (e.g. an ND2 whose index is
        written); asked again whenever the file's size or mtime changes.
    select : callable, optional
        ``select(ready paths, all paths) -> ready paths``: keeps the ready files
        that make a complete unit of data (e.g. a whole TIFF-sequence timepoint).
    poll_s : float
        Seconds between polls.
    stable_s : float
        How long a file's size and mtime must stay unchanged.
    idle_timeout_s : float, optional
        End the session after this long without new or changed files.
    stop : threading.Event, optional
        Ends the session at the next poll (for tests and embedding).
    max_cycles : int, optional
        End after this many cycles.
    backend : {"poll", "watchdog"}
        How to wait between scans (:class:`Waker`); ``watchdog`` needs the
        ``watchdog`` package (ValueError otherwise, before anything runs).

    Returns
    -------
    int
        The number of cycles run.
    """
    log = log or logger
    tracker = FileTracker(folder, stable_s)
    waker = Waker(folder, backend, stop)
    log.info("watching %s (%s every %.1f s, files stable after %.1f s%s)", folder,
             "file events, and a scan" if backend == "watchdog" else "poll", poll_s, stable_s,
             f", ending after {idle_timeout_s:.0f} s without new data" if idle_timeout_s else "")
    try:
        # a Ctrl-C or SIGTERM that a finalizer dropped still ends the session
        with sigterm_as_exit():
            return _watch_loop(tracker, waker, run_cycle, ready, select, poll_s, idle_timeout_s, stop,
                               max_cycles, log)
    finally:
        waker.close()


def _watch_loop(tracker, waker, run_cycle, ready, select, poll_s, idle_timeout_s, stop, max_cycles, log):
    """The polling loop of :func:`watch`."""
    verdicts: dict = {}  # path -> (stat, ready?)
    processed = None  # the ready files (with their stats) the last cycle saw
    last_activity = time.monotonic()
    previous_stats = None
    cycles = 0
    while not (stop is not None and stop.is_set()):
        raise_if_terminated()  # a Ctrl-C or SIGTERM whose exception a finalizer dropped
        stats, stable = tracker.poll()
        if stats != previous_stats:
            last_activity, previous_stats = time.monotonic(), stats
        ok = {}
        for p in stable:
            st = stats[p]
            if p not in verdicts or verdicts[p][0] != st:
                verdicts[p] = (st, True if ready is None else bool(ready(p)))
            if verdicts[p][1]:
                ok[p] = st
        if select is not None:
            ok = {p: ok[p] for p in select(set(ok), set(stats))}
        if ok != processed and ok:
            fresh = [st[1] for p, st in ok.items() if processed is None or processed.get(p) != st]
            hidden = set(stats) - set(ok)
            started = time.monotonic()
            try:
                report = run_cycle(hidden)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # noqa: BLE001 - a live session outlives one bad cycle
                log.error("cycle %d failed: %s: %s; waiting for new data", cycles + 1,
                          type(e).__name__, e)
                report = None
            raise_if_terminated()  # a signal the cycle dropped
            raise_if_terminated()
            cycles += 1
            took = time.monotonic() - started
            latency = time.time() - max(fresh) / 1e9 if fresh else float("nan")
            if report is not None:
                log.info("cycle %d: %d new frame(s), %s, %.1f s, latency %.1f s after the newest "
                         "file landed (%d file(s) waiting)", cycles, report.new_frames, report.state,
                         took, latency, len(hidden))
            processed = ok
            last_activity = time.monotonic()
            if max_cycles is not None and cycles >= max_cycles:
                break
        if idle_timeout_s is not None and time.monotonic() - last_activity > idle_timeout_s:
            log.info("no new data for %.0f s: watching ends after %d cycle(s)", idle_timeout_s, cycles)
            break
        # Scan again after poll_s, as soon as a settling file becomes stable (a few
        # ms later, so that the clock has surely passed it), or when idle long enough.
        timeout = poll_s
        settling = tracker.next_stable_in()
        if settling is not None:
            timeout = min(timeout, settling + 0.005)
        if idle_timeout_s is not None:
            timeout = min(timeout, max(last_activity + idle_timeout_s - time.monotonic(), 0.0) + 0.005)
        waker.wait(timeout)
    return cycles
