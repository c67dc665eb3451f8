"""Channel kinds (phase-contrast-like or fluorescence) and channel choice.

A channel's kind decides how trenches are found in it (one frame with every
trench visible, or a maximum projection where only filled trenches show). It
comes, in this order, from the user (``--ingest_channel_kinds``), from a name
that says it (``Phase``, ``GFP``...) or, for names that say nothing (``c0``,
``c1`` of plain stacks and sequences), from the pixels: :func:`kind_from_data`.
"""
from __future__ import annotations

import math
import re

__all__ = ["KINDS", "kind_from_name", "kind_from_data", "phase_score", "dark_structure",
           "choose_channel", "ChannelChoiceError"]

KINDS = ("phase", "fluorescence")

PHASE_NAMES = re.compile(r"phase|brightfield|bright.field|\bbf\b|\btrans|\bdic\b|\bph[0-9]?\b(?!\s*[0-9])",
                         re.IGNORECASE)
# Fluorophores, filter sets and excitation lines that microscope software puts in channel names.
FLUORESCENCE_NAMES = re.compile(
    r"fluo|gfp|yfp|cfp|rfp|bfp|venus|citrine|cerulean|mcherry|mscarlet|mkate|tdtomato|mneon|"
    r"mturquoise|dsred|fitc|tritc|texas|dapi|hoechst|cy[2357]|alexa|\bfam\b|-fam\b|fm.?4-64|"
    r"syto|propidium|\bpi\b|\b(?:405|488|514|532|561|568|594|640|647)\b",
    re.IGNORECASE)

#: Thresholds of :func:`kind_from_data` (see its notes): dark structure this many
#: noise sigmas below the background, and this large a share of the bright side.
DARK_SIGMAS = 5.0
DARK_SHARE = 0.12
#: Below this confidence the guess is logged as a warning.
LOW_CONFIDENCE = 0.75
#: Pixels averaged per side before measuring (the noise drops, structures stay).
BLOCK = 3


class ChannelChoiceError(ValueError):
    """A configured channel that an acquisition or container does not have."""


def kind_from_name(name) -> str | None:
    """``"phase"`` or ``"fluorescence"`` when the name says so, else None.

    Placeholder names (``c0``, ``c1``, ``channel 2``) say nothing.
    """
    name = str(name)
    if PHASE_NAMES.search(name):
        return "phase"
    if FLUORESCENCE_NAMES.search(name):
        return "fluorescence"
    return None


def _block_mean(img, f):
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _dark_features(img):
    """``(dark depth / noise sigma, dark depth / bright height)`` of one view of a frame."""
    import numpy as np

    p1, p50, p99 = np.percentile(img, [1, 50, 99])
    d = np.diff(img, axis=1).ravel()
    # Noise from neighbouring-pixel differences: edges are few, so the MAD ignores them.
    sigma = 1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2)
    sigma = max(sigma, 1e-3 * (p99 - p1), 1e-9)
    dark, bright = p50 - p1, p99 - p50
    return dark / sigma, dark / max(bright, 1e-9)


def _flattened(img):
    """The frame minus its background: the lower quartile of 8 x 8 tiles, interpolated."""
    import numpy as np
    from scipy import ndimage as ndi

    H, W = img.shape
    t = min(H, W) // 8
    ny, nx = H // t, W // t
    # The lower quartile: in fluorescence the background even where cells crowd a tile.
    med = np.percentile(img[: ny * t, : nx * t].reshape(ny, t, nx, t), 25, axis=(1, 3))
    bg = ndi.zoom(med, (H / ny, W / nx), order=1, mode="nearest", grid_mode=True)
    return img - bg[:H, :W]


