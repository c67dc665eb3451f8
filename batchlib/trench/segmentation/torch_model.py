"""The ``unet`` segmentation method: a small U-Net shipped with the package.

Crops follow the DeLTA / napari-mm3 convention of a fixed input geometry:
each crop is centred and scaled by one scale for the whole stack (phase
inverted, so cells are bright for both kinds), reflect-padded to a multiple of 8 rows and columns (a 187 x 32 crop
becomes 192 x 32; the weights are trained on 256 x 32) and segmented in
batches. The network predicts, per pixel, background, cell interior and cell
boundary. Instances come from the same numba splitting as the default method
(:func:`.splitting.label_crops`): candidates are the pixels more likely cell
than background, cut where the interior probability summed across a row dips
(the boundary between touching cells), numbered from the closed end.

To stay fast on a CPU the network works at half resolution: the crop is
folded 2 x 2 into four channels (pixel unshuffle) and the output unfolded
again, so every convolution sees a quarter of the pixels without losing any.

``torch`` is imported only inside the functions: the package imports without it.
"""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from .fragments import drop_thin_objects, merge_fragments
from .open_end_bands import join_across_open_end_bands
from .numbering import drop_slivers, relabel_from_closed_end

#: the weights shipped as package data (see models/MODEL_CARD.md)
DEFAULT_WEIGHTS = Path(__file__).with_name("models") / "unet.pt"
#: classes predicted per pixel
CLASSES = ("background", "interior", "boundary")
FORMAT = 1
_CACHE: dict = {}


def _require_torch():
    try:
        import torch
    except ImportError as exc:  # say how to get it
        raise ImportError("the 'unet' segmentation method needs PyTorch: "
                          "pip install 'batchlib[gpu]' (or torch==2.13.0)") from exc
    return torch


def build_unet(channels=(12, 24, 48), fold: int = 2, batch_norm: bool = False):
    """The U-Net: ``(B, 2, H, W)`` (image, kind flag) to logits ``(B, 3, H, W)``.

    Three levels of two 3 x 3 convolutions on the image folded ``fold`` x ``fold``;
    ``H`` and ``W`` must be multiples of ``4 * fold``. Without batch norm by
    default: on a CPU it costs more training time than it saves steps.
    """
    torch = _require_torch()
    nn = torch.nn
    f = int(fold)

    def block(cin, cout):
        layers = []
        for c_in in (cin, cout):
            layers.append(nn.Conv2d(c_in, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    c0, c1, c2 = (int(c) for c in channels)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc0, self.enc1, self.mid = block(2 * f * f, c0), block(c0, c1), block(c1, c2)
            self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), block(2 * c1, c1)
            self.up0, self.dec0 = nn.ConvTranspose2d(c1, c0, 2, stride=2), block(2 * c0, c0)
            self.head = nn.Conv2d(c0, len(CLASSES) * f * f, 1)

        def forward(self, x):
            pool = nn.functional.max_pool2d
            a = self.enc0(nn.functional.pixel_unshuffle(x, f))
            b = self.enc1(pool(a, 2))
            b = self.dec1(torch.cat([b, self.up1(self.mid(pool(b, 2)))], 1))
            a = self.dec0(torch.cat([a, self.up0(b)], 1))
            return nn.functional.pixel_shuffle(self.head(a), f)

    return UNet()


def fuse_batch_norm(model):
    """Fold every BatchNorm into the convolution before it (inference only, faster)."""
    torch = _require_torch()
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if isinstance(module, torch.nn.Sequential):
            layers = list(module)
            fused, i = [], 0
            while i < len(layers):
                if (i + 1 < len(layers) and isinstance(layers[i], torch.nn.Conv2d)
                        and isinstance(layers[i + 1], torch.nn.BatchNorm2d)):
                    fused.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
                    i += 2
                else:
                    fused.append(layers[i])
                    i += 1
            module._modules.clear()
            for j, layer in enumerate(fused):
                module.add_module(str(j), layer)
    return model


def save_weights(model, path, config: dict, meta: dict | None = None) -> None:
    """Write a weights file: a plain dict of tensors and numbers (loads with ``weights_only``)."""
    torch = _require_torch()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "config": dict(config), "meta": dict(meta or {}),
                "state_dict": state}, str(path))


def _existing(path) -> Path:
    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"U-Net weights not found: {path} (reinstall batchlib, or train "
                                "them with `batchlib train-segmenter`)")
    return path


