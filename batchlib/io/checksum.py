"""What a job wrote, described so that it can be checked later.

A completion record lists every dataset the job wrote with its shape, dtype,
stored size and a *digest*: a CRC-32 of the bytes as stored (h5: each chunk
as read by ``read_direct_chunk``, still compressed, with its position; n5/zarr:
each chunk file with its name). Hashing the stored bytes costs one read of
data that was just written (still in the page cache) and no decompression,
and it notices a flipped byte, a truncated or deleted chunk and a rewritten
dataset alike. CRC-32 detects accidental damage (it is not meant against
deliberate tampering) and runs about six times faster than BLAKE2b here; the
digest names its algorithm (``crc32:<hex>``) so that another can follow.

Two levels of checking use it:

* :func:`metadata_problems` (cheap, metadata only): every recorded dataset is
  still there with the recorded shape and dtype. Planning runs it whenever a
  container changed since the job last saw it.
* :func:`content_problems` (reads everything): the digests still match, and
  datasets without a digest decode. ``batchlib verify`` runs it.
"""
from __future__ import annotations

import os
import zlib

from .files import is_h5

#: Files of an n5/zarr dataset directory that hold metadata, not chunks.
_META_FILES = {"attributes.json", ".zarray", ".zattrs", ".zgroup", "zarr.json"}


def broken_metadata(root, recursive=True) -> str | None:
    """n5/zarr: the first metadata file below directory ``root`` that is not valid JSON.

    z5py rewrites these files in place, so a full disk can leave one empty;
    opening the group or dataset then fails with a JSON parse error.
    """
    import json

    for dirpath, dirnames, files in os.walk(root):
        for name in sorted(set(files) & _META_FILES):
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    json.loads(f.read() or b"!")
            except (OSError, ValueError):
                return path
        if not recursive:
            break
        # chunk directories (digits only) hold no metadata: do not walk them
        dirnames[:] = [d for d in dirnames if not d.isdigit()]
    return None


def iter_datasets(container, keys=None):
    """``(path, dataset)`` for every dataset at or below ``keys`` (default: all)."""
    roots = [""] if keys is None else [str(k).strip("/") for k in keys]
    for root in roots:
        if root and root not in container:
            continue
        obj = container[root] if root else container
        if _is_dataset(obj):
            yield root, obj
            continue
        found = []
        obj.visititems(lambda name, o, _f=found: _f.append(name) if _is_dataset(o) else None)
        for name in sorted(found):
            path = f"{root}/{name}" if root else name
            yield path, container[path]


def _is_dataset(obj) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype")


def _dataset_dir(ds) -> str:
    return os.path.join(ds.file.filename, ds.name.lstrip("/"))


def stored_nbytes(ds) -> int:
    """Bytes a dataset occupies on disk (metadata only for h5; a directory walk for n5/zarr)."""
    if is_h5(ds):
        return int(ds.id.get_storage_size())
    total = 0
    for root, _, files in os.walk(_dataset_dir(ds)):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f not in _META_FILES)
    return total


class _Crc32:
    PREFIX = "crc32:"

    def __init__(self):
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.PREFIX}{self.value:08x}"


def digest(ds) -> str:
    """Checksum of a dataset's stored bytes (see the module docstring)."""
    h = _Crc32()
    if is_h5(ds):
        if ds.chunks is not None:
            chunks = _chunk_offsets(ds)
            for offset in sorted(chunks):
                mask, data = ds.id.read_direct_chunk(offset)
                h.update(repr((offset, mask)).encode())
                h.update(data)
        elif ds.dtype.kind == "O":  # variable-length strings: hash the values
            import numpy as np

            for v in np.asarray(ds[()]).ravel():
                b = v if isinstance(v, bytes) else str(v).encode()
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
        elif ds.size:
            import numpy as np

            h.update(np.ascontiguousarray(ds[()]).tobytes())
        return h.hexdigest()
    base = _dataset_dir(ds)
    files = []
    for root, _, names in os.walk(base):
        files += [os.path.join(root, n) for n in names if n not in _META_FILES]
    for path in sorted(files):
        h.update(os.path.relpath(path, base).encode() + b"\0")
        with open(path, "rb") as f:
            data = f.read()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _chunk_offsets(ds) -> list:
    dsid = ds.id
    if hasattr(dsid, "chunk_iter"):  # HDF5 >= 1.14: one pass over the chunk index
        offsets = []
        dsid.chunk_iter(lambda info: offsets.append(tuple(info.chunk_offset)))
        return offsets
    return [tuple(dsid.get_chunk_info(i).chunk_offset) for i in range(dsid.get_num_chunks())]


def describe(ds) -> dict:
    """Shape, dtype, stored size and digest of one dataset, as a record keeps them."""
    return {"shape": [int(s) for s in ds.shape], "dtype": str(ds.dtype),
            "nbytes": stored_nbytes(ds), "digest": digest(ds)}


def describe_datasets(container, keys) -> dict:
    """``{path: describe(ds)}`` for every dataset at or below ``keys``."""
    return {path: describe(ds) for path, ds in iter_datasets(container, keys)}


def metadata_problems(container, recorded: dict) -> list:
    """Recorded datasets that are missing or changed shape or dtype (reads metadata only)."""
    problems = []
    for path, info in (recorded or {}).items():
        try:
            if path not in container:
                problems.append(f"{path!r} is missing")
                continue
            ds = container[path]
            if not _is_dataset(ds):
                problems.append(f"{path!r} is no longer a dataset")
            elif [int(s) for s in ds.shape] != list(info.get("shape", [])):
                problems.append(f"{path!r} has shape {tuple(ds.shape)}, recorded {tuple(info.get('shape', []))}")
            elif str(ds.dtype) != info.get("dtype"):
                problems.append(f"{path!r} has dtype {ds.dtype}, recorded {info.get('dtype')}")
        except Exception as e:  # noqa: BLE001 - a damaged container may fail in any way
            problems.append(f"{path!r} cannot be opened ({type(e).__name__}: {e})")
    return problems


def content_problem(ds, info=None) -> str | None:
    """Why a dataset's content is damaged, or ``None``.

    With a recorded ``info`` (from :func:`describe`) the stored bytes are
    compared with the recorded digest; without one (or with a digest of an
    algorithm this version does not compute) the whole dataset is read and
    decoded, which catches what the decompressors notice.
    """
    try:
        if info and str(info.get("digest", "")).startswith(_Crc32.PREFIX):
            if [int(s) for s in ds.shape] != list(info.get("shape", [])):
                return f"shape {tuple(ds.shape)}, recorded {tuple(info['shape'])}"
            if digest(ds) != info["digest"]:
                return "content differs from what was written (checksum mismatch)"
            return None
        _read_all(ds)
    except Exception as e:  # noqa: BLE001 - any read error means damage
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return None


def _read_all(ds, block_bytes=64 << 20) -> None:
    """Read (and so decode and checksum) a whole dataset, a block of leading rows at a time."""
    if not ds.shape:
        ds[()]
        return
    if ds.size == 0:
        return
    import numpy as np

    row = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
    step = max(1, block_bytes // row)
    if ds.chunks:
        step = max(ds.chunks[0], (step // ds.chunks[0]) * ds.chunks[0])
    for i in range(0, ds.shape[0], step):
        ds[i:i + step]
