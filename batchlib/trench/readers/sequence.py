"""TIFF sequences: one single-plane TIFF per (position, timepoint, channel[, z]).

File names are parsed with a regular expression whose named groups give the
indices: ``t`` (required), ``position``, ``channel`` and ``z`` (optional; a
missing group means a single position/channel/plane) and ``name`` (optional
acquisition prefix).  Labels sort numerically when they are all digits, as
text otherwise; the i-th label is index i.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .base import Acquisition, InvalidAcquisitionError, wrap_error
from .tiff import is_plain_2d, open_tiff, pixel_size_um

__all__ = ["DEFAULT_SEQUENCE_PATTERN", "compile_pattern", "parse_filename", "index_files",
           "sequence_layout", "position_signatures", "SequenceAcquisition"]

#: ``[<name>[_-]]t<digits>[_-]xy<digits>[_-]c<digits>.tif[f]``, case-insensitive,
#: matched against the whole file name, e.g. ``t000xy01c1.tif`` or
#: ``exp1_t000_xy01_c1.TIF``; ``.ome.tif`` names never match.
DEFAULT_SEQUENCE_PATTERN = (
    r"(?i)^(?:(?P<name>.*?)[_-]?)?t(?P<t>\d+)[_-]?xy(?P<position>\d+)[_-]?c(?P<channel>\d+)\.tiff?$"
)
_FIELDS = ("position", "t", "channel", "z")


def compile_pattern(pattern) -> re.Pattern:
    """Compile and check a sequence pattern (it needs a named group ``t``)."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    if "t" not in regex.groupindex:
        raise ValueError(f"sequence pattern {regex.pattern!r} needs a named group 't'")
    return regex


def parse_filename(regex: re.Pattern, filename: str):
    """``{"name", "position", "t", "channel", "z"}`` labels of a matching name, else None."""
    m = regex.fullmatch(filename)
    if m is None:
        return None
    groups = m.groupdict()
    out = {k: groups.get(k) or "0" for k in _FIELDS}
    out["name"] = groups.get("name") or None
    return out


def _sort_key(label: str):
    return (0, int(label), label) if label.isdigit() else (1, 0, label)


def _sorted_labels(labels):
    return sorted(set(labels), key=_sort_key)


def index_files(files, regex: re.Pattern) -> dict:
    """``{(position, t, channel, z): Path}`` of the member files (labels as int where digits).

    Empty files are skipped (being written: counted once they have content).

    Raises
    ------
    InvalidAcquisitionError
        A name that does not match, or two files with the same indices.
    """
    index = {}
    for f in sorted(Path(f) for f in files):
        labels = parse_filename(regex, f.name)
        if labels is None:
            raise InvalidAcquisitionError(f"{f}: name does not match the sequence pattern")
        try:
            if os.stat(f).st_size == 0:
                continue
        except OSError:
            continue
        key = tuple(labels[k] for k in _FIELDS)
        norm = tuple(int(v) if v.isdigit() else v for v in key)
        if norm in index:
            raise InvalidAcquisitionError(
                f"{f}: same indices {dict(zip(_FIELDS, key))} as {index[norm].name}")
        index[norm] = f
    return index


def _missing_name(regex, index, key):
    """The file name a missing member would have: a sibling's name with its ``t`` replaced."""
    p, t, c, z = key
    sibling = next((f for (p2, _, c2, z2), f in index.items() if (p2, c2, z2) == (p, c, z)), None)
    m = regex.fullmatch(sibling.name) if sibling is not None else None
    if m is None:
        return f"position {p}, t {t}, channel {c}, z {z}"
    start, end = m.span("t")
    old = sibling.name[start:end]
    label = str(t).zfill(len(old)) if isinstance(t, int) and old.isdigit() else str(t)
    return sibling.name[:start] + label + sibling.name[end:]


def sequence_layout(index: dict, regex: re.Pattern):
    """``(labels, n_complete, missing)`` of an indexed sequence.

    ``labels``: sorted labels per axis (position, t, channel, z); numeric time
    labels cover the whole range from the first to the last, so a timepoint
    of which every file is missing still has its place. ``n_complete``: the
    leading timepoints of which every position/channel/plane file exists.
    ``missing``: names of the files missing from timepoints followed by a
    later timepoint that has files -- a gap, not a timepoint still being
    written (the last timepoint with files may be incomplete: it has not
    fully arrived yet).
    """
    keys = list(index)
    labels = [[int(v) if v.isdigit() else v for v in _sorted_labels(str(k[i]) for k in keys)]
              for i in range(4)]
    p_l, t_l, c_l, z_l = labels
    if t_l and all(isinstance(t, int) for t in t_l):
        t_l = labels[1] = list(range(min(t_l), max(t_l) + 1))
    have_t = {k[1] for k in keys}
    last = max((i for i, t in enumerate(t_l) if t in have_t), default=-1)
    n_complete, missing = None, []
    for i, t in enumerate(t_l):
        absent = [(p, t, c, z) for p in p_l for c in c_l for z in z_l if (p, t, c, z) not in index]
        if absent and n_complete is None:
            n_complete = i
        if absent and i < last:
            missing += [_missing_name(regex, index, k) for k in absent]
    return labels, (len(t_l) if n_complete is None else n_complete), missing


