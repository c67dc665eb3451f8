"""A self-check of a detected layout: are the boxes on the lumens or on the walls?

Cells make a lumen vary along the trench (bodies, gaps and septa), in phase
contrast and fluorescence alike, whatever the polarity of the image; the PDMS
walls between trenches are flat. So the along-trench texture of the strips at
the box axes is compared with the texture of the strips half a pitch away
(the walls), after removing what noise alone would give:

* clearly more texture on the axes: the boxes hold the cells (``"pass"``);
* clearly more texture between the boxes: the boxes sit on the walls, e.g. a
  phase image with the wrong lumen polarity or taken for fluorescence
  (``"fail"``);
* neither (no cells anywhere, or the texture does not separate): the layout
  cannot be verified from this image (``"undetermined"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._sampling import rotated_samples
from .centres import column_texture

__all__ = ["LayoutCheck", "check_layout"]

# log ratio of the texture on the axes over the texture on the walls
_PASS = np.log(1.5)
_FAIL = -np.log(1.5)


@dataclass(frozen=True)
class LayoutCheck:
    """Outcome of :func:`check_layout`.

    Attributes
    ----------
    verdict : {"pass", "fail", "undetermined"}
    log_ratio : float
        ``log`` of the axis texture over the wall texture (above noise).
    reason : str
        One sentence for a person (empty on ``"pass"``).
    """

    verdict: str
    log_ratio: float
    reason: str = ""


def check_layout(image, layout, noise=None, max_rows=256) -> LayoutCheck:
    """Check that the boxes of ``layout`` hold the textured (cell-bearing) stripes.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The image the layout was found on.
    layout : TrenchLayout
    noise : float, optional
        Pixel noise sigma (estimated from the image when omitted).
    max_rows : int
        At most this many rows along the boxes are sampled.

    Returns
    -------
    LayoutCheck

    Examples
    --------
    >>> import numpy as np
    >>> from batchlib.trench.synthetic import SyntheticConfig, simulate_position
    >>> from batchlib.trench.detection import detect_trenches
    >>> pos = simulate_position(SyntheticConfig(height=256, width=256, n_timepoints=1,
    ...                                         channels=("phase",), n_sets=1, seed=3), 0)
    >>> frame = pos.movies["phase"][0]
    >>> check_layout(frame, detect_trenches(frame, n_sets=1, self_check=False)).verdict
    'pass'
    """
    from .quality import image_noise

    img = np.asarray(image)
    t = layout.trenches
    if len(t) == 0:
        return LayoutCheck("undetermined", 0.0, "no boxes to check")
    noise = image_noise(img) if noise is None else float(noise)
    half = max(1, int(round(0.1 * layout.pitch)))
    axis_tex, wall_tex = [], []
    for _, s in t.groupby("set"):
        h = int(s["height"].iloc[0])
        d = int(s["direction"].iloc[0])
        step = max(1, h // max_rows)
        offsets = np.arange(0, h, step, dtype=float)
        x = s["x_center"].to_numpy(float)
        walls = x + 0.5 * layout.pitch
        cols = np.concatenate([(x[:, None] + np.arange(-half, half + 1)).ravel(),
                               (walls[:, None] + np.arange(-half, half + 1)).ravel()])
        # every box has its own closed end: sample row by row relative to it
        y0 = float(np.median(s["y_closed"]))
        rows = y0 + d * offsets
        samples = rotated_samples(img, img.shape, layout.angle_deg, rows, cols)
        tex = column_texture(samples).reshape(2, len(x), 2 * half + 1).mean(axis=2)
        ok = np.isfinite(tex).all(axis=0)
        axis_tex.append(tex[0][ok])
        wall_tex.append(tex[1][ok])
    a = np.concatenate(axis_tex)
    w = np.concatenate(wall_tex)
    if a.size == 0:
        return LayoutCheck("undetermined", 0.0, "the boxes lie outside the image")
    # texture that noise alone leaves after the high-pass (about 0.6 sigma^2)
    floor = 0.6 * noise ** 2
    excess_a = np.maximum(np.mean(a) - floor, 0.0)
    excess_w = np.maximum(np.mean(w) - floor, 0.0)
    eps = 0.5 * floor + 1e-12
    log_ratio = float(np.log((excess_a + eps) / (excess_w + eps)))
    if max(excess_a, excess_w) < 2.0 * floor:
        return LayoutCheck("undetermined", log_ratio,
                           "no cells are seen in or between the boxes: the boxes cannot be "
                           "checked on this image")
    if log_ratio >= _PASS:
        return LayoutCheck("pass", log_ratio)
    if log_ratio <= _FAIL:
        return LayoutCheck("fail", log_ratio,
                           "the boxes sit on the walls: the cells' texture lies between the "
                           f"boxes ({np.exp(-log_ratio):.1f}x more than in them); set the lumen "
                           "polarity (--detect_lumen bright|dark) or the channel kind "
                           "(--ingest_channel_kinds)")
    return LayoutCheck("undetermined", log_ratio,
                       "the texture inside and between the boxes is alike: the boxes cannot "
                       "be checked on this image")
