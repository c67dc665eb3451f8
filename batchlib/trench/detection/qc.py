"""QC figure of a detection: boxes on the image and the cross profile."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_detection"]


def plot_detection(image2d, layout, path_png, title=None, max_side=1600):
    """Write a PNG showing whether the detection worked.

    Left: the image (contrast-stretched) with every box drawn from its raw
    corners, its closed end marked and its number (within the set) written;
    empty trenches in a different colour. Right: the cross profile of every
    set with the detected centres.

    Parameters
    ----------
    image2d : ndarray, shape (H, W)
        The image the layout was found on.
    layout : TrenchLayout
    path_png : str or path
    title : str, optional
    max_side : int
        Larger images are shown subsampled (the boxes keep full precision).
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = np.asarray(image2d, dtype=float)
    step = int(np.ceil(max(img.shape) / max_side))
    shown = img[::step, ::step]
    lo, hi = np.nanpercentile(shown, [0.5, 99.5])
    fig = Figure(figsize=(13, 6.5), dpi=110)
    FigureCanvasAgg(fig)
    ax_img = fig.add_axes([0.03, 0.05, 0.47, 0.78])
    ax_img.imshow(shown, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5),
                  interpolation="nearest")
    t = layout.trenches
    for r in t.itertuples(index=False):
        ys = [r.raw_y0, r.raw_y1, r.raw_y2, r.raw_y3, r.raw_y0]
        xs = [r.raw_x0, r.raw_x1, r.raw_x2, r.raw_x3, r.raw_x0]
        colour = "tab:orange" if r.empty else "tab:cyan"
        ax_img.plot(xs, ys, "-", color=colour, lw=0.8)
        ax_img.plot([r.raw_x0, r.raw_x1], [r.raw_y0, r.raw_y1], "-", color="red", lw=1.6)
        ax_img.text(0.5 * (r.raw_x0 + r.raw_x1), 0.5 * (r.raw_y0 + r.raw_y1), str(r.trench),
                    color="yellow", fontsize=7, ha="center",
                    va="bottom" if r.direction == 1 else "top",
                    path_effects=[patheffects.withStroke(linewidth=2, foreground="black")])
    ax_img.set_xlim(-0.5, img.shape[1] - 0.5)
    ax_img.set_ylim(img.shape[0] - 0.5, -0.5)
    ax_img.set_title("boxes (red: closed end, orange: empty)", fontsize=9)
    ax_img.tick_params(labelsize=7)

    sets = layout.profiles.get("sets", [])
    n = max(1, len(sets))
    q = layout.quality
    for i in range(n):
        ax = fig.add_axes([0.56, 0.06 + (n - 1 - i) * 0.78 / n + 0.03, 0.42, 0.78 / n - 0.08])
        if i < len(sets):
            prof = np.asarray(sets[i]["profile"], float)
            # a layout found on the image turned a quarter keeps that image's profiles
            cols = np.arange(prof.size) + float(layout.profiles.get("column_offset", 0.0))
            ax.plot(cols, prof, "-", color="0.3", lw=0.8)
            sel = t[t["set"] == i]
            yv = np.interp(sel["x_center"], cols, np.nan_to_num(prof))
            ax.plot(sel["x_center"], yv, "v", color="tab:red", ms=4, label="centres")
            ax.set_xlim(cols[0], cols[-1] + 1)
            ax.set_title(f"set {i}: cross profile, {len(sel)} trenches, direction "
                         f"{int(layout.sets['direction'].iloc[i]) if i < len(layout.sets) else 0:+d}",
                         fontsize=9)
        ax.tick_params(labelsize=7)
    ax.set_xlabel("rotated-frame column (px)", fontsize=8)
    summary = (f"angle {layout.angle_deg:.3f} deg, pitch {layout.pitch:.2f} px, "
               f"{int(q.get('n_trenches', len(t)))} trenches, confidence {q.get('confidence', 0):.2f}, "
               f"empty {q.get('empty_fraction', 0):.0%}")
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10, y=0.99, va="top")
    for i, warning in enumerate(getattr(layout, "warnings", [])[:3]):
        # a layout that could not be verified says so on the picture itself
        fig.text(0.5, 0.02 + 0.03 * i, f"WARNING: {warning}", ha="center", fontsize=8,
                 color="darkred", wrap=True)
    fig.savefig(str(path_png))
