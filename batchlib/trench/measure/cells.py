"""Per-cell measurements of a whole stack of labelled trench crops."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import CellIndex, as_nt, check_channels
from ._kernels import group_extents, group_order, group_percentile, group_row_counts
from .background import SOURCES, crop_backgrounds


def measure_cells(labels, intensities=None, pixel_size_um=None, background="trench",
                  empty_trench_mask=None, *, percentile=95.0, dilate=2,
                  min_background_pixels=50, lumen_columns=None, pole_codes=None) -> pd.DataFrame:
    """Measure every labelled cell of a stack of trench crops.

    All cells of all crops are reduced at once (``bincount`` over the labelled
    pixels of the whole stack, numba for percentiles); there is no loop over
    crops or cells in Python.

    Parameters
    ----------
    labels : ndarray of int, shape (N, T, H, W)
        Label images of trench crops, trench axis vertical (closed end at row 0).
        ``(H, W)`` and ``(T, H, W)`` are read as ``N = 1`` / ``T = 1``.
    intensities : dict of str to ndarray, optional
        Channel name -> image stack of the same shape as ``labels``.
    pixel_size_um : float, optional
        Pixel size in micrometres; the ``*_um`` columns are NaN without it.
    background : {"trench", "empty_trenches"} or float
        How the per-crop background is estimated, see
        :mod:`batchlib.trench.measure.background`.
    empty_trench_mask : array of bool, shape (N,) or (N, T), optional
        Which trenches are empty; default: the crops without any label.
    percentile : float
        The per-cell percentile reported as ``<ch>_p95`` (named ``<ch>_p<q>``).
    dilate : int
        Cells are dilated by this many pixels before their complement is used
        as background.
    min_background_pixels : int
        Fewer cell-free lumen pixels than this mark a crop as full.
    lumen_columns : array of bool, shape (W,) or (N, W), optional
        Lumen columns used for the background; inferred from the cells by default.
    pole_codes : ndarray of uint8, shape (N, T, H, 2), optional
        Where the cells' free poles lie within their pixels, by row
        (:func:`batchlib.trench.segmentation.poles.pole_fractions`: the Segment
        job keeps them with U-Net labels). ``length_px`` is then measured to a
        fraction of a pixel.

    Returns
    -------
    pandas.DataFrame
        One row per ``(n, t, label)``, sorted that way, with columns ``n, t,
        label, area, length_px`` (along the trench axis, float: the row extent;
        with ``pole_codes``, from pole to pole: the extent less a pixel plus each
        pole's fraction of its end pixel, half a pixel where it is not known),
        ``width_px`` (across it: median over the cell's rows of its pixels in
        the row), ``centroid_y, centroid_x`` (crop pixels),
        ``length_um, width_um, area_um2``, ``at_open_end`` (the cell touches the
        last row, so its length is truncated), ``background_source`` and, for
        each channel, ``<ch>_mean, <ch>_total, <ch>_p95, <ch>_background,
        <ch>_mean_bgsub``.
    """
    lab = as_nt(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {lab.dtype}")
    channels = check_channels(intensities, lab.shape)
    idx = CellIndex(lab)
    data = _shape_columns(idx, lab.shape, pixel_size_um, pole_codes)
    if channels:
        bg, source = crop_backgrounds(lab, channels, background, empty_trench_mask,
                                      dilate, min_background_pixels, lumen_columns)
        data["background_source"] = SOURCES[source.reshape(-1)[idx.crop]].astype(str)
        data.update(_intensity_columns(idx, channels, bg, percentile))
    return pd.DataFrame(data)


def _shape_columns(idx, shape, pixel_size_um, pole_codes=None) -> dict:
    """Index, size and position columns of every cell of ``idx`` (see :func:`measure_cells`)."""
    n_tr, n_t, h, w = shape
    rows, cols = idx.rows_cols()
    area = idx.area.astype(np.float64)
    ymin, ymax, _, _ = group_extents(idx.flat_idx, idx.gid, idx.n_cells, h, w)
    px = np.nan if pixel_size_um is None else float(pixel_size_um)
    length = ymax - ymin + 1
    if pole_codes is not None:
        length = _pole_to_pole(pole_codes, (n_tr * n_t, h), idx.crop, ymin, ymax)
    # Width: median over the cell's rows of its pixels in the row; unlike the
    # column extent, one stray pixel beside the cell does not change it.
    row_g, row_n = group_row_counts(idx.flat_idx, idx.gid, idx.n_cells, h, w)
    width = group_percentile(row_n, *group_order(row_g, idx.n_cells), 50.0)
    return {
        "n": (idx.crop // n_t).astype(np.int32),
        "t": (idx.crop % n_t).astype(np.int32),
        "label": idx.label.astype(np.int64),
        "area": idx.area.astype(np.int64),
        # float whichever way it was measured: one column type for every method and
        # position (the folder's parquet files are read as one table)
        "length_px": length.astype(np.float64),
        "width_px": width,
        "centroid_y": idx.sum(rows.astype(np.float64)) / area,
        "centroid_x": idx.sum(cols.astype(np.float64)) / area,
        "length_um": length * px,
        "width_um": width * px,
        "area_um2": area * px * px,
        "at_open_end": ymax == h - 1,
    }


def _pole_to_pole(pole_codes, crops_h, crop, ymin, ymax) -> np.ndarray:
    """Lengths (px, float) from the first to the last row's poles (see :func:`measure_cells`)."""
    from ..segmentation.poles import decode_fractions

    codes = np.asarray(pole_codes)
    if codes.shape[-1] != 2 or codes.size != 2 * crops_h[0] * crops_h[1]:
        raise ValueError(f"pole_codes {codes.shape} do not match labels of {crops_h[0]} crops "
                         f"of {crops_h[1]} rows")
    codes = codes.reshape(*crops_h, 2)
    top = decode_fractions(codes[crop, ymin, 0])
    bottom = decode_fractions(codes[crop, ymax, 1])
    return (ymax - ymin).astype(np.float64) + top + bottom


def _intensity_columns(idx, channels, bg, percentile) -> dict:
    """Per channel: mean, total, percentile, background and background-subtracted mean."""
    area = idx.area.astype(np.float64)
    order, starts = group_order(idx.gid, idx.n_cells)
    data = {}
    for ch, arr in channels.items():
        values = arr.reshape(-1)[idx.flat_idx].astype(np.float64)
        total = idx.sum(values)
        mean = total / area
        cell_bg = bg[ch].reshape(-1)[idx.crop]
        data[f"{ch}_mean"] = mean
        data[f"{ch}_total"] = total
        data[f"{ch}_p{percentile:g}"] = group_percentile(values, order, starts, float(percentile))
        data[f"{ch}_background"] = cell_bg
        data[f"{ch}_mean_bgsub"] = mean - cell_bg
    return data
