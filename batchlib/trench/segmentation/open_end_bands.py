"""A cell split by the chip's band at a phase box's open end is one cell.

Where a box reaches to within a few pixels of its trench's open end, the
feeding channel's edge lays a band across the crop, bright then dark, over the
lumen *and the walls*. The U-Net splits the last cell there: a piece above the
band and a blob in it (independent simulator 1146 and 1149: 44 of 44 and 44 of
48 false splits in the trench-frames' last 20 rows; F1 0.926 and 0.916). A
division's bright septum lies in the lumen only, so the walls beside it stay as
they are (their brightening over 0.29 of the lumen gap's on 95 % of the real
splits of 1000, 1010, 1035, 1051, 1079, 1146 and 1149); a band brightens them as
much as the gap (0.9-1.7 on 1146 and 1149). A band is also the chip's: the
frame's other trenches share it (the median of their walls' profiles rises there
by 0.56-0.73 of the crop's own on 1035). A division can still lie on a band (1108,
1085: 71 such splits): its septum brightens the lumen beyond what the walls' band
explains, which the rows beside the gap calibrate. Walls that climb towards the
open end in uneven light are told from a band by that test too (generator mixed 7:
45 real divisions by the open end joined without it, 5 with it).

The join runs before short pieces are merged into their neighbours
(:func:`.fragments.merge_fragments`): where a cell's septum lies a few rows
above the band, the lower cell's piece above the band is short enough to be
taken for a fragment of the cell above it, and was (1149: 24 splits in the band
whose pieces belonged to two cells were all such, the lower cell's upper part
merged into the upper cell). Joined across the band first, the lower cell is
whole. So no length is asked of either piece (a first version asked the upper
one to be shorter than 0.7 of the frame's median cell and left 12 of 1149's 16
false splits and all of those 24).
"""
from __future__ import annotations

import numpy as np

__all__ = ["join_across_open_end_bands"]

#: The walls beside the gap brighten by at least this share of the lumen gap's own
#: brightening (above the cells' level)...
WALL_SHARE = 0.5
#: ... and by this many times the walls' row-to-row noise.
WALL_SIGMAS = 8.0
#: The walls' profile the frame's crops share rises in the gap by at least this share
#: of the crop's own walls' rise there (a band: 0.56-0.73 on independent 1035, where the
#: frame's median covers two sets; a halo beside one trench's septum: about 0).
CHIP_SHARE = 0.25
#: The lumen's profile is fitted as a line of the walls' over this many rows on either
#: side of the gap; where it rises in the gap by this share of the gap's rise beyond the
#: fit, a septum lies on the band (independent 1108 and 1085: 71 divisions at a band,
#: 0.50-0.98 of it; the joins that cost no match on seven other positions: under 0.35 for
#: 720 of 768, their 95th percentile 0.20-0.71 per position).
FIT_ROWS = 10
SEPTUM_SHARE = 0.35
#: Pieces further apart than this (rows, the gap included) are not joined.
MAX_GAP_ROWS = 8
#: The lower piece reaches this close (rows) to the box's open end.
OPEN_END_ROWS = 3


