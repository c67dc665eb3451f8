"""How deep the dips between touching fluorescent cells are: a warning sign.

Touching cells are told apart by the dip in intensity where one ends and the
next begins. Blur and noise together flatten those dips below the noise, and
then no method can see every division: on generated data (mixed, tuning
seeds 0-23, 512^2, 4 frames) the shipped U-Net merged cells (F1 0.89-0.94)
in the three fluorescence positions whose dips between the cells it *did*
separate stood 3.0-5.1 times the noise of the trench's intensity profile,
while every position segmented with F1 1.000 (and every one of the defocus,
low_snr, curved_cells, nominal, dark_lumen and alt_optics seeds checked)
had 6.1 or more. The cells' contrast against the background
(:mod:`.contrast`) did not tell those positions apart: their cells were
bright enough, only blurred into each other. :func:`boundary_contrast`
measures the dips; Segment warns below :data:`LOW_BOUNDARY`.

A focus slip blurs one frame only, and a median over the frames hides it:
held-out mixed 10169 (768², 8 frames) stood 6.3 over its frames, but 4.2 and
4.5 in frames 4 and 7, where the U-Net merged a cell in most trenches (F1 of
the position 0.945, nothing warned). :func:`frame_boundary_contrast` gives
the figure per frame; Segment names the frames below :data:`LOW_BOUNDARY`
that also fall under :data:`SLIP_SHARE` of the position's median. On tuning
seeds 0-7 of mixed, defocus, low_snr, curved_cells and nominal (true
geometry, 40 positions) that picked only frames segmented with F1 0.62-0.73
(mixed 7, already warned by its median); no frame of a position segmented
with F1 >= 0.97 fell under it (the closest: 0.81 of its median).
"""
from __future__ import annotations

import numpy as np

from .fragments import row_spans

__all__ = ["boundary_contrast", "frame_boundary_contrast", "LOW_BOUNDARY", "SLIP_SHARE"]

#: Below this dip-to-noise ratio Segment warns (see the module docstring).
LOW_BOUNDARY = 6.0
#: A frame whose dips stand below this share of the position's median (and below
#: :data:`LOW_BOUNDARY`) is named: one frame blurred more than the others.
SLIP_SHARE = 0.75


def boundary_contrast(crops, labels, min_rows: int = 3, max_crops: int = 400) -> float:
    """Median depth of the dips between neighbouring cells, over the profile's noise.

    Parameters
    ----------
    crops : array_like, shape (..., H, W)
        Fluorescence crops, trench axis vertical.
    labels : array_like, same shape
        Cells numbered 1..k from the closed end.
    min_rows : int
        Cells spanning fewer rows are left out of the pairs.
    max_crops : int
        At most this many crops, evenly spaced, are measured (a median needs
        no more; 0.27 ms a crop).

    Returns
    -------
    float
        Over every pair of neighbouring cells of every crop: the dimmer
        cell's median intensity minus the lowest intensity between them
        (rows from one before the boundary to one after it), divided by the
        noise of that crop's intensity profile (the mean across the columns
        the cells occupy; noise: robust standard deviation of its second
        differences over sqrt(6)); the median of those. NaN without two
        neighbouring cells.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.zeros((8, 64, 12), int)
    >>> labels[:, 4:24, 3:9], labels[:, 26:46, 3:9] = 1, 2
    >>> sharp = 100 + 50.0 * (labels > 0) + rng.normal(0, 5, labels.shape)
    >>> bool(boundary_contrast(sharp, labels) > 20)
    True
    >>> from scipy import ndimage
    >>> blurred = ndimage.gaussian_filter1d(100 + 50.0 * (labels > 0), 4, axis=1)
    >>> bool(boundary_contrast(blurred + rng.normal(0, 5, labels.shape), labels) < 6)
    True
    >>> side = np.zeros((64, 12), int); side[4:30, 1:6], side[10:40, 6:11] = 1, 2
    >>> boundary_contrast(sharp[0], side)          # cells side by side: no pair to judge
    nan
    """
    img = np.asarray(crops, np.float32)
    lab = np.asarray(labels)
    if img.shape != lab.shape or img.ndim < 2:
        raise ValueError(f"crops {img.shape} and labels {lab.shape} must have one shape (..., H, W)")
    h, w = img.shape[-2:]
    img, lab = img.reshape(-1, h, w), lab.reshape(-1, h, w)
    if len(img) > max_crops:
        pick = np.linspace(0, len(img) - 1, max_crops).round().astype(int)
        img, lab = img[pick], lab[pick]
    ratios = [r for crop, cells in zip(img, lab) for r in _dip_ratios(crop, cells, min_rows)]
    return float(np.median(ratios)) if ratios else float("nan")


