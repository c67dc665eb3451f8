"""Scenario families: synthetic configurations drawn at random, for benchmarks.

Every family draws its parameters from ranges (see ``docs/synthetic_data.md``)
on top of a common base, from a generator seeded by ``(family, seed)``, so a
configuration is a deterministic function of its family and seed:

>>> from batchlib.trench.synthetic.families import FAMILIES, sample_config, seeds
>>> cfg = sample_config("dark_lumen", 10000, height=1024, width=1024)   # doctest: +SKIP

Seeds are split: ``TUNING_SEEDS`` (0-999) are for developing and tuning
algorithms; ``HELDOUT_SEEDS`` (10000 and up) are for reporting only, and the
benchmarks use them by default. Seeds 1000-9999 belong to neither split and
are refused, so that a figure always says which split it comes from.
"""
from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from .config import SyntheticConfig

__all__ = ["FAMILIES", "TUNING_SEEDS", "HELDOUT_SEEDS", "sample_config", "sample_configs",
           "seeds", "split_of", "add_seed_arguments"]

TUNING_SEEDS = range(0, 1000)
HELDOUT_SEEDS = range(10000, 2 ** 31)


def split_of(seed: int) -> str:
    """``"tuning"`` or ``"heldout"``; ``ValueError`` for seeds in neither split."""
    seed = int(seed)
    if seed in TUNING_SEEDS:
        return "tuning"
    if seed in HELDOUT_SEEDS:
        return "heldout"
    raise ValueError(f"seed {seed} is in neither split: tuning seeds are 0-999, "
                     f"held-out seeds 10000 and up")


def seeds(split: str, n: int, start: int = 0) -> list:
    """The ``n`` seeds of ``split`` (``"tuning"`` or ``"heldout"``) from offset ``start``."""
    ranges = {"tuning": TUNING_SEEDS, "heldout": HELDOUT_SEEDS}
    if split not in ranges:
        raise ValueError(f"split must be 'tuning' or 'heldout', got {split!r}")
    r = ranges[split]
    if start < 0 or start + n > len(r):
        raise ValueError(f"the {split} split has {len(r)} seeds; asked for {start}..{start + n - 1}")
    return [r[start + i] for i in range(n)]


def add_seed_arguments(parser, n_seeds_default: int) -> None:
    """The benchmarks' ``--seeds``, ``--n-seeds``, ``--seed-start`` and ``--families`` options."""
    parser.add_argument("--seeds", choices=("heldout", "tuning"), default="heldout",
                        help="seed split (default: held-out seeds, 10000 and up)")
    parser.add_argument("--n-seeds", type=int, default=None,
                        help=f"seeds per family (default {n_seeds_default})")
    parser.add_argument("--seed-start", type=int, default=0, help="offset into the split")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated families (default: all)")


# -- the common base -------------------------------------------------------------
def _base(rng) -> dict:
    """What every family shares: a nominal chip and camera, moderately varied."""
    pitch = float(rng.uniform(40, 56))
    tw = float(rng.uniform(12, 16))
    return dict(
        channels=("phase", "gfp"), n_sets=int(rng.integers(1, 3)), single_set_direction=0,
        angle_deg=None, max_angle_deg=2.0, pitch_px=pitch, trench_width_px=tw,
        cell_width_px=tw - float(rng.uniform(3.0, 4.5)), box_width=32,
        empty_fraction=float(rng.uniform(0.2, 0.4)),
        phase_background=float(rng.uniform(800, 2500)), read_noise=float(rng.uniform(2, 5)),
        fluor_amplitude=float(rng.uniform(250, 600)), psf_sigma_px=float(rng.uniform(1.2, 1.6)),
        debris_per_mpx=float(rng.uniform(0, 60)),
        illumination_variation=float(rng.uniform(0.05, 0.2)),
        drift_step_px=float(rng.uniform(0.2, 0.5)), max_drift_px=3.0)


# -- the families: each returns the parameters it changes --------------------------
def _nominal(rng, p):
    return {}


def _dark_lumen(rng, p):
    return dict(phase_lumen="dark", phase_pdms_contrast=float(rng.uniform(0.8, 2.0)),
                phase_halo_fraction=float(rng.uniform(0.5, 0.9)))


def _halo_walls(rng, p):
    return dict(phase_pdms_contrast=float(rng.uniform(1.0, 3.5)),
                phase_halo_fraction=float(rng.uniform(0.4, 1.15)),
                phase_halo_sigma_px=float(rng.uniform(8, 28)),
                phase_edge_halo_weight=float(rng.uniform(0.0, 0.7)),
                cell_halo_sigma_px=float(rng.uniform(4, 14)),
                phase_cell_contrast=float(rng.uniform(0.6, 2.0)))


