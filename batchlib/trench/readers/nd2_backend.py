"""ND2 files through the ``nd2`` library (the default ND2 backend).

Frames are read one at a time with ``ND2File.read_frame(sequence_index)``;
the sequence index is the C-order ravel of the experiment loops (T, P, Z in
the order the file declares them), the same order NIS-Elements writes.
"""
from __future__ import annotations

import warnings

import numpy as np

from .base import (Acquisition, InvalidAcquisitionError, check_file, complete_timepoints,
                   finite_or_none, wrap_error)

__all__ = ["Nd2Acquisition"]

_LOOP_AXES = "TPZ"
DAMAGED = "damaged ND2 (truncated, still being written or corrupted)"


class Nd2Acquisition(Acquisition):
    """An ND2 file read with ``nd2.ND2File``.

    Parameters
    ----------
    path : path-like
    name : str, optional
        Acquisition name; default the file stem.
    handle : object, optional
        An already open ``nd2.ND2File``-like object (tests pass fakes). It
        needs ``sizes``, ``dtype``, ``attributes.sequenceCount``,
        ``attributes.componentCount``, ``metadata.channels``,
        ``read_frame``, ``frame_metadata``, ``close`` and optionally
        ``experiment``.
    """

    format = "nd2"
    reader = "nd2"

    def __init__(self, path, name=None, handle=None):
        super().__init__(path, name)
        if handle is None:
            check_file(self.path)
            try:
                import nd2
                handle = nd2.ND2File(self.path)
            except ImportError:
                raise
            except Exception as exc:
                raise wrap_error(self.path, "not a readable ND2 file", exc) from exc
        self._f = handle
        self._setup_or_close(DAMAGED)
        self._times = {}

    def _setup(self):
        f = self._f
        sizes = dict(f.sizes)
        if "S" in sizes or f.attributes.componentCount != sizes.get("C", 1):
            raise InvalidAcquisitionError(f"{self.path}: RGB samples are not supported")
        unknown = set(sizes) - set(_LOOP_AXES) - {"C", "Y", "X"}
        if unknown or "Y" not in sizes or "X" not in sizes:
            raise InvalidAcquisitionError(
                f"{self.path}: unsupported dimensions {sizes} "
                "(need Y, X and only T, P, Z, C loops)")
        # sizes is ordered like the experiment loops, outermost first
        self._loop_axes = "".join(k for k in sizes if k in _LOOP_AXES)
        self._loop_shape = tuple(sizes[k] for k in self._loop_axes)
        n_planned = int(np.prod(self._loop_shape))
        counts = [int(getattr(loop, "count", 1)) for loop in getattr(f, "experiment", None) or []]
        if counts and int(np.prod(counts)) != n_planned:
            # e.g. two loops of one kind (paused and modified experiments) fold into one axis
            raise InvalidAcquisitionError(
                f"{self.path}: unsupported loop structure {counts} for dimensions {sizes}")
        self._n_written = min(int(f.attributes.sequenceCount), n_planned, _stored_frames(f))
        self.n_positions = sizes.get("P", 1)
        self.n_z = sizes.get("Z", 1)
        self.n_c = sizes.get("C", 1)
        self.shape_yx = (sizes["Y"], sizes["X"])
        self.dtype = np.dtype(f.dtype)
        self.n_timepoints = complete_timepoints(self._loop_axes, self._loop_shape, self._n_written)
        names = None
        meta_channels = getattr(getattr(f, "metadata", None), "channels", None) or []
        if meta_channels:
            names = [getattr(getattr(ch, "channel", None), "name", None) for ch in meta_channels]
            vol = getattr(meta_channels[0], "volume", None)
            self.pixel_size_um, self.z_step_um = _calibration(vol)
        if self.n_z > 1 and self.z_step_um is None:
            self.z_step_um = _z_loop_step(f)
        if self.n_z == 1:
            self.z_step_um = None
        self.metadata.update({
            "axes": self._loop_axes + "CYX",
            "n_timepoints_declared": sizes.get("T", 1),
            "frames_written": self._n_written,
            "frames_planned": n_planned,
            "position_labels": _position_names(f, self.n_positions),
            "times_source": "ND2 frame times (relativeTimeMs)",
        })
        self._finish_init(names, self.n_c)

    def _seq_index(self, position, t, z) -> int:
        coords = {"T": t, "P": position, "Z": z}
        if not self._loop_axes:
            return 0
        return int(np.ravel_multi_index([coords[a] for a in self._loop_axes], self._loop_shape))

    def _read_plane(self, position, t, channel, z):
        seq = self._seq_index(position, t, z)
        try:
            frame = np.asarray(self._f.read_frame(seq))
        except Exception as exc:
            raise wrap_error(self.path, f"cannot read frame {seq}", exc) from exc
        # read_frame squeezes, so restore (C, Y, X); copy because it may be an mmap view
        frame = frame.reshape((self.n_c,) + self.shape_yx)
        return np.array(frame[channel], copy=True)

    def _frame_meta(self, seq):
        try:
            ch = self._f.frame_metadata(seq).channels[0]
        except Exception:  # legacy files give dicts, damaged ones raise
            return None
        return ch

    def _cached_times_ms(self):
        """All frame times (ms) from the file's time cache, or None.

        ``frame_metadata`` costs ~0.4 ms a frame; the modern reader's cache
        chunk gives the same ``relativeTimeMs`` values in one read.
        """
        fn = getattr(getattr(self._f, "_rdr", None), "_cached_frame_times", None)
        if fn is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                times = np.asarray(fn(), dtype=float)
        except Exception:
            return None
        return times if times.size >= self._n_written else None

    def times_s(self, position, use_cache=True):
        """Per-timepoint time (s) of plane z=0; ``use_cache=False`` forces frame metadata."""
        self._check_position(position)
        key = (position, use_cache)
        if key not in self._times:
            cache = self._cached_times_ms() if use_cache else None
            out = np.full(self.n_timepoints, np.nan)
            for t in range(self.n_timepoints):
                seq = self._seq_index(position, t, 0)
                if cache is not None:
                    ms = finite_or_none(cache[seq])
                else:
                    ch = self._frame_meta(seq)
                    ms = finite_or_none(getattr(getattr(ch, "time", None), "relativeTimeMs", None))
                if ms is not None:
                    out[t] = ms / 1000.0
            self._times[key] = out
        return self._times[key].copy()

    def stage_xyz(self, position):
        self._check_position(position)
        if self._n_written == 0:
            return (None, None, None)
        ch = self._frame_meta(self._seq_index(position, 0, 0))
        pos = getattr(getattr(ch, "position", None), "stagePositionUm", None)
        return tuple(finite_or_none(getattr(pos, a, None)) for a in "xyz")

    def close(self):
        f, self._f = getattr(self, "_f", None), None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass


