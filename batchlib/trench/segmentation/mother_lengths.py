"""Whether the mother cells' lengths look like growth and division.

A mother cell grows from its birth length to about twice that and divides,
so over many trench-frames its length spans a factor of about 2 (1.9-2.3 on
generated data, 2.3-2.7 on the real label stacks in ``../shared/data``).
Segmentation that merges the mother with its daughter or cuts it in pieces
widens the span: it was 3.0-6.4 on every generated position where the
U-Net's F1 fell below 0.97 (tuning seeds of the mixed family, phase and
fluorescence). :func:`mother_length_spread` measures the span, so that
Segment can say when its answer should be looked at.
"""
from __future__ import annotations

import numpy as np

__all__ = ["mother_lengths", "mother_length_spread", "WIDE_SPREAD", "MIN_MOTHERS"]

#: Above this spread Segment warns (see the module docstring).
WIDE_SPREAD = 3.0
#: Fewer mothers than this say nothing.
MIN_MOTHERS = 20


def mother_lengths(labels) -> np.ndarray:
    """Rows spanned by label 1 (the mother: cells are numbered from the closed end)
    in every crop of ``labels`` (..., H, W), for the crops that have one.

    Examples
    --------
    >>> labels = np.zeros((2, 40, 8), int); labels[0, 2:20, 2:6] = 1; labels[1, 25:30, 2:6] = 2
    >>> mother_lengths(labels)
    array([18])
    """
    lab = np.asarray(labels)
    rows = (lab == 1).any(axis=-1).reshape(-1, lab.shape[-2])
    has = rows.any(axis=1)
    rows = rows[has]
    first = np.argmax(rows, axis=1)
    last = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    return last - first + 1


def mother_length_spread(lengths, min_mothers: int = MIN_MOTHERS) -> float:
    """The 95th over the 5th percentile of mother lengths; NaN with fewer than
    ``min_mothers`` of them.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> growing = 20 * 2 ** rng.uniform(0, 1, 200)          # birth length 20, divides at 40
    >>> round(mother_length_spread(growing), 1)
    1.9
    >>> merged = np.concatenate([growing, 2 * growing[:50]])  # some merged with a daughter
    >>> mother_length_spread(merged) > WIDE_SPREAD
    True
    """
    x = np.asarray(lengths, float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size < min_mothers:
        return float("nan")
    lo, hi = np.percentile(x, [5, 95])
    return float(hi / lo)
