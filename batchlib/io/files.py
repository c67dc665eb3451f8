"""One interface over h5 (h5py) and n5/zarr (z5py) containers.

h5py and z5py objects already share the dict-like group API, ``attrs`` and
numpy-style slicing; the functions here cover the parts where they differ:
opening, dataset creation with compression, replacement, growth, and
attributes holding nested values.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ..lock import pid_alive
from .compression import h5_compression_kwargs, z5_compression_kwargs

H5_EXTS = (".h5", ".hdf5", ".hdf")
N5_EXTS = (".n5",)
ZARR_EXTS = (".zarr", ".zr")
CONTAINER_EXTS = H5_EXTS + N5_EXTS + ZARR_EXTS

_JSON_PREFIX = "json:"


def container_format(path) -> str:
    """``"h5"``, ``"n5"`` or ``"zarr"`` from a container's file extension."""
    ext = os.path.splitext(os.fspath(path).rstrip("/" + os.sep))[1].lower()  # not Path: hot path
    if ext in H5_EXTS:
        return "h5"
    if ext in N5_EXTS:
        return "n5"
    if ext in ZARR_EXTS:
        return "zarr"
    raise ValueError(f"{path}: not a container (extension must be one of {CONTAINER_EXTS})")


def is_h5(obj) -> bool:
    """Whether an open file, group or dataset belongs to h5py."""
    return type(obj).__module__.startswith("h5py")


def open_file(path, mode: str = "a"):
    """Open an h5, n5 or zarr container with the same interface.

    Parameters
    ----------
    path : str or Path
        Container path; its extension selects the backend.
    mode : {"r", "r+", "a", "w"}
        As in h5py.

    Returns
    -------
    h5py.File or z5py.File
        Usable as a context manager.
    """
    fmt = container_format(path)
    if fmt == "h5":
        import h5py
        import hdf5plugin  # noqa: F401 - registers the Blosc/LZ4 filters, also for reading

        # The HDF5 file-locking protocol fails on several network file systems
        # used on clusters; batchlib's own lock protects the folder instead.
        return h5py.File(path, mode, locking=False)
    import z5py

    if mode == "r" and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such container")
    return z5py.File(str(path), mode, use_zarr_format=(fmt == "zarr"))


def remove_container(path) -> None:
    """Delete a container (a file for h5, a directory for n5/zarr) if it exists."""
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def replace_container(src, dst) -> None:
    """Move a finished container ``src`` to ``dst``, replacing ``dst``.

    Files are replaced atomically with ``os.replace``. Directories cannot be
    swapped atomically, so the old one is first renamed aside: at every
    moment ``dst`` is either the complete old or the complete new container
    (or, for an instant, absent, which a rerun treats as not done).
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        trash = None
        if dst.exists():
            trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            os.replace(dst, trash)
        os.replace(src, dst)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


#: Marks the name of a file or container being written: ``.<name>.tmp-<pid>-<random><suffix>``.
TMP_MARK = ".tmp-"


def temporary_path(path) -> Path:
    """A temporary name beside ``path``, for writing it before it is moved into place.

    ``.<name>.tmp-<pid>-<random><suffix>``: hidden, never taken for an input
    (:func:`is_temporary`), the suffix kept so that the format is still known
    from it (h5/n5, png), and the writer's pid recorded so that the clean-up
    of leftovers (:func:`remove_leftovers`) can tell a live writer's file
    from one left by a killed run.
    """
    p = Path(path)
    return p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:6]}{p.suffix}")


def is_temporary(name) -> bool:
    """Whether ``name`` (a base name) is a temporary name of :func:`temporary_path`."""
    return name.startswith(".") and TMP_MARK in name


def temporary_pid(name) -> int | None:
    """The pid of the process that wrote the temporary ``name`` (``None``: not one of ours)."""
    if not is_temporary(name):
        return None
    digits = name.rsplit(TMP_MARK, 1)[1].split("-", 1)[0].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


@contextlib.contextmanager
def atomic_path(path, fsync=False):
    """Write ``path`` through a temporary name: readers see the old or the new one, never a mix.

    Like Luigi's ``Target.temporary_path()``: the block writes to the path it
    is given (a file, or an n5/zarr directory); when it ends normally that
    replaces ``path`` (``os.replace``; :func:`replace_container` for
    directories), when it raises (a full disk, a signal) the temporary is
    removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or Path
        The final path; its folder is created if needed.
    fsync : bool
        Flush the file to the disk before the rename (for small files whose
        loss after a power cut would matter, e.g. status files).

    Yields
    ------
    Path
        The temporary path to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        replace_container(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_container(tmp)
        raise


def remove_leftovers(directory, any_writer=False) -> list:
    """Remove the temporaries (:func:`temporary_path`) that killed runs left in ``directory``.

    Only those whose writer is gone: a dead pid, or our own pid from before
    this run (the pid was reused). ``any_writer=True`` removes them all, for
    folders that only the caller, who holds the folder's lock, writes into
    (the writer may have run on another host, where its pid means nothing).
    Returns the names removed.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not is_temporary(entry.name):
            continue
        pid = temporary_pid(entry.name)
        if not any_writer and (pid is None or (pid != os.getpid() and pid_alive(pid, unknown=True))):
            continue
        try:
            remove_container(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return sorted(removed)


def create_dataset(group, key, data=None, shape=None, dtype=None, chunks=None,
                   compression="default", growable=False):
    """Create (or replace) a dataset in an h5 or n5/zarr group.

    An existing object at ``key`` is deleted first, so rewriting a job's output
    never fails because a dataset of another shape or dtype exists.

    Parameters
    ----------
    group : h5py.Group or z5py.Group
    key : str
    data : array_like, optional
    shape, dtype : optional
        Required when ``data`` is not given.
    chunks : tuple of int, optional
        Defaults to the whole array for small arrays, else the backend's choice.
    compression : str
        One of :data:`batchlib.io.compression.COMPRESSIONS` or "default".
    growable : bool or int
        Allow growing along axis 0 (``True``) or along the given axis later
        (:func:`grow_dataset`).
    """
    import numpy as np  # here, not at the top: planning a rerun needs no numpy

    if key in group:
        del group[key]
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, data.dtype
    shape = tuple(int(s) for s in shape)
    if chunks is None:
        chunks = _default_chunks(shape, np.dtype(dtype))
    chunks = tuple(max(1, min(int(c), max(int(s), 1))) for c, s in zip(chunks, shape))
    if is_h5(group):
        kwargs = h5_compression_kwargs(compression)
        maxshape = None
        if growable is not False:
            axis = 0 if growable is True else int(growable)
            maxshape = tuple(None if i == axis else s for i, s in enumerate(shape))
        if 0 in shape and growable is False:
            return group.create_dataset(key, shape=shape, dtype=dtype, data=data)
        return group.create_dataset(key, shape=shape, dtype=dtype, data=data,
                                    chunks=chunks, maxshape=maxshape, **kwargs)
    if 0 in shape:
        # z5py divides by the shape when laying out chunks and crashes the process.
        raise ValueError(f"{key}: n5/zarr datasets cannot be empty (shape {shape})")
    kwargs = z5_compression_kwargs(compression, zarr=bool(getattr(group, "is_zarr", False)))
    ds = group.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, **kwargs)
    if data is not None and data.size:
        ds[...] = data
    return ds


def _default_chunks(shape, dtype, target_bytes=1 << 20):
    """Chunks of about ``target_bytes`` that split the leading axes first."""
    import numpy as np

    if not shape:
        return ()
    chunks = [max(int(s), 1) for s in shape]
    for axis in range(len(chunks)):
        while int(np.prod(chunks)) * dtype.itemsize > target_bytes and chunks[axis] > 1:
            chunks[axis] = (chunks[axis] + 1) // 2
    return tuple(chunks)


def grow_dataset(group, key, new_length: int, axis: int = 0):
    """Grow dataset ``key`` along ``axis`` to ``new_length`` and return it.

    h5 datasets must have been created growable along that axis. For n5 and zarr
    only the shape in the dataset's metadata changes: chunks already written
    stay untouched, so existing data is neither re-read nor rewritten.
    """
    ds = group[key]
    new_shape = tuple(int(new_length) if i == axis else s for i, s in enumerate(ds.shape))
    if is_h5(group):
        ds.resize(new_shape)
        return ds
    path = Path(group.file.filename) / group.name.lstrip("/") / key
    meta_file = path / ("attributes.json" if (path / "attributes.json").exists() else ".zarray")
    meta = json.loads(meta_file.read_text())
    if meta_file.name == "attributes.json":
        meta["dimensions"] = list(reversed(new_shape))  # n5 stores axes fastest first
    else:
        meta["shape"] = list(new_shape)
    with atomic_path(meta_file) as tmp:
        tmp.write_text(json.dumps(meta))
    del ds
    return group[key]


def _encode_attr(value):
    import numpy as np

    if isinstance(value, (dict, list, tuple)) or value is None:
        return _JSON_PREFIX + json.dumps(value, default=_json_default)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_attr(value):
    import numpy as np

    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX):])
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in attributes")


def write_attrs(obj, attrs: dict) -> None:
    """Write attributes; nested values (dicts, lists, None) survive in both backends."""
    if is_h5(obj):
        for k, v in attrs.items():
            obj.attrs[k] = _encode_attr(v)
    else:
        obj.attrs.update(json.loads(json.dumps(attrs, default=_json_default)))


def read_attrs(obj) -> dict:
    """Read all attributes written with :func:`write_attrs` as plain Python values."""
    if is_h5(obj):
        return {k: _decode_attr(v) for k, v in obj.attrs.items()}
    return dict(obj.attrs)
