"""SIGTERM and Ctrl-C as exits that cannot be lost.

A signal handler's exception is raised in the main thread at the next
bytecode, wherever that is. When it lands in a finalizer (a weakref callback,
a ``__del__``), Python prints "Exception ignored" and carries on: a run told
to stop ran to the end (1 in 20 under load, ``tests/test_crash_safety.py``).
So the handlers also record the signal, and the runner (between units and
jobs) and the watch loop (between cycles) ask again.
"""
from __future__ import annotations

import contextlib
import signal

_received: list = []
_depth: list = []  # nested sessions (the watch loop around each run's own)


def raise_if_terminated() -> None:
    """Raise again a signal that arrived under :func:`sigterm_as_exit`:
    ``SystemExit(128 + signum)`` for SIGTERM, :class:`KeyboardInterrupt` for Ctrl-C."""
    if _received:
        if _received[-1] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + _received[-1])


def _on_sigterm(signum, frame):
    _received.append(signum)
    raise SystemExit(128 + signum)


def _on_sigint(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_exit():
    """Turn SIGTERM (e.g. from a cluster's scheduler) into SystemExit so that
    ``finally`` blocks release the lock and close the status; note it, and a
    Ctrl-C, for :func:`raise_if_terminated`.

    Ctrl-C is only taken over from Python's own handler (one that a caller
    set, or SIGINT ignored as in a background job, is left alone).
    """
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        yield
        return
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    _depth.append(1)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _depth.pop()
        if not _depth:  # the outermost session is over: a later one starts afresh
            _received.clear()
