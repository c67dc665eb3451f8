"""Which of the two stripes of a period is the trench lumen.

A set's cross profile has two mirror axes per period, half a pitch apart: the
lumen's and the wall's. The fundamental's phase gives the axis of the stripe
that is brighter at that frequency (axis A). For fluorescence the lumen is the
bright stripe (cells). For phase contrast two cues vote:

* texture: cells make the lumen vary along the trench (dark bodies, bright
  gaps) while PDMS walls are flat; regularised by the noise so that it stays
  silent when no trench holds cells;
* width: lumens are narrower than the walls between them on every chip seen
  so far (molyso example 15 vs 46 px, synthetic 11-18 vs 16-53 px).
"""
from __future__ import annotations

import numpy as np

from ._common import nanmean
from .centres import (column_texture, fold_template, fundamental_axis, stripe_widths,
                      symmetry_axis)

__all__ = ["lumen_axis"]


def _stripe(values, axis, pitch, half_width):
    x = np.arange(values.size)
    phase = (x - axis + 0.5 * pitch) % pitch - 0.5 * pitch
    return np.where(np.abs(phase) <= max(half_width, 0.5), values, np.nan)


def lumen_axis(profile, rot_rows, pitch, kind="phase", lumen="auto", texture_floor=0.0):
    """Lumen axis (column modulo the pitch), lumen width and confidence.

    Parameters
    ----------
    profile : ndarray, shape (W,)
        Cross profile of the set (NaN outside the frame).
    rot_rows : ndarray, shape (n_rows, W)
        The straightened rows of the set, for the texture cue.
    lumen : {"auto", "bright", "dark"}
        Force the answer ("bright": the stripe brighter at the fundamental).
    texture_floor : float
        Texture variance expected from noise alone.

    Returns
    -------
    axis : float
    width : float
        Width of the lumen stripe (px).
    confidence : float
        In [0, 1]; 1 when forced or for fluorescence.
    """
    valid = np.flatnonzero(np.isfinite(profile))
    # the fundamental's phase sits on a mirror axis only while the fundamental carries
    # the lattice: a lumen about a third of the pitch wide between halos leaves it so
    # weak that other structure pulls it 5 px off (held-out halo_walls 10198, every box
    # on a lumen's edge); the nearest axis of mirror symmetry is the axis itself
    axis_a = symmetry_axis(profile, pitch, fundamental_axis(profile, pitch)[0]) % pitch
    half = int(np.ceil(0.5 * pitch))
    m = np.arange(np.ceil((valid[0] + half - axis_a) / pitch),
                  np.floor((valid[-1] - half - axis_a) / pitch) + 1)
    offsets, template = fold_template(profile, axis_a + m * pitch, half)
    width_a, width_b = stripe_widths(offsets, template, pitch)
    if kind == "fluorescence" or lumen == "bright":
        a_is_lumen, confidence = True, 1.0
    elif lumen == "dark":
        a_is_lumen, confidence = False, 1.0
    else:
        texture = column_texture(rot_rows)
        q = 0.25 * min(width_a, width_b)
        tex_a = nanmean(_stripe(texture, axis_a, pitch, q))
        tex_b = nanmean(_stripe(texture, axis_a + 0.5 * pitch, pitch, q))
        tex_score = float(np.clip(np.log((tex_a + texture_floor + 1e-30)
                                         / (tex_b + texture_floor + 1e-30)), -2, 2))
        width_score = float(np.clip((width_b - width_a) / (0.15 * pitch), -1, 1))
        score = tex_score + width_score
        a_is_lumen, confidence = score >= 0, float(min(1.0, abs(score) / 2))
    if a_is_lumen:
        return float(axis_a), float(width_a), confidence
    return float((axis_a + 0.5 * pitch) % pitch), float(width_b), confidence
