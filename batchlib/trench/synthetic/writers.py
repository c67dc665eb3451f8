"""Writing acquisitions (three TIFF layouts) and their ground truth, and reading it back.

Layouts
-------
``"ome-tiff"``
    ``<name>.ome.tif``: one OME series per position, axes TCYX, channel names,
    physical pixel size, time increment and per-plane DeltaT and stage position.
``"tiff-stacks"``
    ``<name>_xy{p:02d}.tif``: one ImageJ hyperstack per position, axes TCYX, one
    slice label per plane (its channel name), ``unit``, ``finterval``, resolution.
``"tiff-sequence"``
    ``<name>/t{t:03d}xy{p:02d}c{c}.tif``: one 2-D TIFF per timepoint, position and
    channel; all indices start at 0 and ``c`` follows ``cfg.channels``.

Ground truth goes to ``<out_dir>/ground_truth/<name>_pos{p:03d}/`` (see
:func:`write_ground_truth`).
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import tifffile

from .config import SyntheticConfig
from .simulate import GroundTruth, simulate_position

__all__ = ["LAYOUTS", "write_acquisition", "write_ground_truth", "load_ground_truth"]

LAYOUTS = ("ome-tiff", "tiff-stacks", "tiff-sequence")


def _tcyx(pos, cfg) -> np.ndarray:
    return np.stack([pos.movies[ch] for ch in cfg.channels], axis=1)


def _ome_metadata(cfg: SyntheticConfig, pos, position: int, names: bool = True) -> dict:
    T, C = cfg.n_timepoints, len(cfg.channels)
    x, y, z = pos.metadata["stage_xyz"]
    n = T * C
    return {
        "axes": "TCYX",
        "Name": f"xy{position:02d}",
        **({"Channel": {"Name": list(cfg.channels)}} if names else {}),
        "PhysicalSizeX": cfg.pixel_size_um, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": cfg.pixel_size_um, "PhysicalSizeYUnit": "µm",
        "TimeIncrement": cfg.frame_interval_s, "TimeIncrementUnit": "s",
        "Plane": {
            "DeltaT": [float(t * cfg.frame_interval_s) for t in range(T) for _ in range(C)],
            "DeltaTUnit": ["s"] * n,
            "PositionX": [x] * n, "PositionXUnit": ["µm"] * n,
            "PositionY": [y] * n, "PositionYUnit": ["µm"] * n,
            "PositionZ": [z] * n, "PositionZUnit": ["µm"] * n,
        },
    }


def _imagej_kwargs(cfg: SyntheticConfig, names: bool = True) -> dict:
    res = 1.0 / cfg.pixel_size_um
    meta = {"axes": "TCYX", "unit": "um", "finterval": cfg.frame_interval_s}
    if names:
        meta["Labels"] = [ch for _ in range(cfg.n_timepoints) for ch in cfg.channels]
    return {"imagej": True, "resolution": (res, res), "metadata": meta}


def write_acquisition(out_dir, cfg: SyntheticConfig, layout: str = "ome-tiff",
                      name: str = "demo", ground_truth: bool = True,
                      channel_names: bool = True) -> dict:
    """Simulate every position of ``cfg`` and write images and ground truth.

    Positions are simulated and written one at a time, so memory holds one
    position's movies and labels.

    Parameters
    ----------
    out_dir : path-like
        Created if needed.
    cfg : SyntheticConfig
    layout : {"ome-tiff", "tiff-stacks", "tiff-sequence"}
    name : str
        Acquisition name used in the file names.
    ground_truth : bool
        Also write ``ground_truth/<name>_pos{p:03d}/``.
    channel_names : bool
        Store the channel names in the files (OME ``Channel/Name``, ImageJ slice
        labels). ``False`` writes files without any, as many plain TIFF stacks
        come; the truth keeps them (``metadata.json``: ``channels``,
        ``channel_kinds``). Sequences never carry names (only ``c{c}``).

    Returns
    -------
    dict
        ``{"layout": str, "images": [Path, ...], "ground_truth": [Path, ...]}``;
        images in writing order (for a sequence: by position, time, channel).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"layout": layout, "images": [], "ground_truth": []}
    ome = None
    if layout == "ome-tiff":
        path = out / f"{name}.ome.tif"
        size = cfg.n_positions * cfg.n_timepoints * len(cfg.channels) * cfg.height * cfg.width * 2
        ome = tifffile.TiffWriter(path, bigtiff=size > 2 ** 31, ome=True)
        written["images"].append(path)
    try:
        for p in range(cfg.n_positions):
            pos = simulate_position(cfg, p)
            if layout == "ome-tiff":
                ome.write(_tcyx(pos, cfg), photometric="minisblack",
                          metadata=_ome_metadata(cfg, pos, p, channel_names))
            elif layout == "tiff-stacks":
                path = out / f"{name}_xy{p:02d}.tif"
                tifffile.imwrite(path, _tcyx(pos, cfg), photometric="minisblack",
                                 **_imagej_kwargs(cfg, channel_names))
                written["images"].append(path)
            else:
                folder = out / name
                folder.mkdir(exist_ok=True)
                # Pixels per centimetre: the metric unit every TIFF reader knows.
                res = 1e4 / cfg.pixel_size_um
                for t in range(cfg.n_timepoints):
                    for c, ch in enumerate(cfg.channels):
                        path = folder / f"t{t:03d}xy{p:02d}c{c}.tif"
                        tifffile.imwrite(path, pos.movies[ch][t], photometric="minisblack",
                                         resolution=(res, res), resolutionunit="CENTIMETER",
                                         metadata=None)
                        written["images"].append(path)
            if ground_truth:
                gt = out / "ground_truth" / f"{name}_pos{p:03d}"
                write_ground_truth(gt, pos)
                written["ground_truth"].append(gt)
            del pos
    finally:
        if ome is not None:
            ome.close()
    return written


