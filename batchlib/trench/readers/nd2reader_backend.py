"""ND2 files through the ``nd2reader`` library (alternative ND2 backend).

Kept as a cross-check of the ``nd2`` backend and a fallback where ``nd2``
cannot be installed.  ``nd2reader`` assumes the loop order T, P(v), Z and
decodes only uncompressed 16-bit monochrome planes; other files are refused
rather than misread.
"""
from __future__ import annotations

import warnings

import numpy as np

from .base import (Acquisition, InvalidAcquisitionError, check_file, complete_timepoints,
                   finite_or_none, wrap_error)
from .nd2_backend import DAMAGED

__all__ = ["Nd2readerAcquisition"]


class Nd2readerAcquisition(Acquisition):
    """An ND2 file read with ``nd2reader.ND2Reader``."""

    format = "nd2"
    reader = "nd2reader"

    def __init__(self, path, name=None):
        super().__init__(path, name)
        check_file(self.path)
        from nd2reader import ND2Reader
        # our own handle: ND2Reader leaks the one it opens when parsing fails,
        # and insists on a lower-case ".nd2" name
        fh = open(self.path, "rb")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._r = ND2Reader(fh)
        except Exception as exc:
            fh.close()
            raise wrap_error(self.path, "not a readable ND2 file", exc) from exc
        self._setup_or_close(DAMAGED)

    def _setup(self):
        r = self._r
        raw = r._parser._raw_metadata
        attrs = raw.image_attributes[b"SLxImageAttributes"]
        md = r.metadata
        n_c = max(len(md.get("channels") or []), 1)
        if attrs.get(b"uiBpcInMemory") != 16:
            raise InvalidAcquisitionError(
                f"{self.path}: nd2reader reads only 16-bit data; use backend='nd2'")
        if attrs.get(b"eCompression", 2) != 2:
            raise InvalidAcquisitionError(
                f"{self.path}: nd2reader cannot decode compressed ND2; use backend='nd2'")
        if attrs.get(b"uiComp", n_c) != n_c:
            raise InvalidAcquisitionError(f"{self.path}: RGB samples are not supported")
        self._nv = max(len(md.get("fields_of_view") or []), 1)
        self._nz = max(len(md.get("z_levels") or []), 1)
        self._nt = max(len(md.get("frames") or []), 1)
        # nd2reader numbers image groups t-major, then v, then z
        self._n_written = min(int(attrs.get(b"uiSequenceCount", 0)), self._nt * self._nv * self._nz)
        self.n_positions, self.n_z = self._nv, self._nz
        self.shape_yx = (int(md.get("height") or 0), int(md.get("width") or 0))
        self.dtype = np.dtype("uint16")
        self.n_timepoints = complete_timepoints(
            "TPZ", (self._nt, self._nv, self._nz), self._n_written)
        cal = raw.image_calibration.get(b"SLxCalibration", {})
        if cal.get(b"bValid", 1):
            px = finite_or_none(cal.get(b"dCalibration"))
            self.pixel_size_um = px if px and px > 0 else None
        if self._nz > 1:
            self.z_step_um = _z_step(raw.image_metadata)
        self.metadata.update({
            "axes": "TPZCYX",
            "n_timepoints_declared": self._nt,
            "frames_written": self._n_written,
            "position_labels": [str(i) for i in range(self._nv)],
            "times_source": "image group timestamps",
        })
        self._finish_init(md.get("channels") or None, n_c)

    def _group(self, position, t, z):
        return (t * self._nv + position) * self._nz + z

    def _read_plane(self, position, t, channel, z):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = self._r.get_frame_2D(c=channel, t=t, z=z, v=position)
        except Exception as exc:
            raise wrap_error(self.path, f"cannot read frame t={t} v={position} z={z}", exc) from exc
        frame = np.asarray(frame)
        if frame.dtype.kind == "f":
            # nd2reader returns NaN-filled float "gap" frames for all-zero planes
            frame = np.nan_to_num(frame, nan=0.0)
        return np.array(frame, dtype=self.dtype, copy=True)

    def times_s(self, position):
        self._check_position(position)
        out = np.full(self.n_timepoints, np.nan)
        try:
            steps_ms = np.asarray(self._r.timesteps, dtype=float)
        except Exception:
            return out
        for t in range(self.n_timepoints):
            g = self._group(position, t, 0)
            if g < len(steps_ms):
                out[t] = steps_ms[g] / 1000.0
        return out

    def stage_xyz(self, position):
        self._check_position(position)
        raw = self._r._parser._raw_metadata
        g = self._group(position, 0, 0)
        out = []
        for data in (raw.x_data, raw.y_data, raw.z_data):
            out.append(finite_or_none(data[g]) if data is not None and g < len(data) else None)
        return tuple(out)

    def close(self):
        r, self._r = getattr(self, "_r", None), None
        if r is not None:
            try:
                r.close()
            except Exception:
                pass


def _z_step(node):
    """First positive ``uLoopPars/dZStep`` in the raw experiment tree (the z loop)."""
    if not isinstance(node, dict):
        return None
    pars = node.get(b"uLoopPars")
    if isinstance(pars, dict):
        step = abs(finite_or_none(pars.get(b"dZStep")) or 0.0)
        if step > 0:
            return step
    for value in node.values():
        step = _z_step(value)
        if step:
            return step
    return None