def dark_structure(frame) -> tuple:
    """``(depth in noise sigmas, depth / bright height)`` of a frame's dark side.

    See :func:`kind_from_data`.
    """
    import numpy as np

    img = np.asarray(frame, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got shape {img.shape}")
    if not np.isfinite(img).all():
        img = np.where(np.isfinite(img), img, np.nanmedian(img))
    # Averaging 3 x 3 (or more) pixels divides the noise by 3 but keeps the depth
    # of structures several pixels wide: low-light phase stands out from noise.
    # (Never below 128 pixels a side, which the background tiles need.)
    f = min(max(BLOCK, math.ceil(max(img.shape) / 256)), min(img.shape) // 128)
    if f > 1:
        img = _block_mean(img, f)
    # Vignetting is no structure: measure on the frame minus its background,
    # unless the frame is too small for a background from tiles.
    return _dark_features(_flattened(img) if min(img.shape) >= 128 else img)


def phase_score(frame) -> float:
    """Log-evidence that ``frame`` is phase-contrast-like (> 0) or fluorescence (< 0).

    Phase only when the dark structure is both far above the noise and a real
    share of the contrast; see :func:`kind_from_data`.
    """
    sigmas, share = dark_structure(frame)
    return min(math.log(max(sigmas, 1e-9) / DARK_SIGMAS), math.log(max(share, 1e-9) / DARK_SHARE))


def kind_from_data(frames) -> tuple:
    """Decide whether frames are phase-contrast-like or fluorescence.

    Parameters
    ----------
    frames : array_like or sequence of array_like
        One 2-D frame, or several (a list, or a 3-D stack; e.g. the first
        frame of a few positions) of the same channel; their evidence is
        averaged.

    Returns
    -------
    kind : {"phase", "fluorescence"}
    confidence : float
        In [0.5, 1): 0.5 is a coin toss, above 0.9 is clear.

    Notes
    -----
    Fluorescence has a dark background with bright objects on it: nothing in
    the frame is darker than the background by more than its noise, and
    whatever dark spread there is (uneven illumination) is small beside the
    bright tail. Phase contrast (and bright field) show structures both
    darker and brighter than their surroundings: cells and walls or their
    halos, whichever polarity the optics give the lumens. The dark depth is
    the median minus the 1st percentile of the frame minus a tile lower-quartile
    background (so that vignetting is not taken for structure). A frame is
    phase when that depth is above ``DARK_SIGMAS`` noise sigmas and above
    ``DARK_SHARE`` of the bright height (99th percentile minus median). The
    confidence grows with the log-ratio to the nearer threshold. The frame is
    first averaged over 3 x 3 pixels (more for large frames), which divides
    the noise by 3 and keeps structures several pixels wide. Measured on 126
    frames (the real fixtures and generated phase, both polarities, and
    fluorescence of 10 scenarios): phase 13-120 sigmas and shares 0.32-1.4;
    fluorescence at most 3.8 sigmas, and shares of 0.003-0.05 where the
    signal is far above the noise (the real chamber movie, the ND2 file).
    ``benchmarks/bench_channel_kind.py`` scores it per scenario family.
    """
    import numpy as np

    arr = np.asarray(frames) if not isinstance(frames, (list, tuple)) else None
    if arr is not None and arr.ndim == 2:
        frames = [arr]
    scores = [phase_score(f) for f in frames]
    if not scores:
        raise ValueError("no frames to decide the channel kind from")
    score = float(np.mean(scores))
    confidence = 1.0 / (1.0 + math.exp(-2.0 * abs(score)))
    return ("phase" if score > 0 else "fluorescence"), round(confidence, 3)


def choose_channel(channel, names, keys, kinds, option="--detect_channel", where="") -> int:
    """Index of the configured ``channel`` among a container's or acquisition's channels.

    Parameters
    ----------
    channel : str
        A channel name or key; ``""`` or ``"auto"`` means the first phase-like
        channel, else the first fluorescence one.
    names, keys, kinds : list of str
        The channels' names, container keys and kinds.
    option : str
        The option that sets ``channel`` (named in the error).
    where : str
        The file or container (starts the error message).

    Raises
    ------
    ChannelChoiceError
        ``channel`` is not there; the message lists the channels found.
    """
    if channel in ("", None, "auto"):
        if "phase" in kinds:
            return kinds.index("phase")
        return kinds.index("fluorescence") if "fluorescence" in kinds else 0
    if channel in keys:
        return keys.index(channel)
    if channel in names:
        return names.index(channel)
    found = ", ".join(f"{n} ({k})" if k else n for n, k in zip(names, kinds)) or "none"
    raise ChannelChoiceError(
        f"{where + ': ' if where else ''}no channel {channel!r}; channels found: {found}. "
        f"Set {option} to one of them (or to auto), or name the channels with "
        f"--ingest_channel_names")
