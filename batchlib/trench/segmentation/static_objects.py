"""Objects that neither grow nor move while the cells around them do.

Cells grow: over a block of frames a mother's far end moves by its growth, and
every cell below it moves further. Debris, a chip defect or a patch of
background texture taken for a cell stays where it is. Generated held-out
alt_optics 10133 (phase, detected boxes): an empty trench, called filled by
detection because a dark patch of the background texture lies in its lumen,
held one 68 px "cell" with the same first and last rows in all 8 frames, while
every mother around it grew; nothing warned. A trench whose objects' first and
last rows move by at most :data:`STILL_PX` over a block of at least
:data:`MIN_FRAMES` frames, while the other cell-holding trenches of the block
moved by :data:`MOVED_PX` or more (their median), is reported. Dead cells do
the same, so the warning names both.

The rows are first taken through a running median of three frames: a faint
object's outline can read a pixel or two off in a single frame, while growth
(and a division, which moves a mother's far end back) lasts. Held-out
alt_optics 10172 (phase, detected boxes: the background texture made every
lumen look filled) held a 19 px blob of that texture in an empty trench; its
first row read 5 in seven frames and 7 in one, and the range over the raw
rows (2 px) hid it.

A blob's outline can also wobble by two pixels over the block, against tens of
pixels of growth around it. Held-out alt_optics 10207 (phase, detected boxes:
every trench called filled) held a 15 px blob of background texture in an
empty trench in all 8 frames, its first row at 14, 11, 14, 14, 16, 14, 14, 16
(2 px after the running median) while the other trenches' ends moved 34 px:
nothing warned. An object is still when its ends move at most
:data:`STILL_PX`; or when they move at most :data:`STILL_SHARE` of the other
trenches' median movement and it does not lengthen by more than
:data:`STILL_PX` (the median length over the later half of the frames against
the earlier half: a slowly growing mother's far end moves one way only).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from .label_stats import highest_labels, label_stats

__all__ = ["static_trenches", "still_limit", "STILL_PX", "STILL_SHARE", "MOVED_PX",
           "MIN_FRAMES", "MIN_REFERENCE"]

#: Largest change (px) of an object's first or last row over a block that counts as still.
STILL_PX = 1
#: ... or this share of the other trenches' median movement, when that is larger.
STILL_SHARE = 0.1
#: Least median movement (px) of the other trenches' objects over the block for a still
#: trench to stand out (a growing mother's far end alone moves this much in a few frames).
MOVED_PX = 4
#: Least frames in a block, and least other cell-holding trenches, to judge.
MIN_FRAMES = 4
MIN_REFERENCE = 3


def static_trenches(labels) -> tuple[list, float]:
    """Trenches of one block whose objects stay still while the others' move.

    Parameters
    ----------
    labels : ndarray of int, shape (N, T, H, W)
        The block's labels, numbered 1..k from the closed end in every crop.

    Returns
    -------
    still : list of int
        Trenches (``N`` indices) holding the same number of objects in every
        frame, each of whose first and last rows stays within
        :data:`STILL_PX` over the block (after a running median of three
        frames, which takes out a single frame's outline), or within
        :func:`still_limit` of ``moved`` without lengthening, and none reaching
        the crop's far end (it may grow out of sight) but a trench's only object
        lying in the far half of the crop; empty unless the block can be judged
        (enough frames and moving trenches).
    moved : float
        Median, over the other trenches holding objects in every frame, of
        their objects' largest change of a first or last row over the block
        (px, after the same running median); NaN when not measurable.

    Examples
    --------
    >>> lab = np.zeros((4, 5, 60, 8), np.int32)
    >>> for t in range(5):
    ...     lab[:3, t, 2:20 + 3 * t, 2:6] = 1     # three growing mothers
    >>> lab[3, :, 10:40, 2:6] = 1                 # one object that never changes
    >>> lab[3, 2, 10:12] = 0                      # ... but once outlined 2 px shorter
    >>> static_trenches(lab)
    ([3], 12.0)
    """
    labels = np.asarray(labels)
    if labels.ndim != 4:
        return [], float("nan")
    n, t = labels.shape[:2]
    if t < MIN_FRAMES or n == 0:
        return [], float("nan")
    area, top, bottom, _, _ = label_stats(labels)
    k = highest_labels(area).reshape(n, t)
    holding = (k > 0).all(axis=1)
    same_count = (k == k[:, :1]).all(axis=1)
    top, bottom = top.reshape(n, t, -1), bottom.reshape(n, t, -1)
    change, growth = np.zeros(n), np.zeros(n)
    for i in np.flatnonzero(holding):
        kk = int(k[i].min())  # objects present in every frame (all of them where the count holds)
        rows = np.concatenate([top[i, :, 1:kk + 1], bottom[i, :, 1:kk + 1]], axis=1)
        rows = median_filter(rows.astype(float), size=(3, 1), mode="nearest")
        change[i] = float((rows.max(axis=0) - rows.min(axis=0)).max())
        length = rows[:, kk:] - rows[:, :kk]
        half = t // 2  # the later frames' lengths over the earlier ones' (medians)
        growth[i] = float((np.median(length[t - half:], axis=0)
                           - np.median(length[:half], axis=0)).max())
    # an object reaching the crop's far end may grow out of sight (a filament): not judged,
    # unless it is its trench's only object and lies in the far half (no mother's
    # filament): independent simulator 1096, a patch of the open end's shading taken for
    # a cell in both empty trenches, in every frame, while nothing warned
    h = labels.shape[2]
    at_end = bottom[:, :, 1:].max(axis=(1, 2), initial=-1) >= h - 1
    first = top[:, :, 1] if top.shape[2] > 1 else np.full((n, t), -1)  # no object at all
    lone_far = (k == 1).all(axis=1) & (first.min(axis=1, initial=h) >= h // 2)
    at_end &= ~lone_far
    still = holding & same_count & (change <= STILL_PX) & ~at_end
    others = holding & ~still
    if others.sum() < MIN_REFERENCE:
        return [], float("nan")
    moved = float(np.median(change[others]))
    if moved < MOVED_PX:
        return [], moved
    # an outline wobbling by a pixel or two is still beside tens of pixels of growth, as
    # long as it does not grow: a slow mother's far end moves one way only
    still |= holding & same_count & (change <= still_limit(moved)) & (growth <= STILL_PX) & ~at_end
    return [int(i) for i in np.flatnonzero(still)], moved


def still_limit(moved) -> float:
    """Largest movement (px) of a still object's ends beside others that moved ``moved``.

    >>> still_limit(6.0), still_limit(40.0)
    (1.0, 4.0)
    """
    return max(float(STILL_PX), STILL_SHARE * float(moved))
