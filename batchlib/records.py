"""Completion records: the fact, written last into an output, that a job finished it.

A record lives in the output container as the attributes of the group
``batchlib/<job name>``. It holds the parameter hash, the job version, the
signature of the inputs it was computed from, the keys it wrote with a run id
for each, the finish time and the library version. An output without a
record, or with one that does not match the current job, is not done.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from . import __version__
from .io import container_format, open_file, read_attrs, write_attrs

RECORD_GROUP = "batchlib"


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def param_hash(params: dict) -> str:
    """Stable short hash of a job's parameters."""
    return hashlib.sha1(canonical_json(params).encode()).hexdigest()[:16]


def content_hash(path, block=1 << 20) -> str:
    """BLAKE2b of a file's bytes, read in blocks (or of all files below a directory)."""
    h = hashlib.blake2b(digest_size=16)
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        with open(q, "rb") as f:
            while chunk := f.read(block):
                h.update(chunk)
    return h.hexdigest()


def file_signature(path, with_hash=False) -> dict:
    """Size and modification time (ns) of a file; optionally its content hash."""
    st = os.stat(path)
    sig = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if with_hash:
        sig["blake2b"] = content_hash(path)
    return sig


def record_stamp(container) -> list | None:
    """Cheap fingerprint of everything that can change a container's records.

    An h5 container is one file, so its size and mtime change on every write;
    its inode tells it from another file put in its place with the same size
    and mtime (a copy with ``cp -p``, a restore from a backup).
    An n5/zarr container is a directory whose mtime does not follow nested
    writes, so the stamp lists the record files themselves. ``None`` when the
    container does not exist.
    """
    p = os.fspath(container)
    fmt = container_format(p)
    try:
        if fmt == "h5":
            st = os.stat(p)
            return [st.st_size, st.st_mtime_ns, st.st_ino]
        # As few system calls as possible: this runs for every output on every rerun.
        try:
            with os.scandir(os.path.join(p, RECORD_GROUP)) as it:
                names = sorted(e.name for e in it)
        except (FileNotFoundError, NotADirectoryError):
            return [] if os.path.isdir(p) else None
        meta = "attributes.json" if fmt == "n5" else ".zattrs"
        stamp = []
        for name in names:
            try:
                st = os.stat(os.path.join(p, RECORD_GROUP, name, meta))
            except (FileNotFoundError, NotADirectoryError):
                continue
            stamp.append([name, st.st_size, st.st_mtime_ns])
        return stamp
    except FileNotFoundError:
        return None


def new_record(job_name, version, params_digest, input_signature, output_keys) -> dict:
    """A completion record for a job that has just finished writing."""
    run_id = uuid.uuid4().hex[:12]
    return {
        "job": job_name,
        "version": str(version),
        "param_hash": params_digest,
        "input_signature": input_signature,
        "outputs": {key: run_id for key in output_keys},
        "run_id": run_id,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished_ns": time.time_ns(),
        "library_version": __version__,
    }


def write_record(container, job_name: str, record: dict) -> None:
    """Write ``record`` into an open container; call it after all the job's data."""
    group = container.require_group(f"{RECORD_GROUP}/{job_name}")
    write_attrs(group, {"record": record})
    if hasattr(container, "flush"):
        container.flush()


def delete_record(container, job_name: str) -> None:
    """Remove a job's record from an open container (before rewriting its outputs)."""
    key = f"{RECORD_GROUP}/{job_name}"
    if key in container:
        del container[key]
        if hasattr(container, "flush"):
            container.flush()  # the "unfinished" state must reach the disk before new data


def read_records(container) -> dict:
    """All records of an open container, ``{job name: record}``."""
    if RECORD_GROUP not in container:
        return {}
    records = {}
    for name in container[RECORD_GROUP].keys():
        try:
            rec = read_attrs(container[f"{RECORD_GROUP}/{name}"]).get("record")
        except Exception:  # noqa: BLE001 - a damaged record is no record
            rec = None
        if isinstance(rec, dict):
            records[name] = rec
    return records


def read_record(path, job_name: str) -> dict | None:
    """A job's record in the container at ``path``; ``None`` if absent or unreadable."""
    try:
        with open_file(path, "r") as f:
            return read_records(f).get(job_name)
    except Exception:  # noqa: BLE001 - unreadable means no usable record
        return None


def container_damage(path, keys=None) -> str | None:
    """Why the container at ``path`` is structurally damaged, or ``None``.

    Opens it and reads every record; h5: visits every object header; n5/zarr:
    parses the metadata files of the root, of the records and of ``keys``
    (default: all). A container that fails this cannot be trusted and must be
    rebuilt by the job that created it. Data chunks are not read here (see
    ``batchlib verify``).
    """
    from .io.checksum import broken_metadata

    name = os.path.basename(os.fspath(path))
    try:
        fmt = container_format(path)
        if fmt != "h5" and os.path.isdir(path):
            roots = [(path, False), (os.path.join(path, RECORD_GROUP), True)]
            roots += [(os.path.join(path, k), True) for k in (keys if keys is not None else [""])]
            for root, recursive in roots:
                bad = broken_metadata(root, recursive)
                if bad:
                    return f"{name}: {os.path.relpath(bad, path)} is not valid JSON"
        with open_file(path, "r") as f:
            if fmt == "h5":
                f.visititems(lambda name, obj: None)
            if RECORD_GROUP in f:
                for job in f[RECORD_GROUP].keys():
                    read_attrs(f[f"{RECORD_GROUP}/{job}"])
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways (KeyError, OSError, ...)
        return f"{name} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return None


def key_run_ids(records: dict) -> dict:
    """Map every key written by a recorded job to the run id that wrote it.

    Keys may be group prefixes (``"raw"`` covers ``"raw/phase"``); the latest
    record wins when two jobs list the same key.
    """
    out = {}
    for rec in sorted(records.values(), key=lambda r: r.get("finished_ns", 0)):
        out.update(rec.get("outputs", {}))
    return out


def producer_run_id(run_ids: dict, key: str) -> str | None:
    """Run id that produced ``key`` (or the group containing it)."""
    parts = key.strip("/").split("/")
    for n in range(len(parts), 0, -1):
        rid = run_ids.get("/".join(parts[:n]))
        if rid is not None:
            return rid
    return None
