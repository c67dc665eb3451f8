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

import hashlib
import os
import zlib
from pathlib import Path

from .files import is_h5

#: Bytes of a BLAKE2b content hash. Stored in input signatures (``hash_inputs``) and
#: in the records of files beside the containers: changing it makes every stored
#: hash differ, so every such output would be recomputed once.
CONTENT_DIGEST_SIZE = 16


def content_hash(paths, block=1 << 20) -> str:
    """BLAKE2b hex digest of the bytes of one file or several, read in blocks.

    Parameters
    ----------
    paths : path or sequence of paths
        Files, hashed one after the other in the order given; a directory
        stands for every file below it (sorted by path).
    block : int
        Bytes read at a time.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a").write_bytes(b"ab"); (d / "b").write_bytes(b"c")
    2
    1
    >>> content_hash([d / "a", d / "b"]) == content_hash(d) != content_hash(d / "a")
    True
    >>> len(content_hash(d / "a"))
    32
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    h = hashlib.blake2b(digest_size=CONTENT_DIGEST_SIZE)
    for path in paths:
        p = Path(path)
        for q in sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]:
            with open(q, "rb") as f:
                while chunk := f.read(block):
                    h.update(chunk)
    return h.hexdigest()


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
    for path in dataset_paths(container, keys):
        yield path, container[path]


def dataset_paths(container, keys=None) -> list:
    """The sorted paths of the datasets at or below ``keys`` (default: all), opening none.

    h5: one walk over the object headers (``H5Ovisit``), without the Python
    object h5py's ``visititems`` builds for every member (a container holds a
    table per trench: that was a tenth of a live cycle).
    """
    out = []
    for root in [""] if keys is None else [str(k).strip("/") for k in keys]:
        if root and root not in container:
            continue
        obj = container[root] if root else container
        if _is_dataset(obj):
            out.append(root)
            continue
        if is_h5(obj):
            from h5py import h5o

            found = []
            h5o.visit(obj.id, lambda name, info, _f=found: _f.append(name.decode())
                      if info.type == h5o.TYPE_DATASET else None, info=True)
        else:
            found = []
            obj.visititems(lambda name, o, _f=found: _f.append(name) if _is_dataset(o) else None)
        out += [f"{root}/{name}" if root else name for name in sorted(found)]
    return out


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


def metadata_problems(container, recorded: dict | None) -> list:
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
