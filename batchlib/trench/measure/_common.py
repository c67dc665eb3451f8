"""Shape handling and the stack-wide cell index shared by the measurements."""
from __future__ import annotations

import numpy as np


def as_nt(array: np.ndarray, name: str = "labels") -> np.ndarray:
    """View ``(H, W)``, ``(T, H, W)`` or ``(N, T, H, W)`` as ``(N, T, H, W)``."""
    array = np.asarray(array)
    if not 2 <= array.ndim <= 4:
        raise ValueError(f"{name} must have shape (H, W), (T, H, W) or (N, T, H, W); got {array.shape}")
    return array.reshape((1,) * (4 - array.ndim) + array.shape)


def check_channels(intensities, shape) -> dict[str, np.ndarray]:
    """Channel arrays as ``(N, T, H, W)``, each of the labels' shape."""
    out = {}
    for name, arr in (intensities or {}).items():
        arr = as_nt(arr, f"intensities[{name!r}]")
        if arr.shape != shape:
            raise ValueError(f"intensities[{name!r}] has shape {arr.shape}, labels have {shape}")
        out[str(name)] = arr
    return out


class CellIndex:
    """Every labelled pixel of a stack, grouped by cell, in one flat index.

    A cell is a ``(crop, label)`` pair; giving each crop a label offset turns the
    whole stack into one label image, so that every per-cell reduction is a
    single ``bincount`` over the labelled pixels instead of a loop over crops.

    Attributes
    ----------
    flat_idx : int64 (P,)   flat ``(M, H, W)`` index of each labelled pixel
    gid : int64 (P,)        compact cell id ``0..n_cells-1`` of each pixel
    crop, label : (n_cells,) crop index ``n * T + t`` and label of each cell
    area : int64 (n_cells,)
    """

    def __init__(self, labels_nt: np.ndarray):
        self.shape = labels_nt.shape
        n_crops = self.shape[0] * self.shape[1]
        flat = labels_nt.reshape(-1)
        self.flat_idx = np.flatnonzero(flat)
        lab = flat[self.flat_idx].astype(np.int64)
        if lab.size and lab.min() < 0:
            raise ValueError("labels must be non-negative")
        n_lab = int(lab.max()) + 1 if lab.size else 1
        crop = self.flat_idx // (self.shape[2] * self.shape[3])
        key = crop * n_lab + lab
        if n_crops * n_lab <= max(8 * key.size, 1 << 22):
            counts = np.bincount(key, minlength=n_crops * n_lab)
            present = np.flatnonzero(counts)
            remap = np.full(counts.size, -1, np.int64)
            remap[present] = np.arange(present.size)
            self.gid = remap[key]
            counts = counts[present]
        else:  # sparse label values (e.g. ids unique over the stack): sort instead
            present, self.gid = np.unique(key, return_inverse=True)
            counts = np.bincount(self.gid, minlength=present.size)
        self.n_cells = present.size
        self.crop = present // n_lab
        self.label = present % n_lab
        self.area = counts
        self.cells_per_crop = np.bincount(self.crop, minlength=n_crops)

    def sum(self, weights) -> np.ndarray:
        return np.bincount(self.gid, weights=weights, minlength=self.n_cells)

    def rows_cols(self):
        h, w = self.shape[2], self.shape[3]
        return (self.flat_idx // w) % h, self.flat_idx % w
