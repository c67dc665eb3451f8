"""Trench stacks (n_trench, T, H, W) that grow along time: public helpers for jobs.

Compress and Segment write such stacks; when frames are appended upstream
they extend them rather than rewrite them. A stack remembers how many frames
it holds and a ``basis`` (what it was computed from: the trench layout, the
parameters); a different basis means starting over. A job's
``process_container`` uses them as ``docs/example_job.py`` does::

    kept = frames_kept(container, key, (n, h, w), basis)     # frames still valid
    out = prepare_stack(container, key, (n, h, w), n_t, dtype, kept)
    for t0, t1 in frame_blocks(kept, n_t):                    # only the new frames
        out[:, t0:t1] = compute(inputs[:, t0:t1])
    mark_frames(out, n_t, basis)                              # last: they are complete
"""
from __future__ import annotations

import uuid

from ...io import create_dataset, grow_dataset, read_attrs, write_attrs

#: The attribute naming one creation of a stack (see :func:`prepare_stack`).
STACK_ID = "stack_id"

#: Frames per chunk along time: reading one trench over time is a few
#: sequential chunk reads, and appending frames touches only the last chunks.
CHUNK_T = 16


def frames_kept(container, key, shape_nhw, basis) -> int:
    """How many frames of ``container[key]`` can be kept (0 = start over)."""
    if key not in container:
        return 0
    ds = container[key]
    attrs = read_attrs(ds)
    if attrs.get("basis") != basis or ds.ndim != 4 or \
            (ds.shape[0], ds.shape[2], ds.shape[3]) != tuple(shape_nhw):
        return 0
    return min(int(attrs.get("n_frames", 0)), ds.shape[1])


def prepare_stack(container, key, shape_nhw, n_frames, dtype, kept):
    """Create (``kept == 0``) or grow the stack to ``n_frames`` frames.

    A stack created anew gets a new ``stack_id`` attribute: what was derived
    from its earlier frames (Measure's rows) is kept only while it stays the same.
    """
    n, h, w = shape_nhw
    if kept == 0:
        ds = create_dataset(container, key, shape=(n, n_frames, h, w), dtype=dtype,
                            chunks=(1, min(CHUNK_T, max(n_frames, 1)), h, w), growable=1)
        write_attrs(ds, {STACK_ID: uuid.uuid4().hex})
        return ds
    ds = container[key]
    if ds.shape[1] < n_frames:
        ds = grow_dataset(container, key, n_frames, axis=1)
    return ds


def mark_frames(ds, n_frames, basis, **attrs) -> None:
    """Record that the first ``n_frames`` frames of the stack are complete."""
    write_attrs(ds, {"n_frames": int(n_frames), "basis": basis, **attrs})


def frame_blocks(start, stop, size=CHUNK_T):
    """``(t0, t1)`` blocks aligned to the time chunks.

    >>> list(frame_blocks(10, 40))
    [(10, 16), (16, 32), (32, 40)]
    """
    t0 = start
    while t0 < stop:
        t1 = min(stop, (t0 // size + 1) * size)
        yield t0, t1
        t0 = t1
