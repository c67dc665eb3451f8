"""Find acquisitions in a folder and open them with the right backend."""
from __future__ import annotations

import os
from pathlib import Path

from .base import AcquisitionSource, InvalidAcquisitionError, acquisition_name, check_file
from .sequence import DEFAULT_SEQUENCE_PATTERN, compile_pattern, parse_filename
from .tiff import _tifffile_log, is_plain_2d, tiff_format

__all__ = ["find_acquisitions", "open_acquisition", "source_for_path", "output_stem", "BACKENDS"]

BACKENDS = ("auto", "nd2", "nd2reader", "tifffile")
_TIFF_EXT = (".tif", ".tiff")


def _sniff(path, plain_check=False):
    """(format, plain 2-D) from the TIFF header; ("tiff", True) when unreadable,
    so that the error is reported when the acquisition is opened."""
    import tifffile

    with _tifffile_log():
        try:
            with tifffile.TiffFile(path) as tif:
                return tiff_format(tif), (is_plain_2d(tif) if plain_check else False)
        except Exception:
            return "tiff", True


def _single(path: Path, key: str) -> AcquisitionSource:
    lower = path.name.lower()
    if lower.endswith(".nd2"):
        fmt = "nd2"
    elif lower.endswith((".ome.tif", ".ome.tiff")):
        fmt = "ome-tiff"
    else:
        fmt = _sniff(path)[0]
    return AcquisitionSource(name=acquisition_name(path), format=fmt, files=[path], key=key)


def _scan_dir(root: Path, dirpath: Path, filenames, regex, exts):
    rel = dirpath.relative_to(root).as_posix()
    groups, singles = {}, []
    for fn in sorted(filenames):
        if fn.startswith(".") or not fn.lower().endswith(exts):
            continue
        path = dirpath / fn
        is_tiff = regex is not None and fn.lower().endswith(_TIFF_EXT)
        labels = parse_filename(regex, fn) if is_tiff else None
        if labels is None:
            singles.append(path)
        else:
            groups.setdefault(labels["name"], []).append(path)
    sources = []
    for prefix, files in groups.items():
        # a group whose first file is a stack (not one 2-D plane) was not written as a sequence
        if not _sniff(files[0], plain_check=True)[1]:
            singles.extend(files)
            continue
        name = prefix or (dirpath.name if rel != "." else root.resolve().name)
        sources.append(AcquisitionSource(name=name, format="tiff-sequence", files=files,
                                         key=f"{rel}/{prefix or ''}", pattern=regex))
    for path in singles:
        sources.append(_single(path, path.relative_to(root).as_posix()))
    return sources


#: Joins the sub-folders of an acquisition's relative path in output names.
SUBFOLDER_SEP = "__"


def output_stem(src: AcquisitionSource) -> str:
    """The name outputs of an acquisition are derived from: its relative path, flattened.

    The full acquisition name is kept (``exp.v2.ome.tif`` -> ``exp.v2``) and
    the sub-folders it lies in come first, joined by ``__``
    (``day1/exp.ome.tif`` -> ``day1__exp``), so that two acquisitions found in
    one scan never share an output. A sequence without a name prefix is named
    after its folder, which is then its relative path (``day1/`` -> ``day1``);
    one directly in the scanned folder keeps that folder's name. Acquisitions
    directly in the scanned folder keep their plain name.
    """
    rel_dir, _, last = src.key.rpartition("/")
    parts = [p for p in rel_dir.split("/") if p not in ("", ".")]
    if src.format == "tiff-sequence" and not last:
        return SUBFOLDER_SEP.join(parts) or src.name
    return SUBFOLDER_SEP.join(parts + [src.name])


def find_acquisitions(folder, sequence_pattern=DEFAULT_SEQUENCE_PATTERN,
                      extensions=(".nd2", ".tif", ".tiff"), recursive=True):
    """List the acquisitions under ``folder`` (stat and TIFF headers only).

    Parameters
    ----------
    folder : path-like
    sequence_pattern : str or None
        Filename regex grouping single-plane TIFFs into sequences (see
        :data:`DEFAULT_SEQUENCE_PATTERN`); None disables sequences.
    extensions : tuple of str
        File extensions considered (case-insensitive).
    recursive : bool
        Descend into sub-folders (hidden ones, starting with ``.``, are skipped).

    Returns
    -------
    list of AcquisitionSource
        Sorted by ``key``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    regex = compile_pattern(sequence_pattern) if sequence_pattern else None
    exts = tuple(e.lower() for e in extensions)
    sources = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        sources.extend(_scan_dir(root, Path(dirpath), filenames, regex, exts))
    return sorted(sources, key=lambda s: s.key)


def source_for_path(path, sequence_pattern=DEFAULT_SEQUENCE_PATTERN) -> AcquisitionSource:
    """The :class:`AcquisitionSource` of a file, or of the one sequence in a folder.

    A file that belongs to a TIFF sequence gives the whole sequence.
    """
    path = Path(path)
    if path.is_dir():
        sources = find_acquisitions(path, sequence_pattern, recursive=False)
        if len(sources) != 1:
            names = ", ".join(s.name for s in sources) or "none"
            raise InvalidAcquisitionError(
                f"{path}: folder holds {len(sources)} acquisitions ({names}); "
                "open one file or source")
        return sources[0]
    check_file(path)
    regex = compile_pattern(sequence_pattern) if sequence_pattern else None
    is_tiff = path.name.lower().endswith(_TIFF_EXT)
    if regex is not None and is_tiff and parse_filename(regex, path.name):
        for src in find_acquisitions(path.parent, sequence_pattern, recursive=False):
            if any(f.name == path.name for f in src.files):
                return src
    return _single(path, path.name)


def open_acquisition(source_or_path, backend="auto", sequence_pattern=DEFAULT_SEQUENCE_PATTERN):
    """Open an acquisition for reading.

    Parameters
    ----------
    source_or_path : AcquisitionSource or path-like
        A source from :func:`find_acquisitions`, a file, or a folder holding
        exactly one acquisition.
    backend : {"auto", "nd2", "nd2reader", "tifffile"}
        ``"auto"``: ``nd2`` for ND2 files (``nd2reader`` if ``nd2`` is not
        installed or cannot open the file), ``tifffile`` for TIFF.
    sequence_pattern : str
        Used when a path (not a source) is given.

    Returns
    -------
    Acquisition
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    InvalidAcquisitionError
        Unreadable, empty, truncated or unsupported input (message starts with the path).
    ValueError
        A backend that does not read this format.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    src = source_or_path if isinstance(source_or_path, AcquisitionSource) else \
        source_for_path(source_or_path, sequence_pattern)
    if src.format == "nd2":
        return _open_nd2(src, backend)
    if backend not in ("auto", "tifffile"):
        raise ValueError(f"backend {backend!r} cannot read {src.format} ({src.key or src.path})")
    if src.format == "tiff-sequence":
        from .sequence import SequenceAcquisition
        pattern = src.pattern or DEFAULT_SEQUENCE_PATTERN
        return SequenceAcquisition(src.files, pattern, name=src.name)
    from .tiff import TiffAcquisition
    return TiffAcquisition(src.files[0], name=src.name)


def _open_nd2(src, backend):
    if backend == "tifffile":
        raise ValueError(f"backend 'tifffile' cannot read ND2 ({src.path})")
    from .nd2_backend import Nd2Acquisition
    from .nd2reader_backend import Nd2readerAcquisition
    if backend == "nd2":
        return Nd2Acquisition(src.path, name=src.name)
    if backend == "nd2reader":
        return Nd2readerAcquisition(src.path, name=src.name)
    try:
        return Nd2Acquisition(src.path, name=src.name)
    except ImportError:
        return Nd2readerAcquisition(src.path, name=src.name)
    except InvalidAcquisitionError as first:
        try:
            acq = Nd2readerAcquisition(src.path, name=src.name)
        except Exception:
            raise first from None
        acq.metadata["fallback_reason"] = str(first)
        return acq
