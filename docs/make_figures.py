"""Regenerate the figures of ``docs/synthetic_data.md``.

    python docs/make_figures.py

Writes ``docs/images/synthetic_overview.png`` and, when the real fixtures are
present (``../shared/data`` beside the repository, or ``$BATCHLIB_SHARED_DATA``),
``docs/images/synthetic_vs_real.png``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.trench.synthetic import SyntheticConfig, simulate_position  # noqa: E402

IMAGES = ROOT / "docs" / "images"
SHARED = Path(os.environ.get("BATCHLIB_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL_FRAME = SHARED / "phase_fov" / "molyso_example_frame.tif"


def _stretch(img, lo=0.5, hi=99.5):
    a, b = np.percentile(img, [lo, hi])
    return np.clip((img.astype(float) - a) / (b - a), 0, 1)


def synthetic_vs_real():
    if not REAL_FRAME.is_file():
        print(f"skipping synthetic_vs_real.png: {REAL_FRAME} not found")
        return
    import tifffile

    real = tifffile.imread(REAL_FRAME)
    # Same orientation as the real frame: one set, feeding channel on top.
    cfg = SyntheticConfig(height=real.shape[0], width=real.shape[1], n_timepoints=1,
                          channels=("phase",), n_sets=1, single_set_direction=-1, seed=4,
                          empty_fraction=0.5)
    synth = simulate_position(cfg, 0).movies["phase"][0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 5.6))
    for ax, img, title in ((axes[0], synth, "synthetic (phase, defaults, 1 set)"),
                           (axes[1], real, "real (molyso example frame)")):
        ax.imshow(_stretch(img), cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(IMAGES / "synthetic_vs_real.png", dpi=110)
    plt.close(fig)


def overview():
    cfg = SyntheticConfig(height=512, width=512, n_timepoints=6, seed=0)
    pos = simulate_position(cfg, 0)
    t = 5
    rng = np.random.default_rng(1)
    colours = np.vstack([[0, 0, 0], rng.uniform(0.2, 1, (pos.frame_labels.max() + 1, 3))])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    axes[0].imshow(_stretch(pos.movies["phase"][t]), cmap="gray")
    for tr in pos.trenches.itertuples():
        ys = [getattr(tr, f"raw_y{i}") for i in (0, 1, 2, 3, 0)] + pos.drift[t, 0]
        xs = [getattr(tr, f"raw_x{i}") for i in (0, 1, 2, 3, 0)] + pos.drift[t, 1]
        axes[0].plot(xs, ys, lw=0.7, color="tab:red" if tr.empty else "tab:cyan")
        axes[0].plot(xs[0], ys[0], "o", ms=2, color="yellow")  # closed-left corner
    axes[1].imshow(_stretch(pos.movies["gfp"][t]), cmap="gray")
    axes[2].imshow(colours[pos.frame_labels[t]], interpolation="nearest")
    titles = (f"phase, frame {t}: boxes (red = empty, dot = closed end)", "gfp", "frame_labels")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(IMAGES / "synthetic_overview.png", dpi=100)
    plt.close(fig)

    row = int(np.flatnonzero(~pos.trenches["empty"].to_numpy())[0])
    fig, axes = plt.subplots(1, 3 * 2, figsize=(9, 4.5))
    for j, tt in enumerate((0, t)):
        from batchlib.trench.geometry import crop_box

        tr = pos.trenches.iloc[row]
        crops = [crop_box(pos.movies[ch][tt], tr.x_center, tr.y_closed, tr.direction, tr.height,
                          tr.width, tr.angle_deg, pos.drift[tt]) for ch in ("phase", "gfp")]
        panels = ((_stretch(crops[0]), "phase"), (_stretch(crops[1]), "gfp"),
                  (colours[pos.trench_labels[row, tt]], "labels"))
        for k, (img, title) in enumerate(panels):
            ax = axes[3 * j + k]
            ax.imshow(img, cmap="gray", interpolation="nearest")
            ax.set_title(f"t={tt} {title}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(IMAGES / "synthetic_crops.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    IMAGES.mkdir(parents=True, exist_ok=True)
    overview()
    synthetic_vs_real()