def _stored_frames(f):
    """Leading frames that have data in the chunk map (best effort, private API).

    ``nd2`` returns zeros for a frame without data, which must not count as written.
    """
    offsets = getattr(getattr(f, "_rdr", None), "_frame_offsets", None)
    if not isinstance(offsets, dict):
        return float("inf")
    n = 0
    while n in offsets:
        n += 1
    return n


def _calibration(volume):
    """(pixel size, z step) in µm from a channel's volume, None where uncalibrated."""
    cal = getattr(volume, "axesCalibration", None)
    flags = getattr(volume, "axesCalibrated", None)
    if not cal:
        return None, None
    flags = flags or (False, False, False)
    xy = finite_or_none(cal[0]) if flags[0] else None
    z = finite_or_none(cal[2]) if len(cal) > 2 and len(flags) > 2 and flags[2] else None
    return (xy if xy and xy > 0 else None), (z if z and z > 0 else None)


def _z_loop_step(f):
    for loop in getattr(f, "experiment", None) or []:
        if getattr(loop, "type", None) == "ZStackLoop":
            return finite_or_none(getattr(loop.parameters, "stepUm", None))
    return None


def _position_names(f, n):
    for loop in getattr(f, "experiment", None) or []:
        if getattr(loop, "type", None) == "XYPosLoop":
            points = getattr(loop.parameters, "points", None) or []
            names = [getattr(p, "name", None) for p in points]
            if len(names) == n:
                return [nm if nm else str(i) for i, nm in enumerate(names)]
    return [str(i) for i in range(n)]
