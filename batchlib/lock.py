"""The folder lock: one run at a time per workflow and folder.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+
file systems) and holds the owner's pid, host, start time and command line,
so a person can see who holds it.
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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
        """Contents of the current lock file (``{}`` if unreadable, ``None`` if absent)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}

    def _try_create(self) -> bool:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
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
            # Unreadable: a holder killed between creating and filling the file.
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except FileNotFoundError:
                return True
        if holder.get("host") == socket.gethostname():
            return not _pid_alive(int(holder.get("pid", -1)))
        return self.break_foreign

    def describe(self, holder) -> str:
        if not holder:
            return f"{self.path} (unreadable)"
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
            if holder is not None and holder.get("pid") == os.getpid():
                os.unlink(self.path)
            self.acquired = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