def _offset_sets(rng, p):
    # A lateral offset that is never close to a multiple of the pitch.
    return dict(n_sets=2, set_offset_px=float(p["pitch_px"] * rng.uniform(0.15, 0.85)))


def _geometry(rng, p):
    pitch = float(rng.uniform(28, 90))
    box = int(min(32, math.floor(pitch)))  # boxes of neighbours must not overlap
    tw = float(rng.uniform(10, min(20, box - 4)))
    return dict(pitch_px=pitch, box_width=box, trench_width_px=tw,
                cell_width_px=tw - float(rng.uniform(2.5, 4.5)),
                birth_length_px=float(rng.uniform(16, 28)),
                _length_fraction=float(rng.uniform(0.55, 1.0)))


def _edge_partial(rng, p):
    # Trenches cut by the frame edges are drawn, most of them with cells.
    return dict(edge_trenches="cells" if rng.random() < 0.75 else "empty")


def _curved_cells(rng, p):
    tw = p["trench_width_px"]
    return dict(cell_width_px=tw - float(rng.uniform(4.5, 5.5)),
                cell_curvature_sd=float(rng.uniform(0.003, 0.006)),
                cell_taper_sd=float(rng.uniform(0.05, 0.12)),
                cell_width_cv=float(rng.uniform(0.06, 0.1)),
                tilt_sd_deg=float(rng.uniform(1.5, 3.0)))


def _defocus(rng, p):
    return dict(psf_sigma_px=float(rng.uniform(1.6, 2.4)),
                focus_change_prob=float(rng.uniform(0.3, 0.6)), focus_extra_sigma_px=(1.0, 3.0))


def _uneven_illumination(rng, p):
    return dict(illumination_variation=float(rng.uniform(0.35, 0.6)))


def _low_snr(rng, p):
    return dict(phase_background=float(rng.uniform(150, 400)),
                read_noise=float(rng.uniform(8, 20)),
                fluor_amplitude=float(rng.uniform(40, 120)),
                fluor_background=float(rng.uniform(20, 80)),
                electrons_per_count=float(rng.uniform(0.3, 0.8)))


def _jpeg(rng, p):
    return dict(jpeg_quality=int(rng.integers(25, 71)))


def _unnamed_channels(rng, p):
    names = ("c0", "c1")
    return dict(channels=names, phase_channels=(names[int(rng.integers(0, 2))],))


def _alt_optics(rng, p):
    return dict(halo_model="exponential", psf_tail_weight=float(rng.uniform(0.1, 0.3)),
                psf_tail_sigma_px=float(rng.uniform(4, 10)),
                background_texture=float(rng.uniform(0.03, 0.08)),
                phase_edge_halo_weight=float(rng.uniform(0.0, 0.2)),
                phase_halo_sigma_px=float(rng.uniform(10, 24)))


def _zernike_optics(rng, p):
    """The cells' phase image formed by a phase-contrast objective (:mod:`.zernike`)
    instead of the empirical halo: aperture, ring and focus drawn over the range of
    100x oil objectives (NA 1.25-1.45) at 0.065-0.11 µm pixels and 0.5-0.65 µm light,
    Ph3-like rings, a focal plane up to ~0.3 µm off, and cells of 0.25-0.8 rad. The
    trench walls are imaged with the cells: PDMS optically thicker than the medium
    (bright lumens) or, for a third of the draws, thinner (dark lumens, bright walls)."""
    cell = float(rng.uniform(0.25, 0.8))
    out = dict(cell_optics="zernike", cell_phase_rad=cell,
               zernike_cutoff=float(rng.uniform(0.16, 0.30)),
               zernike_ring_radius=float(rng.uniform(0.2, 0.5)),
               zernike_ring_width=float(rng.uniform(0.08, 0.3)),
               zernike_ring_transmission=float(rng.uniform(0.08, 0.35)),
               zernike_defocus_waves=float(rng.uniform(-0.3, 0.3)))
    if rng.random() < 1 / 3:
        out.update(_dark_lumen(rng, p), zernike_wall_phase_rad=-cell * float(rng.uniform(0.1, 0.5)))
    else:
        out["zernike_wall_phase_rad"] = cell * float(rng.uniform(0.1, 1.0))
    return out


def _magnification(rng, p):
    """Another objective or camera: the same chip, cells and optics at ``s`` times the
    base magnification (0.1 µm pixels / ``s``, ``s`` log-uniform in 0.6-1.8: 0.056 to
    0.17 µm pixels); every length in pixels scales, the blur and the halos included."""
    s = float(np.exp(rng.uniform(np.log(0.6), np.log(1.8))))
    box = int(round(32 * s))
    return dict(pixel_size_um=0.1 / s, box_width=box, pitch_px=max(p["pitch_px"] * s, box + 2.0),
                trench_width_px=p["trench_width_px"] * s, cell_width_px=p["cell_width_px"] * s,
                birth_length_px=22.0 * s, psf_sigma_px=p["psf_sigma_px"] * s,
                cell_gap_px=1.5 * s, closed_end_gap_px=1.0 * s, lateral_jitter_px=0.7 * s,
                phase_halo_sigma_px=16.0 * s, phase_edge_halo_sigma_px=2.5 * s,
                cell_halo_sigma_px=8.0 * s, pillar_corner_radius_px=6.0 * s,
                drift_step_px=p["drift_step_px"] * s, max_drift_px=3.0 * s,
                layout_jitter_px=4.0 * s)


