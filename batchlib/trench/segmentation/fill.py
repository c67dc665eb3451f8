"""How much of the trenches the segmented cells fill: a warning sign.

Cells in a mother machine grow until they fill their trench and are pushed
out of its open end, so the cells found in a trench cover most of its
length: 0.92-0.97 of the crop's rows on generated positions segmented well,
0.59-0.82 on the real label stacks in ``../shared/data``. A segmentation that
finds the mother but misses the cells below it covers far less (0.10 on
held-out mixed seed 10023, phase: F1 0.08, which no other check flagged).
"""
from __future__ import annotations

import numpy as np

__all__ = ["trench_fill", "LOW_FILL"]

#: Below this median fill Segment warns (see the module docstring).
LOW_FILL = 0.3


def trench_fill(labels) -> float:
    """Median fraction of a crop's rows that hold a cell, over the crops holding any.

    Parameters
    ----------
    labels : array_like, shape (..., H, W)

    Returns
    -------
    float
        NaN when no crop holds a cell.

    Examples
    --------
    >>> labels = np.zeros((3, 100, 8), int)
    >>> labels[0, 0:90, 2:6] = 1; labels[1, 0:20, 2:6] = 1   # the third crop is empty
    >>> trench_fill(labels)
    0.55
    """
    lab = np.asarray(labels)
    rows = (lab > 0).any(axis=-1).reshape(-1, lab.shape[-2])
    held = rows.any(axis=1)
    if not held.any():
        return float("nan")
    return float(np.median(rows[held].mean(axis=1)))
