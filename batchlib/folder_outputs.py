"""Files a job writes next to its output containers, under the completion records.

Some results are plain files beside the containers (a per-container table, a
QC picture). A job declares them with :meth:`batchlib.base.BatchJob.folder_outputs`;
when it completes a container, the record lists each such file with its size,
modification time and content hash. At planning, a file that is missing, has
another size, or another content (hashed only when its modification time
changed) makes that container's output incomplete, so it is redone.
"""
from __future__ import annotations

import os

from .io.checksum import content_hash


def beside_dirs(job, folder) -> list | None:
    """The folders ``job`` writes files beside its containers in ``folder`` to (sorted),
    guessed from a container named ``x.h5``; ``None`` when its ``folder_outputs`` cannot
    say for such a name."""
    try:
        paths = job.folder_outputs(os.path.join(str(folder), "x.h5"))
    except Exception:  # noqa: BLE001 - a job whose outputs cannot be guessed like this
        return None
    return sorted({os.path.dirname(p) for p in paths})


def _rel(path, folder) -> str:
    return os.path.relpath(path, folder).replace(os.sep, "/")


def signatures(paths, folder) -> dict:
    """``{relative path: {size, mtime_ns, blake2b}}`` of files just written."""
    out = {}
    for p in paths:
        st = os.stat(p)  # a declared file that was not written is an error of the job
        out[_rel(p, folder)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                "blake2b": content_hash(p)}
    return out


def problem(paths, folder, recorded) -> str | None:
    """Why the files ``paths`` do not match the record ``recorded`` (None when they do)."""
    recorded = recorded or {}
    for p in paths:
        rel = _rel(p, folder)
        rec = recorded.get(rel)
        if not isinstance(rec, dict):
            return f"{rel} is not in the completion record"
        try:
            st = os.stat(p)
        except OSError:
            return f"{rel} is missing"
        if st.st_size != rec.get("size"):
            return f"{rel} is damaged ({st.st_size} bytes, {rec.get('size')} written)"
        if st.st_mtime_ns != rec.get("mtime_ns"):
            try:
                same = content_hash(p) == rec.get("blake2b")
            except OSError as e:
                return f"{rel} cannot be read ({e})"
            if not same:
                return f"{rel} was changed after it was written"
    return None


def remove(paths) -> None:
    """Delete the files (those of an output whose job failed: no record covers them any more)."""
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass
