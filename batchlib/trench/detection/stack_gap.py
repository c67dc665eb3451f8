"""Do a fluorescence set's boxes cross a band where no trench holds cells?

Cells in a trench stack from the closed end: the mother at the end, her
progeny towards the open end, pushed out into the feeding channel as they
grow. Along the boxes of one set the share of filled boxes showing cells may
fall towards the open end, but it does not fall to nothing and rise again.
Where it does, the boxes run on past their trenches into the feeding channel
and into the trenches of the set facing them: two facing sets taken for one
(independent simulator 1327: a cell floating in the channel bridged both sets'
rows; 9 of 22 trenches boxed at confidence 0.72, unwarned; held-out dark_lumen
10011: 0 of 26 at 0.58).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from .crop import crop_trenches

__all__ = ["occupancy_dip"]


def occupancy_dip(image, layout, noise, min_boxes=4, min_share=0.3, threshold=4.0,
                  brightness=0.25):
    """Per set, the deepest dip of the share of filled boxes holding cells along the boxes.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The fluorescence image the layout was found on.
    layout : TrenchLayout
    noise : float
        Pixel noise sigma of ``image``.
    min_boxes : int
        Sets with fewer filled boxes are not judged.
    min_share : float
        A dip counts only between rows where at least this share of the boxes holds
        cells on both sides.
    threshold, brightness : float
        A box holds cells at a row when its brightest pixel across the middle half of
        the box is above the background by ``threshold`` times the noise and by
        ``brightness`` times the cells' (the 90th percentile of those maxima).

    Returns
    -------
    list of (set, dip, row)
        ``dip``: the share at the row of the dip over the lesser of the largest
        shares before and after it along the boxes (1.0: no dip; near 0: a band
        where no box holds cells, with cells beyond it); ``row``: the row along the
        boxes (0 at the closed end). Sets not judged are left out.

    Examples
    --------
    >>> import numpy as np
    >>> from batchlib.trench.synthetic import SyntheticConfig, simulate_position
    >>> from batchlib.trench.detection import detect_trenches
    >>> from batchlib.trench.detection.quality import image_noise
    >>> pos = simulate_position(SyntheticConfig(height=512, width=512, n_timepoints=1,
    ...                                         channels=("fluorescence",), n_sets=1,
    ...                                         seed=3), 0)
    >>> frame = pos.movies["fluorescence"][0].astype(np.float32)
    >>> layout = detect_trenches(frame, "fluorescence")
    >>> [round(d, 1) for _, d, _ in occupancy_dip(frame, layout, image_noise(frame))]
    [0.9]
    """
    img = np.asarray(image, np.float32)
    out = []
    for k, boxes in layout.trenches.groupby("set"):
        filled = boxes[~boxes["empty"].to_numpy(bool)]
        if len(filled) < min_boxes:
            continue
        crops = crop_trenches(img, filled, layout.angle_deg, cval=np.nan).astype(float)
        w = crops.shape[2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # rows outside the frame: NaN
            peak = np.nanmax(crops[:, :, w // 4: w - w // 4], axis=2)
            background = float(np.nanpercentile(crops, 20))
            cells = float(np.nanpercentile(peak, 90))
        holds = np.nan_to_num(peak, nan=-np.inf) > background + max(
            threshold * noise, brightness * (cells - background))
        # smoothed over half a pitch: a gap between two cells is no band
        share = ndimage.uniform_filter1d(holds.mean(axis=0), max(8, int(0.5 * layout.pitch)),
                                         mode="nearest")
        around = np.minimum(np.maximum.accumulate(share),
                            np.maximum.accumulate(share[::-1])[::-1])
        ratio = np.where(around >= min_share, share / np.maximum(around, 1e-12), np.inf)
        row = int(np.argmin(ratio))
        out.append((int(k), float(min(ratio[row], 1.0)), row))
    return out
