"""Per-pixel kernels: the rotated-to-raw warp and the camera model.

Both are single passes over the frame in numba: a 2048 x 2048 bilinear warp of
several planes at once costs about as much as one scipy ``affine_transform`` of
one plane, and drawing Poisson/normal noise inside the loop avoids numpy's
temporaries.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from .. import geometry

__all__ = ["raw_to_canvas_affine", "warp_to_raw", "camera"]


def raw_to_canvas_affine(angle_deg, shape, drift_yx, margin):
    """``(A, o)`` with canvas index ``= A @ (y, x) + o`` for raw pixel ``(y, x)``.

    Derived from :func:`geometry.raw_to_rotated` so that the warp follows the
    shared convention exactly.
    """
    basis = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = geometry.raw_to_rotated(basis, angle_deg, shape, drift_yx)
    A = np.column_stack([p[1] - p[0], p[2] - p[0]])
    return A, p[0] + margin


@nb.njit(cache=True)
def _warp(planes, labels, a00, a01, a10, a11, o0, o1, out, out_labels):
    n, hs, ws = planes.shape
    h, w = out_labels.shape
    ymax, xmax = hs - 1.000001, ws - 1.000001
    for i in range(h):
        for j in range(w):
            y = min(max(a00 * i + a01 * j + o0, 0.0), ymax)
            x = min(max(a10 * i + a11 * j + o1, 0.0), xmax)
            y0 = int(y)
            x0 = int(x)
            fy = y - y0
            fx = x - x0
            w00 = (1 - fy) * (1 - fx)
            w01 = (1 - fy) * fx
            w10 = fy * (1 - fx)
            w11 = fy * fx
            for c in range(n):
                out[c, i, j] = (w00 * planes[c, y0, x0] + w01 * planes[c, y0, x0 + 1]
                                + w10 * planes[c, y0 + 1, x0] + w11 * planes[c, y0 + 1, x0 + 1])
            out_labels[i, j] = labels[int(y + 0.5), int(x + 0.5)]


def warp_to_raw(planes, labels, angle_deg, shape, drift_yx, margin):
    """Sample canvas ``planes`` (bilinear) and ``labels`` (nearest) on the raw grid.

    Parameters
    ----------
    planes : ndarray, shape (n, Hc, Wc), float32
    labels : ndarray, shape (Hc, Wc), int32
    angle_deg, shape, drift_yx
        The frame (see :mod:`batchlib.trench.geometry`).
    margin : int
        Canvas padding (canvas index = rotated coordinate + margin).

    Returns
    -------
    raw : ndarray, shape (n,) + shape, float32
    raw_labels : ndarray, shape, int32
    """
    A, o = raw_to_canvas_affine(angle_deg, shape, drift_yx, margin)
    out = np.empty((planes.shape[0],) + tuple(shape), np.float32)
    out_labels = np.empty(tuple(shape), np.int32)
    _warp(np.ascontiguousarray(planes, np.float32), np.ascontiguousarray(labels, np.int32),
          A[0, 0], A[0, 1], A[1, 0], A[1, 1], o[0], o[1], out, out_labels)
    return out, out_labels


@nb.njit(cache=True)
def _camera(rng, signal, gain, add, e_per_count, read_noise, offset, exact_below, out):
    s = signal.ravel()
    g = gain.ravel()
    o = out.ravel()
    for i in range(s.size):
        lam = max(g[i] * (s[i] + add), 0.0) * e_per_count
        if lam < exact_below:
            # Inversion is exact and cheap for the few-electron counts it handles.
            u = rng.random()
            k = 0
            p = math.exp(-lam)
            cdf = p
            while u > cdf and k < 1000:
                k += 1
                p *= lam / k
                cdf += p
            v = k / e_per_count + read_noise * rng.standard_normal()
        else:
            # Normal approximation of shot plus read noise: one draw per pixel.
            v = lam / e_per_count + math.sqrt(lam / e_per_count ** 2 + read_noise ** 2) \
                * rng.standard_normal()
        o[i] = min(max(round(v + offset), 0.0), 65535.0)


def camera(signal, gain, rng, *, add=0.0, electrons_per_count=1.0, read_noise=2.0,
           offset=100.0, exact_poisson_below=10.0) -> np.ndarray:
    """Turn expected intensities into uint16 camera counts.

    The expected photo-electrons are ``gain * (signal + add) * electrons_per_count``;
    shot noise is Poisson (exact below ``exact_poisson_below`` electrons, its
    normal approximation above), then Gaussian read noise and the offset are
    added and the result rounded and clipped to uint16.
    """
    out = np.empty(signal.shape, np.uint16)
    _camera(rng, np.ascontiguousarray(signal, np.float32), np.ascontiguousarray(gain, np.float32),
            float(add), float(electrons_per_count), float(read_noise), float(offset),
            float(exact_poisson_below), out)
    return out
