"""The report's figures: plain functions from arrays and tables to PNG or JPEG bytes.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no
pyplot state), so they can be drawn from any thread, e.g. a live session's.
"""
from __future__ import annotations

import io

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas only for the annotations: the page of an unchanged folder never imports it
    import pandas as pd

#: Figure resolution: small enough that 20 positions stay well under 20 MB.
DPI = 80


def _figure(w_in, h_in):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w_in, h_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _jpeg(fig, quality=85) -> bytes:
    """Image-like figures (frames, kymographs): JPEG, a fraction of the PNG's size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=DPI, pil_kwargs={"quality": quality})
    return buf.getvalue()


def image_type(data: bytes) -> str:
    """``png`` or ``jpeg`` from the first bytes."""
    return "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"


def _margins(fig, wspace=0.2):
    """Fixed margins (``tight_layout`` measures every label: slow, and a figure a run)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.15 / w,
                        bottom=0.5 / h, top=1 - 0.3 / h, wspace=wspace)


def _empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _stretch(img) -> np.ndarray:
    """Percentile contrast stretch to [0, 1] (robust to hot pixels)."""
    img = np.asarray(img, dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99.5]) if img.size else (0, 1)
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def trench_overlay(frame, trenches: pd.DataFrame, scale: float = 1.0, title: str = "",
                   max_px: int = 640) -> bytes:
    """The first frame with the detected trench boxes (raw-frame corners ``raw_x0..3, raw_y0..3``).

    Parameters
    ----------
    frame : 2-D array
        The frame (or an overview of it, then ``scale`` = overview / frame size).
    max_px : int
        The frame is subsampled to at most this many pixels a side (the figure
        is for looking, not measuring).
    """
    from matplotlib.collections import PolyCollection

    step = max(1, int(np.ceil(max(frame.shape) / max_px)))
    img = _stretch(frame[::step, ::step])
    fig = _figure(6, 6 * img.shape[0] / img.shape[1] + 0.4)
    ax = fig.add_axes([0, 0, 1, 1 - 0.4 / fig.get_figheight()])
    ax.imshow(img, cmap="gray", interpolation="nearest")
    if len(trenches) and "raw_x0" in trenches:
        f = scale / step
        polys = [np.stack([[r[f"raw_x{i}"] * f, r[f"raw_y{i}"] * f] for i in range(4)])
                 for _, r in trenches.iterrows()]
        empty = trenches["empty"].astype(bool).to_numpy() if "empty" in trenches else \
            np.zeros(len(polys), bool)
        ax.add_collection(PolyCollection(polys, facecolors="none", linewidths=0.8,
                                         edgecolors=np.where(empty[:, None], [[0.2, 0.6, 1, 1]],
                                                             [[1, 0.8, 0, 1]])))
    ax.set_axis_off()
    ax.set_title(title or f"{len(trenches)} trenches (blue: empty)", fontsize=9)
    return _jpeg(fig)


def drift_plot(drift: pd.DataFrame, times_h=None) -> bytes:
    """Drift ``dy``, ``dx`` (pixels) against frame (or hours when ``times_h`` is given)."""
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    if drift is None or not len(drift):
        _empty(ax, "no drift table")
    else:
        x = drift["t"].to_numpy() if times_h is None else times_h
        ax.plot(x, drift["dy"], label="dy")
        ax.plot(x, drift["dx"], label="dx")
        ax.set_xlabel("frame" if times_h is None else "time (h)")
        ax.set_ylabel("drift (px)")
        ax.legend(fontsize=7, frameon=False)
    ax.set_title("drift", fontsize=9)
    _margins(fig)
    return _png(fig)


def cells_per_frame(cells: pd.DataFrame, n_frames: int) -> bytes:
    """Number of cells segmented in every frame."""
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    if cells is None or not len(cells):
        _empty(ax, "no cells measured")
    else:
        counts = np.bincount(cells["t"].to_numpy().astype(int), minlength=n_frames)
        ax.plot(np.arange(len(counts)), counts, drawstyle="steps-mid")
        ax.set_xlabel("frame")
        ax.set_ylabel("cells")
        ax.set_ylim(bottom=0)
    ax.set_title("cells per frame", fontsize=9)
    _margins(fig)
    return _png(fig)


