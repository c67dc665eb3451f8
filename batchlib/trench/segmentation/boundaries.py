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
"""
from __future__ import annotations

import numpy as np

from .fragments import row_spans

__all__ = ["boundary_contrast", "LOW_BOUNDARY"]

#: Below this dip-to-noise ratio Segment warns (see the module docstring).
LOW_BOUNDARY = 6.0


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
    ratios = []
    for crop, cells in zip(img, lab):
        top, bot = row_spans(cells)
        keep = (top >= 0) & (bot - top + 1 >= min_rows)
        if keep.sum() < 2:
            continue
        columns = np.flatnonzero((cells > 0).any(axis=0))
        profile = crop[:, columns[0]:columns[-1] + 1].mean(axis=1)
        d2 = np.diff(profile, 2)
        noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / np.sqrt(6.0)
        noise = max(noise, 1e-6 * (float(np.abs(profile).max()) + 1.0))
        for i in range(len(top) - 1):
            if not (keep[i] and keep[i + 1]) or top[i + 1] < bot[i] - 1:
                continue   # side by side rather than end to end: no dip along the trench
            between = profile[max(bot[i] - 1, 0):max(top[i + 1], bot[i]) + 2]
            dimmer = min(np.median(profile[top[i]:bot[i] + 1]),
                         np.median(profile[top[i + 1]:bot[i + 1] + 1]))
            ratios.append((dimmer - float(between.min())) / noise)
    return float(np.median(ratios)) if ratios else float("nan")
