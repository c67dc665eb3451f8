"""Segment: label the cells in every trench crop."""
from __future__ import annotations

import os

from ...base import Param
from ...container_job import BatchJobOnContainer
from ...errors import InvalidInputError
from ...io import read_attrs
from ..layout import (CROPS, SEGMENTATION, SEGMENTATION_POLES, TRENCHES_TABLE, AcquisitionMeta,
                      check_channel, resolve_channel, specs)
from .stacks import frame_blocks, frames_kept, mark_frames, prepare_stack


def resolve_device(gpu: bool) -> str:
    """``"cuda"`` when a GPU is requested and usable, else ``"cpu"``; an unusable request is an error."""
    if not gpu:
        return "cpu"
    try:
        import torch
    except ImportError as e:
        raise RuntimeError("gpu=True needs PyTorch with CUDA (pip install 'batchlib[gpu]')") from e
    if not torch.cuda.is_available():
        raise RuntimeError("gpu=True but no CUDA device is visible to PyTorch")
    return "cuda"


class Segment(BatchJobOnContainer):
    """Segment cells in ``trench_crops/<channel>`` into ``segmentation/<name>``.

    Labels have the crops' shape (n_trench, T, H, W) and are numbered from the
    closed end in every trench and frame (label 1 is the mother cell). The
    method is pluggable (:mod:`batchlib.trench.segmentation.methods`); the
    default, ``auto``, is the shipped U-Net (CPU; ONNX Runtime, or PyTorch)
    and the classical ``threshold`` method where neither is installed.

    ``method``, ``method_params`` and ``gpu`` are checked when the job is
    built, so a misspelt name or parameter fails at once, not in every worker.
    """

    # 12: crops of another magnification (pixel size) resized to the trained one; 13: the
    # U-Net's objects both narrower and smaller than their frame's cells dropped; 14: phase
    # objects in empty trenches within twice the empty lumens' own spread dropped; 15: a
    # phase cell split by the chip's band at the open end joined (open_end_bands.py); 16:
    # the U-Net's pole codes kept beside the labels (segmentation_poles/<name>)
    version = "16"
    # 11: U-Net weights that have seen dark lumens' faintest cells.
    # 10: fluorescence cells where the U-Net's P(cell) > 0.6 (was 0.5).
    # 9: phase objects that look like the empty lumen dropped.
    # 8: fragments in empty trenches dropped, pieces of cells joined, no
    # cell in the PDMS margin without an empty trench. 7: U-Net weights that have
    # seen combined conditions. 6: U-Net weights that find the closed end in the first
    # 3 rows. 5: no empty trench: read from the closed-end margin; slivers dropped.
    # 4: chip structures
    params = {
        "channel": Param("", "segmentation channel, name or key (default or auto: the first "
                         "phase-like channel, else the first fluorescence one)"),
        "kind": Param("auto", "auto (the kind Ingest recorded for the channel), phase or fluorescence",
                      choices=("auto", "phase", "fluorescence")),
        "method": Param("auto", "segmentation method: auto (unet where ONNX Runtime or PyTorch "
                        "is installed, else threshold), a built-in name (threshold, unet), "
                        "'package.module:function' or a batchlib.segmentation_methods entry point"),
        "method_params": Param({}, "extra parameters for the method: key=value items or a JSON "
                               'object, e.g. lumen_width=12 or \'{"lumen_width": 12}\' (default for '
                               "threshold: the lumen width measured by TrenchDetection)"),
        "name": Param("cells", "name of the segmentation: segmentation/<name>", is_name=True),
        "gpu": Param(False, "run the method on a GPU (methods that support it)", affects_result=False),
    }
    input_keys = specs(CROPS)
    output_keys = specs(f"{SEGMENTATION}/{{name}}")

    def __init__(self, input_pattern=None, identifier=None, **params):
        from ..segmentation.methods import (AUTO, accepted_keywords, check_method, default_method,
                                            is_picklable)

        super().__init__(input_pattern=input_pattern, identifier=identifier, **params)
        p = self.param_values
        if p["method"] == AUTO:
            # resolved once, when the job is built: the records, the parameter hash
            # and the incremental basis name the method that actually runs
            self._params["method"] = default_method()
            if p["method"] != "unet":
                self.logger.warning("segment_method auto: neither ONNX Runtime nor PyTorch is "
                                    "installed, so the classical 'threshold' method runs (pip "
                                    "install onnxruntime for the more accurate 'unet')")
        try:
            method = check_method(p["method"], self.method_params(), gpu=p["gpu"])
        except (KeyError, ValueError, RuntimeError, OSError, ImportError) as e:
            raise type(e)(f"{self.name}: {e}") from None
        # Workers get the resolved method with the job (a module-level function
        # pickles by reference), so one registered with register_method() in
        # this process works there too; otherwise they resolve it by name.
        self._method = method if is_picklable(method) else method.name
        # a method that places the poles within their pixels (the U-Net) has its pole
        # codes kept beside the labels, as an output of the job like them
        self._keeps_poles = "poles_out" in accepted_keywords(method.fn)

    def resolved_output_keys(self) -> list:
        return [*super().resolved_output_keys(), *self._poles_keys()]

    def resolved_output_specs(self) -> dict:
        return {**super().resolved_output_specs(), **specs(*self._poles_keys())}

    def _poles_keys(self) -> list:
        """``segmentation_poles/<name>`` where the method fills pole codes, else nothing."""
        return [f"{SEGMENTATION_POLES}/{self.param_values['name']}"] if self._keeps_poles else []

    def method_params(self) -> dict:
        """A copy of ``method_params`` (parsed when the job was built)."""
        return dict(self.param_values["method_params"])

    def validate_input(self, path) -> None:
        super().validate_input(path)
        check_channel(path, self.param_values["channel"], "--segment_channel")

    def process_container(self, container, path):
        import numpy as np
        from ..segmentation import resolve_method
        from ..segmentation.empty_trenches import references_by_set, segment_and_clean
        from ..segmentation.doubts import block_figures, judge
        from ..segmentation.methods import accepted_keywords
        from ..segmentation.mirror import mirror_counts
        from ..segmentation.scale import unknown_magnification_warning, zoom_for
        from ..segmentation.threshold import (LONE_REFERENCE_FRAMES, empty_background,
                                              lone_empty_reference)

        p = self.param_values
        method = resolve_method(self._method)  # a worker: import it once, before any work
        key, kind = resolve_channel(container, p["channel"], "--segment_channel", str(path))
        kind = kind if p["kind"] == "auto" else p["kind"]
        ckey = f"{CROPS}/{key}"
        if ckey not in container:
            raise InvalidInputError(f"{path}: {ckey!r} is missing (was Compress run?)")
        crops = container[ckey]
        n, n_t, h, w = crops.shape
        n_t = min(n_t, int(read_attrs(crops).get("n_frames", n_t)))
        extra = self.method_params()
        layout = self._layout_attrs(container)  # what TrenchDetection recorded
        quality = layout.get("quality", {})
        if p["method"] == "threshold" and "lumen_width" not in extra:
            extra["lumen_width"] = self._measured_lumen_width(quality)
        if p["gpu"]:
            extra["device"] = resolve_device(True)
        # methods that declare them get what the known-empty trenches show
        wants = accepted_keywords(method.fn)
        if "zoom" in wants and "zoom" not in extra:
            # another magnification than the network's: the crops are resized to its
            # for it, its answer brought back to their pixels (segmentation/scale.py)
            pixel = AcquisitionMeta.read(container).pixel_size_um
            zoom = zoom_for(pixel)
            if zoom != 1.0:
                extra["zoom"] = round(zoom, 4)
                self.logger.info("%s: %.3f µm pixels: crops resized by %.2f for the network",
                                 os.path.basename(path), pixel, zoom)
            unknown = unknown_magnification_warning(
                quality.get("lumen_width_px"), layout.get("kind"), pixel)
            if unknown:
                self.warn(f"{os.path.basename(path)}: {unknown}")
        trenches = self._trenches(container, n)  # read once: the flags and the sets
        empty = self._empty_trenches(trenches)
        if empty is not None and not quality.get("empty_flags_clear", 1.0):
            # faint cells that detection could not tell from empty lumens: trusting the
            # flags made the cells the "background" and the "chip structures"
            empty = None
            self.warn(f"{os.path.basename(path)}: TrenchDetection could not tell empty trenches "
                      "from filled ones (their lumens' texture differs too little), so they are "
                      "not used as the empty-trench reference; the cells may be faint")
        given = "background" in extra or "empty_crops" in extra
        margin = self._closed_end_margin(quality)
        # the labels depend on the empty-trench reference and the margin as well as
        # on the crops: an edited trenches table must not leave stale frames
        basis = {"crops": read_attrs(crops).get("basis"), "method": p["method"], "kind": kind,
                 "params": extra, "channel": key,
                 "empty": None if empty is None else "".join("01"[int(e)] for e in empty),
                 "closed_end_margin": margin}
        out_key = f"{SEGMENTATION}/{p['name']}"
        kept = frames_kept(container, out_key, (n, h, w), basis)
        # where the free poles lie within their pixels (the U-Net's P(cell)), for
        # Measure's sub-pixel lengths: written with the labels, frame for frame
        poles_key = (self._poles_keys() or [None])[0]
        if poles_key is not None:
            kept = min(kept, frames_kept(container, poles_key, (n, h, 2), basis))
        ds = prepare_stack(container, out_key, (n, h, w), n_t, np.uint16, kept)
        poles = None if poles_key is None else \
            prepare_stack(container, poles_key, (n, h, 2), n_t, np.uint8, kept)

        def segment_block(block, **kwargs):
            # a shade of the empty lumen (a wall halo's band) is not a cell; what recurs
            # in most empty trenches is the chip; and a cell that enters one is a whole
            # cell, not a speck of halo or debris
            return segment_and_clean(block, method, kind, empty, **kwargs)

        use_background = empty is not None and not given and kind == "phase" \
            and "background" in wants
        lone = None
        if use_background and empty.sum() == 1 and kept < n_t:
            # a single empty trench: what it looked like in the first frames, whichever
            # block of frames is segmented now (threshold.empty_background)
            first = crops[int(np.flatnonzero(empty)[0]), :min(LONE_REFERENCE_FRAMES, n_t)]
            lone = lone_empty_reference(first[None])
        # look-alikes of the empty lumen are judged against their own trench set's
        # (empty_trenches.references_by_set); a set's lone empty trench by its first frames
        sets = self._trench_sets(trenches) if use_background and kept < n_t else None
        first_frames = None
        if sets is not None:
            per_set = [int(np.sum(empty & (sets == k))) for k in np.unique(sets)]
            if sum(c > 0 for c in per_set) < 2:
                sets = None  # the position's reference is every set's
            elif 1 in per_set:
                first_frames = crops[:, :min(LONE_REFERENCE_FRAMES, n_t)]
        figures = []
        for t0, t1 in frame_blocks(kept, n_t):
            block = crops[:, t0:t1]
            kwargs = dict(extra)
            if use_background:
                # what an empty trench looks like in these frames (see segment_threshold)
                kwargs["background"] = empty_background(block, empty, lone=lone)
                if sets is not None:
                    kwargs["references"] = references_by_set(block, empty, sets, first_frames,
                                                             kwargs["background"])
            elif empty is not None and not given and kind != "phase" and "empty_crops" in wants:
                # what the artefacts of these frames look like in trenches without cells
                kwargs["empty_crops"] = empty[:, None]
            if kind == "phase" and "closed_end_margin" in wants and "closed_end_margin" not in extra:
                # where the lumen starts in every box, from how detection placed them
                kwargs["closed_end_margin"] = margin
            block_poles = None if poles is None else np.zeros((n, t1 - t0, h, 2), np.uint8)
            with_poles = {} if block_poles is None else {"poles_out": block_poles}
            labels, removed = segment_block(block, **with_poles, **kwargs)
            if removed["lookalikes"]:
                self.logger.info("%s: frames %d-%d: %d objects that look like the empty "
                                 "lumen dropped", os.path.basename(path), t0, t1 - 1,
                                 removed["lookalikes"])
            if removed["side_crops"]:
                self.logger.info("%s: frames %d-%d: objects beside a cell dropped in %d "
                                 "trench-frames", os.path.basename(path), t0, t1 - 1,
                                 removed["side_crops"])
            # the block's first frame again, mirrored: a lost method gives other cells
            mirror = mirror_counts(block, labels, lambda c, **kw: segment_block(c, **kw)[0],
                                   **kwargs)
            if labels.max(initial=0) > np.iinfo(np.uint16).max:
                raise RuntimeError(f"{path}: more than 65535 cells in one crop")
            if poles is not None:
                poles[:, t0:t1] = block_poles
            ds[:, t0:t1] = labels.astype(np.uint16)
            figures.append(block_figures(block, labels, kind, first_frame=t0, mirror=mirror,
                                         side_crops=removed["side_crops"]))
        # how far to trust the labels of the frames segmented now (status, log, report)
        checks, warnings = judge(figures)
        for warning in warnings:
            self.warn(f"{os.path.basename(path)}: {warning}")
        # what ran the method (a method may say: the U-Net's ONNX Runtime or PyTorch)
        runtime = getattr(method.fn, "runtime", None)
        ran = {"runtime": runtime(extra)} if runtime is not None and figures else {}
        if poles is not None:
            mark_frames(poles, n_t, basis)
        mark_frames(ds, n_t, basis, channel=key, kind=kind, method=p["method"], **checks, **ran)

    @staticmethod
    def _trenches(container, n):
        """TrenchDetection's trenches table, a row per crop, or ``None`` when it is not
        there or does not match the ``n`` crops."""
        from ...io import read_table

        if TRENCHES_TABLE not in container:
            return None
        table = read_table(container, TRENCHES_TABLE)
        return table if len(table) == n else None

    @staticmethod
    def _empty_trenches(trenches):
        """The ``empty`` flag per crop of the trenches table, or ``None``."""
        if trenches is None or "empty" not in trenches:
            return None
        return trenches["empty"].to_numpy(bool)

    @staticmethod
    def _trench_sets(trenches):
        """The ``set`` per crop of the trenches table, or ``None`` when it is not there,
        or when no two sets hold trenches."""
        if trenches is None or "set" not in trenches or trenches["set"].nunique() < 2:
            return None
        return trenches["set"].to_numpy()

    @staticmethod
    def _layout_attrs(container) -> dict:
        """What TrenchDetection recorded with the layout (its ``quality``, the ``kind`` of
        channel it was found on...; ``{}`` without one), read once."""
        return read_attrs(container[TRENCHES_TABLE]) if TRENCHES_TABLE in container else {}

    @staticmethod
    def _closed_end_margin(quality):
        """TrenchDetection's closed-end margin (pixels of PDMS in every box), or ``None``."""
        margin = quality.get("closed_end_margin_px")
        return None if margin is None else float(margin)

    @staticmethod
    def _measured_lumen_width(quality, default=14.0):
        """The lumen width TrenchDetection measured (pixels), rounded to a whole pixel."""
        width = quality.get("lumen_width_px")
        return float(round(width)) if width and width > 2 else default
