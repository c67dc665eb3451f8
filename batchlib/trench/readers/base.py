"""The acquisition interface shared by every reader backend.

An *acquisition* is one experiment as the microscope wrote it: one ND2 file,
one TIFF file or one group of single-plane TIFF files.  Whatever the format,
it is presented as frames indexed by ``(position, t, channel, z)``; backends
only implement :meth:`Acquisition._read_plane` and the time/stage look-ups,
and this module does validation, z reduction and metadata normalisation, so
that every format answers the same questions the same way.
"""
from __future__ import annotations

import abc
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "InvalidAcquisitionError",
    "AcquisitionSource",
    "Acquisition",
    "complete_timepoints",
    "length_to_um",
    "time_to_s",
    "check_file",
    "acquisition_name",
    "check_frame_shape",
]

#: Formats an :class:`AcquisitionSource` can have.
FORMATS = ("nd2", "ome-tiff", "imagej-tiff", "tiff", "tiff-sequence")

_LENGTH_UM = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "å": 1e-4, "pm": 1e-6,
}
_TIME_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "µs": 1e-6, "μs": 1e-6, "us": 1e-6,
           "min": 60.0, "h": 3600.0, "ns": 1e-9}


class InvalidAcquisitionError(ValueError):
    """A file (or file group) that cannot be read as an acquisition.

    The message always starts with the offending path, then the reason.
    """


def check_file(path) -> Path:
    """Fail early, with a clear reason, on files no library should be handed."""
    path = Path(path)
    if not path.exists():
        raise InvalidAcquisitionError(f"{path}: file not found")
    if not path.is_file():
        raise InvalidAcquisitionError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InvalidAcquisitionError(f"{path}: empty file (0 bytes)")
    return path


#: Plausible frame sizes. A header claiming more is corrupted (or not a camera
#: image): refusing it at validation beats allocating 20 GB per frame later.
MAX_FRAME_SIDE = 65536
MAX_FRAME_BYTES = 2 ** 31
MIN_FRAME_SIDE = 2


def check_frame_shape(path, shape_yx, itemsize=2) -> None:
    """Raise :class:`InvalidAcquisitionError` for frames no microscope camera writes."""
    y, x = (int(v) for v in shape_yx)
    if min(y, x) < MIN_FRAME_SIDE:
        raise InvalidAcquisitionError(
            f"{path}: frames of {y} x {x} pixels are too small to be images of trenches "
            f"(at least {MIN_FRAME_SIDE} x {MIN_FRAME_SIDE})")
    size = y * x * int(itemsize)
    if max(y, x) > MAX_FRAME_SIDE or size > MAX_FRAME_BYTES:
        raise InvalidAcquisitionError(
            f"{path}: the header claims frames of {y} x {x} pixels ({size / 1e9:.1f} GB each), "
            f"beyond any camera: the file is probably corrupted (limits: {MAX_FRAME_SIDE} pixels "
            f"per side, {MAX_FRAME_BYTES / 2**30:.0f} GiB per frame)")


def wrap_error(path, what: str, exc: BaseException) -> InvalidAcquisitionError:
    """An :class:`InvalidAcquisitionError` carrying a library exception's reason."""
    reason = str(exc) or type(exc).__name__
    if len(reason) > 200:  # some libraries dump whole binary signatures
        reason = reason[:200] + "..."
    return InvalidAcquisitionError(f"{path}: {what} ({type(exc).__name__}: {reason})")


def acquisition_name(path) -> str:
    """File name without ``.nd2``/``.tif``/``.tiff`` and without ``.ome``."""
    name = Path(path).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".nd2"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def length_to_um(value, unit="µm", positive=True):
    """``value`` in ``unit`` as micrometres, or None when either is unknown
    (or, with ``positive``, when it is not a usable size)."""
    value = finite_or_none(value)
    if value is None or (positive and value <= 0):
        return None
    factor = _LENGTH_UM.get(str(unit or "").strip().lower())
    return None if factor is None else value * factor