def write_ground_truth(gt_dir, pos: GroundTruth) -> Path:
    """Write one position's truth: trenches/cells/lineage/drift CSVs, labels.h5, metadata.json.

    ``drift.csv`` has columns ``t, dy, dx, psf_sigma_px``; ``labels.h5`` holds
    ``frame_labels`` (T, Y, X) and ``trench_labels`` (n, T, H, W), int32, gzip.
    """
    d = Path(gt_dir)
    d.mkdir(parents=True, exist_ok=True)
    pos.trenches.to_csv(d / "trenches.csv", index=False)
    pos.cells.to_csv(d / "cells.csv", index=False)
    pos.lineage.to_csv(d / "lineage.csv", index=False)
    pd.DataFrame({"t": np.arange(len(pos.drift)), "dy": pos.drift[:, 0], "dx": pos.drift[:, 1],
                  "psf_sigma_px": pos.psf_sigma}).to_csv(d / "drift.csv", index=False)
    with h5py.File(d / "labels.h5", "w") as f:
        fl = pos.frame_labels
        f.create_dataset("frame_labels", data=fl, compression="gzip", shuffle=True,
                         chunks=(1,) + fl.shape[1:])
        tl = pos.trench_labels
        f.create_dataset("trench_labels", data=tl, compression="gzip", shuffle=True,
                         chunks=(1, 1) + tl.shape[2:] if tl.size else None)
    with open(d / "metadata.json", "w") as f:
        json.dump(pos.metadata, f, indent=1)
    return d


def load_ground_truth(gt_dir) -> GroundTruth:
    """Read a directory written by :func:`write_ground_truth` back into a ``GroundTruth``."""
    d = Path(gt_dir)
    drift = pd.read_csv(d / "drift.csv")
    with h5py.File(d / "labels.h5", "r") as f:
        frame_labels = f["frame_labels"][()]
        trench_labels = f["trench_labels"][()]
    with open(d / "metadata.json") as f:
        metadata = json.load(f)
    return GroundTruth(frame_labels=frame_labels, trench_labels=trench_labels,
                       trenches=pd.read_csv(d / "trenches.csv"), cells=pd.read_csv(d / "cells.csv"),
                       lineage=pd.read_csv(d / "lineage.csv"),
                       drift=drift[["dy", "dx"]].to_numpy(float),
                       psf_sigma=drift["psf_sigma_px"].to_numpy(float), metadata=metadata)
