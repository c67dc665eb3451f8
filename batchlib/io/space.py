"""Disk space: recognising a full disk, and reserving space before writing into an h5 file.

HDF5 is not journaled, and a write that fails with ENOSPC leaves the library
in a state where closing the file writes half of its cached metadata (the
container no longer opens) or crashes the process (HDF5 2.0 segfaults while
closing the objects that failed to flush). No clean-up after the fact is
safe, so jobs that write into an existing h5 container first *reserve* the
space: :func:`reserve_space` allocates it at the end of the file with
``posix_fallocate``. HDF5 allocates new objects at its end-of-allocation
mark, i.e. inside the reserved blocks, so its writes need no new disk space;
it truncates the file to what it uses when it is flushed or closed. When the
reservation itself fails, nothing was written: the container is intact and
the error is a clear "disk full" message.
"""
from __future__ import annotations

import errno
import os

from ..errors import JobError

_ENOSPC_TEXTS = ("no space left on device", "errno = 28", "disk quota exceeded", "errno = 122")


class DiskFullError(JobError):
    """The disk of the working folder is full: the workflow stops (exit code 1)."""

    def __init__(self, message, problems=None):
        self.job, self.problems, self.kind = None, dict(problems or {}), "disk full"
        Exception.__init__(self, message)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        # h5py turns HDF5's write errors into OSError/RuntimeError/KeyError
        # whose errno is not set, but whose text quotes the system error.
        if any(t in str(exc).lower() for t in _ENOSPC_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path) -> int:
    """Bytes available to this user on the file system holding ``path`` (or its nearest parent)."""
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def mb(n) -> str:
    """Bytes as megabytes for messages (``"12.3 MB"``)."""
    return f"{n / 1e6:.1f} MB"


def disk_full_message(path, needed=None) -> str:
    """The one-line ``disk full: ...`` message for the file system of ``path``."""
    try:
        free = mb(free_bytes(path))
    except OSError:
        free = "unknown"
    need = f", about {mb(needed)} needed" if needed else ""
    return f"disk full: {path} ({free} free{need})"


def reserve_space(path, nbytes: int) -> None:
    """Allocate ``nbytes`` beyond the end of the h5 file ``path`` for the writes to come.

    Raises
    ------
    DiskFullError
        Not enough space; the file is left as it was.
    """
    nbytes = int(nbytes)
    if nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        try:
            os.posix_fallocate(fd, size, nbytes)
        except OSError as e:
            os.ftruncate(fd, size)  # give back whatever was allocated
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(disk_full_message(path, nbytes)) from e
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # The file system cannot preallocate: fall back to a check of free space.
            if free_bytes(path) < nbytes:
                raise DiskFullError(disk_full_message(path, nbytes)) from e
    finally:
        os.close(fd)


def check_free_space(path, nbytes: int) -> None:
    """Raise :class:`DiskFullError` when less than ``nbytes`` are free where ``path`` is written."""
    if nbytes > 0 and free_bytes(path) < nbytes:
        raise DiskFullError(disk_full_message(path, nbytes))
