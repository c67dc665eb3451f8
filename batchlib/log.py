"""Logging: ``Workflow`` and its children ``Workflow.<JobName>``.

Every line goes once to the terminal (through tqdm, so progress bars stay
intact) and once to ``<folder>/batchlib/<WorkflowName>.log``.
"""
from __future__ import annotations

import contextlib
import logging
import os

ROOT = "Workflow"
FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"


def get_logger(name: str | None = None) -> logging.Logger:
    """``Workflow`` or its child ``Workflow.<name>``."""
    return logging.getLogger(ROOT if not name else f"{ROOT}.{name}")


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def resolve_level(level=None) -> int:
    """A logging level from a name or number; default ``$LOGLEVEL``, else INFO."""
    level = level or os.environ.get("LOGLEVEL", "INFO")
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value


@contextlib.contextmanager
def workflow_logging(log_file=None, level=None, session=False):
    """Attach terminal and file handlers to ``Workflow`` for the duration of a run.

    With ``session=True`` (a live session of many runs) the runs inside it add
    no handlers of their own.

    The logger does not propagate to the root logger, so no line is printed
    twice; handlers are removed and closed on exit, even after an error.
    """
    logger = get_logger()
    if any(getattr(h, "batchlib_session", False) for h in logger.handlers):
        yield logger  # inside a live session, whose handlers already write every line once
        return
    previous = (logger.level, logger.propagate)  # restored on exit: no state leaks past the run
    logger.setLevel(resolve_level(level))
    logger.propagate = False
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = [_TqdmHandler()]
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(formatter)
        setattr(h, "batchlib_session", session)  # marks the handlers of a live session
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(previous[0])
        logger.propagate = previous[1]
