"""Crops brought to the magnification the U-Net was trained on.

The shipped U-Net was trained on generated positions with 0.1 µm pixels
(lumens of 12-16 px, cells about 10 px wide, a PSF of 1.2-1.6 px). Many
setups image at other magnifications: 100x with 6.5 µm camera pixels gives
0.065 µm pixels, where everything, cells and blur alike, is 1.5 times larger.
The generator's nominal position rendered at other magnifications (every
length and the PSF scaled by ``s``, true boxes, 2 seeds each, `.scratch`
runs of 2026-12-04) showed how narrow the network's comfort is:

=====  ===============================  ============================
``s``  as it is (phase / fluorescence)  resized by 1/s first
=====  ===============================  ============================
0.5    F1 0.70-0.73 / 0.94-0.99         F1 0.93-0.98 / 0.91-0.96
0.75   IoU 0.90 / 0.95                  IoU 0.97 / 0.97
1.12   IoU 0.93 / 0.94                  IoU 0.94 / 0.96
1.25   mother within 5 % 1.0 / 0.75     1.0 / 1.0
1.4    F1 1.0-0.99 / 0.94-0.97,         F1 1.0 / 1.0, mothers
       mothers 0.82-0.98 / 0.68-0.80    1.0 / 1.0
1.8    F1 0.93-0.95 / 0.53-0.56,        F1 0.99 / 1.0, mothers
       mothers 0.96-0.97 / 0.0-0.02     1.0 / 1.0
=====  ===============================  ============================

Near the trained scale the resampling itself costs (at ``s`` = 0.93: IoU
0.97 -> 0.95), so crops are resized only outside 0.85-1.1.

The factor comes from the pixel size the acquisition records, not from the
trench width in pixels: at one magnification chips differ (the geometry
family: lumens of 10-20 px under the same optics, which the network
segments as it is), and resizing those by their lumen width made them worse
on tuning seeds 4-7 (phase geometry 5, a 10.5 px lumen enlarged 1.33 times:
F1 1.0 -> 0.72; geometry 6, a 19.4 px lumen shrunk: fluorescence mothers
1.0 -> 0.0, its PSF shrunk to 1.1 px, sharper than any trained). An
acquisition without a pixel size, or with one no mother-machine
magnification gives (outside 0.03-0.3 µm), is left as it is; ``zoom`` in
``--segment_method_params`` sets the factor by hand.

:func:`zoomed_probabilities` runs a prediction on the resized crops and
brings its probabilities back to the crops' own pixels, so that labels,
lengths and every later step are in the frame's pixels.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TRAINED_PIXEL_UM", "TRAINED_WIDTH_PX", "KEEP_BETWEEN", "zoom_for", "zoomed_probabilities",
           "unknown_magnification_warning", "linear_weights", "resized"]

#: Pixel size (µm) of the U-Net's training positions.
TRAINED_PIXEL_UM = 0.1
#: Crops whose magnification relative to the trained one (trained pixel size over
#: theirs) lies in this range are not resized (see the module docstring).
KEEP_BETWEEN = (0.85, 1.1)
#: Pixel sizes (µm) outside this range are taken for missing or wrong metadata.
PLAUSIBLE_PIXEL_UM = (0.03, 0.3)
#: Width (px) of the U-Net's training crops, the lumen in their middle. Resized crops
#: wider than this are cut to it about their middle: padded at their right to the next
#: multiple of 8 instead, 33 columns became 40 and independent simulator 1105 (0.127 µm
#: pixels, zoom 1.27) and 1101 (0.149 µm, 1.49) had their mothers 1.3-1.5 px short,
#: within 5 % 0.33 and 0.46; cut to 32, 0.90 and 0.93. Narrower ones keep the network's
#: padding at their right: centred instead (a column on the left for 31), independent
#: 1020 lost F1 0.968 -> 0.832 (the network's 2 x 2 folding sees the crop a pixel over).
TRAINED_WIDTH_PX = 32


def zoom_for(pixel_size_um) -> float:
    """The factor that brings crops with pixels of ``pixel_size_um`` to the trained
    magnification (1 within :data:`KEEP_BETWEEN`, or without a plausible pixel size).

    Examples
    --------
    >>> zoom_for(0.1), zoom_for(0.095), round(zoom_for(0.065), 3), round(zoom_for(0.16), 3)
    (1.0, 1.0, 0.65, 1.6)
    >>> zoom_for(None), zoom_for(1.0)                   # unknown; metadata's default
    (1.0, 1.0)
    """
    if pixel_size_um is None:
        return 1.0
    px = float(pixel_size_um)
    if not (np.isfinite(px) and PLAUSIBLE_PIXEL_UM[0] <= px <= PLAUSIBLE_PIXEL_UM[1]):
        return 1.0
    magnification = TRAINED_PIXEL_UM / px
    return 1.0 if KEEP_BETWEEN[0] <= magnification <= KEEP_BETWEEN[1] else px / TRAINED_PIXEL_UM


#: The lumen width TrenchDetection measures at the trained magnification (nominal
#: chip): phase 14 px; fluorescence, which sees the cells' bright core, 8 px.
TRAINED_LUMEN_PX = {"phase": 14.0, "fluorescence": 8.0}
#: Without a pixel size, lumens outside this share of the trained width are warned
#: about (the geometry family's 10-20 px lumens at 0.1 µm segment well; 25 px ones
#: seen 1.8 times larger did not).
PLAUSIBLE_LUMEN = (0.65, 1.45)


def unknown_magnification_warning(lumen_width, detected_kind, pixel_size_um):
    """A warning when the acquisition records no pixel size and the lumens are far
    wider or narrower than at the trained magnification (else ``None``).

    Examples
    --------
    >>> unknown_magnification_warning(14.0, "phase", None) is None
    True
    >>> print(unknown_magnification_warning(25.0, "phase", None))  # doctest: +ELLIPSIS
    the trench lumens are 25 px wide, 1.8 times ... set --ingest_pixel_size_um ...
    >>> unknown_magnification_warning(25.0, "phase", 0.056) is None   # resized already
    True
    """
    if pixel_size_um is not None or lumen_width is None or not np.isfinite(lumen_width):
        return None
    ref = TRAINED_LUMEN_PX.get(detected_kind)
    if ref is None or PLAUSIBLE_LUMEN[0] * ref <= lumen_width <= PLAUSIBLE_LUMEN[1] * ref:
        return None
    ratio = lumen_width / ref
    return (f"the trench lumens are {lumen_width:.0f} px wide, {ratio:.1f} times what the U-Net "
            f"was trained on ({ref:.0f} px at {TRAINED_PIXEL_UM} µm pixels), and the files record "
            f"no pixel size: if the magnification differs, set --ingest_pixel_size_um (or "
            f"--segment_method_params zoom={1 / ratio:.2f}) and rerun; until then expect cells "
            "merged or split and lengths off")


def zoomed_probabilities(predict, crops, zoom: float):
    """``predict(shrunk crops)`` brought back to the crops' own pixels.

    Parameters
    ----------
    predict : callable
        Class probabilities ``(C, M, h, w)`` of ``(M, h, w)`` crops.
    crops : ndarray, shape (..., H, W)
    zoom : float
        Factor of both axes (bilinear, as the crops are sampled); 1 calls
        ``predict`` on the crops themselves.

    Returns
    -------
    ndarray, shape (C, ..., H, W)
        Bilinear back to ``(H, W)``, the classes summing to 1 again.

    Examples
    --------
    >>> crops = np.zeros((2, 40, 24), np.float32)
    >>> def predict(c):                                  # a stand-in: uniform classes
    ...     return np.full((3, *c.shape), 1 / 3, np.float32)
    >>> zoomed_probabilities(predict, crops, 0.5).shape
    (3, 2, 40, 24)
    """
    shape = np.shape(crops)
    if zoom == 1.0:
        return predict(np.asarray(crops))
    h, w = shape[-2:]
    size = (max(8, int(round(h * zoom))), max(8, int(round(w * zoom))))
    x = np.asarray(crops, np.float32).reshape(-1, h, w)
    # shrinking: the value of an area, not of a point (antialias), as a coarser camera
    small = resized(x, size, antialias=zoom < 1.0)
    # wider than the network's training crops, they are cut to that width about their
    # middle (see TRAINED_WIDTH_PX); narrower ones are padded by the network as before
    if size[1] > TRAINED_WIDTH_PX:
        left = (size[1] - TRAINED_WIDTH_PX) // 2
        seen = np.asarray(predict(np.ascontiguousarray(small[..., left:left + TRAINED_WIDTH_PX])),
                          np.float32)                                    # (C, M, h', 32)
        prob = np.zeros(seen.shape[:3] + (size[1],), np.float32)
        prob[0] = 1.0  # the columns the network did not see are background
        prob[..., left:left + TRAINED_WIDTH_PX] = seen
    else:
        prob = np.asarray(predict(small), np.float32)                    # (C, M, h', w')
    back = resized(prob.reshape(-1, *size), (h, w), antialias=False).reshape(prob.shape[:2] + (h, w))
    back /= np.maximum(back.sum(axis=0, keepdims=True), 1e-12)
    return back.reshape(prob.shape[0], *shape)


def linear_weights(n_in: int, n_out: int, antialias: bool = False) -> np.ndarray:
    """``(n_out, n_in)`` weights of bilinear resampling along one axis.

    PyTorch's ``interpolate(mode="bilinear", align_corners=False)`` along one
    axis, with its ``antialias`` (a triangle filter as wide as the shrink
    factor, as PIL) when shrinking; agrees with it within float32 rounding
    (tests/trench/test_unet_onnx.py), so the network sees the same crops
    without PyTorch.

    Examples
    --------
    >>> linear_weights(4, 2, antialias=True).round(3)
    array([[0.429, 0.429, 0.143, 0.   ],
           [0.   , 0.143, 0.429, 0.429]], dtype=float32)
    >>> linear_weights(2, 4).round(3)
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]], dtype=float32)
    """
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), np.float64)
    if antialias and scale > 1:
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - scale + 0.5), 0)
            hi = min(int(center + scale + 0.5), n_in)
            j = np.arange(lo, hi)
            tri = np.clip(1.0 - np.abs((j - center + 0.5) / scale), 0.0, None)
            weights[i, lo:hi] = tri / tri.sum()
    else:
        # in float32, as PyTorch computes the source positions
        scale32 = np.float32(n_in) / np.float32(n_out)
        src = np.maximum(scale32 * (np.arange(n_out, dtype=np.float32) + np.float32(0.5))
                         - np.float32(0.5), np.float32(0)).astype(np.float64)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = src - i0
        rows = np.arange(n_out)
        np.add.at(weights, (rows, i0), 1.0 - frac)
        np.add.at(weights, (rows, i1), frac)
    return weights.astype(np.float32)


def resized(images, size, antialias: bool = False) -> np.ndarray:
    """``(M, H, W)`` images resampled bilinearly to ``(M, *size)`` (:func:`linear_weights`)."""
    x = np.asarray(images, np.float32)
    rows = linear_weights(x.shape[-2], size[0], antialias)
    cols = linear_weights(x.shape[-1], size[1], antialias)
    return np.ascontiguousarray(rows @ x @ cols.T)
