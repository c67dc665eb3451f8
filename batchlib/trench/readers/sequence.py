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

__all__ = ["DEFAULT_SEQUENCE_PATTERN", "compile_pattern", "parse_filename", "SequenceAcquisition"]

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
        regex = compile_pattern(pattern)
        self._files = {}
        for f in files:
            labels = parse_filename(regex, f.name)
            if labels is None:
                raise InvalidAcquisitionError(f"{f}: name does not match the sequence pattern")
            try:
                if os.stat(f).st_size == 0:
                    continue  # being created; counted once it has content
            except OSError:
                continue
            key = tuple(labels[k] for k in _FIELDS)
            norm = tuple(int(v) if v.isdigit() else v for v in key)
            if norm in self._files:
                raise InvalidAcquisitionError(
                    f"{f}: same indices {dict(zip(_FIELDS, key))} as {self._files[norm].name}")
            self._files[norm] = f
        self._setup()

    def _setup(self):
        if not self._files:
            raise InvalidAcquisitionError(f"{self.path}: TIFF sequence has only empty files")
        keys = list(self._files)
        labels = [_sorted_labels(str(k[i]) for k in keys) for i in range(4)]
        self._labels = [[int(v) if v.isdigit() else v for v in ls] for ls in labels]
        p_l, t_l, c_l, z_l = self._labels
        present = set(keys)
        self.n_timepoints = 0
        for t in t_l:  # a timepoint counts once every position/channel/plane file exists
            if all((p, t, c, z) in present for p in p_l for c in c_l for z in z_l):
                self.n_timepoints += 1
            else:
                break
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

    def source_files(self, position):
        p = self._labels[0][position]
        return sorted(f.name for k, f in self._files.items() if k[0] == p)