def frame_boundary_contrast(crops, labels, min_rows: int = 3, max_crops: int = 400,
                            min_pairs: int = 10) -> tuple:
    """:func:`boundary_contrast` of every frame of ``(N, T, H, W)`` crops and labels,
    and of all of them together.

    Up to ``max_crops // T`` trenches (at least 8), evenly spaced, are measured
    in every frame; a frame with fewer than ``min_pairs`` neighbouring cells
    gives NaN. Returns ``(per_frame, overall)``: an array of shape ``(T,)`` and
    the median over every pair measured (NaN without one), one measurement for
    both.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.zeros((6, 3, 64, 12), int)
    >>> labels[..., 4:24, 3:9], labels[..., 26:46, 3:9] = 1, 2
    >>> crops = 100 + 50.0 * (labels > 0)
    >>> from scipy import ndimage
    >>> crops[:, 1] = ndimage.gaussian_filter1d(crops[:, 1], 4, axis=-2)   # frame 1 blurred
    >>> crops += rng.normal(0, 5, crops.shape)
    >>> per_frame, overall = frame_boundary_contrast(crops, labels, min_pairs=3)
    >>> per_frame < 6, bool(overall > 6)
    (array([False,  True, False]), True)
    """
    img = np.asarray(crops, np.float32)
    lab = np.asarray(labels)
    if img.shape != lab.shape or img.ndim != 4:
        raise ValueError(f"crops {img.shape} and labels {lab.shape} must have one shape "
                         "(N, T, H, W)")
    n, n_t = img.shape[:2]
    pick = np.unique(np.linspace(0, n - 1, min(n, max(8, max_crops // max(n_t, 1))))
                     .round().astype(int)) if n else np.zeros(0, int)
    out, pooled = np.full(n_t, np.nan), []
    for t in range(n_t):
        ratios = [r for i in pick for r in _dip_ratios(img[i, t], lab[i, t], min_rows)]
        pooled += ratios
        if len(ratios) >= min_pairs:
            out[t] = float(np.median(ratios))
    return out, float(np.median(pooled)) if pooled else float("nan")


def _dip_ratios(crop, cells, min_rows) -> list:
    """The dip-to-noise ratio of every pair of neighbouring cells of one crop."""
    top, bot = row_spans(cells)
    keep = (top >= 0) & (bot - top + 1 >= min_rows)
    if keep.sum() < 2:
        return []
    columns = np.flatnonzero((cells > 0).any(axis=0))
    profile = crop[:, columns[0]:columns[-1] + 1].mean(axis=1)
    d2 = np.diff(profile, 2)
    noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / np.sqrt(6.0)
    noise = max(noise, 1e-6 * (float(np.abs(profile).max()) + 1.0))
    ratios = []
    for i in range(len(top) - 1):
        if not (keep[i] and keep[i + 1]) or top[i + 1] < bot[i] - 1:
            continue   # side by side rather than end to end: no dip along the trench
        between = profile[max(bot[i] - 1, 0):max(top[i + 1], bot[i]) + 2]
        dimmer = min(np.median(profile[top[i]:bot[i] + 1]),
                     np.median(profile[top[i + 1]:bot[i + 1] + 1]))
        ratios.append((dimmer - float(between.min())) / noise)
    return ratios
