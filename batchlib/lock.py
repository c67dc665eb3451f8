"""The folder lock: one run at a time per workflow and folder.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+
file systems) and holds the owner's pid, host, start time and command line,
so a person can see who holds it. On Linux it also holds the owner's
process start time (from ``/proc/<pid>/stat``), so that a lock naming a pid
that was reused by an unrelated process after a crash is recognised as stale.
A lock file that cannot be understood (garbage, a JSON list, a pid that is
not a number) never crashes a run: it is reported and treated as unreadable.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from .errors import LockError

logger = logging.getLogger("Workflow.lock")


def pid_alive(pid: int, unknown: bool = False) -> bool:
    """Whether process ``pid`` exists on this machine.

    ``unknown`` is the answer for a pid that cannot be judged (out of range,
    another error): a stale lock is broken (False), a temporary file is kept
    (True).
    """
    if pid <= 0:  # os.kill(0 or -n) would signal process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError, OSError):
        return unknown
    return True


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), None where unknown.

    Field 22 of ``/proc/<pid>/stat``; the command name before it may hold
    spaces and parentheses, so fields are counted after its last ``)``.
    """
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _as_pid(value) -> int | None:
    """The pid recorded in a lock, or None when it is not a positive whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()) or None
    return None


class FolderLock:
    """Exclusive lock file, usable as a context manager.

    Parameters
    ----------
    path : Path
        The lock file (``<folder>/batchlib/<WorkflowName>.lock``).
    timeout_s : float
        Wait up to this long for another run to finish; 0 fails at once.
    break_foreign : bool
        Break a lock held by another host (only when you know that run is gone).
    """

    def __init__(self, path, timeout_s: float = 0.0, break_foreign: bool = False, poll_s: float = 1.0):
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self.break_foreign = break_foreign
        self.poll_s = poll_s
        self.acquired = False

    def holder(self) -> dict | None:
        """Contents of the current lock file (``{}`` if unreadable, ``None`` if absent).

        Anything but a JSON object with a usable pid counts as unreadable.
        """
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict) or _as_pid(data.get("pid")) is None:
            return {}
        return data

    def _try_create(self) -> bool:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
                "pid_start_ticks": process_start_ticks(os.getpid())}
        # Write the holder's details first, then hard-link them to the lock
        # name (atomic, fails if it exists, also on NFS): a competing run never
        # sees an empty lock file and can always say who holds the lock.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{os.urandom(4).hex()}")
        try:
            with open(tmp, "w") as f:
                json.dump(info, f, indent=2)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: plain exclusive create
                pass
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        return True

    def _is_stale(self, holder: dict) -> bool:
        if not holder:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return True
            # Empty: maybe a holder between creating and filling the file (on a
            # file system without hard links), so give it a minute. Content
            # that is not a lock of ours (garbage, a list, a pid that is not a
            # number) names no live run: stale at once.
            return st.st_size > 0 or time.time() - st.st_mtime > 60
        if holder.get("host") == socket.gethostname():
            pid = _as_pid(holder.get("pid"))
            if pid is None or not pid_alive(pid):
                return True
            recorded = holder.get("pid_start_ticks")
            if isinstance(recorded, int) and not isinstance(recorded, bool):
                now = process_start_ticks(pid)
                # The pid is alive but started at another time: a new process
                # reused the pid of the crashed holder.
                return now is not None and now != recorded
            return False
        return self.break_foreign

    def describe(self, holder) -> str:
        if not holder:
            return f"{self.path} (unreadable: not a lock written by batchlib, or cut short)"
        return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, "
                f"command: {holder.get('command')}")

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self._try_create():
                self.acquired = True
                return self
            holder = self.holder()
            if holder is None:
                continue  # released between our attempt and the read
            if self._is_stale(holder):
                logger.warning("breaking a stale lock %s held by %s", self.path, self.describe(holder))
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            if time.monotonic() >= deadline:
                foreign = holder.get("host") not in (None, socket.gethostname())
                hint = (f"If that run is gone, delete {self.path} or pass --break_lock."
                        if foreign else
                        "Wait for it to finish, or pass --lock_timeout SECONDS to wait.")
                raise LockError(f"{self.path.parent.parent} is locked by another run: "
                                f"{self.describe(holder)}. {hint}")
            time.sleep(self.poll_s)

    def release(self) -> None:
        if self.acquired:
            holder = self.holder()
            if holder is not None and _as_pid(holder.get("pid")) == os.getpid():
                os.unlink(self.path)
            self.acquired = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
