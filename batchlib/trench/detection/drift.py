"""Stage drift between a reference frame and later frames.

Cross-correlation of block-averaged whole frames (about 512 px on the short
side), with the sub-pixel peak from a local upsampled DFT of the cross-power
spectrum (Guizar-Sicairos et al., 2008) restricted to the low frequencies
that carry the signal, which keeps it to a few small matrix products. Hann
windows keep the frame borders from pulling the peak towards zero.

Design notes, measured on synthetic movies (``benchmarks/bench_detection.py``):

* The spectra are *not* whitened (no phase correlation): whitening gives the
  fine texture of the cells, which grow and move along the trenches between
  frames, as much weight as the static chip, and was wrong by whole cell
  lengths in one frame of three; the plain cross-correlation is dominated by
  the chip (median error 0.06 px against 0.23 px).
* The whole frame beats a full-resolution window (0.06 px against 0.32 px on
  2048 x 2048): static structure with vertical information (trench ends,
  feeding channel walls) is sparse and a window sees little of it.

Sign: ``frame(y, x) = reference(y - dy, x - dx)``, i.e. the content of
``frame`` is the reference moved by ``+(dy, dx)`` (geometry's drift).
"""
from __future__ import annotations

import numpy as np
from scipy import fft

from ._common import block_mean

__all__ = ["estimate_drift", "estimate_drift_stack", "DriftEstimator"]


def _window(shape):
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _spectrum(img, win):
    img = np.asarray(img, dtype=np.float32)
    return fft.fft2((img - img.mean()) * win, workers=1)


#: A correlation peak within this many pixels of the expected drift is kept when it is
#: at least :data:`NEAR_PRIOR_TIE` of the highest (:func:`_integer_peak`).
NEAR_PRIOR_PX = 4.0
NEAR_PRIOR_TIE = 0.9


