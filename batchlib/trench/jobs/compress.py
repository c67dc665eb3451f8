"""Compress: crop every trench of every frame and channel into trench stacks."""
from __future__ import annotations

import os


from ...base import Param
from ...container_job import BatchJobOnContainer, KeySpec
from ...io import (container_format, create_dataset, is_h5, open_file, read_attrs, read_table,
                   write_attrs)
from ...io.files import atomic_path
from ..layout import ACQUISITION_ATTR, CROPS, DRIFT_TABLE, OVERVIEW, RAW, TRENCHES_TABLE
from ._stacks import frame_blocks, frames_kept, mark_frames, prepare_stack


class Compress(BatchJobOnContainer):
    """Crop the trenches (rotated, drift-corrected) of every channel into ``trench_crops/<channel>``.

    Crops have shape (n_trench, T, H, W) with the closed end at row 0. When
    Ingest appended frames and the trench layout is unchanged, only the new
    frames are cropped. ``drop_raw`` replaces the full-frame movies by a
    downsampled overview and rewrites the container so the space returns to
    the disk.
    """

    version = "1"
    params = {
        "interpolation_order": Param(1, "spline order where the angle requires interpolation"),
        "drop_raw": Param(False, "replace raw movies by a downsampled overview after cropping"),
        "overview_factor": Param(4, "downsampling of the overview kept when drop_raw is set"),
    }
    input_keys = {RAW: KeySpec(kind="group"), TRENCHES_TABLE: KeySpec(kind="table"),
                  DRIFT_TABLE: KeySpec(kind="table")}
    output_keys = {CROPS: KeySpec(kind="group")}

    def run(self, input_files, output_files, **kwargs):
        super().run(input_files, output_files, **kwargs)
        if self.param_values["drop_raw"]:
            for path in output_files:
                repack(path)

    def process_container(self, container, path):
        import numpy as np
        from ..detection.crop import CropSampler

        trenches = read_table(container, TRENCHES_TABLE)
        tattrs = read_attrs(container[TRENCHES_TABLE])
        angle = float(tattrs["angle_deg"])
        drift = read_table(container, DRIFT_TABLE)[["dy", "dx"]].to_numpy()
        md = read_attrs(container).get(ACQUISITION_ATTR) or {}
        keys = md.get("channel_keys") or sorted(container[RAW].keys())
        n = len(trenches)
        h, w = int(trenches["height"].iloc[0]), int(trenches["width"].iloc[0])
        n_t = min(container[f"{RAW}/{keys[0]}"].shape[0], len(drift))
        basis = {"layout": tattrs.get("layout_hash"), "order": int(self.param_values["interpolation_order"])}
        order = basis["order"]
        raws = {key: container[f"{RAW}/{key}"] for key in keys}
        stacks, kept = {}, {}
        for key in keys:
            ckey = f"{CROPS}/{key}"
            kept[key] = frames_kept(container, ckey, (n, h, w), basis)
            stacks[key] = prepare_stack(container, ckey, (n, h, w), n_t, raws[key].dtype, kept[key])
        # Frames outside, channels inside: where to sample a frame depends only on its
        # drift, so it is worked out once per frame for all channels.
        start = min(kept.values(), default=n_t)
        for t0, t1 in frame_blocks(start, n_t):
            blocks = {key: np.empty((n, t1 - t0, h, w), dtype=raws[key].dtype)
                      for key in keys if kept[key] < t1}
            for t in range(t0, t1):
                todo = [key for key in blocks if kept[key] <= t]
                if not todo:
                    continue
                sampler = CropSampler(trenches, angle, raws[todo[0]].shape[1:], tuple(drift[t]), order)
                for key in todo:
                    blocks[key][:, t - t0] = sampler.crop(raws[key][t])
            for key, block in blocks.items():
                lo = max(t0, kept[key])
                stacks[key][:, lo:t1] = block[:, lo - t0:]
        for key in keys:
            mark_frames(stacks[key], n_t, basis, angle_deg=angle)
        write_attrs(container[CROPS], {"n_trenches": n, "height": h, "width": w, "n_frames": n_t,
                                       "channels": keys})
        if self.param_values["drop_raw"]:
            self._drop_raw(container, keys)
        self.logger.debug("%s: %d trenches x %d frames x %d channels", os.path.basename(path), n, n_t,
                          len(keys))

    def _drop_raw(self, container, keys):
        factor = int(self.param_values["overview_factor"])
        for key in keys:
            raw = container[f"{RAW}/{key}"]
            first = _downsample(raw[0], factor)
            ds = create_dataset(container, f"{OVERVIEW}/{key}", shape=(raw.shape[0],) + first.shape,
                                dtype=raw.dtype, chunks=(1,) + first.shape)
            for t in range(raw.shape[0]):  # frame by frame: memory bounded
                ds[t] = first if t == 0 else _downsample(raw[t], factor)
            write_attrs(ds, {"downsampling_factor": factor})
        del container[RAW]
        write_attrs(container, {"raw_dropped": True})


def _downsample(frame, factor):
    h, w = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
    f = frame[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return f.astype(frame.dtype)


def repack(path) -> None:
    """Rewrite an h5 container so that space freed by deletions returns to the disk.

    HDF5 never shrinks a file when datasets are deleted; copying the live
    objects into a new file and replacing the old one does. n5/zarr free the
    space of deleted chunk files directly, so nothing is done for them.
    """
    if container_format(path) != "h5":
        return
    with atomic_path(path) as tmp, open_file(path, "r") as src, open_file(tmp, "w") as dst:
        assert is_h5(src)
        for key in src.keys():
            src.copy(src[key], dst, name=key)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