def position_signatures(files, pattern, hash_fn=None) -> list:
    """Per position, the signature of the files of the complete timepoints (stat only).

    A file of a timepoint that is not complete yet changes nothing, and a
    changed file changes only its own position. A gap (see
    :func:`sequence_layout`) is part of every signature, so that it is
    reported as soon as it appears.

    Parameters
    ----------
    files : list of path-like
    pattern : str or re.Pattern
    hash_fn : callable, optional
        ``hash_fn(path) -> str``: adds ``"blake2b"``, the content hashes of those files.

    Returns
    -------
    list of dict
        One ``{"n_files", "size_bytes", "mtime_ns", "n_timepoints"[, "gap", "blake2b"]}`` per position.
    """
    regex = compile_pattern(pattern)
    index = index_files(files, regex)
    if not index:
        return []
    (p_l, t_l, _, _), n_complete, missing = sequence_layout(index, regex)
    done = set(t_l[:n_complete])
    sigs = []
    for p in p_l:
        n = size = mtime = 0
        mine = sorted(f for (p2, t, _, _), f in index.items() if p2 == p and t in done)
        for f in mine:
            try:
                st = os.stat(f)
            except OSError:
                continue
            n, size, mtime = n + 1, size + st.st_size, max(mtime, st.st_mtime_ns)
        sig = {"n_files": n, "size_bytes": size, "mtime_ns": mtime, "n_timepoints": n_complete}
        if missing:
            sig["gap"] = missing[:20]
        if hash_fn is not None:
            sig["blake2b"] = [hash_fn(f) for f in mine]
        sigs.append(sig)
    return sigs


class SequenceAcquisition(Acquisition):
    """A group of single-plane TIFF files in one folder.

    Parameters
    ----------
    files : list of path-like
        The member files (as listed by :func:`find_acquisitions`).
    pattern : str or re.Pattern
        The pattern the files were grouped with.
    name : str, optional
        Acquisition name; default the folder name (:func:`find_acquisitions`
        passes the ``name`` prefix when there is one).
    """

    format = "tiff-sequence"
    reader = "tifffile"

    def __init__(self, files, pattern, name=None):
        files = sorted(Path(f) for f in files)
        if not files:
            raise InvalidAcquisitionError("empty TIFF sequence: no files")
        super().__init__(files[0].parent, name or files[0].parent.name)
        self._regex = compile_pattern(pattern)
        self._files = index_files(files, self._regex)
        self._setup()

    def _setup(self):
        if not self._files:
            raise InvalidAcquisitionError(f"{self.path}: TIFF sequence has only empty files")
        keys = list(self._files)
        self._labels, self.n_timepoints, missing = sequence_layout(self._files, self._regex)
        if missing:
            # Never drop the frames after a hole silently: say which files are missing.
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise InvalidAcquisitionError(
                f"{self.path}: TIFF sequence has a gap: {len(missing)} file(s) missing before the "
                f"last timepoint ({shown}); only {self.n_timepoints} leading timepoint(s) are "
                "complete. Restore the missing file(s), or move the later timepoints out of the "
                "folder to process the frames before the gap")
        p_l, t_l, c_l, z_l = self._labels
        self.n_positions, self.n_z = len(p_l), len(z_l)
        first = self._files.get((p_l[0], t_l[0], c_l[0], z_l[0]), self._files[keys[0]])
        tif, _ = open_tiff(first)
        try:
            if not is_plain_2d(tif):
                raise InvalidAcquisitionError(
                    f"{first}: sequence member is not a single 2-D plane "
                    f"(axes {tif.series[0].axes}, shape {tif.series[0].shape})")
            self.shape_yx = tuple(tif.series[0].shape)
            self.dtype = np.dtype(tif.series[0].dtype)
            self.pixel_size_um = pixel_size_um(tif)
        finally:
            tif.close()
        channel_labels = [str(c) for c in c_l]
        # Numbered channels keep the file's number: files ...c1.tif, ...c2.tif
        # are channels c1, c2 (not c0, c1), so configs can name what they see.
        numbered = all(c.isdigit() for c in channel_labels)
        names = [f"c{c}" for c in channel_labels] if numbered else channel_labels
        self.metadata.update({
            "axes": "TPCZYX",
            "n_timepoints_declared": len(t_l),
            "position_labels": [str(p) for p in p_l],
            "t_labels": [str(t) for t in t_l],
            "channel_labels": channel_labels,
            "times_source": None,
            "n_files": len(self._files),
        })
        self._finish_init(names, len(c_l), placeholders=numbered)

    def _path(self, position, t, channel, z):
        p_l, t_l, c_l, z_l = self._labels
        return self._files[(p_l[position], t_l[t], c_l[channel], z_l[z])]

    def _read_plane(self, position, t, channel, z):
        path = self._path(position, t, channel, z)
        tif, _ = open_tiff(path)
        try:
            if not is_plain_2d(tif):
                raise InvalidAcquisitionError(f"{path}: sequence member is not a single 2-D plane")
            return tif.pages[0].asarray()
        except InvalidAcquisitionError:
            raise
        except Exception as exc:
            raise wrap_error(path, "cannot read TIFF plane", exc) from exc
        finally:
            tif.close()

    def times_s(self, position):
        self._check_position(position)
        return np.full(self.n_timepoints, np.nan)  # file names carry indices, not times

    def frame_files(self, position, n_t):
        """The member files of the first ``n_t`` timepoints of a position, sorted."""
        self._check_position(position)
        p, done = self._labels[0][position], set(self._labels[1][:n_t])
        return sorted(f for k, f in self._files.items() if k[0] == p and k[1] in done)

    def source_files(self, position):
        p = self._labels[0][position]
        return sorted(f.name for k, f in self._files.items() if k[0] == p)
