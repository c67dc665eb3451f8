"""Checks for user-given names that become file names or container keys.

A segmentation name, a workflow name or a job identifier ends up in a path
(``<folder>/batchlib/<workflow>.lock``) or a key (``segmentation/<name>``,
which is a directory in n5/zarr). A ``/`` or ``..`` there would write outside
the working folder or over another key, so such names are refused at once.
"""
from __future__ import annotations

import re

#: Letters, digits, ``_``, ``-`` and ``.``; starting with a letter, digit or ``_``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_LENGTH = 128


def check_name(value, what: str) -> str:
    """Return ``value`` if it is a safe name, else raise ``ValueError`` saying why.

    Parameters
    ----------
    value : str
        The name to check.
    what : str
        What the name is, for the message (e.g. ``"--segment_name"``).

    Examples
    --------
    >>> check_name("cells_v2", "--segment_name")
    'cells_v2'
    >>> check_name("../cells", "--segment_name")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --segment_name: '../cells' is not a valid name: use letters, digits, ...
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: a name is required, got {value!r}")
    if len(value) > MAX_LENGTH:
        raise ValueError(f"{what}: {value!r} is longer than {MAX_LENGTH} characters")
    if ".." in value or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{what}: {value!r} is not a valid name: use letters, digits, '_', '-' "
                         f"and '.' (not first, no '..', no '/'), since it becomes a file name "
                         f"or a container key")
    return value
