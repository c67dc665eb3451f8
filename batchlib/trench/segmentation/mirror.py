"""Whether a method finds the same cells in the crops mirrored left-right.

A trench's left and right walls are alike, so mirroring a crop about the
trench axis must not change which cells a method finds. A method working on
the data it was made for keeps to that; on data unlike its training (a
trench width, optics or contrast it never met) a learned model's answers
become arbitrary, and the two orientations disagree about where cells split
and end. The agreement of the two segmentations is then a measure of how
far the labels can be trusted, taken without any ground truth.

Measured with the shipped U-Net and Segment's clean-up, one frame per position
(``python benchmarks/bench_segmentation.py --no-extras -v``, 768² positions of
8 frames, every family, crops on the true and on the detected geometry, phase
and fluorescence; the column ``mirror agreement``):

* tuning seeds 0-3 (224 position-kinds; the network was trained on these seeds'
  draws): 0.987 or more everywhere, F1 0.970 or more;
* held-out seeds 10120-10123 (224): the five with F1 under 0.95 agreed on
  0.49-0.76 of their cells (geometry 10122: narrow trenches at a 28 px pitch,
  ragged and split cells, F1 0.83, which no other check had warned about);
  every other position on 0.986 or more, with F1 0.959 or more.

:data:`LOW_AGREEMENT` was set from geometry 10122 and tuning geometry 57
(0.97 at F1 0.99) and lies between the two groups; held-out seeds 10124-10127,
run afterwards, gave no false alarm (``docs/segmentation.md``).
"""
from __future__ import annotations

import numpy as np

from .evaluate import match_labels

__all__ = ["LOW_AGREEMENT", "agreement", "mirror_counts"]

#: fraction of cells found again in the mirrored crops under which Segment warns
LOW_AGREEMENT = 0.93


def mirror_counts(crops, labels, segment, frame: int = 0, **kwargs) -> np.ndarray:
    """``[matched, n_labels, n_mirrored]``: cells of one frame found again when its
    crops are segmented mirrored left-right.

    Parameters
    ----------
    crops : ndarray, shape (N, T, H, W)
        The crops ``labels`` were segmented from.
    labels : ndarray, shape (N, T, H, W)
        ``segment(crops, **kwargs)``.
    segment : callable
        ``segment(crops, **kwargs) -> labels``, the call that made ``labels``, with
        any clean-up it does (the Segment job's, :func:`.empty_trenches.segment_and_clean`).
    frame : int
        The frame (index into ``T``) segmented again mirrored: one frame is enough to
        measure the agreement, and costs ``1/T`` of the segmentation.
    **kwargs
        Passed to ``segment``. A per-frame ``background`` ``(1, T, H, W)`` (the
        empty-trench reference of phase contrast), or ``references`` ``(N, T, H, W)``
        (one per crop, :func:`.empty_trenches.references_by_set`), is cut to the frame
        and mirrored too.

    Returns
    -------
    int64 ndarray, shape (3,)
        Pairs matched at IoU > 0.5, cells in ``labels``, cells in the mirrored
        segmentation (mirrored back); sums over blocks of frames pool them.

    Examples
    --------
    >>> crops = np.zeros((1, 1, 20, 8)); crops[0, 0, 2:9, 2:6] = crops[0, 0, 11:18, 2:6] = 1
    >>> from scipy import ndimage
    >>> segment = lambda c: np.stack([[ndimage.label(f)[0] for f in n] for n in c > 0.5])
    >>> mirror_counts(crops, segment(crops), segment).tolist()
    [2, 2, 2]
    """
    crops, labels = np.asarray(crops), np.asarray(labels)
    one = crops[:, frame:frame + 1, :, ::-1]
    for key in ("background", "references"):
        background = kwargs.get(key)
        if background is not None and np.ndim(background) == 4:
            if np.shape(background)[1] == crops.shape[1]:
                background = np.asarray(background)[:, frame:frame + 1]
            kwargs[key] = np.ascontiguousarray(np.asarray(background)[..., ::-1])
    mirrored = np.asarray(segment(np.ascontiguousarray(one), **kwargs))[..., ::-1]
    m = match_labels(labels[:, frame:frame + 1], mirrored)
    return np.array([m.tp, m.n_true, m.n_pred], np.int64)


def agreement(counts) -> float | None:
    """The F1 of the two orientations from summed :func:`mirror_counts`; ``None``
    when neither found a cell (nothing to compare).

    >>> agreement([9, 10, 10]), agreement([0, 0, 0])
    (0.9, None)
    """
    matched, n_labels, n_mirrored = (int(c) for c in counts)
    total = n_labels + n_mirrored
    return 2.0 * matched / total if total else None
