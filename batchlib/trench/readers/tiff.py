"""OME-TIFF, ImageJ hyperstacks and plain TIFF stacks through ``tifffile``.

Axes come from the file's own metadata (tifffile's series axes: OME
``DimensionOrder``, ImageJ ``frames/slices/channels``, tifffile's shaped
JSON).  Each series is one position; each plane is one TIFF page, read on
its own with ``page.asarray()``, so memory stays at one plane whatever the
stack length.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import xml.etree.ElementTree as ET

import numpy as np

from .base import (Acquisition, InvalidAcquisitionError, check_file, check_frame_shape, finite_or_none,
                   length_to_um, time_to_s, wrap_error)

__all__ = ["TiffAcquisition", "open_tiff", "tiff_format", "pixel_size_um", "is_plain_2d"]

_RESUNIT_UM = {3: 1e4, 4: 1e3, 5: 1.0}  # centimetre, millimetre, micrometre; inch is screen dpi


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.errors, self.warnings = [], []

    def emit(self, record):
        if record.thread == self.thread:
            (self.errors if record.levelno >= logging.ERROR else self.warnings).append(
                record.getMessage()[:200])


@contextlib.contextmanager
def _tifffile_log():
    # tifffile reports corrupted/truncated structures by logging and carries on
    # with whatever it could parse; we turn those reports into errors.
    log = logging.getLogger("tifffile")
    handler = _Collect()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def open_tiff(path):
    """Open ``path`` with tifffile and parse its series, or raise InvalidAcquisitionError.

    Returns ``(tif, warnings)``; the caller closes ``tif``.
    """
    import tifffile

    check_file(path)
    tif = None
    with _tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
            series = tif.series
            for s in series:
                s.pages  # noqa: B018 -- forces the IFD chain to be read here
        except Exception as exc:
            if tif is not None:
                tif.close()
            raise wrap_error(path, "not a readable TIFF file", exc) from exc
    if log.errors or not series:
        try:  # a frame size that explains the trouble is the clearer reason
            page = tif.pages[0]
            check_frame_shape(path, (page.imagelength, page.imagewidth), np.dtype(page.dtype).itemsize)
        except InvalidAcquisitionError:
            tif.close()
            raise
        except Exception:  # noqa: BLE001 - the first page itself may be unreadable
            pass
        tif.close()
        reason = log.errors[0] if log.errors else "no image series"
        raise InvalidAcquisitionError(f"{path}: corrupted or truncated TIFF ({reason})")
    try:
        for s in series:
            check_codec(path, s.pages[0])
    except InvalidAcquisitionError:
        tif.close()
        raise
    return tif, log.warnings


def check_codec(path, page) -> None:
    """Fail at open, naming the codec, when the pages' compression cannot be decoded.

    LZW, Deflate, Zstandard, JPEG... are decoded by ``imagecodecs``; without it
    (or with a codec it does not have) every frame read would fail.
    """
    from tifffile import TIFF

    if page is None or not hasattr(page, "compression"):
        return
    code = int(page.compression)
    if code == 1 or code in TIFF.DECOMPRESSORS:  # 1: uncompressed
        return
    name = getattr(page.compression, "name", None) or "unknown"
    try:
        import imagecodecs  # noqa: F401
        hint = "imagecodecs is installed but has no decoder for it"
    except ImportError:
        hint = "install imagecodecs (pip install imagecodecs), which decodes LZW, Deflate, " \
               "Zstandard, JPEG and more"
    raise InvalidAcquisitionError(f"{path}: TIFF compression {name} (code {code}) cannot be "
                                  f"decoded: {hint}; or save the images uncompressed")


def tiff_format(tif) -> str:
    """``"ome-tiff"``, ``"imagej-tiff"`` or ``"tiff"``."""
    return "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"


def is_plain_2d(tif) -> bool:
    """One single-page 2-D series and no OME: a member of a TIFF sequence."""
    return (not tif.is_ome and len(tif.series) == 1 and len(tif.series[0].pages) == 1
            and tif.series[0].axes == "YX")


def pixel_size_um(tif):
    """Pixel size in µm stated by ImageJ ``unit`` or a metric ResolutionUnit, else None."""
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    per_unit = den / num
    if tif.is_imagej:
        return length_to_um(per_unit, (tif.imagej_metadata or {}).get("unit"))
    unit = page.tags.get("ResolutionUnit")
    factor = _RESUNIT_UM.get(int(unit.value) if unit is not None else 2)
    return None if factor is None else finite_or_none(per_unit * factor)


def _loop_axes(path, series):
    """Leading (non-YX) axes and shape of a series, and whether T was assumed."""
    axes, shape = series.axes, tuple(series.shape)
    if "S" in axes:
        raise InvalidAcquisitionError(
            f"{path}: RGB/multi-sample pixels are not supported (axes {axes})")
    if 0 in shape:
        raise InvalidAcquisitionError(f"{path}: zero-length axis (axes {axes!r} shape {shape})")
    if len(axes) < 2 or axes[-2:] != "YX":
        raise InvalidAcquisitionError(
            f"{path}: unsupported dimensions: axes {axes!r} shape {shape}, need Y and X last")
    lead, lead_shape = axes[:-2], shape[:-2]
    unknown = [a for a in lead if a not in "TZC"]
    assumed = False
    if len(unknown) == 1 and unknown[0] in "QI" and "T" not in lead:
        # a bare stack of pages without axis metadata: read it as a time series
        lead, assumed = lead.replace(unknown[0], "T"), True
    elif unknown or len(set(lead)) != len(lead):
        raise InvalidAcquisitionError(
            f"{path}: unsupported axes {axes!r} shape {shape} (supported: T, Z, C, Y, X)")
    return lead, lead_shape, assumed


class TiffAcquisition(Acquisition):
    """A TIFF file: OME-TIFF (series = positions), ImageJ hyperstack or plain stack."""

    reader = "tifffile"

    def __init__(self, path, name=None):
        super().__init__(path, name)
        self._tif, warns = open_tiff(self.path)
        try:
            self._setup(warns)
        except InvalidAcquisitionError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise wrap_error(self.path, "damaged TIFF structure or metadata", exc) from exc

    def _setup(self, warns):
        tif = self._tif
        self.format = tiff_format(tif)
        series = list(tif.series)
        lead, lead_shape, assumed = _loop_axes(self.path, series[0])
        for s in series[1:]:
            if (s.axes, s.shape, s.dtype) != (series[0].axes, series[0].shape, series[0].dtype):
                raise InvalidAcquisitionError(
                    f"{self.path}: series differ in axes/shape/dtype "
                    f"({series[0].axes} {series[0].shape} vs {s.axes} {s.shape}); "
                    "only identical series (positions) are supported")
        self._lead, self._lead_shape = lead, lead_shape
        sizes = dict(zip(lead, lead_shape))
        n_planes = math.prod(lead_shape)
        size = self.path.stat().st_size
        first = series[0].pages[0]
        if getattr(first, "samplesperpixel", 1) > 1:
            raise InvalidAcquisitionError(
                f"{self.path}: RGB/multi-sample pixels are not supported "
                f"({first.samplesperpixel} samples)")
        if first is None or tuple(first.shape) != tuple(series[0].shape[-2:]):
            raise InvalidAcquisitionError(
                f"{self.path}: pages of shape {getattr(first, 'shape', None)} "
                "are not single 2-D planes")
        self._pages = []
        for i, s in enumerate(series):
            # Only the count and the last page are checked: parsing every page
            # would cost about 0.4 ms per plane at each open of a long movie.
            pages = s.pages
            last = pages[-1] if len(pages) else None
            if len(pages) != n_planes or last is None:
                present = sum(p is not None for p in pages) if len(pages) <= 4096 else len(pages)
                raise InvalidAcquisitionError(
                    f"{self.path}: series {i} declares {n_planes} planes but {present} are present")
            end = max((o + n for o, n in zip(last.dataoffsets, last.databytecounts)), default=0)
            if getattr(last.parent, "filehandle", None) is tif.filehandle and end > size:
                raise InvalidAcquisitionError(
                    f"{self.path}: truncated TIFF (data ends at byte {end}, file has {size})")
            self._pages.append(pages)
        self.n_positions = len(series)
        self.n_timepoints = sizes.get("T", 1)
        self.n_z = sizes.get("Z", 1)
        self.shape_yx = tuple(series[0].shape[-2:])
        self.dtype = np.dtype(series[0].dtype)
        self._times = np.full(self.n_timepoints, np.nan)
        self._stage = [(None, None, None)] * self.n_positions
        self._plane_times = [None] * self.n_positions
        self.metadata.update({
            "axes": series[0].axes if not assumed else lead + "YX",
            "axes_assumed": "single unlabelled page axis read as time" if assumed else None,
            "n_timepoints_declared": self.n_timepoints,
            "position_labels": [s.name or str(i) for i, s in enumerate(series)],
            "times_source": None,
            "reader_warnings": warns,
        })
        names = None
        if self.format == "ome-tiff":
            names = self._ome_metadata(series)
        else:
            self.pixel_size_um = pixel_size_um(tif)
            if self.format == "imagej-tiff":
                names = self._imagej_metadata(sizes)
        self._finish_init(names, sizes.get("C", 1))

    # -- metadata -------------------------------------------------------------
    def _imagej_metadata(self, sizes):
        md = self._tif.imagej_metadata or {}
        if self.n_z > 1:
            self.z_step_um = length_to_um(md.get("spacing"), md.get("unit"))
        interval = finite_or_none(md.get("finterval"))
        if interval:
            self._times = np.arange(self.n_timepoints) * interval
            self.metadata["times_source"] = "nominal interval (ImageJ finterval)"
        return _imagej_channel_names(md.get("Labels"), self._lead, self._lead_shape)

    def _ome_metadata(self, series):
        try:
            root = ET.fromstring(self._tif.ome_metadata)
        except Exception as exc:
            raise wrap_error(self.path, "invalid OME-XML", exc) from exc
        images = root.findall("{*}Image")
        if len(images) != len(series):
            by_name = {im.get("Name"): im for im in images}
            images = [by_name.get(s.name) for s in series]
        names = None
        for p, image in enumerate(images):
            pix = None if image is None else image.find("{*}Pixels")
            if pix is None:
                continue
            if p == 0:
                names = [ch.get("Name") for ch in pix.findall("{*}Channel")]
                self.pixel_size_um = length_to_um(pix.get("PhysicalSizeX"),
                                                  pix.get("PhysicalSizeXUnit", "µm"))
                if self.n_z > 1:
                    self.z_step_um = length_to_um(pix.get("PhysicalSizeZ"),
                                                  pix.get("PhysicalSizeZUnit", "µm"))
            self._plane_times[p], self._stage[p] = _ome_planes(image, pix, self.n_timepoints)
            if self._plane_times[p] is not None:
                self.metadata["times_source"] = "OME Plane DeltaT"
            elif p == 0:
                inc = time_to_s(pix.get("TimeIncrement"), pix.get("TimeIncrementUnit", "s"))
                if inc:
                    self._times = np.arange(self.n_timepoints) * inc
                    self.metadata["times_source"] = "nominal interval (OME TimeIncrement)"
        return names

    # -- reading --------------------------------------------------------------
    def _read_plane(self, position, t, channel, z):
        coords = {"T": t, "Z": z, "C": channel}
        idx = 0
        if self._lead:
            idx = int(np.ravel_multi_index([coords[a] for a in self._lead], self._lead_shape))
        try:
            return self._pages[position][idx].asarray()
        except Exception as exc:
            raise wrap_error(self.path, f"cannot read plane {idx} of series {position}",
                             exc) from exc

    def times_s(self, position):
        self._check_position(position)
        own = self._plane_times[position]
        return (own if own is not None else self._times).copy()

    def stage_xyz(self, position):
        self._check_position(position)
        return self._stage[position]

    def close(self):
        tif, self._tif = getattr(self, "_tif", None), None
        if tif is not None:
            tif.close()


def _ome_planes(image, pix, n_t):
    """Per-timepoint DeltaT (s) of plane (t, z=0, c=0) and the stage position of the first plane."""
    times = np.full(n_t, np.nan)
    stage = (None, None, None)
    for plane in pix.findall("{*}Plane"):
        t, z, c = (int(plane.get(k, 0)) for k in ("TheT", "TheZ", "TheC"))
        if z or c or not 0 <= t < n_t:
            continue
        dt = time_to_s(plane.get("DeltaT"), plane.get("DeltaTUnit", "s"))
        if dt is not None:
            times[t] = dt
        if t == 0:
            # OME's default position unit is "reference frame", which is not µm
            stage = tuple(length_to_um(plane.get(f"Position{a}"), plane.get(f"Position{a}Unit"),
                                       positive=False) for a in "XYZ")
    if all(v is None for v in stage):
        label = image.find("{*}StageLabel")
        if label is not None:
            stage = tuple(length_to_um(label.get(a), label.get(f"{a}Unit"), positive=False)
                              for a in "XYZ")
    return (None if np.isnan(times).all() else times), stage


def _imagej_channel_names(labels, lead, lead_shape):
    """Channel names from ImageJ slice labels when they are constant per channel."""
    n_c = dict(zip(lead, lead_shape)).get("C", 1)
    if not labels:
        return None
    if len(labels) == n_c:
        names = list(labels)
    elif len(labels) == math.prod(lead_shape) and "C" in lead:
        per_c = np.asarray(labels, dtype=object).reshape(lead_shape)
        per_c = np.moveaxis(per_c, lead.index("C"), 0).reshape(n_c, -1)
        if any(len(set(row)) != 1 for row in per_c):
            return None
        names = [row[0] for row in per_c]
    else:
        return None
    return names if len(set(names)) == len(names) and all(names) else None