def kymograph_image(crops, labels, max_frames: int = 20) -> np.ndarray:
    """RGB kymograph of one trench: frames side by side, segmentation outlines in colour.

    Parameters
    ----------
    crops, labels : arrays (T, H, W)
    max_frames : int
        At most this many frames, evenly spaced (long movies stay readable).
    """
    from skimage.segmentation import find_boundaries

    t = np.unique(np.linspace(0, len(crops) - 1, min(max_frames, len(crops))).round().astype(int))
    # Shown twice as large: outlines one pixel wide on thin cells, not filled blobs.
    # 8-bit RGB, as the JPEG it ends in: a float image costs 4-8 times the memory, and
    # matplotlib copies it again (the report drawn after a 4 x 60-frame run: the peak
    # of the whole workflow)
    img = (_stretch(crops[t]) * 255 + 0.5).astype(np.uint8).repeat(2, axis=1).repeat(2, axis=2)
    rgb = np.repeat(img[..., None], 3, axis=-1)
    if labels is not None and len(labels) >= len(crops):
        for i, lab in enumerate(np.asarray(labels[t]).repeat(2, axis=1).repeat(2, axis=2)):
            rgb[i][find_boundaries(lab, mode="inner")] = (255, 64, 26)  # per frame, not across time
    rgb[:, :, -1] = 0  # a dark column between frames
    return np.concatenate(list(rgb), axis=1)


def kymographs(panels: list) -> bytes:
    """Kymographs stacked vertically; ``panels`` holds ``(title, rgb image)`` pairs."""
    if not panels:
        fig = _figure(6, 1)
        _empty(fig.add_subplot(), "no trench crops")
        return _png(fig)
    width = max(p[1].shape[1] for p in panels)
    height = sum(p[1].shape[0] for p in panels)
    w_in = min(12.0, max(4.0, width / DPI))
    fig = _figure(w_in, 0.35 * len(panels) + w_in * height / width * 1.05)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, rgb) in zip(axes, panels):
        ax.imshow(rgb, interpolation="nearest", aspect="equal")
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                        hspace=0.3 / (fig.get_figheight() / len(panels)))
    return _jpeg(fig)


def _binned_quantiles(x, y, n_bins):
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(idx):
        v = y[idx == b]
        rows.append((np.median(x[idx == b]), *np.percentile(v, [25, 50, 75])))
    return np.array(rows).T if rows else np.zeros((4, 0))


def distributions_over_time(cells: pd.DataFrame, columns: list, n_bins: int = 20) -> bytes:
    """Median and interquartile band of each column over time, all positions pooled.

    ``columns`` holds ``(column, label)`` pairs; time is hours where the
    table has ``time_s``, else frames.
    """
    cols = [(c, label) for c, label in columns if c in cells]
    fig = _figure(4.2 * max(1, len(cols)), 2.8)
    if not cols or not len(cells):
        _empty(fig.add_subplot(), "no cells measured")
        return _png(fig)
    has_time = "time_s" in cells and cells["time_s"].notna().all()
    x = (cells["time_s"].to_numpy() / 3600) if has_time else cells["t"].to_numpy(float)
    for i, (c, label) in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), i + 1)
        y = cells[c].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(x)
        if ok.sum() < 2:
            _empty(ax, f"no {label}")
            continue
        xm, q1, q2, q3 = _binned_quantiles(x[ok], y[ok], min(n_bins, len(np.unique(x[ok]))))
        ax.fill_between(xm, q1, q3, alpha=0.3, lw=0)
        ax.plot(xm, q2)
        ax.set_xlabel("time (h)" if has_time else "frame")
        ax.set_ylabel(label)
    _margins(fig, wspace=0.35)
    return _png(fig)


def cycle_figures(cycles: pd.DataFrame) -> bytes:
    """Generation time, elongation rate, birth/division length and the adder plot
    (added length against birth length) of the complete cell cycles."""
    fig = _figure(16, 3.2)
    axes = fig.subplots(1, 4)
    done = cycles[cycles["complete"].astype(bool)] if len(cycles) and "complete" in cycles else cycles
    if not len(done):
        for ax in axes:
            _empty(ax, "no complete cell cycle yet")
        return _png(fig)

    def hist(ax, values, label):
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if len(v):
            ax.hist(v, bins=min(30, max(5, len(v) // 5)))
            ax.axvline(np.median(v), color="k", lw=1, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("cell cycles")

    hist(axes[0], done["tau"], "generation time (min)")
    hist(axes[1], done["elong_rate"], "elongation rate (1/h)")
    for col, name in (("sb", "birth"), ("sd", "division")):
        v = done[col].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v):
            axes[2].hist(v, bins=min(30, max(5, len(v) // 5)), alpha=0.6, label=name)
    axes[2].set_xlabel("length (µm)")
    axes[2].legend(fontsize=7, frameon=False)
    sb, delta = done["sb"].to_numpy(float), done["delta"].to_numpy(float)
    ok = np.isfinite(sb) & np.isfinite(delta)
    axes[3].scatter(sb[ok], delta[ok], s=6, alpha=0.5)
    if ok.sum() >= 10:
        xm, _, med, _ = _binned_quantiles(sb[ok], delta[ok], 6)
        axes[3].plot(xm, med, "k-o", ms=3, label="binned median")
        axes[3].legend(fontsize=7, frameon=False)
    axes[3].set_xlabel("birth length (µm)")
    axes[3].set_ylabel("added length (µm)")
    axes[3].set_title("adder: flat = adder, rising = sizer-like", fontsize=8)
    _margins(fig, wspace=0.3)
    return _png(fig)
