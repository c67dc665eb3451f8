"""Per trench-frame summaries: cell count, focus score, channel means."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import CellIndex, as_nt, check_channels


def focus_score(crops) -> np.ndarray:
    """Normalised variance of the Laplacian of each 2-D crop.

    Dividing by the squared mean makes the score independent of exposure and
    bleaching, so frames of one trench can be compared over time; higher is
    sharper.

    Parameters
    ----------
    crops : ndarray, shape (..., H, W)

    Returns
    -------
    ndarray, shape (...)
    """
    a = np.asarray(crops, dtype=np.float32)
    lap = (a[..., :-2, 1:-1] + a[..., 2:, 1:-1] + a[..., 1:-1, :-2] + a[..., 1:-1, 2:]
           - 4.0 * a[..., 1:-1, 1:-1])
    mean = a.mean(axis=(-2, -1), dtype=np.float64)
    var = lap.var(axis=(-2, -1), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean != 0, var / (mean * mean), np.nan)


def measure_trench_frames(labels, intensities=None, focus_channel=None) -> pd.DataFrame:
    """One row per trench and frame.

    Parameters
    ----------
    labels : ndarray of int, shape (N, T, H, W)
        (or ``(T, H, W)`` / ``(H, W)``).
    intensities : dict of str to ndarray, optional
        Channel name -> stack of the labels' shape.
    focus_channel : str, optional
        Channel whose :func:`focus_score` is reported as ``focus``
        (NaN column when omitted).

    Returns
    -------
    pandas.DataFrame
        Columns ``n, t, cell_count, focus`` and ``<ch>_mean`` (mean of the
        whole crop) for each channel, sorted by ``n, t``.
    """
    lab = as_nt(labels)
    channels = check_channels(intensities, lab.shape)
    n_tr, n_t = lab.shape[:2]
    idx = CellIndex(lab)
    crop = np.arange(n_tr * n_t)
    data = {
        "n": (crop // n_t).astype(np.int32),
        "t": (crop % n_t).astype(np.int32),
        "cell_count": idx.cells_per_crop.astype(np.int32),
    }
    if focus_channel is not None:
        if focus_channel not in channels:
            raise KeyError(f"focus_channel {focus_channel!r} not in intensities {sorted(channels)}")
        data["focus"] = focus_score(channels[focus_channel]).reshape(-1)
    else:
        data["focus"] = np.full(crop.size, np.nan)
    for ch, arr in channels.items():
        data[f"{ch}_mean"] = arr.reshape(n_tr * n_t, -1).mean(axis=1, dtype=np.float64)
    return pd.DataFrame(data)