def time_to_s(value, unit="s"):
    """``value`` in ``unit`` as seconds, or None when either is unknown."""
    value = finite_or_none(value)
    factor = _TIME_S.get(str(unit or "").strip().lower())
    return None if value is None or factor is None else value * factor


def finite_or_none(value):
    """``float(value)`` when it is a finite number, else None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def complete_timepoints(loop_axes: str, loop_shape, n_written: int) -> int:
    """Number of leading timepoints whose frames have all been written.

    Frames are assumed to be written in sequence order, i.e. the C-order
    ravel of the loop indices, so a frame exists iff its sequence index is
    below ``n_written``.  The last frame of timepoint ``t`` is the one with
    every other loop at its maximum, and it grows with ``t``.

    Parameters
    ----------
    loop_axes : str
        Letters of the loops, outermost first (e.g. ``"TPZ"``).
    loop_shape : tuple of int
        Size of each loop.
    n_written : int
        Number of frames present in the file.
    """
    loop_shape = tuple(int(n) for n in loop_shape)
    if "T" not in loop_axes:
        return int(n_written >= math.prod(loop_shape))
    it = loop_axes.index("T")
    n_t = loop_shape[it]
    coords = [np.full(n_t, n - 1) for n in loop_shape]
    coords[it] = np.arange(n_t)
    last = np.ravel_multi_index(coords, loop_shape)
    done = last < n_written
    return int(n_t if done.all() else np.argmin(done))


@dataclass
class AcquisitionSource:
    """Where an acquisition lives on disk; cheap to build, pickle and compare.

    Attributes
    ----------
    name : str
        Acquisition name, used for output container names: the file name
        without extension (and without ``.ome``) or, for a TIFF sequence, the
        filename prefix (regex group ``name``) or else the folder name.
    format : str
        One of ``"nd2"``, ``"ome-tiff"``, ``"imagej-tiff"``, ``"tiff"``,
        ``"tiff-sequence"``.
    files : list of Path
        One file, except for sequences (all member files, sorted).
    key : str
        Stable id: the file path relative to the scanned folder (POSIX), or
        ``"<relative dir>/<name>"`` / ``"<relative dir>/"`` (no prefix) for a
        sequence, with ``"."`` for the scanned folder itself.
    pattern : str, re.Pattern or None
        The filename regex a sequence was grouped with (needed to reopen it).
    """

    name: str
    format: str
    files: list = field(default_factory=list)
    key: str = ""
    pattern: object = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown acquisition format {self.format!r}")
        self.files = [Path(f) for f in self.files]

    @property
    def path(self) -> Path:
        """The file, or the folder holding a sequence."""
        return self.files[0].parent if self.format == "tiff-sequence" else self.files[0]

    def signature(self) -> dict:
        """``{"n_files", "size_bytes", "mtime_ns"}`` from ``stat`` only.

        Files that vanished are not counted.  A sequence gaining files is only
        seen through a new source from :func:`find_acquisitions`, which lists
        the current files.
        """
        n = size = mtime = 0
        for f in self.files:
            try:
                st = os.stat(f)
            except OSError:
                continue
            n, size, mtime = n + 1, size + st.st_size, max(mtime, st.st_mtime_ns)
        return {"n_files": n, "size_bytes": size, "mtime_ns": mtime}


class Acquisition(abc.ABC):
    """One open acquisition: frames by ``(position, t, channel, z)`` plus metadata.

    Subclasses fill the attributes below in ``__init__`` and implement
    :meth:`_read_plane` and :meth:`times_s`; everything else is shared.

    Attributes
    ----------
    name, format, reader : str
        Acquisition name, source format and the library/backend reading it.
    path : Path
        The file, or the folder of a sequence.
    n_positions, n_timepoints, n_z : int
        ``n_timepoints`` counts complete timepoints only (every position,
        channel and plane present), so it is a safe bound on a growing file.
    channels : list of str
        Channel names; when the file has none, ``"c<i>"`` with the file's own
        channel index (``c1``, ``c2`` for sequence files ``...c1.tif``,
        ``...c2.tif``; ``c0``, ``c1``... along a stack's channel axis), and
        then ``metadata["names_missing"]`` is True.
    shape_yx : tuple of int
    dtype : numpy.dtype
    pixel_size_um, z_step_um : float or None
        Never guessed: None when the file does not state them.
    metadata : dict
        Acquisition-level extras (``names_missing``, ``axes``,
        ``position_labels``, ``n_timepoints_declared``, ``times_source``...).
    """

    format = ""
    reader = ""

    def __init__(self, path, name=None):
        self.path = Path(path)
        self.name = name or acquisition_name(self.path)
        self.n_positions = 1
        self.n_timepoints = 0
        self.n_z = 1
        self.channels: list[str] = []
        self.shape_yx: tuple[int, int] = (0, 0)
        self.dtype = np.dtype("uint16")
        self.pixel_size_um = None
        self.z_step_um = None
        self.metadata: dict = {"names_missing": False}

    # -- to implement -----------------------------------------------------
    @abc.abstractmethod
    def _read_plane(self, position: int, t: int, channel: int, z: int) -> np.ndarray:
        """One 2-D plane, already validated indices; must not return a view
        into memory the backend may unmap or reuse."""

    @abc.abstractmethod
    def times_s(self, position: int) -> np.ndarray:
        """Seconds from acquisition start of each complete timepoint (NaN if unknown)."""

    def stage_xyz(self, position: int):
        """Stage position ``(x, y, z)`` in µm, or ``(None, None, None)``."""
        self._check_position(position)
        return (None, None, None)

    def source_files(self, position: int) -> list[str]:
        """Names of the files holding ``position``."""
        return [self.path.name]

    def close(self) -> None:
        """Release file handles; idempotent."""

    # -- shared -----------------------------------------------------------
    def _setup_or_close(self, damaged: str) -> None:
        """Run ``self._setup()``; on failure close the file and say it is ``damaged``."""
        try:
            self._setup()
        except InvalidAcquisitionError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise wrap_error(self.path, damaged, exc) from exc

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def _finish_init(self, names=None, n_channels=None, placeholders=False):
        """Set channel names (or placeholders) and validate the geometry.

        ``placeholders``: ``names`` are indices the file gives (``c1``, ``c2``
        of a sequence), kept as names but still recorded as names missing.
        """
        n_channels = len(names) if n_channels is None else n_channels
        if names is not None and len(names) == n_channels and all(names):
            self.channels = [str(n) for n in names]
            self.metadata["names_missing"] = bool(placeholders)
            if len(set(self.channels)) < n_channels:
                # names are lookup keys downstream, so repeated ones get their index
                self.metadata["channel_names_original"] = list(self.channels)
                self.channels = [n if self.channels.count(n) == 1 else f"{n}_{i}"
                                 for i, n in enumerate(self.channels)]
        else:
            self.channels = [f"c{i}" for i in range(n_channels)]
            self.metadata["names_missing"] = True
        dims = {"positions": self.n_positions, "channels": n_channels, "z": self.n_z,
                "y": self.shape_yx[0], "x": self.shape_yx[1]}
        zero = [k for k, v in dims.items() if int(v) < 1]
        if zero:
            raise InvalidAcquisitionError(f"{self.path}: zero-length axis ({', '.join(zero)})")
        self.shape_yx = (int(self.shape_yx[0]), int(self.shape_yx[1]))
        dtype = getattr(self, "dtype", None)
        check_frame_shape(self.path, self.shape_yx, np.dtype(dtype).itemsize if dtype is not None else 2)

    def _check_position(self, position):
        if not 0 <= int(position) < self.n_positions:
            raise IndexError(f"position {position} out of range [0, {self.n_positions})")

    def channel_index(self, channel) -> int:
        """Index of ``channel``, given as index or name."""
        if isinstance(channel, str):
            if channel not in self.channels:
                raise KeyError(f"{self.path}: no channel {channel!r}; have {self.channels}")
            return self.channels.index(channel)
        if not 0 <= int(channel) < self.n_channels:
            raise IndexError(f"channel {channel} out of range [0, {self.n_channels})")
        return int(channel)

    def read_frame(self, position: int, t: int, channel, z="max") -> np.ndarray:
        """Read one 2-D frame, touching only the planes it needs.

        Parameters
        ----------
        position, t : int
            Position index and timepoint index (``t < n_timepoints``).
        channel : int or str
            Channel index or name.
        z : "max" or int
            Maximum projection over the planes (two planes in memory at a
            time), or one plane.  With ``n_z == 1`` both give that plane.

        Returns
        -------
        numpy.ndarray
            Shape ``shape_yx``, dtype ``dtype``.
        """
        self._check_position(position)
        c = self.channel_index(channel)
        if not 0 <= int(t) < self.n_timepoints:
            raise IndexError(
                f"timepoint {t} out of range [0, {self.n_timepoints}) (complete timepoints)")
        if isinstance(z, str):
            if z != "max":
                raise ValueError(f"z must be 'max' or a plane index, not {z!r}")
            planes = range(self.n_z)
        else:
            if not 0 <= int(z) < self.n_z:
                raise IndexError(f"z plane {z} out of range [0, {self.n_z})")
            planes = [int(z)]
        out = None
        for k in planes:
            plane = self._checked(self._read_plane(int(position), int(t), c, k), position, t, c, k)
            if out is None:  # the backend's array may be read-only; we write into out
                out = plane.copy() if len(planes) > 1 else plane
            else:
                np.maximum(out, plane, out=out)
        return out

    def _checked(self, plane, position, t, c, z):
        plane = np.asarray(plane)
        if plane.shape != self.shape_yx:
            raise InvalidAcquisitionError(
                f"{self.path}: frame (position={position}, t={t}, c={c}, z={z}) has shape "
                f"{plane.shape}, expected {self.shape_yx}")
        return plane if plane.dtype == self.dtype else plane.astype(self.dtype)

    def position_metadata(self, position: int, z="max") -> dict:
        """Normalised, JSON-serialisable metadata of one position.

        Unknown values are None (NaN times become None too, so the dict
        passes ``json.dumps(..., allow_nan=False)``); their field names are
        listed under ``missing``.
        """
        self._check_position(position)
        times = [finite_or_none(v) for v in self.times_s(position)]
        sx, sy, sz = (finite_or_none(v) for v in self.stage_xyz(position))
        labels = self.metadata.get("position_labels")
        if self.n_z == 1:
            reduction = "none"
        else:
            reduction = "max" if z == "max" else f"plane {int(z)}"
        md = {
            "name": self.name,
            "format": self.format,
            "reader": self.reader,
            "source_file": str(self.path),
            "source_files": self.source_files(position),
            "position": int(position),
            "position_label": None if not labels else str(labels[position]),
            "n_positions": self.n_positions,
            "n_timepoints": self.n_timepoints,
            "channels": list(self.channels),
            "channel_names_missing": bool(self.metadata.get("names_missing")),
            "n_z": self.n_z,
            "z_reduction": reduction,
            "shape_yx": list(self.shape_yx),
            "dtype": str(self.dtype),
            "pixel_size_um": finite_or_none(self.pixel_size_um),
            "z_step_um": finite_or_none(self.z_step_um),
            "times_s": times,
            "times_source": self.metadata.get("times_source"),
            "stage_x_um": sx, "stage_y_um": sy, "stage_z_um": sz,
        }
        missing = [k for k in ("pixel_size_um", "stage_x_um", "stage_y_um", "stage_z_um")
                   if md[k] is None]
        if self.n_z > 1 and md["z_step_um"] is None:
            missing.append("z_step_um")
        if md["channel_names_missing"]:
            missing.append("channels")
        if any(v is None for v in times):
            missing.append("times_s")
        md["missing"] = missing
        return md

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name!r} {self.format} P{self.n_positions} "
                f"T{self.n_timepoints} C{self.n_channels} Z{self.n_z} Y{self.shape_yx[0]} "
                f"X{self.shape_yx[1]} {self.dtype}>")
