"""Images stored as a multiscale pyramid, BatchLib's layout.

An image ``name`` is a group holding ``s0`` (full resolution), ``s1`` (2x
smaller in Y and X), ... and attributes that viewers read (``multiScale``,
``downsamplingFactors``, ``resolution``, ``unit``, ``contrastLimits``,
``visible``). Leading axes (time, channel) are never downsampled.
"""
from __future__ import annotations

import numpy as np

from .files import create_dataset, read_attrs, write_attrs


def downsample(image, factor, is_label=False):
    """``image`` (..., Y, X) made ``factor`` times smaller in Y and X; leading axes kept.

    Intensities are averaged over ``factor`` x ``factor`` blocks (rows and
    columns beyond a whole block are dropped) and cast back to the image's
    dtype; labels are subsampled (every ``factor``-th pixel), since averaging
    would invent label ids.

    Examples
    --------
    >>> import numpy as np
    >>> downsample(np.arange(16, dtype=np.uint16).reshape(4, 4), 2)
    array([[ 2,  4],
           [10, 12]], dtype=uint16)
    >>> downsample(np.arange(16).reshape(4, 4), 2, is_label=True)
    array([[ 0,  2],
           [ 8, 10]])
    """
    image = np.asarray(image)
    if is_label:
        return image[..., ::factor, ::factor]
    h, w = (image.shape[-2] // factor) * factor, (image.shape[-1] // factor) * factor
    lead = image.shape[:-2]
    blocks = image[..., :h, :w].reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1)).astype(image.dtype)


def write_image(container, name, image, n_scales=None, min_size=64, resolution=None,
                unit="pixel", is_label=False, chunks=None, compression="default",
                contrast_limits=None, visible=True):
    """Write ``image`` (..., Y, X) as a pyramid group ``name/s0, s1, ...``.

    Parameters
    ----------
    n_scales : int, optional
        Number of levels; by default halve until Y or X would fall below ``min_size``.
    resolution : sequence of float, optional
        Pixel size of ``s0`` along (Y, X), in ``unit``.
    is_label : bool
        Label images are subsampled, not averaged.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image {name!r}: need at least 2 dimensions, got shape {image.shape}")
    if n_scales is None:
        n_scales = 1
        while min(image.shape[-2:]) // 2 ** n_scales >= min_size:
            n_scales += 1
    if name in container:
        del container[name]
    group = container.require_group(name)
    level, factors = image, []
    for scale in range(n_scales):
        if scale:
            level = downsample(level, 2, is_label)
        factors.append([2 ** scale] * 2)
        level_chunks = chunks or ((1,) * (level.ndim - 2) + tuple(min(s, 512) for s in level.shape[-2:]))
        create_dataset(group, f"s{scale}", data=level, chunks=level_chunks, compression=compression)
    if contrast_limits is None and image.size:
        lo, hi = np.percentile(image[..., ::4, ::4], [0.5, 99.5])
        contrast_limits = [float(lo), float(hi)]
    write_attrs(group, {
        "multiScale": True,
        "downsamplingFactors": factors,
        "resolution": list(resolution) if resolution is not None else [1.0, 1.0],
        "unit": unit,
        "contrastLimits": contrast_limits,
        "visible": bool(visible),
        "isLabel": bool(is_label),
    })
    return group


def read_image(container, name, scale=0, roi=np.s_[...]):
    """Read level ``scale`` of a pyramid written by :func:`write_image` (or a plain dataset)."""
    obj = container[name]
    if hasattr(obj, "shape"):  # a plain dataset: no pyramid
        if scale:
            raise KeyError(f"{name!r} is a single dataset, it has no scale {scale}")
        return obj[roi]
    key = f"s{scale}"
    if key not in obj:
        raise KeyError(f"image {name!r} has no scale level {key}")
    return obj[key][roi]


def image_attrs(container, name) -> dict:
    """Viewer attributes of a pyramid image."""
    return read_attrs(container[name])
