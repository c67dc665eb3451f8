"""Parameters of a synthetic mother-machine acquisition.

Every physical quantity is in pixels, seconds or camera counts so that the
ground truth can be compared with pipeline outputs without unit conversions;
``pixel_size_um`` only goes into the file metadata. ``None`` fields are derived
from the frame size by the ``resolved_*`` methods (see ``docs/synthetic_data.md``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["SyntheticConfig", "rng_for"]

# Trench lengths of real chips are 20-25 µm; beyond this the auto rule stops growing.
MAX_AUTO_TRENCH_LENGTH = 230
# Rotation margin is sized so that trenches in the central part of the frame fit.
_FIT_FRACTION = 0.8


@dataclass
class SyntheticConfig:
    """Everything that defines a synthetic acquisition (all fields have defaults).

    Acquisition
    -----------
    height, width : frame shape in pixels.
    n_positions, n_timepoints : fields of view and frames.
    channels : channel names; ``"phase"`` and names in ``phase_channels`` are
        phase-contrast-like, all others fluorescence.
    seed : master seed; a position is a deterministic function of ``(seed, position)``.
    pixel_size_um, frame_interval_s : metadata and growth time scale.

    Chip
    ----
    n_sets : 1 or 2 trench sets facing a central feeding channel.
    single_set_direction : with one set, +1 puts the closed ends at the top
        (trenches run down into the feeding channel), -1 at the bottom, 0 draws it
        per position.
    pitch_px, trench_width_px : trench spacing and inner (lumen) width.
    trench_length_px : lumen length; ``None`` derives it from the frame height.
    feeding_channel_px : feeding-channel width; ``None`` derives it (15 % of height).
    box_width : crop-box width (columns); the box height is the trench length.
    set_offset_px : x shift of set 1 relative to set 0.
    angle_deg : fixed trench angle, or ``None`` to draw it per position in
        ``[-max_angle_deg, max_angle_deg]``.
    layout_jitter_px : random vertical shift of the whole chip per position.
    edge_trenches : ``"omit"`` draws only trenches whose box stays inside every
        frame; ``"empty"`` also draws the others (without cells, not in the truth);
        ``"cells"`` draws them with cells (rendered, but neither the trenches nor
        their cells are in the truth or the labels).
    pillar_corner_radius_px : rounding of the PDMS walls at the open ends.

    Dynamics
    --------
    drift_step_px, max_drift_px : stage random walk per frame and its bound.
    drift_quantum_px : round the drift to multiples of this (0: continuous; 1 gives
        whole-pixel drift, for interpolation-free crops in tests).
    focus_change_prob, focus_extra_sigma_px : chance that a frame (never frame 0)
        is out of focus, and the range of the extra Gaussian blur.

    Cells
    -----
    empty_fraction : fraction of trenches that never hold a cell.
    partial_fraction : fraction of occupied trenches that start with 1-3 cells.
    cell_width_px, cell_width_cv, birth_length_px : spherocylinder shape.
    added_length_cv : noise of the length added between birth and division
        (an adder: cells add about one birth length, so they divide near twice
        their birth length).
    division_asymmetry_sd : sd of the daughters' length fraction around 0.5.
    doubling_time_s, growth_rate_cv : exponential growth and per-cell rate noise.
    cell_gap_px, closed_end_gap_px : spacing between cells and to the closed end.
    lateral_jitter_px, tilt_sd_deg : cell position noise inside the lumen.

    Fluorescence
    ------------
    fluor_amplitude : emitted counts on the axis of a typical cell (above background).
    fluor_amplitude_by_channel : per-channel override of ``fluor_amplitude``.
    fluor_cell_sigma : lognormal sigma of the cell-to-cell variation.
    fluor_inherit_sigma, fluor_drift_sigma : noise at division and per frame.
    fluor_background : uniform background above the camera offset (counts).

    Phase contrast
    --------------
    phase_background : counts of medium far from any edge.
    phase_pdms_contrast, phase_cell_contrast : strength of the phase objects.
    phase_halo_sigma_px, cell_halo_sigma_px : width of the halo around the chip
        walls and around cells.
    phase_edge_halo_sigma_px, phase_edge_halo_weight : a second, narrow halo that
        draws bright lines along the walls, and its share of the wall halo.
    phase_halo_fraction : share of the wall contrast restored as halo (below 1,
        large PDMS areas look darker than the medium).
    phase_focus_rim_px2 : defocus of the cells' phase image (px², either sign;
        :func:`.cells.phase_term`): a bright rim inside (> 0) or outside (< 0)
        every cell edge. 0, the default, draws none.
    phase_floor : darkest intensity as a fraction of ``phase_background``.
    cell_optics : ``"empirical"`` (the default: ``phase_cell_contrast`` and the cell
        halo of ``halo_model``) or ``"zernike"``: the cells' phase image formed by
        partially coherent imaging through an objective with a phase ring
        (:mod:`.zernike`), from ``cell_phase_rad`` (optical path at a cell's axis,
        radians) and the ``zernike_*`` fields (:class:`.zernike.ZernikeOptics`:
        cutoff in cycles per pixel, ring radius and width as fractions of it, ring
        intensity transmission, defocus in waves at the aperture's rim).
        ``zernike_wall_phase_rad`` (radians, either sign; 0 leaves them out): the
        PDMS walls of each trench imaged with its cells, so that a cell's edge
        beside a wall is imaged coherently with the wall's.

    Optics and camera
    -----------------
    psf_sigma_px : Gaussian PSF sigma.
    camera_offset, read_noise, electrons_per_count : camera model.
    exact_poisson_below : expected electrons below which the shot noise is drawn
        exactly from a Poisson law; above it the normal approximation is used.
    illumination_variation : amplitude of the smooth gain field.

    Clutter
    -------
    debris_per_mpx : static debris blobs per megapixel (phase only, not labelled).
    feeding_cells_per_kpx : mean number of cells floating in the feeding channel per
        1000 px of channel length (drawn in every channel, never labelled).

    Scenario knobs
    --------------
    Their defaults reproduce the original rendering exactly; the scenario
    families of :mod:`.families` draw them.

    phase_lumen : ``"bright"`` (medium brighter than the PDMS) or ``"dark"`` (the
        wall term flipped: bright walls, dark lumens).
    halo_model : ``"gaussian"`` or ``"exponential"`` (a heavier-tailed mixture of
        Gaussians, for the wall and the cell halos).
    psf_tail_weight, psf_tail_sigma_px : share and width of a wide PSF tail added
        to every plane after the warp (an alternative optics model).
    background_texture : amplitude of a static multiplicative texture (smooth
        speckle and fringes) on the phase scene; 0 draws nothing.
    cell_curvature_sd : sd of the per-cell curvature of the axis (1/px).
    cell_taper_sd : sd of the per-cell relative radius change from pole to pole.
    jpeg_quality : 0 (off) or 1-100: JPEG-like 8 x 8 DCT quantisation of every
        written frame, after rescaling it to 8 bits.
    family, family_seed : scenario family and the seed it was drawn for (see
        :func:`.families.sample_config`), recorded in the metadata.
    """

    # acquisition
    height: int = 512
    width: int = 512
    n_positions: int = 2
    n_timepoints: int = 10
    channels: tuple = ("phase", "gfp")
    phase_channels: tuple = ()
    seed: int = 0
    pixel_size_um: float = 0.1
    frame_interval_s: float = 180.0
    # chip
    n_sets: int = 2
    single_set_direction: int = 1
    pitch_px: float = 48.0
    trench_width_px: float = 14.0
    trench_length_px: int | None = None
    feeding_channel_px: int | None = None
    box_width: int = 32
    set_offset_px: float = 0.0
    angle_deg: float | None = None
    max_angle_deg: float = 3.0
    layout_jitter_px: float = 4.0
    edge_trenches: str = "omit"
    pillar_corner_radius_px: float = 6.0
    # dynamics
    drift_step_px: float = 0.35
    max_drift_px: float = 3.0
    drift_quantum_px: float = 0.0
    focus_change_prob: float = 0.1
    focus_extra_sigma_px: tuple = (0.8, 2.0)
    # cells
    empty_fraction: float = 0.3
    partial_fraction: float = 0.15
    cell_width_px: float = 9.5
    cell_width_cv: float = 0.04
    birth_length_px: float = 22.0
    added_length_cv: float = 0.12
    division_asymmetry_sd: float = 0.03
    doubling_time_s: float = 1800.0
    growth_rate_cv: float = 0.1
    cell_gap_px: float = 1.5
    closed_end_gap_px: float = 1.0
    lateral_jitter_px: float = 0.7
    tilt_sd_deg: float = 1.5
    # fluorescence
    fluor_amplitude: float = 400.0
    fluor_amplitude_by_channel: dict = field(default_factory=dict)
    fluor_cell_sigma: float = 0.35
    fluor_inherit_sigma: float = 0.05
    fluor_drift_sigma: float = 0.03
    fluor_background: float = 20.0
    # phase contrast
    phase_background: float = 1500.0
    phase_pdms_contrast: float = 2.2
    phase_cell_contrast: float = 1.2
    phase_halo_sigma_px: float = 16.0
    phase_edge_halo_sigma_px: float = 2.5
    phase_edge_halo_weight: float = 0.35
    phase_halo_fraction: float = 0.75
    cell_halo_sigma_px: float = 8.0
    phase_focus_rim_px2: float = 0.0
    cell_optics: str = "empirical"
    cell_phase_rad: float = 0.5
    zernike_cutoff: float = 0.22
    zernike_ring_radius: float = 0.35
    zernike_ring_width: float = 0.18
    zernike_ring_transmission: float = 0.2
    zernike_defocus_waves: float = 0.0
    zernike_wall_phase_rad: float = 0.0
    phase_floor: float = 0.08
    # optics and camera
    psf_sigma_px: float = 1.4
    camera_offset: float = 100.0
    read_noise: float = 2.0
    electrons_per_count: float = 1.0
    exact_poisson_below: float = 10.0
    illumination_variation: float = 0.15
    # clutter
    debris_per_mpx: float = 40.0
    feeding_cells_per_kpx: float = 4.0
    # scenario knobs (defaults: the original rendering)
    phase_lumen: str = "bright"
    halo_model: str = "gaussian"
    psf_tail_weight: float = 0.0
    psf_tail_sigma_px: float = 6.0
    background_texture: float = 0.0
    cell_curvature_sd: float = 0.0
    cell_taper_sd: float = 0.0
    jpeg_quality: int = 0
    family: str = ""
    family_seed: int = -1

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.phase_channels = tuple(self.phase_channels)
        self.focus_extra_sigma_px = tuple(self.focus_extra_sigma_px)
        if len(set(self.channels)) != len(self.channels) or not self.channels:
            raise ValueError(f"channels must be unique and non-empty, got {self.channels}")
        if self.n_sets not in (1, 2):
            raise ValueError("n_sets must be 1 or 2")
        if self.single_set_direction not in (-1, 0, 1):
            raise ValueError("single_set_direction must be -1, 0 or +1")
        if self.edge_trenches not in ("omit", "empty", "cells"):
            raise ValueError("edge_trenches must be 'omit', 'empty' or 'cells'")
        if self.phase_lumen not in ("bright", "dark"):
            raise ValueError("phase_lumen must be 'bright' or 'dark'")
        if self.halo_model not in ("gaussian", "exponential"):
            raise ValueError("halo_model must be 'gaussian' or 'exponential'")
        if self.cell_optics not in ("empirical", "zernike"):
            raise ValueError("cell_optics must be 'empirical' or 'zernike'")
        if not 0.0 <= self.psf_tail_weight < 1.0:
            raise ValueError("psf_tail_weight must lie in [0, 1)")
        if not 0 <= int(self.jpeg_quality) <= 100:
            raise ValueError("jpeg_quality must be 0 (off) or 1-100")
        if self.box_width > self.pitch_px:
            # Disjoint boxes keep a neighbour's cells out of every crop.
            raise ValueError("box_width must not exceed pitch_px")
        if self.trench_width_px + 2 > self.box_width:
            raise ValueError("box_width must exceed trench_width_px by at least 2 px")
        if self.cell_width_px + 1 > self.trench_width_px:
            raise ValueError("cells must be at least 1 px narrower than the trench lumen")
        if not 0.0 <= self.empty_fraction <= 1.0 or not 0.0 <= self.partial_fraction <= 1.0:
            raise ValueError("empty_fraction and partial_fraction must lie in [0, 1]")
        if min(self.height, self.width) < 64 or self.n_timepoints < 1 or self.n_positions < 1:
            raise ValueError("frames must be at least 64 x 64 with one timepoint and position")
        if self.resolved_trench_length() < 2 * self.birth_length_px:
            raise ValueError("frame too small: trenches would hold less than two cells; "
                             "enlarge the frame or set trench_length_px / feeding_channel_px")

    # -- channels -----------------------------------------------------------------
    def is_phase(self, channel: str) -> bool:
        """Whether ``channel`` is rendered phase-contrast-like."""
        return channel == "phase" or channel in self.phase_channels

    @property
    def fluorescence_channels(self) -> tuple:
        return tuple(c for c in self.channels if not self.is_phase(c))

    def amplitude(self, channel: str) -> float:
        return float(self.fluor_amplitude_by_channel.get(channel, self.fluor_amplitude))

    # -- derived geometry ---------------------------------------------------------
    def resolved_feeding_width(self) -> int:
        if self.feeding_channel_px is not None:
            return int(self.feeding_channel_px)
        return int(np.clip(round(0.15 * self.height), 30, 300))

    def vertical_margin(self) -> float:
        """Rows kept free at each frame edge so that boxes survive rotation and drift."""
        max_angle = abs(self.angle_deg) if self.angle_deg is not None else self.max_angle_deg
        tilt = 0.5 * self.width * _FIT_FRACTION * math.sin(math.radians(max_angle))
        return tilt + self.max_drift_px + self.layout_jitter_px + 2.0

    def closed_end_wall(self) -> int:
        """PDMS rows kept beyond the closed ends inside the frame."""
        return int(max(6, round(0.02 * self.height)))

    def resolved_trench_length(self) -> int:
        if self.trench_length_px is not None:
            return int(self.trench_length_px)
        free = self.height - self.resolved_feeding_width() - self.n_sets * (
            self.vertical_margin() + self.closed_end_wall())
        if self.n_sets == 1:
            # Leave PDMS beyond the feeding channel too, as on a real chip.
            free -= self.vertical_margin() + self.closed_end_wall()
        return int(min(MAX_AUTO_TRENCH_LENGTH, math.floor(free / self.n_sets)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["phase_channels"] = list(self.phase_channels)
        d["focus_extra_sigma_px"] = list(self.focus_extra_sigma_px)
        return d


# Stream ids keep the random draws of one aspect independent of the others, so
# that e.g. adding a channel does not change the cells.
STREAMS = {"layout": 0, "drift": 1, "lineage": 2, "clutter": 3, "noise": 4, "illumination": 5,
           "shape": 6}


def rng_for(cfg: SyntheticConfig, stream: str, position: int | None = None, *extra: int):
    """Independent generator for ``(seed, position, stream, *extra)``.

    ``position=None`` gives an acquisition-wide stream (the microscope's
    illumination is the same at every position).
    """
    key = (STREAMS[stream],) + tuple(int(e) for e in extra)
    if position is not None:
        key = (int(position) + 1,) + key
    else:
        key = (0,) + key
    return np.random.default_rng(np.random.SeedSequence(entropy=int(cfg.seed), spawn_key=key))