def join_across_open_end_bands(labels, crops):
    """Join the last two objects of a phase crop where the rows between them are the
    chip's band at the open end rather than a septum (see the module's docstring).

    Parameters
    ----------
    labels : ndarray of int, shape (..., H, W)
        Labels numbered 1..k from the closed end (row 0).
    crops : ndarray, same shape
        The phase crops they were read from.

    Returns
    -------
    labels : ndarray
        The labels with those pairs joined (the rows between them filled in the
        columns both hold), still numbered 1..k; the input is not modified.
    joined : int
        How many crops had a pair joined.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> crop = 100 + rng.normal(0, 1, (60, 20))
    >>> crop[:, 6:14] = 60.0                  # dark cells fill the lumen
    >>> lab = np.zeros((60, 20), np.int32)
    >>> lab[2:22, 6:14], lab[24:49, 6:14], lab[53:60, 6:14] = 1, 2, 3
    >>> septum = crop.copy()
    >>> septum[50:53, 6:14] += 40             # bright in the lumen only: a division
    >>> out, joined = join_across_open_end_bands(lab, septum)
    >>> joined, int(out.max())
    (0, 3)
    >>> band = crop.copy()
    >>> band[50:53] += 40                     # across lumen and walls: the chip's band,
    >>> band[56:] -= 40                       # then the feeding channel's dark edge
    >>> out, joined = join_across_open_end_bands(lab, band)
    >>> joined, int(out.max()), int((out == 2).any(axis=1).sum())
    (1, 2, 36)
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.max(initial=0) < 2:
        return labels, 0
    from .label_stats import highest_labels, label_stats  # numba: loaded where used

    h, w = labels.shape[-2:]
    flat = labels.reshape(-1, h, w)
    images = np.asarray(crops, np.float32).reshape(-1, h, w)
    area, top, bottom, _, _ = label_stats(flat)
    k = highest_labels(area)
    # the crops of one frame share the chip's band (crop n of frame t is n * T + t)
    frames = np.arange(len(flat)) % labels.shape[1] if labels.ndim == 4 else np.zeros(len(flat), int)
    shared = {}
    out, joined = None, 0
    for m in np.flatnonzero(k >= 2):
        last = int(k[m])
        if bottom[m, last] < h - OPEN_END_ROWS or top[m, last - 1] < 0:
            continue
        t = frames[m]
        if t not in shared:
            shared[t] = _shared_wall_profile(images[frames == t], flat[frames == t])
        if _band_between(images[m], flat[m], int(bottom[m, last - 1]), int(top[m, last]), shared[t]):
            if out is None:
                out = flat.copy()
            _join(out[m], last - 1, last, int(bottom[m, last - 1]), int(top[m, last]))
            joined += 1
    if out is None:
        return labels, 0
    return out.reshape(labels.shape), joined


def _walls(lab):
    """The wall columns of a crop (or crops) whose objects mark the lumen; ``None`` where
    there are fewer than two."""
    w = lab.shape[-1]
    lumen = np.flatnonzero((lab > 0).reshape(-1, w).any(axis=0))
    if not lumen.size:
        return None
    walls = np.r_[0:max(lumen[0] - 2, 0), min(lumen[-1] + 3, w):w]
    return walls if walls.size >= 2 else None


def _shared_wall_profile(images, labs):
    """The walls' profile along the crops of one frame that most of them share (their
    median, each about its own median): the chip's band is in it, a septum's halo in
    one trench is not."""
    walls = _walls(labs)
    if walls is None:
        return None
    profiles = images[..., walls].mean(axis=-1)
    return np.median(profiles - np.median(profiles, axis=-1, keepdims=True), axis=0)


def _band_between(image, lab, last_row, first_row, shared=None) -> bool:
    """Whether rows ``last_row..first_row`` (the facing ends of two objects) are the
    chip's band: the walls beside them bright (as much as half the lumen's gap), the
    frame's other crops sharing the brightening (``shared``:
    :func:`_shared_wall_profile`), and the lumen no brighter than the walls explain."""
    walls = _walls(lab)
    if walls is None:
        return False
    # the facing ends' rows (they may overlap where the pieces' ends are slanted)
    gap = slice(min(last_row, first_row), max(last_row, first_row) + 1)
    if gap.stop - gap.start > MAX_GAP_ROWS:
        return False
    lumen = np.flatnonzero((lab > 0).any(axis=0))
    wall = image[:, walls].mean(axis=1)
    level = float(np.median(wall))
    noise = 1.4826 * float(np.median(np.abs(np.diff(wall))))
    wall_rise = float(np.max(wall[gap])) - level
    lum = image[:, lumen].mean(axis=1)
    gap_rise = float(np.max(lum[gap])) - float(np.median(lum[(lab > 0).any(axis=1)]))
    if not (gap_rise > 0 and wall_rise >= WALL_SIGMAS * noise and wall_rise >= WALL_SHARE * gap_rise):
        return False
    if shared is not None and float(np.max(shared[gap]) - np.median(shared)) < CHIP_SHARE * wall_rise:
        return False
    # a septum on the band: the lumen brightens beyond what the walls' band explains
    # (the lumen as a line of the walls, fitted on the rows beside the gap)
    near = np.r_[max(gap.start - FIT_ROWS, 0):gap.start, gap.stop:min(gap.stop + FIT_ROWS, len(wall))]
    if near.size < 3:
        return False
    fit = np.polyfit(wall[near], lum[near], 1)
    return float(np.max(lum[gap] - np.polyval(fit, wall[gap]))) < SEPTUM_SHARE * gap_rise


def _join(lab, upper, lower, last_row, first_row):
    """Label ``lower`` joined to ``upper`` in place, the rows between them filled as
    :func:`.fragments.merge_fragments` fills them."""
    from .fragments import fill_between

    lab[lab == lower] = upper
    fill_between(lab, upper, last_row, first_row)
