"""Training the ``unet`` method: generated crops (domain randomisation) and fine-tuning.

Training examples are trench crops cut from positions of the synthetic
generator, drawn from its scenario families (:mod:`..synthetic.families`:
both lumen polarities, halos, defocus, noise, curved cells, JPEG blocks, ...)
on *tuning* seeds only, so the held-out seeds stay unseen for benchmarks.
Every generated channel is used, phase-like and fluorescence. A lab can
fine-tune on its own corrected labels: containers holding
``segmentation/<name>`` beside ``trench_crops/<channel>``.

Training is deterministic for a seed (fixed thread count, seeded draws).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .torch_model import (CLASSES, _require_torch, build_unet, load_weights, normalise, pad_to,
                          stack_scale)

#: input geometry of the training crops (rows x columns), as DeLTA / napari-mm3
CROP_SHAPE = (256, 32)
#: families whose draws are never trained on, so benchmarks see unseen conditions
HELDOUT_FAMILIES = ("alt_optics", "jpeg", "mixed",   # mixed draws from the other two
                    "magnification")  # measures the resizing to the trained magnification
#: a training family: several of the trained families at once (``mixed`` without the
#: held-out ones), so that combinations such as dark lumens under wide halos are seen
COMBINED = "combined"
#: a training family: ``dark_lumen`` drawn only where its cells are faintest (the
#: PDMS far brighter than the lumen, the lumen darkened most by the halo, narrow
#: trenches): under 1 % of ``dark_lumen``'s draws, where the network merged cells
#: (tuning seeds 473, 742, 815, 993: F1 0.44-0.93)
FAINT_DARK_LUMEN = "dark_lumen_faint"
#: a training family: ``combined`` with the phase image out of focus by a fraction of a
#: micrometre (the defocus term of the transport-of-intensity equation: a bright rim
#: inside or outside every cell edge, ``SyntheticConfig.phase_focus_rim_px2``), under
#: which the shipped weights' phase masks come out a pixel narrow all round. Not in the
#: shipped weights' training (docs/segmentation.md, "Out-of-focus rims")
FOCUS_RIM = "focus_rim"
#: range of ``phase_focus_rim_px2`` (px²) drawn for :data:`FOCUS_RIM` (0.25 µm of
#: defocus at 0.55 µm and 0.1 µm pixels: 1.1 px²)
FOCUS_RIM_RANGE = (-1.5, 4.0)
TRAINING_FAMILIES = (COMBINED, FAINT_DARK_LUMEN, FOCUS_RIM)


def _faint_dark_lumen(seed: int) -> dict:
    """``sample_config`` overrides of :data:`FAINT_DARK_LUMEN` for ``seed``."""
    rng = np.random.default_rng([int(seed), 11])
    width = float(rng.uniform(12.0, 14.0))
    return dict(phase_pdms_contrast=float(rng.uniform(1.6, 2.0)),
                phase_halo_fraction=float(rng.uniform(0.75, 0.9)),
                trench_width_px=width, cell_width_px=width - float(rng.uniform(3.0, 4.5)))


DEFAULT_ARCH = {"channels": [12, 24, 48], "fold": 2, "batch_norm": False}


#: label of padding rows and columns: no class, ignored by the loss and the metrics
PAD = -1


def targets(labels) -> np.ndarray:
    """Per-pixel classes of label crops ``(..., H, W)``: 0 background, 1 interior, 2 boundary.

    A boundary pixel is a cell pixel with a 4-neighbour of another label
    (background or another cell): the line that separates touching cells.
    Padding (:data:`PAD`) becomes -100, the class cross-entropy ignores.
    """
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    for axis in (-1, -2):
        diff = np.diff(lab, axis=axis) != 0
        lo = [slice(None)] * lab.ndim
        hi = [slice(None)] * lab.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    out = (lab > 0).astype(np.int8)
    out[(lab > 0) & edge] = 2
    out[lab == PAD] = -100
    return out


def fit_shape(crops, labels, shape=CROP_SHAPE):
    """Crops and labels ``(M, H, W)`` padded (or cut) to ``shape``, as at inference.

    Crops are reflect-padded like the network's input; the labels of padding
    are :data:`PAD`, so neither the loss nor the metrics count them.
    """
    h, w = shape
    crops, labels = np.asarray(crops)[:, :h, :w], np.asarray(labels)[:, :h, :w]
    pad = ((0, 0), (0, h - crops.shape[1]), (0, w - crops.shape[2]))
    mode = "reflect" if crops.shape[1] > pad[1][1] and crops.shape[2] > pad[2][1] else "edge"
    return np.pad(crops, pad, mode=mode), np.pad(labels, pad, constant_values=PAD)


def scored(truth, pred):
    """``truth`` and ``pred`` with padding (:data:`PAD` in ``truth``) set to background."""
    pad = np.asarray(truth) == PAD
    return np.where(pad, 0, truth), np.where(pad, 0, pred)


#: pixels before the closed end where a generated training crop may start (uniform)
BOX_MARGIN = (0.0, 3.0)


def generated_examples(families, seed_list, *, height=512, width=256, n_timepoints=3, progress=None,
                       box_margin=None):
    """Crops, labels and kinds cut from generated positions.

    Parameters
    ----------
    families : sequence of str
        Scenario families; position ``i`` uses ``families[i % len(families)]``.
        :data:`COMBINED` draws several of the others at once,
        :data:`FAINT_DARK_LUMEN` the hardest corner of ``dark_lumen``, :data:`FOCUS_RIM`
        ``combined`` out of focus.
    seed_list : sequence of int
        One generator seed per position (tuning seeds for training).
    height, width, n_timepoints : frame size and frames per position.
    progress : callable, optional
        Called once per position (e.g. a tqdm ``update``).
    box_margin : (float, float), optional
        Default :data:`BOX_MARGIN`. Every crop starts a random distance in this range (pixels, uniform)
        before its trench's closed end, as detected boxes do (they keep a margin
        of PDMS and their end is measured to a fraction of a pixel); the labels
        move with it. The network then finds the closed end itself, wherever in
        the first rows it lies. ``(0, 0)``: every crop starts at the closed end.

    Returns
    -------
    crops : float32 (M, 256, 32)
        Divided by the :func:`.torch_model.stack_scale` of their position and channel.
    labels : int16 (M, 256, 32), :data:`PAD` in padding
    kinds : (M,) str
    """
    from ..geometry import crop_box
    from ..synthetic import simulate_position

    crops, labels, kinds = [], [], []
    for i, seed in enumerate(seed_list):
        try:
            cfg = training_config(families[i % len(families)], seed, families, height=height,
                                  width=width, n_timepoints=n_timepoints, n_positions=1)
            pos = simulate_position(cfg, 0)
        except ValueError:  # a layout the generator cannot render at this size
            if progress:
                progress()
            continue
        rng = np.random.default_rng([int(seed), 7])
        margins = rng.uniform(*(BOX_MARGIN if box_margin is None else box_margin),
                              len(pos.trenches))
        truth = shifted_labels(pos.trench_labels, margins)
        truth = truth.reshape(-1, *truth.shape[-2:])
        for ch, movie in pos.movies.items():
            c = np.stack([[crop_box(movie[t], r.x_center, r.y_closed - r.direction * m,
                                    r.direction, int(r.height), int(r.width), r.angle_deg,
                                    pos.drift[t])
                           for t in range(movie.shape[0])]
                          for r, m in zip(pos.trenches.itertuples(), margins)])
            # Scaled as one stack, as Segment passes all trenches of a position at once.
            c = c.reshape(truth.shape).astype(np.float32)
            c, lab = fit_shape(c / stack_scale(c), truth)
            crops.append(c)
            labels.append(lab)
            kinds += ["phase" if cfg.is_phase(ch) else "fluorescence"] * len(c)
        if progress:
            progress()
    if not crops:
        raise ValueError("the generator produced no training crops")
    return np.concatenate(crops), np.concatenate(labels).astype(np.int16), np.array(kinds)


def training_config(family, seed, families, **size):
    """The generator's configuration of a training position.

    ``family``: a scenario family or a training family (:data:`TRAINING_FAMILIES`);
    the mixing ones draw from the scenario families among ``families``. ``size``:
    ``sample_config``'s frame size and counts.
    """
    from ..synthetic.families import sample_config

    extra = {}
    if family in (COMBINED, FOCUS_RIM):
        extra["mixed_of"] = [f for f in families if f not in TRAINING_FAMILIES]
        if family == FOCUS_RIM:
            rng = np.random.default_rng([int(seed), 13])
            extra["phase_focus_rim_px2"] = float(rng.uniform(*FOCUS_RIM_RANGE))
        family = "mixed"
    elif family == FAINT_DARK_LUMEN:
        family, extra = "dark_lumen", _faint_dark_lumen(seed)
    return sample_config(family, int(seed), **size, **extra)


def shifted_labels(trench_labels, margins) -> np.ndarray:
    """Labels ``(n, T, H, W)`` of boxes that start ``margins[i]`` pixels before trench
    ``i``'s closed end: row ``r`` takes the true row nearest ``r - margin`` (0 before the end).

    Examples
    --------
    >>> lab = np.arange(1, 5).reshape(1, 1, 4, 1)
    >>> shifted_labels(lab, [1.4])[0, 0, :, 0]
    array([0, 1, 2, 3])
    """
    lab = np.asarray(trench_labels)
    h = lab.shape[-2]
    out = np.zeros_like(lab)
    for i, m in enumerate(np.asarray(margins, float)):
        src = np.floor(np.arange(h) - m + 0.5).astype(np.intp)
        ok = (src >= 0) & (src < h)
        out[i][..., ok, :] = lab[i][..., src[ok], :]
    return out


def container_examples(folder, name: str = "cells", channel: str = ""):
    """Crops, labels and kinds from a folder of containers with corrected labels.

    Every container (``*.h5``, ``*.n5``, ``*.zarr``) must hold
    ``segmentation/<name>`` and the crops it was made from; the channel is
    ``channel`` or the one recorded by Segment. Crops without any cell are kept
    (they teach what is not a cell).
    """
    from ...io import open_file, read_attrs
    from ..layout import resolve_channel
    from ..layout import CROPS, SEGMENTATION

    paths = sorted(p for ext in (".h5", ".n5", ".zarr") for p in Path(folder).glob(f"*{ext}"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no containers (*.h5, *.n5, *.zarr) to fine-tune on")
    crops, labels, kinds = [], [], []
    for path in paths:
        with open_file(path, "r") as f:
            key = f"{SEGMENTATION}/{name}"
            if key not in f:
                raise ValueError(f"{path}: no {key!r} to fine-tune on")
            seg = f[key]
            recorded = read_attrs(seg).get("channel", "")
            ch_key, kind = resolve_channel(f, channel or recorded)
            if f"{CROPS}/{ch_key}" not in f:
                raise ValueError(f"{path}: no {CROPS}/{ch_key!r} beside {key!r}")
            lab, img = seg[:], f[f"{CROPS}/{ch_key}"][:]
        n_t = min(lab.shape[1], img.shape[1])
        lab, img = lab[:, :n_t], img[:, :n_t]
        if lab.shape != img.shape:
            raise ValueError(f"{path}: {key} has shape {lab.shape}, the crops {img.shape}")
        img = img.astype(np.float32)
        c, l_ = fit_shape(img.reshape(-1, *img.shape[-2:]) / stack_scale(img),
                          lab.reshape(-1, *lab.shape[-2:]).astype(np.int32))
        crops.append(c)
        labels.append(l_)
        kinds += [kind] * len(c)
    return np.concatenate(crops), np.concatenate(labels), np.array(kinds)


def pole_rows(labels) -> np.ndarray:
    """Pixels of label crops ``(..., H, W)`` next to a change of label along the trench
    (the rows on both sides of a cell's pole, or of the line between two cells); the
    edge of the padding (:data:`PAD`, :func:`fit_shape`) is none.

    >>> pole_rows(np.array([[0], [1], [1], [1], [2], [0], [-1]]))[:, 0].astype(int)
    array([1, 1, 0, 1, 1, 1, 0])
    """
    lab = np.asarray(labels)
    change = (np.diff(lab, axis=-2) != 0) & (lab[..., :-1, :] != PAD) & (lab[..., 1:, :] != PAD)
    out = np.zeros(lab.shape, bool)
    out[..., :-1, :] |= change
    out[..., 1:, :] |= change
    return out


def _batch(crops, classes, kinds, idx, rng, rows=None, empty=None, poles=None):
    """Network input and targets of crops ``idx``: windows of ``rows`` rows, half of
    them at row 0 (the network is convolutional; short windows make a step cheaper), random
    left-right flips. Crops come scaled by their stack's scale; each window is centred.
    A quarter of the ``empty`` crops (no cell) are scaled by their own spread, as
    in a stack of only empty trenches, where the noise gets the scale of cells.
    With ``poles`` (:func:`pole_rows` of the crops), their windows are returned third."""
    h = crops.shape[1]
    rows = min(int(rows or h), h)
    # Half the windows start at the closed end: at inference it is always at row 0.
    start = rng.integers(0, h - rows + 1, len(idx)) * (rng.random(len(idx)) < 0.5)
    own = (empty[idx] if empty is not None else np.zeros(len(idx), bool)) & (rng.random(len(idx)) < 0.25)
    x = np.concatenate([normalise(crops[i, s:s + rows][None], kinds[i], None if o else 1.0)
                        for i, s, o in zip(idx, start, own)])
    y = np.stack([classes[i, s:s + rows] for i, s in zip(idx, start)]).astype(np.int64)
    flip = rng.random(len(idx)) < 0.5
    x[flip], y[flip] = x[flip][..., ::-1], y[flip][..., ::-1]
    if poles is None:
        return np.ascontiguousarray(x), np.ascontiguousarray(y)
    p = np.stack([poles[i, s:s + rows] for i, s in zip(idx, start)])
    p[flip] = p[flip][..., ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(p)


def train(crops, labels, kinds, *, steps=1200, batch_size=16, rows=128, lr=2e-3, seed=0, threads=2,
          init=None, arch=None, boundary_weight=2.0, pole_weight=1.0, progress=True,
          log_every=50):
    """Train (or fine-tune from ``init``) the U-Net on example crops.

    Parameters
    ----------
    crops, labels, kinds : arrays of :func:`generated_examples` / :func:`container_examples`
    steps, batch_size, lr : optimisation (Adam, one-cycle learning rate)
    rows : int
        Rows of the random window taken from each crop per step.
    seed : int
        Seeds the initial weights and the batch draws: same seed, same weights.
    threads : int
        Torch threads (fixed, so the result does not depend on the machine's cores).
    init : path, optional
        Weights to start from (fine-tuning); their architecture is kept.
    boundary_weight : float
        Loss weight of boundary pixels (they separate touching cells).
    pole_weight : float
        Further factor on the loss of the pixels on both sides of a change of label
        along the trench (:func:`pole_rows`: the cells' poles, where their lengths are
        read); 1 weighs them as any other pixel of their class.

    Returns
    -------
    model, config (architecture dict), losses (per step)
    """
    if not pole_weight > 0:
        raise ValueError(f"pole_weight must be positive (1: the poles weigh as any pixel), "
                         f"got {pole_weight}")
    torch = _require_torch()
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    if init is not None:
        config, state, _ = load_weights(init)
        model = build_unet(**config)
        model.load_state_dict(state)
    else:
        config = dict(arch or DEFAULT_ARCH)
        model = build_unet(**config)
    classes = targets(labels)
    empty = (classes <= 0).all(axis=(1, 2))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(int(steps), 1),
                                                pct_start=0.1 if init is None else 0.01)
    weight = torch.tensor([1.0, 1.0, float(boundary_weight)])
    poles = pole_rows(labels) if pole_weight != 1.0 else None
    losses = []
    bar = tqdm(range(int(steps)), desc="train-segmenter", disable=not progress, mininterval=1.0)
    for step in bar:
        idx = rng.integers(0, len(crops), batch_size)
        x, y, *p = _batch(crops, classes, kinds, idx, rng, rows, empty, poles)
        x = torch.from_numpy(pad_to(x, 8))
        logits = model(x)[..., :y.shape[-2], :y.shape[-1]]
        if poles is None:
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), weight=weight)
        else:
            loss = _pole_weighted_loss(torch, logits, y, p[0], weight, pole_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % log_every == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
    model.eval()
    return model, config, np.array(losses)


def _pole_weighted_loss(torch, logits, y, poles, class_weight, pole_weight):
    """Cross-entropy with each pixel weighted by its class's weight, times ``pole_weight``
    on pole rows; normalised by the weights' sum as torch's class-weighted mean is (so
    ``pole_weight`` 1 gives that mean)."""
    target = torch.from_numpy(y)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none",
                                                  ignore_index=-100)
    counted = target != -100
    w = class_weight[target.clamp(min=0)] * counted
    w = w * torch.where(torch.from_numpy(poles), float(pole_weight), 1.0)
    return (per_pixel * w).sum() / w.sum().clamp(min=1e-12)


def mean_loss(model, crops, labels, kinds, boundary_weight=2.0, batch_size=64) -> float:
    """Mean training loss (weighted cross-entropy) of ``model`` over whole crops, without flips."""
    torch = _require_torch()
    classes = targets(labels)
    weight = torch.tensor([1.0, 1.0, float(boundary_weight)])
    total, n = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = np.concatenate([normalise(c[None], k, 1.0) for c, k in
                                zip(crops[i:i + batch_size], kinds[i:i + batch_size])])
            y = torch.from_numpy(classes[i:i + batch_size].astype(np.int64))
            logits = model(torch.from_numpy(pad_to(x, 8)))[..., :y.shape[-2], :y.shape[-1]]
            total += float(torch.nn.functional.cross_entropy(logits, y, weight=weight)) * len(y)
            n += len(y)
    return total / n


def evaluate_model(model, crops, labels, kinds, **params) -> dict:
    """F1 (IoU > 0.5), mean IoU and exact/±1 count agreement per kind on example crops."""
    from .evaluate import match_labels
    from .torch_model import labels_from_probabilities, predict_probabilities

    out = {}
    for kind in np.unique(kinds):
        sel = kinds == kind
        pred = labels_from_probabilities(predict_probabilities(model, crops[sel], kind, scale=1.0),
                                         **params)
        truth, pred = scored(labels[sel], pred)
        m = match_labels(truth, pred)
        n_true = np.array([len(np.unique(c)) - 1 for c in truth])
        n_pred = pred.reshape(len(pred), -1).max(axis=1)
        out[str(kind)] = {"crops": int(sel.sum()), "cells": m.n_true, "f1": round(m.f1, 4),
                          "mean_iou": round(m.mean_iou, 4),
                          "count_within_1": round(float(np.mean(np.abs(n_pred - n_true) <= 1)), 4)}
    return out


def write_model_card(path, info: dict) -> Path:
    """``MODEL_CARD.md`` beside the weights ``path``: data, generator version, metrics, command."""
    from ..._version import __version__

    path = Path(path)
    card = path.with_name("MODEL_CARD.md")
    metrics = info.get("validation", {})
    rows = "\n".join(f"| {k} | {v['crops']} | {v['cells']} | {v['f1']:.4f} | {v['mean_iou']:.4f} | "
                     f"{v['count_within_1']:.4f} |" for k, v in metrics.items())
    card.write_text(f"""# U-Net trench segmenter: `{path.name}`

Written by `batchlib train-segmenter` on {info['date']} (batchlib {__version__},
torch {info['torch']}), in {info['seconds']:.0f} s on {info['threads']} CPU thread(s).

Command: `{info['command']}`

## Model
A 3-level U-Net (channels {info['config']['channels']}) on the crop folded
{info['config']['fold']} x {info['config']['fold']} (pixel unshuffle); inputs: the crop centred and divided
by its stack's scale (phase inverted) and a kind flag; outputs per pixel: {', '.join(CLASSES)}.
{info['n_params']} parameters ({path.stat().st_size / 1e6:.2f} MB). Crops are
reflect-padded to multiples of 8; trained on {CROP_SHAPE[0]} x {CROP_SHAPE[1]}.
Instances: `torch_model.labels_from_probabilities` (the default method's splitting).
`{path.with_suffix(".onnx").name}` beside the weights is the same network for ONNX
Runtime (what Segment runs by default; `onnx_model.export_onnx`, which records the
SHA-256 of the `.pt` it came from).

## Training data
{info['data']}

Steps {info['steps']}, batch {info['batch_size']}, Adam (one-cycle learning rate, max
{info['lr']}), seed {info['seed']}; final loss (mean of the last 50 steps) {info['final_loss']:.4f}.

## Validation (held-out generator seeds of the training families)
| kind | crops | cells | F1 (IoU > 0.5) | mean IoU | count within 1 |
|---|---|---|---|---|---|
{rows}

Per-family figures against the classical method: `docs/segmentation.md`
(`python benchmarks/bench_unet.py`).

## Limits
Trained on generated data only: 32-px-wide crops with a 10-20 px lumen and
cells about 6-15 px wide, trench axis vertical, closed end within the first
rows (the range of box starts above). Crops of
another scale should be resized first, or the model fine-tuned on a few
corrected crops (`batchlib train-segmenter --finetune FOLDER`).
""")
    return card
