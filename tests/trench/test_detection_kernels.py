"""The detection's numba kernels give what the plain numpy expressions they replaced give."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from batchlib.trench.detection._common import nanmean
from batchlib.trench.detection._sampling import rotated_band_image, rotated_samples
from batchlib.trench.detection.centres import _harmonic_power
from batchlib.trench.detection.ends import signal_extents, smooth, smooth_columns
from batchlib.trench.detection.rotation import _sharpness, set_band_mask
from batchlib.trench.detection.selfcheck import _column_mad
from batchlib.trench.geometry import frame_center


@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_nanmean_is_numpys_and_nan_where_nothing_is_finite(axis, keepdims):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 5, 9)) * 100
    a[rng.uniform(size=a.shape) < 0.3] = np.nan
    a[2] = np.nan  # an all-NaN slice along axes 1 and 2
    a[0, 0, 0] = np.inf  # not finite: ignored like NaN
    finite = np.where(np.isfinite(a), a, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on all-NaN slices
        expected = np.nanmean(finite, axis=axis, keepdims=keepdims)
    got = nanmean(a, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def test_sharpness_is_the_shift_and_add_power():
    rng = np.random.default_rng(1)
    spec = rng.normal(size=(40, 12)) + 1j * rng.normal(size=(40, 12))
    freq = np.sort(rng.uniform(0.01, 0.45, 12))
    angles = np.deg2rad(np.linspace(-3, 3, 7))
    for dy in (np.arange(40) * 8.0 - 160.0,                      # equally spaced bands
               np.sort(rng.uniform(-500, 500, 40))):             # a set's bands with gaps
        phase = 2j * np.pi * np.tan(angles)[:, None, None] * dy[None, :, None] * freq
        expected = (np.abs((spec[None] * np.exp(phase)).sum(axis=1)) ** 2).sum(axis=1)
        np.testing.assert_allclose(_sharpness(spec, freq, dy, angles), expected, rtol=1e-11)


def test_harmonic_power_with_gaps_in_the_columns():
    rng = np.random.default_rng(2)
    x = np.flatnonzero(rng.uniform(size=700) > 0.1).astype(float)  # whole columns, some gaps
    v = rng.normal(size=x.size)
    f = 1 / 23.7
    n = np.arange(1, 4)[:, None]
    expected = float((np.abs(np.exp(-2j * np.pi * f * n * x[None, :]) @ v) ** 2).sum())
    assert _harmonic_power(x, v, f, 3) == pytest.approx(expected, rel=1e-11)


def _numpy_bilinear(img, ys, xs):
    """The sampling as it was written in numpy: clamped within half a pixel, NaN beyond."""
    ny, nx = img.shape
    inside = (ys >= -0.5) & (ys <= ny - 0.5) & (xs >= -0.5) & (xs <= nx - 0.5)
    y = np.clip(ys, 0, ny - 1)
    x = np.clip(xs, 0, nx - 1)
    out = ndimage.map_coordinates(img.astype(float), [y, x], order=1, mode="nearest")
    return np.where(inside, out, np.nan)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_rotated_samples_are_bilinear_and_nan_outside(dtype):
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1000, (60, 80)).astype(dtype)
    rows, cols = np.arange(-5, 66, 0.7), np.arange(-5, 86, 1.3)
    cy, cx = frame_center(img.shape)
    a = np.deg2rad(2.5)
    dy, dx = rows[:, None] - cy, cols[None, :] - cx
    ys, xs = cy + np.cos(a) * dy - np.sin(a) * dx, cx + np.sin(a) * dy + np.cos(a) * dx
    got = rotated_samples(img, img.shape, 2.5, rows, cols)
    expected = _numpy_bilinear(img, ys, xs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)
    assert np.isnan(got).any() and np.isfinite(got).any()


def test_rotated_band_image_reads_band_rows():
    rng = np.random.default_rng(4)
    bands = rng.normal(size=(12, 50))
    band_y = np.arange(12) * 8 + 3.5
    got = rotated_band_image(bands, band_y, (96, 50), 0.0, band_y)
    np.testing.assert_allclose(got, bands)  # at angle 0 every band row is its own profile


def test_set_band_mask_is_the_rotated_row_range():
    band_y = np.arange(64) * 8 + 3.5
    shape, angle, y0, y1 = (512, 300), 1.7, 120.0, 380.0
    cy, cx = frame_center(shape)
    a = np.deg2rad(angle)
    y_rot = (cy + np.cos(a) * (band_y[:, None] - cy)
             + np.sin(a) * (np.arange(300.0) - cx)[None, :])
    np.testing.assert_array_equal(set_band_mask(band_y, shape, angle, y0, y1),
                                  (y_rot >= y0) & (y_rot <= y1))


def test_column_mad_is_the_median_absolute_deviation():
    rng = np.random.default_rng(5)
    for shape in ((229, 40), (10, 3), (1, 4), (6, 1)):
        a = np.round(rng.normal(size=shape) * 3)  # ties, as whole grey levels give
        med = np.median(a, axis=0)
        np.testing.assert_array_equal(_column_mad(a), np.median(np.abs(a - med), axis=0))


def _signal_extent(rows, profile, inside_rows, fraction=0.5):
    """One column at a time, as the detection measured it before it was vectorised."""
    p = np.nan_to_num(np.asarray(profile, float))
    level = np.percentile(p[inside_rows], 90)
    if not level > 0:
        return np.nan, np.nan
    thr = fraction * level
    above = np.flatnonzero(p > thr)

    def interp(i, j):  # crossing between samples i (above) and j (below)
        if j < 0 or j >= p.size:
            return float(rows[i])
        f = (p[i] - thr) / (p[i] - p[j]) if p[i] != p[j] else 0.5
        return float(rows[i] + f * (rows[j] - rows[i]))
    return interp(above[0], above[0] - 1), interp(above[-1], above[-1] + 1)


def test_signal_extents_are_the_per_column_extents():
    rng = np.random.default_rng(6)
    rows = np.arange(120) + 40.0
    profiles = rng.normal(size=(120, 9)) + 3 * ((rows[:, None] > 60) & (rows[:, None] < 140))
    profiles[:, 0] = -1.0  # no positive level: NaN
    profiles[rng.uniform(size=profiles.shape) < 0.03] = np.nan
    inside = (rows > 70) & (rows < 130)
    expected = np.array([_signal_extent(rows, smooth(profiles[:, i], 1.0), inside)
                         for i in range(9)])
    got = signal_extents(rows, smooth_columns(profiles, 1.0), inside)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all()