_DRAW = {
    "nominal": _nominal,
    "dark_lumen": _dark_lumen,
    "halo_walls": _halo_walls,
    "offset_sets": _offset_sets,
    "geometry": _geometry,
    "edge_partial": _edge_partial,
    "curved_cells": _curved_cells,
    "defocus": _defocus,
    "uneven_illumination": _uneven_illumination,
    "low_snr": _low_snr,
    "jpeg": _jpeg,
    "unnamed_channels": _unnamed_channels,
    "alt_optics": _alt_optics,
    "magnification": _magnification,
    "zernike_optics": _zernike_optics,
}


def _mixed(rng, p, only=None):
    """Several of the other families at once, each with probability 0.35 (of ``only``,
    when given: the families a model may be trained on). ``magnification`` and
    ``zernike_optics`` (added later) are not among them, so that every seed of
    ``mixed`` draws what it drew before they existed."""
    out = {}
    for name, draw in _DRAW.items():
        if only is not None and name not in only:
            continue
        if name not in ("nominal", "mixed", "magnification", "zernike_optics") and \
                rng.random() < 0.35:
            q = {**p, **out}
            out.update(draw(rng, q))
    return out


_DRAW["mixed"] = _mixed
FAMILIES = tuple(_DRAW)


def _rng(family: str, seed: int):
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(family.encode()), int(seed)]))


def sample_config(family: str, seed: int, *, mixed_of=None, **overrides) -> SyntheticConfig:
    """The configuration of ``family`` for ``seed`` (deterministic).

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    seed : int
        A tuning (0-999) or held-out (>= 10000) seed. It seeds the parameter
        draws and, mixed with the family, the rendering: ``SyntheticConfig.seed``
        is derived from ``(family, seed)`` so that families drawn for the same
        seed do not share angles or layouts; ``family_seed`` keeps ``seed``.
    mixed_of : sequence of str, optional
        For ``mixed`` only: combine these families alone (a training set that
        must leave some conditions unseen draws their combinations this way).
    **overrides
        Any ``SyntheticConfig`` field (frame size, timepoints, positions, ...),
        applied after the draws.

    Returns
    -------
    SyntheticConfig
        With ``family`` and ``family_seed`` set, so the metadata record them.
    """
    if family not in _DRAW:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    split_of(seed)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SyntheticConfig)}
    if unknown:
        raise ValueError(f"unknown SyntheticConfig field(s): {', '.join(sorted(unknown))}")
    if mixed_of is not None and family != "mixed":
        raise ValueError("mixed_of applies to the 'mixed' family only")
    # a restricted mix is a family of its own: it shares no draws or layouts with
    # 'mixed' for the same seed (a model trained on it must not have seen those)
    key = family if mixed_of is None else "mixed of " + ",".join(sorted(mixed_of))
    rng = _rng(key, seed)
    params = _base(rng)
    params.update(_mixed(rng, params, tuple(mixed_of)) if mixed_of is not None
                  else _DRAW[family](rng, params))
    fraction = params.pop("_length_fraction", None)
    render_seed = int(np.random.SeedSequence([zlib.crc32(key.encode()), int(seed), 1])
                      .generate_state(1)[0] >> 1)
    params.update(overrides, seed=render_seed, family=family, family_seed=int(seed))
    cfg = SyntheticConfig(**params)
    if fraction is not None and "trench_length_px" not in overrides:
        # Shorter trenches than the frame allows: a fraction of the automatic length.
        length = max(int(fraction * cfg.resolved_trench_length()),
                     int(math.ceil(2 * cfg.birth_length_px)) + 2)
        cfg = dataclasses.replace(cfg, trench_length_px=min(length, cfg.resolved_trench_length()))
    return cfg


def sample_configs(families=None, seed_list=None, *, split: str = "heldout", n_seeds: int = 1,
                   **overrides) -> list:
    """``[(family, seed, SyntheticConfig), ...]`` for every family and seed.

    ``families`` defaults to :data:`FAMILIES`; ``seed_list`` to the first
    ``n_seeds`` seeds of ``split``.
    """
    families = FAMILIES if families is None else tuple(families)
    seed_list = seeds(split, n_seeds) if seed_list is None else list(seed_list)
    return [(f, s, sample_config(f, s, **overrides)) for f in families for s in seed_list]
