"""A job's "all up to date" certificate: a rerun with nothing to do in one digest.

Planning decides per input whether it is up to date, from a fingerprint of
what that decision reads (:mod:`batchlib.status_index`): over 10,000
inputs that is 0.2-0.3 s of Python per run even when nothing changed. When
a run of a job found every input up to date and computed nothing, the
runner writes ``batchlib/<JobName>.uptodate``: one digest of everything
those decisions read, taken *before* planning (a change made while it
planned makes the digest stale, never the certificate wrong), with the
counts and the status entries of that run. A later run whose digest is the
same would decide the same for every input, so it writes the same status
and skips planning.

The digest covers more than the per-input fingerprints, never less:

* the job's name, parameter hash and version, the rerun triggers, the
  batchlib version, both folders;
* the name, size and mtime of every input the job lists (what a plain job's
  input signature holds);
* the identity ``(inode, size, mtime_ns)`` of every container (``*.h5``) in
  the working folder and of every file in the folders the job writes files
  beside its containers to (tables, QC pictures): the outputs and more;
* the identity of the job's index (a run that recorded anything rewrote it).

So a new, deleted, touched or rewritten input or output, another parameter
or version, ``force_recompute`` or a run that changed the index each sends
the next run through full planning. Only jobs whose every unit is one input
and one h5 container directly in the folder, with the default input
signature (no ``hash_inputs``, no own units), get a certificate
(:func:`eligible`; the outputs are checked when it is written).
"""
from __future__ import annotations

import hashlib
import json
import os
from array import array

from .base import BatchJob
from .container_job import BatchJobOnContainer
from .folder_outputs import beside_dirs
from .status_index import file_identity

SCHEMA = "batchlib-uptodate-1"

__all__ = ["eligible", "folder_digest", "read", "write", "holds"]


def eligible(job: BatchJob) -> bool:
    """Whether ``job``'s units are one input and one h5 container each, planned by the
    default hooks (its outputs' names are checked when a certificate is written)."""
    if type(job).units_for is not BatchJob.units_for or os.sep != "/":
        return False
    if isinstance(job, BatchJobOnContainer):
        return True
    return (type(job).input_signature is BatchJob.input_signature
            and not job.param_values.get("hash_inputs", False) and job.output_ext == ".h5")


def folder_digest(job: BatchJob, input_folder, folder, triggers) -> str | None:
    """The digest of everything the up-to-date decisions of ``job`` read (module docstring);
    ``None`` when the folders the job writes beside its containers cannot be told.

    Raises ``OSError`` when a folder cannot be read (no certificate then).
    """
    from . import __version__

    folder, input_folder = str(folder), str(input_folder)
    beside = beside_dirs(job, folder)
    if beside is None:
        return None
    head = (job.name, job.param_hash, str(job.version), tuple(sorted(triggers)), __version__,
            os.path.abspath(folder), os.path.abspath(input_folder))
    # Names joined, numbers packed: over 10,000 files the repr of tuples would cost
    # as much as the stat calls. Listing order is kept as found: another order only
    # makes another digest (a full planning), never a wrong one.
    h = hashlib.blake2b(repr(head).encode(), digest_size=16)
    nums, inodes = array("q"), array("Q")
    add, stat = nums.append, os.stat
    paths = job.list_inputs(input_folder)
    for path in paths:
        try:
            st = stat(path)
        except OSError:  # vanished: as planning, which records it
            add(-1)
            add(-1)
            continue
        add(st.st_size)
        add(st.st_mtime_ns)
    h.update(b"\0inputs\0" + "\0".join(paths).encode("utf-8", "surrogateescape"))
    for d, only_h5 in [(folder, True)] + [(d, False) for d in beside]:
        names = []
        try:
            with os.scandir(d) as it:
                for e in it:
                    name = e.name
                    if name.startswith(".") or (only_h5 and not name.endswith(".h5")):
                        continue
                    st = e.stat()
                    names.append(name)
                    inodes.append(st.st_ino)
                    add(st.st_size)
                    add(st.st_mtime_ns)
        except FileNotFoundError:
            names.append("\0missing")
        h.update(f"\0folder\0{d}\0{len(names)}\0".encode("utf-8", "surrogateescape"))
        h.update("\0".join(names).encode("utf-8", "surrogateescape"))
    h.update(nums.tobytes())
    h.update(inodes.tobytes())
    return h.hexdigest()


def read(path) -> dict | None:
    """The certificate at ``path``; ``None`` when it is missing or unusable."""
    try:
        with open(path) as f:
            cert = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cert, dict) or cert.get("schema") != SCHEMA:
        return None
    return cert


def holds(cert: dict | None, digest: str | None, index_path) -> bool:
    """Whether certificate ``cert`` covers a folder whose digest is ``digest`` now."""
    return (cert is not None and digest is not None and cert.get("digest") == digest
            and cert.get("index") == file_identity(index_path)
            and isinstance(cert.get("counts"), dict) and isinstance(cert.get("files"), dict))


def write(path, digest: str, index_path, counts: dict, files: dict, recorded_outputs) -> bool:
    """Write the certificate (atomically) for a run that found every input up to date.

    ``recorded_outputs`` are the outputs texts of the index rows; a certificate is
    written only when each is one h5 container name directly in the folder.
    Returns whether it was written.
    """
    from .io.files import atomic_path

    for text in recorded_outputs:
        name = text[2:-2] if text.startswith('["') and text.endswith('.h5"]') else ""
        if not name or "/" in name or '"' in name or "\\" in name:
            remove(path)
            return False
    cert = {"schema": SCHEMA, "digest": digest, "index": file_identity(index_path),
            "counts": counts, "files": files}
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(cert, f, default=str)
    return True


def remove(path) -> None:
    """Remove the certificate at ``path`` (if any)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
