"""Instance matching of predicted against true labels, for tests and benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Matching:
    """Result of :func:`match_labels`.

    ``crop``, ``true_label``, ``pred_label`` and ``iou`` describe the matched
    pairs (one row each); ``n_true`` and ``n_pred`` count all objects.
    """

    crop: np.ndarray
    true_label: np.ndarray
    pred_label: np.ndarray
    iou: np.ndarray
    n_true: int
    n_pred: int

    @property
    def tp(self) -> int:
        return int(self.iou.size)

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        denom = self.n_true + self.n_pred
        return 2.0 * self.tp / denom if denom else 1.0

    @property
    def mean_iou(self) -> float:
        return float(self.iou.mean()) if self.iou.size else float("nan")


def match_labels(true, pred, threshold: float = 0.5) -> Matching:
    """Match objects of every 2-D crop of ``true`` and ``pred`` (same shape) by IoU.

    With ``threshold >= 0.5`` a pair is unique, so matching is a vectorised
    contingency count over the whole stack (no assignment problem).
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"shapes differ: {true.shape} vs {pred.shape}")
    if threshold < 0.5:
        raise ValueError("threshold must be >= 0.5 for a unique matching")
    h, w = true.shape[-2:]
    t, p = true.reshape(-1).astype(np.int64), pred.reshape(-1).astype(np.int64)
    lt, lp = int(t.max(initial=0)) + 1, int(p.max(initial=0)) + 1
    crop = np.arange(t.size) // (h * w)
    key_t, key_p = crop * lt + t, crop * lp + p
    n_crops = t.size // (h * w) if h * w else 0
    area_t = np.bincount(key_t[t > 0], minlength=n_crops * lt)
    area_p = np.bincount(key_p[p > 0], minlength=n_crops * lp)
    both = (t > 0) & (p > 0)
    keys, inter = np.unique((crop[both] * lt + t[both]) * lp + p[both], return_counts=True)
    kt, kp = keys // lp, (keys // lp // lt) * lp + keys % lp
    iou = inter / (area_t[kt] + area_p[kp] - inter)
    ok = iou > threshold if threshold == 0.5 else iou >= threshold
    return Matching(crop=kt[ok] // lt, true_label=kt[ok] % lt, pred_label=kp[ok] % lp, iou=iou[ok],
                    n_true=int(np.count_nonzero(area_t)), n_pred=int(np.count_nonzero(area_p)))


def rod_profile(labels) -> np.ndarray:
    """Render label stacks ``(T, H, W)`` as rods: each cell's thickness, in [0, 1].

    From the distance ``d`` of a pixel to its own cell's edge and the cell's
    half-width ``r`` (its largest ``d``): ``sqrt(1 - (1 - d / r)^2)``, so poles
    and the contact between touching cells are dimmer, as in real
    fluorescence projections. Used to test on real label stacks, which come
    without intensities.
    """
    labels = np.asarray(labels).astype(np.int64)
    inside = labels > 0
    inner = inside & (ndimage.minimum_filter(labels, size=(1, 3, 3)) == labels)
    inner &= ndimage.maximum_filter(labels, size=(1, 3, 3)) == labels
    d = ndimage.distance_transform_edt(inner, sampling=(1e6, 1, 1)) + 0.5 * inside
    key = np.arange(len(labels))[:, None, None] * (labels.max() + 1) + labels
    r = np.zeros(key.max() + 1)
    np.maximum.at(r, key[inside], d[inside])
    rr = np.maximum(r[key], 1.0)
    return np.where(inside, np.sqrt(np.clip(1 - (1 - np.minimum(d, rr) / rr) ** 2, 0, 1)), 0)