def check_weights_file(path=None) -> Path:
    """Check, without loading PyTorch, that ``path`` looks like a weights file.

    The file must exist, be the zip archive ``torch.save`` writes and hold a
    pickled dict with this format's keys. A job checks its weights when it is
    built, also on a rerun with nothing to do, where importing PyTorch (about
    1 s) would be most of the run; :func:`load_weights` checks the rest when
    the weights are first used.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_weights`.
    """
    import zipfile

    path = _existing(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            data = archive.read(pickles[0]) if pickles else b""
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a readable U-Net weights file ({type(e).__name__}: {e})") from None
    # the dict's keys are plain strings in the pickle stream
    if not all(key in data for key in (b"format", b"config", b"state_dict")):
        raise ValueError(f"{path}: not a batchlib U-Net weights file (format {FORMAT} expected)")
    return path


def load_weights(path=None):
    """``(config, state_dict, meta)`` of a weights file, with clear errors.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        It is not a batchlib U-Net weights file (corrupt, truncated, other format).
    """
    torch = _require_torch()
    path = _existing(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors all mean "corrupt"
        raise ValueError(f"{path}: not a readable U-Net weights file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise ValueError(f"{path}: not a batchlib U-Net weights file (format {FORMAT} expected)")
    return obj["config"], obj["state_dict"], obj.get("meta", {})


def load_model(weights=None, device: str = "cpu", fuse: bool = True):
    """The U-Net with ``weights`` (default: the shipped ones) on ``device``, in eval mode."""
    return _model_with_meta(weights, device, fuse)[0]


def _model_with_meta(weights, device, fuse=True):
    """:func:`load_model` and the weights' metadata, from one read of the file."""
    config, state, meta = load_weights(weights)
    model = build_unet(**config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights or DEFAULT_WEIGHTS}: weights do not fit the network: {e}") from None
    model.eval()
    if fuse:
        model = fuse_batch_norm(model)
    return model.to(device), meta


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to ``threads``; by default 1 in a worker process (the
    executor already runs one per core) and torch's own choice in the main process.

    Returns the number in use. Oversubscribed threads spin-wait for each other,
    so on a busy machine fewer threads can be much faster.
    """
    torch = _require_torch()
    if threads is None:
        if multiprocessing.parent_process() is None:
            return torch.get_num_threads()
        threads = 1
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def normalise(crops, kind, scale=None) -> np.ndarray:
    """``(M, 2, H, W)`` float32 network input: the crops centred, scaled, phase inverted,
    and a kind flag.

    Each crop has its own mean subtracted (illumination varies between
    trenches) but all are divided by one ``scale``: by default the median of
    the crops' standard deviations. A per-crop scale would blow the noise of
    an empty trench up to the contrast of cells; one scale for the stack (all
    trenches and frames Segment passes at once) keeps empty trenches flat.
    """
    x = np.asarray(crops, np.float32).reshape(-1, *np.shape(crops)[-2:])
    x = x - x.mean(axis=(1, 2), keepdims=True)
    if scale is None:
        scale = stack_scale(x)
    # one scale, or one per crop (see frame_scales)
    x = x / np.asarray(scale, np.float32).reshape(-1, 1, 1)
    if kind == "phase":
        x = -x
    flag = np.full_like(x, 1.0 if kind == "phase" else -1.0)
    return np.stack([x, flag], axis=1)


def stack_scale(crops) -> float:
    """The intensity scale of a stack of crops: the median of their standard deviations."""
    x = np.asarray(crops, np.float32).reshape(-1, *np.shape(crops)[-2:])
    std = x.std(axis=(1, 2))
    return float(np.median(std)) + 1e-3 * (float(np.abs(x).mean()) + 1.0)


def frame_scales(crops) -> np.ndarray:
    """One :func:`stack_scale` per frame of ``(N, T, H, W)`` crops, spread over its crops.

    All trenches of a frame share the frame's scale, so a frame's labels do not
    depend on which other frames are segmented with it: a movie segmented as
    frames arrive gives what one pass over the whole movie gives.
    """
    c = np.asarray(crops, np.float32)
    n, t = c.shape[:2]
    per_frame = [stack_scale(c[:, i]) for i in range(t)]
    return np.broadcast_to(np.asarray(per_frame, np.float32)[None, :], (n, t)).ravel()


def pad_to(x, multiple: int) -> np.ndarray:
    """Reflect-pad the last two axes at the end to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode="reflect" if min(h, w) > max(ph, pw) else "edge")


def predict_probabilities(model, crops, kind: str, device: str = "cpu", batch_size: int = 32,
                          scale=None):
    """Class probabilities ``(3, ..., H, W)`` (background, interior, boundary) of the crops
    (``scale``: see :func:`normalise`)."""
    shape = np.shape(crops)
    h, w = shape[-2:]
    flat = np.asarray(crops).reshape(-1, h, w)
    m = flat.shape[0]
    if scale is None:  # the stack's, as normalise would take it from all crops at once
        x = flat.astype(np.float32)
        scale = stack_scale(x - x.mean(axis=(1, 2), keepdims=True))
        del x
    scales = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (m,))

    def batches():
        # normalised and padded a batch at a time: every crop's input is what it was
        # when the whole stack was, without a float copy of the stack (Segment's peak)
        for i in range(0, m, batch_size):
            yield i, np.ascontiguousarray(pad_to(normalise(flat[i:i + batch_size], kind,
                                                           scales[i:i + batch_size]), 8))

    out = np.empty((len(CLASSES), m, h, w), np.float32)
    if not hasattr(model, "parameters"):  # an ONNX Runtime network: numpy in and out
        from .onnx_model import softmax_classes

        for i, x in batches():
            p = softmax_classes(model(x))
            out[:, i:i + batch_size] = p[:, :, :h, :w].transpose(1, 0, 2, 3)
        return out.reshape(len(CLASSES), *shape)
    torch = _require_torch()
    with torch.inference_mode():
        for i, x in batches():
            xb = torch.from_numpy(x).to(device)
            p = torch.softmax(model(xb.contiguous(memory_format=torch.channels_last)), dim=1)
            out[:, i:i + batch_size] = p[:, :, :h, :w].permute(1, 0, 2, 3).cpu().numpy()
    return out.reshape(len(CLASSES), *shape)


def labels_from_probabilities(prob, split_depth=0.7, min_length=6, min_area=30,
                              open_end="keep", cell_threshold=0.5) -> np.ndarray:
    """Instances ``(..., H, W)`` from :func:`predict_probabilities` output, numbered from row 0.

    Candidates are pixels with P(cell) = 1 - P(background) > ``cell_threshold``;
    each object is cut at rows where the summed interior probability dips by ``split_depth`` (a boundary
    across the trench), with the splitting and clean-up of the default method;
    objects shorter than half their width are not cells (:func:`~.numbering.drop_slivers`).
    """
    from .splitting import label_crops  # numba: loaded where used, not when a job is built

    cell = 1.0 - prob[0]
    shape = cell.shape
    h, w = shape[-2:]
    cell = np.ascontiguousarray(cell.reshape(-1, h, w))
    interior = np.ascontiguousarray(prob[1].reshape(-1, h, w))
    n = len(cell)
    labels = label_crops(interior, cell, cell > cell_threshold, 0.0, np.zeros(n),
                         np.full(n, (w - 1) / 2),
                         float(w), float(split_depth), int(min_length), int(min_area),
                         open_end == "drop", True)
    return drop_slivers(labels).reshape(shape)


def _cached_model(weights, device, backend="auto", threads=None):
    """``(network, metadata)``: an :class:`~.onnx_model.OnnxUNet` or a torch module
    (:func:`segment_unet`'s ``backend``)."""
    import importlib.util

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    path = str(Path(weights).resolve()) if weights else str(DEFAULT_WEIGHTS)
    if backend != "torch" and device == "cpu" and importlib.util.find_spec("onnxruntime"):
        key = (path, "onnx", threads)
        if key not in _CACHE:
            from .onnx_model import load_export

            net = load_export(path, threads)
            _CACHE[key] = (net, net.meta) if net is not None else None
        if _CACHE[key] is not None:
            return _CACHE[key]
    if backend == "onnx":
        from .onnx_model import onnx_path

        raise ValueError(f"backend=onnx: {onnx_path(path)} is missing, unreadable or exported from "
                         f"other weights (python -m batchlib.trench.segmentation.onnx_model {path} "
                         "makes it; ONNX Runtime runs on a CPU only)")
    if backend == "auto" and importlib.util.find_spec("torch") is None:
        raise ImportError(f"the 'unet' segmentation method needs ONNX Runtime (pip install onnxruntime) "
                          f"with the weights' .onnx export beside {path}, or PyTorch (torch==2.13.0)")
    key = (path, device)
    if key not in _CACHE:
        _CACHE[key] = _model_with_meta(weights, device)
    return _CACHE[key]


#: what runs the network: ``auto`` is ONNX Runtime on a CPU where it is installed and the
#: weights' export lies beside them (the shipped ones have one), else PyTorch
BACKENDS = ("auto", "onnx", "torch")


#: P(cell) above which a pixel is a cell, per kind. Chosen on tuning seeds 100-104
#: of every family (768², 8 frames, crops on the true boxes): in fluorescence, at 0.5
#: mothers came out 0.05-0.5 px too long (low_snr, defocus, alt_optics the most;
#: mothers within 5 % 0.84-1.0); at 0.6 the bias fell to 0.0-0.2 px and no family's
#: F1 or mean IoU went down by more than 0.001. Phase stays at 0.5: the lumen-start
#: clipping sets its mothers' closed ends, and 0.6 shortened dark-lumen and mixed
#: mothers (tuning mixed 104: within 5 % 0.95 -> 0.92).
CELL_THRESHOLD = {"phase": 0.5, "fluorescence": 0.6}


def segment_unet(crops, kind="phase", *, weights=None, device="cpu", threads=None,
                 batch_size=32, split_depth=0.7, min_length=6, min_area=30, open_end="keep",
                 background=None, closed_end_margin=None, cell_threshold=None, zoom=None,
                 backend="auto", poles_out=None):
    """Segment trench crops with the U-Net (the registered ``unet`` method).

    Parameters
    ----------
    crops : ndarray, shape (..., H, W)
        Trench axis vertical, closed end at row 0; any size (padded to
        multiples of 8), best near the training geometry (32 px wide, lumen
        about 14 px, cells about 10 px wide).
    kind : {"phase", "fluorescence"}
    weights : path, optional
        A weights file (from ``batchlib train-segmenter``); default the shipped one.
    device : str
        ``"cpu"`` or ``"cuda"`` (the Segment job sets it for ``gpu=True``).
    threads : int, optional
        CPU threads (see :func:`set_threads`; ONNX Runtime: the same default).
    batch_size : int
        Crops per forward pass. 32 was faster than 128 on a CPU (993 against
        740 crops/s on one thread, 1894 against 1673 on two) and holds about
        120 MB less; the probabilities are the same to the bit.
    split_depth, min_length, min_area, open_end
        Instance extraction, see :func:`labels_from_probabilities`.
    cell_threshold : float, optional
        A pixel is a cell where P(cell) exceeds it. Default, with the shipped
        weights, :data:`CELL_THRESHOLD` for the kind (in fluorescence their
        P(cell) = 0.5 line lies outside the cells' edges: mothers 0.1-0.5 px
        long, most under noise and blur); with other weights 0.5.
    background : ndarray, shape (..., H, W), optional
        Phase contrast: what the empty trenches look like (the Segment job
        passes :func:`~.threshold.empty_background`); it shows where the
        lumen starts (:func:`~.threshold.lumen_start_row`). Weights trained
        on boxes that start before the closed end (``box_margin`` in their
        metadata, the shipped ones: 0-3 px) see the whole crop and the rows
        before the lumen start are cleared from their labels; where the lumen
        starts further in than that range, the rows before it are cut first.
        Older weights, trained on crops starting at the closed end, see the
        crops from the lumen start on.
    closed_end_margin : float, optional
        Phase contrast: pixels of PDMS every crop keeps before the closed end
        (TrenchDetection's ``closed_end_margin_px``; the Segment job passes
        it). Without ``background`` (no trench was found empty) no cell is
        kept in those rows (the shipped weights drew mothers into them under
        dark lumens: tuning dark_lumen 0-3 with no empty trench, mothers within
        5 % 0.88-0.97 -> 1.000); older weights read the crops from
        :func:`~.threshold.first_cell_row` of it.
    zoom : float, optional
        The crops are shrunk by this factor before the network sees them and
        its probabilities brought back to their pixels
        (:func:`~.scale.zoomed_probabilities`): the Segment job passes
        :func:`~.scale.zoom_for` of the lumen width detection measured, so
        that wide trenches (high magnification) look like the trained ones.
    backend : {"auto", "onnx", "torch"}
        What runs the network (:data:`BACKENDS`): ``auto`` is ONNX Runtime
        on a CPU where it is installed and the weights' ``.onnx`` export lies
        beside them (:mod:`.onnx_model`; the shipped weights have one), else
        PyTorch. The two agree within float32 rounding.
    poles_out : ndarray of uint8, shape (..., H, 2), optional
        Filled with where the labels' free poles lie within their pixels
        (:func:`~.poles.pole_fractions` of the network's P(cell)): what
        Measure's sub-pixel lengths read. The Segment job passes it.

    Returns
    -------
    int32 ndarray, same shape as ``crops``: cells numbered 1..k from the closed end.
    Objects both narrower and smaller than the cells of their frame are dropped
    (:func:`~.fragments.drop_thin_objects`); in phase, a cell split by the chip's
    band at the open end is joined (:func:`~.open_end_bands.join_across_open_end_bands`);
    objects far shorter are joined to the cell they touch
    (:func:`~.fragments.merge_fragments`).
    """
    model, meta = _cached_model(weights, device, backend, threads)
    if hasattr(model, "parameters"):  # PyTorch
        set_threads(threads)
    crops = np.asarray(crops)
    if cell_threshold is None:
        # calibrated for the shipped weights; other weights keep the plain 0.5
        cell_threshold = CELL_THRESHOLD.get(kind, 0.5) if weights is None else 0.5
    extract = (split_depth, min_length, min_area, open_end, float(cell_threshold),
               float(zoom or 1.0))
    starts = _lumen_starts(crops, background) if kind == "phase" else None
    trained_margin = meta.get("box_margin")
    if trained_margin is not None:
        # Trained on boxes that start anywhere in this range before the closed end:
        # the network finds the end itself. Only where the empty trenches show the
        # lumen starting further in (a band across the chip before it: the real
        # molyso frame, 28 rows) are the rows before it cut off, keeping the
        # middle of the trained margin.
        if starts is None:
            labels, background = _segment_from(model, crops, 0, kind, device, batch_size,
                                               extract)
            if kind == "phase" and closed_end_margin:
                # no empty trench shows the lumen start, but the boxes start this far
                # outside the closed end: those rows are PDMS, not the mother
                labels = _clipped(labels, float(closed_end_margin))
        else:
            lumen = np.asarray(starts)
            keep = float(np.mean(trained_margin))
            cut = np.maximum(np.floor(lumen - keep), 0).astype(int)
            labels, background = _by_start(model, crops, cut, kind, device, batch_size, extract)
            labels = _clipped(labels, lumen)
        return _with_poles(_tidied(labels, crops, kind), background, cell_threshold, poles_out)
    if starts is None and kind == "phase" and closed_end_margin:
        # no empty trench shows where the lumen starts: the boxes' margin does. A start
        # read off the empty trenches is left as read: bounding it by the margin helped
        # defocus (tuning seeds 13-17, 0.80 -> 0.88) but hurt wide trenches (geometry
        # 0.94 -> 0.75), trading the network's length bias under blur for another
        from .threshold import first_cell_row

        starts = min(first_cell_row(closed_end_margin), crops.shape[-2] // 4)
    labels, background = _by_start(model, crops, starts, kind, device, batch_size, extract)
    return _with_poles(_tidied(labels, crops, kind), background, cell_threshold, poles_out)


def _with_poles(labels, background, threshold, poles_out):
    """``labels``, with :func:`~.poles.pole_fractions` of P(cell) = 1 - ``background``
    written to ``poles_out`` (if given; P(cell) is only formed then).

    Rows cleared before the lumen start keep the network's P(cell): a pole cut there
    sees P(cell) above the threshold beyond it and stays whole-pixel."""
    if poles_out is not None:
        from .poles import pole_fractions

        poles_out[...] = pole_fractions(labels, 1.0 - background, threshold)
    return labels


def _tidied(labels, crops, kind):
    """Thin objects dropped; in phase, cells split by the chip's band at the open end
    joined (:mod:`.open_end_bands`, before the next step, which would otherwise take
    the lower cell's piece above a band for a fragment of the cell above); pieces noise
    cut off a cell (low SNR) back to it."""
    labels = drop_thin_objects(labels)
    if kind == "phase":
        labels, _ = join_across_open_end_bands(labels, crops)
    return merge_fragments(labels)


def _by_start(model, crops, starts, kind, device, batch_size, extract):
    """Labels and P(background) of ``crops`` read from row ``starts`` on: one start for
    all, or one per frame."""
    if starts is None or np.ndim(starts) == 0:
        return _segment_from(model, crops, int(starts or 0), kind, device, batch_size, extract)
    # frames grouped by where their lumen starts: each frame's labels depend on
    # that frame alone, however the frames are batched
    out = np.zeros(crops.shape, np.int32)
    background = np.zeros(crops.shape, np.float32)
    for start in np.unique(starts):
        frames = np.flatnonzero(starts == start)
        out[:, frames], background[:, frames] = _segment_from(
            model, crops[:, frames], int(start), kind, device, batch_size, extract)
    return out, background


def _clipped(labels, lumen):
    """``labels`` without the rows before the ``lumen`` start (one, or one per frame of
    (N, T, H, W)): no cell begins in the PDMS; renumbered, slivers left by the cut dropped.

    Under optics it was never trained on (PSF tails: alt_optics) the network
    extends mothers a pixel into the PDMS; the empty trenches show where the
    lumen starts.
    """
    rows = np.arange(labels.shape[-2])
    before = rows[None, :] < np.reshape(lumen, (-1, 1))          # (T or 1, H)
    if not before.any():
        return labels
    mask = before[:, :, None] if labels.ndim == 4 and np.ndim(lumen) else before[0][:, None]
    cleared = np.where(mask, 0, labels)
    if np.array_equal(cleared, labels):
        return labels
    return drop_slivers(relabel_from_closed_end(cleared))


def _lumen_starts(crops, background):
    """First lumen row from the empty-trench reference: one per frame of (N, T, H, W)
    crops with a per-frame reference, else one for all (None: no reference)."""
    from .threshold import lumen_start_row

    if background is None:
        return None
    bg = np.asarray(background)
    cap = crops.shape[-2] // 4
    if crops.ndim == 4 and bg.ndim == 4 and bg.shape[1] == crops.shape[1]:
        return np.array([min(lumen_start_row(bg[:, t]), cap) for t in range(bg.shape[1])])
    return min(lumen_start_row(bg), cap)


def _segment_from(model, crops, start, kind, device, batch_size, extract):
    """Labels and P(background) of ``crops`` read from row ``start`` on (rows before it:
    no cell, P(background) 0, so no pole there is free)."""
    from .outside_frame import flip_crops, leaving_left
    from .scale import zoomed_probabilities

    part = crops[..., start:, :]
    # (N, T, H, W) from the Segment job: one scale per frame, not per block of frames
    scale = frame_scales(part) if part.ndim == 4 and part.shape[0] else None
    *extract, zoom = extract
    # a phase edge trench leaving the frame on the left is shown turned, its strip outside
    # the frame on the right as the network answers it (outside_frame.py). Not in
    # fluorescence, where no side failed: turned, independent 1105 lost F1 0.982 -> 0.968
    turned = leaving_left(part) if kind == "phase" else np.zeros(part.shape[:-2], bool)
    prob = zoomed_probabilities(
        lambda c: predict_probabilities(model, c, kind, device, batch_size, scale),
        flip_crops(part, turned), zoom)
    prob = flip_crops(prob, turned)
    labels = labels_from_probabilities(prob, *extract)
    if not start:
        return labels, prob[0]
    out = np.zeros(crops.shape, labels.dtype)
    out[..., start:, :] = labels
    # no pole at the first row read is free: what lies before it was not seen
    background = np.zeros(crops.shape, np.float32)
    background[..., start:, :] = prob[0]
    return out, background


def _check_params(params: dict) -> None:
    """Called when a Segment job is built: the weights file must look right (clear error
    otherwise; :func:`check_weights_file`)."""
    check_weights_file(params.get("weights"))
    backend = params.get("backend", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    import importlib.util

    needs = {"torch": ("torch", "pip install torch==2.13.0"),
             "onnx": ("onnxruntime", "pip install onnxruntime")}.get(backend)
    if needs and importlib.util.find_spec(needs[0]) is None:
        raise ImportError(f"backend={backend} needs {needs[0]}, which is not installed ({needs[1]})")


def _runtime(params: dict) -> str:
    """What ran the network for these method parameters, with its version (recorded by
    the Segment job with the labels): ``"onnxruntime 1.32.0"`` or ``"torch 2.13.0"``."""
    model, _ = _cached_model(params.get("weights"), params.get("device", "cpu"),
                             params.get("backend", "auto"), params.get("threads"))
    if hasattr(model, "parameters"):
        return f"torch {_require_torch().__version__}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


segment_unet.check_params = _check_params
segment_unet.runtime = _runtime
