"""SIGTERM as an exit that cannot be lost.

A signal handler's exception is raised in the main thread at the next
bytecode, wherever that is. When it lands in a finalizer (a weakref callback,
a ``__del__``), Python prints "Exception ignored" and carries on: a run told
to stop ran to the end (1 in 20 under load, ``tests/test_crash_safety.py``).
So the handler also records the signal, and the runner asks again between
units and between jobs.
"""
from __future__ import annotations

import contextlib
import signal

_received: list = []
_depth: list = []  # nested sessions (the watch loop around each run's own)


def raise_if_terminated() -> None:
    """``SystemExit(128 + signum)`` when SIGTERM arrived under :func:`sigterm_as_exit`."""
    if _received:
        raise SystemExit(128 + _received[-1])


@contextlib.contextmanager
def sigterm_as_exit():
    """Turn SIGTERM (e.g. from a cluster's scheduler) into SystemExit so that
    ``finally`` blocks release the lock and close the status."""
    def handler(signum, frame):
        _received.append(signum)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    _depth.append(1)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _depth.pop()
        if not _depth:  # the outermost session is over: a later one starts afresh
            _received.clear()
