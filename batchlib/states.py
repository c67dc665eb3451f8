"""The states of a job and of one file of a job, as written in the status files.

They are ``str`` enums: a member equals (and is stored as) its value, so
status files keep plain strings and ``state == "processed"`` still holds.

>>> JobState.PROCESSED == "processed", f"{FileState.DONE}"
(True, 'done')
"""
from __future__ import annotations

import enum


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class JobState(_StrEnum):
    """State of one run of a job (``state`` of a job or workflow status)."""

    PROCESSED = "processed"
    FAILED_OUTPUTS = "failed_outputs"
    INVALID_INPUTS = "invalid_inputs"
    RUNNING = "running"
    ERRORED = "errored"


class FileState(_StrEnum):
    """State of one input of a job (``files.<input>.state`` of a job status)."""

    DONE = "done"
    FAILED = "failed"
    INVALID = "invalid"
    PENDING = "pending"
