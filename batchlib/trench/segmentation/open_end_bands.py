"""A cell split by the chip's band at a phase box's open end is one cell.

Where a box reaches to within a few pixels of its trench's open end, the
feeding channel's edge lays a band across the crop, bright then dark, over the
lumen *and the walls*. The U-Net splits the last cell there: a short piece
above the band and a blob in it (independent simulator 1146 and 1149: 44 of 44
and 44 of 48 false splits in the trench-frames' last 20 rows; F1 0.926 and
0.916). A division's bright septum lies in the lumen only, so the walls beside
it stay as they are (their brightening over 0.29 of the lumen gap's on 95 % of
the real splits of 1000, 1010, 1035, 1051, 1079, 1146 and 1149); a band
brightens them as much as the gap (0.9-1.7 on 1146 and 1149). Inside a band a
real division can happen too (24 of 709 real splits of 1149 brighten the walls
over half as much as their gap): those have an upper daughter as long as a
newborn, and the false ones a piece shorter, so both must hold.
"""
from __future__ import annotations

import numpy as np

__all__ = ["join_across_open_end_bands"]

#: The walls beside the gap brighten by at least this share of the lumen gap's own
#: brightening (above the cells' level)...
WALL_SHARE = 0.5
#: ... and by this many times the walls' row-to-row noise.
WALL_SIGMAS = 8.0
#: The piece above the band is shorter than this share of the frame's median cell
#: (newborns are about 0.7 of it; no real split of the seven positions above merged).
SHORT_PIECE = 0.7
#: The lower piece reaches this close (rows) to the box's open end.
OPEN_END_ROWS = 3


def join_across_open_end_bands(labels, crops):
    """Join the last two objects of a phase crop where the rows between them are the
    chip's band at the open end rather than a septum (see the module's docstring).

    Parameters
    ----------
    labels : ndarray of int, shape (N, T, H, W)
        Labels numbered 1..k from the closed end (row 0).
    crops : ndarray, shape (N, T, H, W)
        The phase crops they were read from.

    Returns
    -------
    labels : ndarray
        The labels with those pairs joined (the rows between them filled in the
        columns both hold), still numbered 1..k; the input is not modified.
    joined : int
        How many trench-frames had a pair joined.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> crop = 100 + rng.normal(0, 1, (60, 20))
    >>> crop[:, 6:14] = 60.0                  # dark cells fill the lumen
    >>> crop[50:53] += 40                      # a band across lumen and walls
    >>> lab = np.zeros((3, 1, 60, 20), np.int32)
    >>> for n in range(3):
    ...     lab[n, 0, 2:22, 6:14], lab[n, 0, 24:44, 6:14] = 1, 2
    >>> lab[0, 0, 24:44] = 0
    >>> lab[0, 0, 24:49, 6:14], lab[0, 0, 53:60, 6:14] = 2, 3    # split at the band
    >>> crops = np.repeat(crop[None, None], 3, axis=0)
    >>> out, joined = join_across_open_end_bands(lab, crops)
    >>> joined, int(out[0, 0].max()), int((out[0, 0] == 2).any(axis=1).sum())
    (0, 3, 25)
    >>> lab[0, 0, 24:49] = 0
    >>> lab[0, 0, 38:49, 6:14] = 2                                # a short piece above it
    >>> out, joined = join_across_open_end_bands(lab, crops)
    >>> joined, int(out[0, 0].max()), int((out[0, 0] == 2).any(axis=1).sum())
    (1, 2, 22)
    """
    labels = np.asarray(labels)
    if labels.ndim != 4 or labels.max(initial=0) < 2:
        return labels, 0
    from .label_stats import highest_labels, label_stats  # numba: loaded where used

    n_crops, n_t, h, w = labels.shape
    flat = labels.reshape(-1, h, w)
    images = np.asarray(crops, np.float32).reshape(-1, h, w)
    area, top, bottom, _, _ = label_stats(flat)
    k = highest_labels(area)
    length = bottom - top + 1
    out, joined = None, 0
    for t in range(n_t):
        idx = np.arange(t, len(flat), n_t)  # crop n of frame t is n * n_t + t
        inner = [length[m, 1:k[m] + 1][(bottom[m, 1:k[m] + 1] < h - OPEN_END_ROWS)
                                       & (top[m, 1:k[m] + 1] >= 0)] for m in idx]
        inner = np.concatenate(inner) if inner else np.zeros(0)
        if inner.size < 3:
            continue
        short = SHORT_PIECE * float(np.median(inner))
        for m in idx:
            last = int(k[m])
            if last < 2 or bottom[m, last] < h - OPEN_END_ROWS or top[m, last - 1] < 0 \
                    or length[m, last - 1] >= short:
                continue
            if _band_between(images[m], flat[m], int(bottom[m, last - 1]), int(top[m, last])):
                if out is None:
                    out = flat.copy()
                _join(out[m], last - 1, last, int(bottom[m, last - 1]), int(top[m, last]))
                joined += 1
    if out is None:
        return labels, 0
    return out.reshape(labels.shape), joined


def _band_between(image, lab, last_row, first_row) -> bool:
    """Whether rows ``last_row..first_row`` (the facing ends of two objects) are a band
    across the walls as bright as the lumen's gap."""
    h, w = lab.shape
    lumen = np.flatnonzero((lab > 0).any(axis=0))
    walls = np.r_[0:max(lumen[0] - 2, 0), min(lumen[-1] + 3, w):w]
    if walls.size < 2:
        return False
    wall = image[:, walls].mean(axis=1)
    noise = 1.4826 * float(np.median(np.abs(np.diff(wall))))
    # the facing ends' rows (they may overlap where the pieces' ends are slanted)
    gap = slice(min(last_row, first_row), max(last_row, first_row) + 1)
    wall_rise = float(np.max(wall[gap])) - float(np.median(wall))
    lum = image[:, lumen].mean(axis=1)
    gap_rise = float(np.max(lum[gap])) - float(np.median(lum[(lab > 0).any(axis=1)]))
    return gap_rise > 0 and wall_rise >= WALL_SIGMAS * noise and wall_rise >= WALL_SHARE * gap_rise


def _join(lab, upper, lower, last_row, first_row):
    """Label ``lower`` joined to ``upper`` in place, the rows between them filled as
    :func:`.fragments.merge_fragments` fills them."""
    from .fragments import fill_between

    lab[lab == lower] = upper
    fill_between(lab, upper, last_row, first_row)
