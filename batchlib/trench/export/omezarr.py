"""One position's container -> OME-Zarr (NGFF 0.4) images for napari and Fiji.

Per container ``<stem>.h5`` the export writes, into the output folder:

=================================  ==============================================
``<stem>.ome.zarr``                the movie (t, c, y, x) with a resolution pyramid
                                   (the overview when the raw movie was dropped);
                                   ``labels/<segmentation>``: the segmentation in
                                   full-frame coordinates (t, 1, y, x)
``<stem>_trenches.ome.zarr``       the trench crops side by side (t, c, h, n * w),
                                   with the same labels
``<stem>_tracks.csv``              napari Tracks table (see :mod:`.tracks`)
=================================  ==============================================

A label value is ``n * LABEL_STRIDE + label``: trench ``n`` (row of
``tables/trenches``) and the cell's label in its crop, as in the cell table.

NGFF 0.4 (zarr v2) is the version napari's OME-Zarr reader and Fiji open.
The arrays are chunked one frame per chunk, so an export after new frames
appends chunks and leaves the existing ones untouched; what was exported is
recorded (``batchlib_export`` in the image's attributes, written last) with
what it was computed from, and anything else than new frames (a new trench
layout, a new segmentation) rewrites the export.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...io import open_file, read_attrs, read_table
from ...records import read_records
from ..layout import (CROPS, DRIFT_TABLE, FRAMES_TABLE, OVERVIEW, RAW, SEGMENTATION, TRACKS_TABLE,
                      TRENCHES_TABLE, AcquisitionMeta, container_stem)

EXPORT_VERSION = 1
STATE_ATTR = "batchlib_export"
#: Full-frame label value of cell ``label`` of trench ``n``: ``n * LABEL_STRIDE + label``.
LABEL_STRIDE = 1000
#: Pyramid levels are added (each half the size) while the last is larger than this.
MIN_LEVEL_SIZE = 256
MAX_LEVELS = 6
#: Largest chunk along y and x.
TILE = 1024
#: Frames are written in blocks of about this many bytes (all channels and the labels).
BLOCK_BYTES = 256 << 20
_FLUO_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "FFFF00", "0000FF")


class ExportError(RuntimeError):
    """A position that cannot be exported (now); the message says why."""


@dataclass
class Position:
    """What a container holds that the export needs (read once, under one open file)."""

    path: Path
    stem: str
    names: list
    keys: list
    kinds: list
    source: str  # RAW or OVERVIEW
    factor: int
    frame_shape: tuple  # full-resolution (y, x)
    dtype: str
    n_frames: int
    pixel_size_um: float | None
    times_s: np.ndarray
    trenches: pd.DataFrame | None = None
    angle: float = 0.0
    drift: np.ndarray | None = None
    basis: dict = field(default_factory=dict)
    segmentation: str | None = None
    has_tracks: bool = False


def _recorded(records: dict, key: str) -> bool:
    """Whether a completion record lists ``key`` (or a group above it) among its outputs."""
    return any(key == out or key.startswith(out.rstrip("/") + "/")
               for rec in records.values() for out in (rec.get("outputs") or {}))


def _frames(ds) -> int:
    return min(ds.shape[1], int(read_attrs(ds).get("n_frames", ds.shape[1])))


def read_position(f, path, segmentation="cells") -> Position:
    """Gather what the export of the open container ``f`` needs; :class:`ExportError` if it cannot."""
    path = Path(path)
    md = AcquisitionMeta.read(f).attrs
    records = read_records(f)
    if not md or not _recorded(records, RAW):
        raise ExportError(f"{path}: no Ingest record (being ingested, or failed); "
                          "export again when the workflow has finished")
    keys = md["channel_keys"]
    source = RAW if RAW in f else OVERVIEW
    if source not in f:
        raise ExportError(f"{path}: neither {RAW} nor {OVERVIEW} movies")
    movie = f[f"{source}/{keys[0]}"]
    factor = 1 if source == RAW else int(read_attrs(movie).get("downsampling_factor", 1))
    n = min(movie.shape[0], int(md.get("n_timepoints_ingested", movie.shape[0])))
    times = np.full(n, np.nan)
    if FRAMES_TABLE in f:
        known = read_table(f, FRAMES_TABLE)["time_s"].to_numpy(float)[:n]
        times[:len(known)] = known
    pos = Position(path=path, stem=container_stem(path), names=list(md["channels"]), keys=list(keys),
                   kinds=list(md.get("channel_kinds") or ["fluorescence"] * len(keys)), source=source,
                   factor=factor, frame_shape=tuple(md["shape_yx"]), dtype=str(movie.dtype),
                   n_frames=n, pixel_size_um=md.get("pixel_size_um"), times_s=times)
    pos.basis = {"export": EXPORT_VERSION, "source": source, "factor": factor,
                 "shape": list(movie.shape[1:]), "dtype": pos.dtype, "keys": pos.keys,
                 "stride": LABEL_STRIDE}
    crops_key = f"{CROPS}/{keys[0]}"
    if TRENCHES_TABLE not in f or crops_key not in f:
        return pos  # not cropped yet: the movie alone
    for key, job in ((TRENCHES_TABLE, "TrenchDetection"), (CROPS, "Compress")):
        if not _recorded(records, key):
            raise ExportError(f"{path}: {key} is being rewritten or failed (no {job} record); "
                              "export again when the workflow has finished")
    pos.trenches = read_table(f, TRENCHES_TABLE)
    tattrs = read_attrs(f[TRENCHES_TABLE])
    pos.angle = float(tattrs["angle_deg"])
    pos.drift = read_table(f, DRIFT_TABLE)[["dy", "dx"]].to_numpy(float)
    crops = f[crops_key]
    pos.n_frames = min(pos.n_frames, _frames(crops), len(pos.drift))
    pos.basis.update(layout=tattrs.get("layout_hash"), angle=pos.angle,
                     crops=read_attrs(crops).get("basis"))
    seg_key = f"{SEGMENTATION}/{segmentation}"
    if seg_key in f:
        if not _recorded(records, seg_key):
            raise ExportError(f"{path}: {seg_key} is being rewritten or failed (no Segment record); "
                              "export again when the workflow has finished")
        seg = f[seg_key]
        pos.segmentation = segmentation
        pos.n_frames = min(pos.n_frames, _frames(seg))
        pos.basis.update(segmentation=segmentation, seg=read_attrs(seg).get("basis"))
        pos.has_tracks = f"{TRACKS_TABLE}/{segmentation}" in f and _recorded(
            records, f"{TRACKS_TABLE}/{segmentation}")
    return pos


def level_shapes(shape_yx) -> list:
    """``(y, x)`` of every pyramid level: level ``l`` takes every ``2**l``-th pixel."""
    shapes = [tuple(int(s) for s in shape_yx)]
    while min(shapes[-1]) > MIN_LEVEL_SIZE and len(shapes) < MAX_LEVELS:
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    return shapes


def _fingerprint(drift: np.ndarray | None) -> str:
    if drift is None:
        return ""
    return hashlib.sha1(np.round(np.asarray(drift, float), 6).tobytes()).hexdigest()


def _axes(time_unit, space_unit) -> list:
    t = {"name": "t", "type": "time", **({"unit": time_unit} if time_unit else {})}
    space = {"type": "space", **({"unit": space_unit} if space_unit else {})}
    return [t, {"name": "c", "type": "channel"}, {"name": "y", **space}, {"name": "x", **space}]


def _time_step(times) -> float | None:
    steps = np.diff(np.asarray(times, float))
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if len(steps) else None


def _arrays(group, shapes, n_t, n_c, dtype, kept):
    """The level arrays ``"0", "1", ...`` of shape (n_t, n_c, y, x): created, or grown to ``n_t``."""
    import numcodecs

    arrays = []
    for level, (y, x) in enumerate(shapes):
        name, shape = str(level), (n_t, n_c, y, x)
        if kept == 0 or name not in group:
            arr = group.create_array(
                name, shape=shape, chunks=(1, 1, min(y, TILE), min(x, TILE)), dtype=dtype,
                fill_value=0, overwrite=True,
                compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
                chunk_key_encoding={"name": "v2", "separator": "/"})
        else:
            arr = group[name]
            if arr.shape != shape:
                arr.resize(shape)
        arrays.append(arr)
    return arrays


def _write_levels(arrays, t0, block) -> None:
    """Write ``block`` (frames, c, y, x) from frame ``t0`` into every pyramid level."""
    for level, arr in enumerate(arrays):
        step = 2 ** level
        arr[t0:t0 + block.shape[0]] = block[..., ::step, ::step]


def _datasets(n_levels, t_step, pixel, factor=1) -> list:
    return [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [t_step, 1.0, pixel * factor * 2 ** level, pixel * factor * 2 ** level]}]}
        for level in range(n_levels)]


def _omero(pos: Position, first_frames) -> dict:
    info = np.iinfo(pos.dtype) if np.dtype(pos.dtype).kind in "ui" else None
    channels, fluo = [], iter(_FLUO_COLORS * 4)
    for name, kind, frame in zip(pos.names, pos.kinds, first_frames):
        lo, hi = (float(v) for v in np.percentile(frame, [0.5, 99.5])) if frame.size else (0.0, 1.0)
        channels.append({"label": str(name), "active": True,
                         "color": "FFFFFF" if kind == "phase" else next(fluo),
                         "window": {"min": float(info.min) if info else lo,
                                    "max": float(info.max) if info else hi,
                                    "start": lo, "end": max(hi, lo + 1)}})
    return {"channels": channels, "rdefs": {"model": "color"}}


def _write_metadata(group, name, shapes, t_step, pixel, factor, axes, omero=None, labels=None,
                    extra=None) -> None:
    import warnings

    from ome_zarr.format import FormatV04
    with warnings.catch_warnings():
        # ome-zarr 0.18 builds a deprecated Scaler as a default argument when its writer
        # module is imported; only its metadata writers are used here
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    fmt = FormatV04()
    meta = {"metadata": {"omero": omero}} if omero else {}
    write_multiscales_metadata(group, _datasets(len(shapes), t_step, pixel, factor), fmt=fmt,
                               axes=axes, name=name, **meta)
    if extra:
        group.attrs.update(extra)
    if labels and "labels" in group["labels"].attrs:
        del group["labels"].attrs["labels"]  # write_label_metadata appends: no name twice
    for label, label_shapes in (labels or {}).items():
        lgroup = group["labels"][label]
        write_multiscales_metadata(lgroup, _datasets(len(label_shapes), t_step, pixel), fmt=fmt,
                                   axes=axes, name=label)
        write_label_metadata(group["labels"], label, fmt=fmt, source={"image": "../../"})


def export_position(container, out_dir, segmentation="cells", force=False, progress=False) -> dict:
    """Export one container to OME-Zarr in ``out_dir``, appending only frames not exported yet.

    Parameters
    ----------
    container : path
        A workflow container (``.h5``, ``.n5`` or ``.zarr``).
    out_dir : path
        Where ``<stem>.ome.zarr``, ``<stem>_trenches.ome.zarr`` and
        ``<stem>_tracks.csv`` go.
    segmentation : str
        Which ``segmentation/<name>`` becomes the label image.
    force : bool
        Rewrite the export from the first frame.

    Returns
    -------
    dict
        ``stem``, ``frames`` (exported in all), ``written`` (frames written
        now), ``paths`` (what was written).
    """
    from .tracks import write_tracks

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_file(container, "r") as f:
        pos = read_position(f, container, segmentation)
        image_path = out_dir / f"{pos.stem}.ome.zarr"
        crops_path = out_dir / f"{pos.stem}_trenches.ome.zarr"
        n_t = pos.n_frames
        cropped = pos.trenches is not None and len(pos.trenches) > 0
        movies = [f[f"{pos.source}/{k}"] for k in pos.keys]
        out = _Targets(image_path, crops_path, level_shapes(movies[0].shape[1:]),
                       level_shapes(pos.frame_shape), cropped)
        kept = 0 if force else _kept_frames(image_path, crops_path if cropped else None, pos, n_t)
        if kept and not _complete(image_path, crops_path, pos, kept, len(out.shapes), len(out.label_shapes)):
            kept = 0  # an array of the earlier export is gone or short: write it all again
        if kept == 0:
            for p in (image_path, crops_path):
                shutil.rmtree(p, ignore_errors=True)
        out.open(pos, kept)
        crops = [f[f"{CROPS}/{k}"] for k in pos.keys] if cropped else []
        seg = f[f"{SEGMENTATION}/{pos.segmentation}"] if pos.segmentation and cropped else None
        _write_frames(out, pos, movies, crops, seg, kept, progress)
        paths = _write_export_metadata(out, pos, movies)
        tracks_csv = out_dir / f"{pos.stem}_tracks.csv"
        if pos.has_tracks:
            paths.append(str(write_tracks(f, pos.segmentation, n_t, tracks_csv)))
        elif tracks_csv.exists():
            tracks_csv.unlink()  # from an earlier export: no longer what the container holds
        # Last: the record of what was exported.
        out.root.attrs[STATE_ATTR] = {"basis": pos.basis, "n_frames": n_t, "drift": _fingerprint(
            None if pos.drift is None else pos.drift[:n_t]), "crops": cropped}
    return {"stem": pos.stem, "frames": n_t, "written": n_t - kept, "paths": paths}


@dataclass
class _Targets:
    """The zarr arrays of one export: the image (``img``) and its labels (``lab``), the
    trench crops side by side (``crop_img``, ``crop_lab``); None where not written."""

    image_path: Path
    crops_path: Path
    shapes: list
    label_shapes: list
    cropped: bool
    root: Any = None
    croot: Any = None
    img: Any = None
    lab: Any = None
    crop_img: Any = None
    crop_lab: Any = None
    trench_hw: tuple = (0, 0)   # height and width of one trench's crop
    crop_shape: tuple = (0, 0)  # (h, n * w) of the crops image

    def open(self, pos: Position, kept: int) -> None:
        """Open (or create) every array for ``pos.n_frames`` frames, ``kept`` of them already written."""
        import zarr

        n_t, n_c = pos.n_frames, len(pos.keys)
        self.root = zarr.open_group(str(self.image_path), mode="a", zarr_format=2)
        self.img = _arrays(self.root, self.shapes, n_t, n_c, pos.dtype, kept)
        if self.cropped and pos.segmentation:
            lgroup = self.root.require_group("labels").require_group(pos.segmentation)
            self.lab = _arrays(lgroup, self.label_shapes, n_t, 1, "uint32", kept)
        if self.cropped:
            n = len(pos.trenches)
            h, w = int(pos.trenches["height"].iloc[0]), int(pos.trenches["width"].iloc[0])
            self.trench_hw, self.crop_shape = (h, w), (h, n * w)
            self.croot = zarr.open_group(str(self.crops_path), mode="a", zarr_format=2)
            self.crop_img = _arrays(self.croot, [self.crop_shape], n_t, n_c, pos.dtype, kept)
            if pos.segmentation:
                cl = self.croot.require_group("labels").require_group(pos.segmentation)
                self.crop_lab = _arrays(cl, [self.crop_shape], n_t, 1, "uint32", kept)


def _write_frames(out: _Targets, pos: Position, movies, crops, seg, kept, progress) -> None:
    """Write frames ``kept`` to ``pos.n_frames - 1`` of the movie, the crops and the labels."""
    n_t, n_c = pos.n_frames, len(pos.keys)
    # Blocks of frames: one write per array and block lets zarr compress the
    # chunks of a block together (a write per frame is dominated by its overhead).
    frame_bytes = movies[0][0].nbytes * n_c + (4 * int(np.prod(pos.frame_shape)) if seg is not None else 0)
    block = int(max(1, min(16, BLOCK_BYTES // max(frame_bytes, 1))))
    starts = range(kept, n_t, block)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=pos.stem, unit="block", leave=False)
    for t0 in starts:
        t1 = min(t0 + block, n_t)
        _write_levels(out.img, t0, np.stack([m[t0:t1] for m in movies], axis=1))
        if out.crop_img:
            _write_levels(out.crop_img, t0, np.stack([_montage(c[:, t0:t1]) for c in crops], axis=1))
        if seg is not None:
            labels = [global_labels(seg[:, t]) for t in range(t0, t1)]
            _write_levels(out.crop_lab, t0, _montage(np.stack(labels, axis=1))[:, None])
            _write_levels(out.lab, t0, np.stack([full_frame_labels(lb, pos, t)
                                                 for t, lb in zip(range(t0, t1), labels)])[:, None])


def _write_export_metadata(out: _Targets, pos: Position, movies) -> list:
    """The NGFF metadata of the image and the crops (rewritten every time: the time step
    may change as frames arrive); returns the paths of the images."""
    n_t = pos.n_frames
    t_step = _time_step(pos.times_s[:n_t])
    pixel = float(pos.pixel_size_um) if pos.pixel_size_um else 1.0
    axes = _axes("second" if t_step else None, "micrometer" if pos.pixel_size_um else None)
    first = [m[0] if n_t else np.zeros((0,), pos.dtype) for m in movies]
    about = {"batchlib": {"container": pos.path.name, "label_stride": LABEL_STRIDE,
                          "label_value": "n * label_stride + label (n: row of tables/trenches)"}}
    _write_metadata(out.root, pos.stem, out.shapes, t_step or 1.0, pixel, pos.factor, axes,
                    omero=_omero(pos, first), extra=about,
                    labels={pos.segmentation: out.label_shapes} if out.lab else None)
    paths = [str(out.image_path)]
    if out.cropped:
        tr = pos.trenches
        h, w = out.trench_hw
        about_crops = {"batchlib": {**about["batchlib"], "trench_width": w, "trench_height": h,
                                    "trenches": {"n": list(range(len(tr))),
                                                 "set": tr["set"].astype(int).tolist(),
                                                 "trench": tr["trench"].astype(int).tolist(),
                                                 "x_start": [i * w for i in range(len(tr))]}}}
        _write_metadata(out.croot, f"{pos.stem} trenches", [out.crop_shape], t_step or 1.0, pixel, 1, axes,
                        omero=_omero(pos, first), extra=about_crops,
                        labels={pos.segmentation: [out.crop_shape]} if out.crop_lab else None)
        paths.append(str(out.crops_path))
    return paths


def _kept_frames(image_path, crops_path, pos, n_t) -> int:
    """Frames of an earlier export that stay (0: write everything)."""
    import zarr

    try:
        state = dict(zarr.open_group(str(image_path), mode="r").attrs).get(STATE_ATTR)
    except (FileNotFoundError, ValueError, KeyError, OSError, zarr.errors.GroupNotFoundError):
        return 0
    if not state or state.get("basis") != json.loads(json.dumps(pos.basis)):
        return 0
    kept = int(state.get("n_frames", 0))
    if kept > n_t or bool(state.get("crops")) != (crops_path is not None):
        return 0
    if state.get("drift") != _fingerprint(None if pos.drift is None else pos.drift[:kept]):
        return 0  # the drift of exported frames was measured anew
    if crops_path is not None and not os.path.isdir(crops_path):
        return 0
    return kept


def _complete(image_path, crops_path, pos, kept, n_levels, n_label_levels) -> bool:
    """Whether every array an export of ``pos`` writes is there with at least ``kept`` frames."""
    import zarr

    wanted = [(image_path, str(level)) for level in range(n_levels)]
    if pos.segmentation:
        wanted += [(image_path, f"labels/{pos.segmentation}/{level}") for level in range(n_label_levels)]
    if pos.trenches is not None and len(pos.trenches):
        wanted.append((crops_path, "0"))
        if pos.segmentation:
            wanted.append((crops_path, f"labels/{pos.segmentation}/0"))
    try:
        return all(zarr.open_array(str(Path(root) / key), mode="r").shape[0] >= kept for root, key in wanted)
    except (FileNotFoundError, KeyError, ValueError, OSError, zarr.errors.ArrayNotFoundError):
        return False


def global_labels(labels) -> np.ndarray:
    """Crop labels (n, h, w) -> ``n * LABEL_STRIDE + label`` (0 stays 0), uint32."""
    labels = np.asarray(labels)
    if labels.max(initial=0) >= LABEL_STRIDE:
        raise ExportError(f"a crop holds label {int(labels.max())}: labels must stay below "
                          f"{LABEL_STRIDE} to be told apart from the trench number")
    n = np.arange(labels.shape[0], dtype=np.uint32)[:, None, None]
    return np.where(labels > 0, n * LABEL_STRIDE + labels.astype(np.uint32), 0).astype(np.uint32)


def full_frame_labels(labels, pos: Position, t: int) -> np.ndarray:
    """One frame's crop labels pasted back into the raw frame (its drift and the trench angle)."""
    from ..detection.crop import paste_trenches

    return paste_trenches(labels, pos.trenches, pos.frame_shape, angle_deg=pos.angle,
                          drift_yx=tuple(pos.drift[t]), dtype=np.uint32)


def _montage(crops) -> np.ndarray:
    """(n, t, h, w) -> (t, h, n * w): the trenches side by side, trench ``n`` at columns ``n * w``."""
    crops = np.asarray(crops)
    n, t, h, w = crops.shape
    return crops.transpose(1, 2, 0, 3).reshape(t, h, n * w)