def _integer_peak(c, prior=(0.0, 0.0), tie=0.97, n_top=64, near=None):
    """Integer correlation peak; among near-equal peaks the one nearest ``prior``.

    A trench array is periodic: shifts by whole pitches correlate almost as
    well as the true one when little else is in view, and the winner can then
    be decided by the cells that moved. Stage drift is slow, so the peak
    closest to the expected drift (0, or the previous frame's) is taken. When
    that is more than ``near`` (pixels of ``c``) away, the peak next to the
    expected drift still wins if it reaches :data:`NEAR_PRIOR_TIE` of the highest:
    cells that grew and moved along their trenches can correlate a little better
    at a shift of a cell's length (independent simulator 1090: 0.955 of the
    highest at the true drift, -21.6 px along the trenches taken, and the frame
    after kept it as its prior).
    """
    corr = fft.ifft2(c, workers=1).real
    size = np.array(corr.shape)
    flat = corr.ravel()
    top = np.argpartition(flat, -n_top)[-n_top:]
    base = float(np.median(flat[:: max(1, flat.size // 4096)]))
    best = flat[top].max()
    near_best = top[(flat[top] - base) >= tie * (best - base)]
    pts = np.stack(np.unravel_index(near_best, corr.shape), axis=1).astype(float)
    pts[pts > size / 2] -= np.broadcast_to(size, pts.shape)[pts > size / 2]
    prior = np.asarray(prior, float)
    peak = _climb(corr, np.rint(pts[np.argmin(np.hypot(*(pts - prior).T))]).astype(int))
    if near is not None and np.hypot(*(peak - prior)) > near:
        local = _climb(corr, np.rint(prior).astype(int))
        value = corr[local[0] % size[0], local[1] % size[1]]
        if np.hypot(*(local - prior)) <= near and value - base >= NEAR_PRIOR_TIE * (best - base):
            peak = local
    return peak.astype(float)


def _climb(corr, start, steps=8):
    """The local maximum of ``corr`` (periodic) reached uphill from pixel ``start``."""
    size = np.array(corr.shape)
    for _ in range(steps):
        nbr = start + np.array([[dy, dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        vals = corr[nbr[:, 0] % size[0], nbr[:, 1] % size[1]]
        nxt = nbr[np.argmax(vals)]
        if np.array_equal(nxt, start):
            break
        start = nxt
    return start


def _upsampled_peak(c, centre, upsample, keep_frac=0.25, span=1.5):
    """Sub-pixel peak of the inverse DFT of ``c`` near ``centre`` (local DFT)."""
    m, n = c.shape
    ky = np.rint(fft.fftfreq(m) * m)
    kx = np.rint(fft.fftfreq(n) * n)
    sel_y = np.abs(ky) <= keep_frac * m
    sel_x = np.abs(kx) <= keep_frac * n
    c = c[np.ix_(sel_y, sel_x)]
    ky, kx = ky[sel_y], kx[sel_x]
    offs = np.arange(-span, span + 1e-9, 1.0 / upsample)
    ys, xs = centre[0] + offs, centre[1] + offs
    ker_y = np.exp(2j * np.pi * np.outer(ys, ky) / m)
    ker_x = np.exp(2j * np.pi * np.outer(kx, xs) / n)
    corr = (ker_y @ c @ ker_x).real
    iy, ix = np.unravel_index(np.argmax(corr), corr.shape)
    d = [0.0, 0.0]
    for axis, (i, line) in enumerate(((iy, corr[:, ix]), (ix, corr[iy, :]))):
        if 0 < i < len(offs) - 1:
            a, b, e = line[i - 1], line[i], line[i + 1]
            den = a - 2 * b + e
            d[axis] = 0.5 * (a - e) / den if den < 0 else 0.0
    return np.array([ys[iy] + d[0] / upsample, xs[ix] + d[1] / upsample])


class DriftEstimator:
    """Drift of frames against one reference, with the reference's work done once.

    Parameters
    ----------
    reference : array_like, shape (H, W)
    upsample : int
        The correlation peak is searched on a ``1 / upsample`` (low-resolution)
        pixel grid, then interpolated.
    factor : int, optional
        Block size of the averaging (default: about 512 px on the short side).
    roi : (y0, y1, x0, x1), optional
        Only this part of the frames is compared (default: all of it).
    prior : (dy, dx), optional
        The drift expected for the first frame given (default ``(0, 0)``); an
        incremental run passes the last drift it stored, so that it decides
        as a run over the whole movie did.

    One estimator serves one movie (a position): it holds no state beyond
    its reference and :attr:`last`, the prior of the next call.
    """

    def __init__(self, reference, upsample=20, factor=None, roi=None, prior=None):
        ref = np.asarray(reference)
        if ref.ndim != 2:
            raise ValueError("reference must be 2-D")
        self.shape = ref.shape
        self.roi = (0, ref.shape[0], 0, ref.shape[1]) if roi is None else tuple(int(v) for v in roi)
        ref = self._cut(ref)
        self.upsample = int(upsample)
        self.factor = int(factor) if factor else max(1, int(round(min(ref.shape) / 512)))
        low = block_mean(ref, self.factor)
        self._win = _window(low.shape)
        self._ref = np.conj(_spectrum(low, self._win))
        self.last = np.zeros(2) if prior is None else np.asarray(prior, float).reshape(2)

    def _cut(self, img):
        y0, y1, x0, x1 = self.roi
        return img[y0:y1, x0:x1]

    def __call__(self, frame, prior=None):
        """Return ``(dy, dx)`` of ``frame`` relative to the reference.

        ``prior`` is the expected drift; by default the previous result of this
        estimator (frames are usually given in time order), else ``(0, 0)``.
        """
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from reference {self.shape}")
        prior = self.last if prior is None else np.asarray(prior, float)
        c = _spectrum(block_mean(self._cut(frame), self.factor), self._win) * self._ref
        peak = _integer_peak(c, prior / self.factor, near=NEAR_PRIOR_PX / self.factor)
        d = _upsampled_peak(c, peak, self.upsample) * self.factor
        self.last = d
        return float(d[0]), float(d[1])


def estimate_drift(reference, frame, upsample=20, factor=None, roi=None, prior=None):
    """Sub-pixel translation of ``frame`` relative to ``reference``.

    Parameters
    ----------
    reference, frame : array_like, shape (H, W)
    upsample : int
        Sub-pixel resolution of the peak search (see :class:`DriftEstimator`).
    factor, roi
        See :class:`DriftEstimator`.
    prior : (dy, dx), optional
        Expected drift (default ``(0, 0)``).

    Returns
    -------
    (dy, dx) : tuple of float
        Content of ``frame`` = reference moved by ``+(dy, dx)``.

    Notes
    -----
    Shifts by whole trench pitches are hard to tell apart inside a periodic
    array: the whole frame (array ends, feeding channel, debris) is used, and
    among correlation peaks within 3 % of the best the one nearest ``prior``
    is taken, since stage drift is slow. Each call transforms the reference:
    for many frames against one reference use :class:`DriftEstimator` or
    :func:`estimate_drift_stack`, which do that once.
    """
    return DriftEstimator(reference, upsample, factor, roi)(frame, prior)


def estimate_drift_stack(reference, frames, upsample=20, factor=None, roi=None):
    """Drift of every frame of ``frames`` (T, H, W) against ``reference``; returns (T, 2)."""
    est = DriftEstimator(reference, upsample, factor, roi)
    return np.array([est(f) for f in frames], dtype=float).reshape(-1, 2)
