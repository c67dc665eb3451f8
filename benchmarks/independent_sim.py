"""Independent simulator of mother-machine movies (phase contrast + fluorescence).

Written from scratch, deliberately without reading or importing anything from
``batchlib`` (in particular not its own synthetic generator), so that the image
analysis can be tested on data it was never tuned on. Only numpy and scipy.

What is modelled
----------------
* A PDMS chip of parallel dead-end trenches (lumens) of one width, length and
  pitch, closed ends rounded (semicircle of the lumen width) or square, opening
  into a wide feeding channel; one set (closed ends at the top or at the
  bottom of the image) or two sets facing each other across the channel, the
  lower lattice shifted sideways by a random fraction of the pitch. The chip
  is rotated by a small angle; trenches cut by the frame are drawn as they fall.
* Rod-shaped cells (capsules, optionally slightly bent) stacked single file
  from the closed end, jittered sideways and tilted a little inside the lumen,
  growing exponentially, dividing near twice their birth length into two
  near-equal daughters with a small gap; cells whose centre passes the open end
  are lost. Some trenches are empty; loose cells and debris float in the channel.
* Phase contrast: an optical-path map in radians (PDMS walls, deep feeding
  channel with sloped edges, cells with the thickness profile of a rod) forms
  the field exp(i*phi) on a supersampled grid; partially coherent Zernike
  imaging is done the Abbe way, summing over illumination points on the
  condenser annulus the intensities |IFFT(FFT(field) * pupil)|^2, where the
  pupil is the objective aperture (NA cutoff, slight defocus) with a phase
  ring (phase -pi/2, i.e. positive phase contrast: cells dark, amplitude
  attenuated) on the annulus. Halos and shade-off come out of the optics.
  Then pixel integration, uneven illumination, Poisson + Gaussian read noise.
* Fluorescence: cytoplasm of uniform density (projected: proportional to the
  local cell thickness) with a lognormal per-cell brightness, dim PDMS and
  medium autofluorescence, blurred by the incoherent PSF of the circular
  pupil (Airy pattern, with defocus for some seeds) plus a weak wide tail.

Conventions
-----------
* Pixel coordinates: x = column, y = row, pixel centres at integers.
* Chip coordinates (u, v) in um, origin at the centre of frame 0, v along the
  trenches. A chip point maps to frame-0 pixels as
  ``x = cx + (u cos a + v sin a) / p``, ``y = cy + (-u sin a + v cos a) / p``
  with ``a = angle_deg``, ``p`` the pixel size, ``(cx, cy)`` the image centre.
  Hence the trench axis pointing down the image (+v, closed -> open for a set
  whose closed ends are at the top) is the unit vector
  ``(dx, dy) = (sin a, cos a)``: ``angle_deg`` is measured from the +y image
  axis towards +x, i.e. counter-clockwise as displayed with y down. For the
  lower set (closed ends at the bottom) closed -> open is ``-(sin a, cos a)``.
* Drift: frame t shows frame 0's content shifted by ``drift_yx[t] = (dy, dx)``:
  what is at (x, y) in frame 0 is at (x + dx, y + dy) in frame t;
  ``drift_yx[0] = (0, 0)``. Illumination non-uniformity is fixed to the camera.
* ``closed_xy`` is the innermost point of the lumen on its axis (the apex of
  the semicircle for rounded ends, the middle of the end wall for square
  ones); ``open_xy`` is the lumen axis where it meets the feeding channel.
  A trench's length is the distance between the two.

Ground truth
------------
* ``labels[t]``: a pixel belongs to a cell when its centre lies inside the
  cell's continuous capsule at frame t's (drifted) position. Cells of a trench
  are labelled as long as their centre is inside the lumen (the part of a cell
  being pushed out past the open end is labelled too); loose cells and debris
  in the channel are 0. Ids are lineage ids: a cell keeps its id from birth to
  division, so ids repeat across frames for the same cell.
* ``trenches``: every trench whose axis (extended 3 um past the open end)
  comes within the drift bound plus half a lumen of the frame; ``empty`` means
  the simulation put no cell in it; ``visible`` is judged on frame 0.
* ``cells``: one entry per labelled cell per frame (plus ``centre_xy``, its
  continuous centre at frame t). ``mother`` marks the cell nearest the closed
  end in the simulation (it may lie outside the frame, then no visible cell of
  that trench is the mother). ``length_px`` is the pole-to-pole length along
  the centreline (bent cells: a parabolic centreline, whose arc exceeds its
  chord by well under 0.01 um).

All parameter ranges are in ``_sample_params``; every drawn value is returned
in ``params``. Loose objects, per-cell traits and noise are drawn from the
same seeded generator, so a seed fully determines the output.

Usage::

    python benchmarks/independent_sim.py --seed 3 --preview /tmp/prev.png
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

N_IMMERSION = 1.515  # refractive index of the immersion oil (defocus term)


@dataclass
class Acquisition:
    """One simulated acquisition: images, ground truth and parameters (see the module docstring)."""

    phase: np.ndarray  # (T, H, W) uint16
    fluorescence: np.ndarray  # (T, H, W) uint16
    labels: np.ndarray  # (T, H, W) int32, 0 = background, trench cells only
    trenches: list  # dicts: set, closed_xy, open_xy, width_px, empty, visible
    cells: list  # dicts: t, trench, label, mother, length_px, width_px, centre_xy
    drift_yx: np.ndarray  # (T, 2): frame t = frame 0 shifted by (dy, dx) pixels
    angle_deg: float  # closed -> open of a top set is (dx, dy) = (sin a, cos a)
    pixel_size_um: float
    params: dict  # every drawn parameter (JSON-serialisable)


# --------------------------------------------------------------------------- parameters
def _sample_params(rng: np.random.Generator, height: int, width: int) -> dict:
    """Draw every random parameter of one acquisition (plain floats/str/bools)."""
    u = rng.uniform
    q = {}
    q["pixel_size_um"] = u(0.065, 0.16)
    q["angle_deg"] = u(-2.0, 2.0)
    q["cell_width_um"] = u(0.8, 1.1)
    q["birth_length_um"] = u(1.8, 2.6)
    q["doubling_min"] = u(20.0, 40.0)
    q["frame_interval_min"] = u(2.0, 5.0)
    q["cell_gap_um"] = u(0.05, 0.25)
    q["lateral_jitter_um"] = u(0.0, 0.15)
    q["tilt_sd_deg"] = u(0.0, 3.0)
    q["curvature_per_um"] = u(0.03, 0.12) if rng.random() < 0.3 else 0.0
    q["lumen_width_um"] = u(max(1.1, q["cell_width_um"] + 0.12), 1.6)
    q["trench_length_um"] = u(15.0, 35.0)
    q["pitch_um"] = u(3.0, 8.0)
    q["closed_end"] = "rounded" if rng.random() < 0.5 else "square"
    q["layout"] = ["top", "bottom", "double"][int(rng.choice(3, p=[0.3, 0.3, 0.4]))]
    q["channel_width_um"] = u(15.0, 50.0)
    q["lower_set_shift_frac"] = u(0.0, 1.0)
    q["lattice_offset_frac"] = u(0.0, 1.0)
    q["placement_frac"] = u(-0.5, 0.5)
    q["empty_fraction"] = u(0.10, 0.35)
    q["partial_fill_prob"] = u(0.0, 0.4)
    q["loose_objects_per_frame"] = u(0.5, 4.0)
    # phase-contrast optics
    q["wavelength_um"] = u(0.53, 0.60)
    q["na"] = u(0.95, 1.45)
    q["ring_radius_frac"] = u(0.20, 0.40)  # condenser annulus NA / objective NA
    q["ring_width_frac"] = u(0.12, 0.30)  # phase-ring width / objective NA
    q["ring_transmission"] = u(0.10, 0.30)  # intensity transmission of the phase ring
    q["n_illumination_points"] = 12
    q["phase_defocus_um"] = u(-0.25, 0.25)
    q["cell_delta_n"] = u(0.035, 0.055)
    # PDMS wall vs lumen phase, as a fraction of the cells' peak phase so that cells stay the darkest
    # objects; either sign (bright lumens / dark walls or the opposite)
    cell_peak = 2 * np.pi * q["cell_delta_n"] * q["cell_width_um"] / q["wavelength_um"]
    q["wall_phase_rad"] = cell_peak * (u(0.3, 0.7) if rng.random() < 0.55 else -u(0.2, 0.35))
    q["channel_phase_rad"] = -u(1.0, 4.0)
    q["trench_edge_um"] = u(0.08, 0.25)
    q["channel_edge_um"] = u(0.5, 2.0)
    q["phase_photons"] = float(np.exp(u(np.log(400), np.log(8000))))
    q["phase_illumination_amp"] = u(0.03, 0.2)
    # fluorescence
    q["emission_um"] = u(0.50, 0.62)
    q["fluor_defocus_um"] = u(0.15, 0.35) * rng.choice([-1.0, 1.0]) if rng.random() < 0.35 else u(-0.1, 0.1)
    q["psf_tail_frac"] = u(0.02, 0.12)
    q["psf_tail_sigma_um"] = u(0.5, 2.0)
    q["cell_photons"] = float(np.exp(u(np.log(150), np.log(2500))))
    q["brightness_sigma"] = u(0.15, 0.5)
    q["background_photons"] = u(3.0, 60.0)
    q["pdms_autofluor_frac"] = u(0.0, 0.4)
    q["medium_autofluor_frac"] = u(0.0, 0.5)
    q["excitation_amp"] = u(0.03, 0.2)
    # camera and drift
    q["gain_adu_per_e"] = u(0.5, 2.0)
    q["offset_adu"] = u(50.0, 500.0)
    q["read_noise_e"] = u(1.0, 3.0)
    q["drift_speed_px"] = u(0.0, 0.35)  # steady stage drift per frame, plus random steps
    q["drift_direction_deg"] = u(0.0, 360.0)
    q["drift_step_sd_px"] = u(0.03, 0.2)
    _fit_layout(q, height)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in q.items()}


def _fit_layout(q: dict, height: int) -> None:
    """Shrink channel/trenches of the two-set layout so both closed ends fit the field."""
    h_um = height * q["pixel_size_um"]
    if q["layout"] != "double":
        return
    avail = 0.92 * h_um
    if 2 * q["trench_length_um"] + q["channel_width_um"] > avail:
        q["channel_width_um"] = max(12.0, avail - 2 * q["trench_length_um"])
    if 2 * q["trench_length_um"] + q["channel_width_um"] > avail:
        q["trench_length_um"] = max(15.0, (avail - q["channel_width_um"]) / 2)


# --------------------------------------------------------------------------- geometry
class _Chip:
    """Trench-set geometry in chip coordinates (um) and the chip <-> pixel mapping."""

    def __init__(self, q: dict, height: int, width: int):
        self.p, self.a = q["pixel_size_um"], np.deg2rad(q["angle_deg"])
        self.cx, self.cy = (width - 1) / 2, (height - 1) / 2
        self.pitch, self.R = q["pitch_um"], q["lumen_width_um"] / 2
        self.L, self.rounded = q["trench_length_um"], q["closed_end"] == "rounded"
        h_um, wch, L = height * self.p, q["channel_width_um"], self.L
        off0 = q["lattice_offset_frac"] * self.pitch
        if q["layout"] == "double":
            slack = max(0.0, 0.94 * h_um - 2 * L - wch) / 2
            v0 = q["placement_frac"] * slack - wch / 2  # channel top edge
            self.channel = (v0, v0 + wch)
            self.sets = [dict(sgn=1, v_closed=v0 - L, u_off=off0),
                         dict(sgn=-1, v_closed=v0 + wch + L,
                              u_off=off0 + q["lower_set_shift_frac"] * self.pitch)]
        else:
            lo, hi = -0.47 * h_um, 0.47 * h_um - L - min(wch, 0.15 * h_um)
            vc = (lo + hi) / 2 + q["placement_frac"] * 0.6 * max(hi - lo, 0.0)
            if q["layout"] == "top":
                self.sets, self.channel = [dict(sgn=1, v_closed=vc, u_off=off0)], (vc + L, vc + L + wch)
            else:
                self.sets, self.channel = [dict(sgn=-1, v_closed=-vc, u_off=off0)], (-vc - L - wch, -vc - L)

    def to_px(self, u, v):
        """Chip (u, v) um -> frame-0 pixel (x, y)."""
        c, s = np.cos(self.a), np.sin(self.a)
        return self.cx + (u * c + v * s) / self.p, self.cy + (-u * s + v * c) / self.p

    def to_chip(self, x, y):
        """Frame-0 pixel (x, y) -> chip (u, v) um."""
        c, s = np.cos(self.a), np.sin(self.a)
        dx, dy = (x - self.cx) * self.p, (y - self.cy) * self.p
        return dx * c - dy * s, dx * s + dy * c

    def axis_px(self, sgn, tilt=0.0):
        """Unit vector (dx, dy) in the image of a set's closed -> open direction, tilted by `tilt` rad."""
        eu, ev = sgn * np.sin(tilt), sgn * np.cos(tilt)
        c, s = np.cos(self.a), np.sin(self.a)
        return eu * c + ev * s, -eu * s + ev * c

    def static_maps(self, xs, ys, edge, edge_ch):
        """Lumen and channel fractions (0..1, soft edges) on the grid of pixel coords xs (cols), ys (rows)."""
        u, v = self.to_chip(xs[None, :], ys[:, None])
        lum = np.zeros(u.shape, np.float32)
        for st in self.sets:
            b = st["sgn"] * (v - st["v_closed"])  # inward distance from the closed end
            a = np.mod(u - st["u_off"] + self.pitch / 2, self.pitch) - self.pitch / 2
            if self.rounded:
                sd = np.where(b < self.R, np.hypot(a, b - self.R) - self.R, np.abs(a) - self.R)
            else:
                sd = np.maximum(np.abs(a) - self.R, -b)
            sd = np.maximum(sd, b - self.L - 2.0)  # lumens end inside the channel
            lum = np.maximum(lum, np.clip(0.5 - sd / edge, 0, 1))
        ch = np.clip(0.5 + np.minimum(v - self.channel[0], self.channel[1] - v) / edge_ch, 0, 1)
        return lum, ch.astype(np.float32)


def _list_trenches(chip: _Chip, height: int, width: int, margin_px: float):
    """All trenches reaching the padded grid; each with pixel ends and whether it reaches the frame."""
    corners = np.array([[-margin_px, -margin_px], [width + margin_px, -margin_px],
                        [-margin_px, height + margin_px], [width + margin_px, height + margin_px]])
    uc, _ = chip.to_chip(corners[:, 0], corners[:, 1])
    out = []
    for si, st in enumerate(chip.sets):
        k0 = int(np.floor((uc.min() - st["u_off"]) / chip.pitch)) - 1
        k1 = int(np.ceil((uc.max() - st["u_off"]) / chip.pitch)) + 1
        for k in range(k0, k1 + 1):
            u = st["u_off"] + k * chip.pitch
            b = np.linspace(0, chip.L + 3.0, 120)  # axis, plus room for extruded cells
            x, y = chip.to_px(np.full_like(b, u), st["v_closed"] + st["sgn"] * b)
            m = 4 + chip.R / chip.p  # drift bound + half width
            near = (x > -0.5 - m) & (x < width - 0.5 + m) & (y > -0.5 - m) & (y < height - 0.5 + m)
            grid = (x > -margin_px) & (x < width + margin_px) & (y > -margin_px) & (y < height + margin_px)
            if not grid.any():
                continue
            inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
            on_axis = b <= chip.L
            out.append(dict(set=si, u=u, sgn=st["sgn"], v_closed=st["v_closed"], listed=bool(near.any()),
                            closed_xy=(float(x[0]), float(y[0])),
                            open_xy=tuple(float(c) for c in chip.to_px(u, st["v_closed"] + st["sgn"] * chip.L)),
                            visible=bool(inside[0] and inside[on_axis].mean() >= 0.5)))
    out.sort(key=lambda t: (not t["listed"], t["set"], t["u"]))
    return out


# --------------------------------------------------------------------------- cells
def _new_cell(rng, q, ids, L, parent=None):
    """A cell of length L (um), inheriting shape traits from `parent` if given."""
    lb = L if parent is not None else q["birth_length_um"] * np.exp(rng.normal(0, 0.08))
    c = dict(id=next(ids), L=L, Lb=lb, Ldiv=2 * lb * np.exp(rng.normal(0, 0.05)),
             mu=np.log(2) / q["doubling_min"] * np.exp(rng.normal(0, 0.08)),
             gap=q["cell_gap_um"] * rng.uniform(0.5, 1.5))
    if parent is None:
        c.update(w=min(q["cell_width_um"] * np.exp(rng.normal(0, 0.03)), q["lumen_width_um"] - 0.1),
                 j=rng.normal(0, q["lateral_jitter_um"]), tilt=np.deg2rad(rng.normal(0, q["tilt_sd_deg"])),
                 k=q["curvature_per_um"] * rng.uniform(0.3, 1.0) * rng.choice([-1, 1]),
                 bright=np.exp(rng.normal(0, q["brightness_sigma"])), dn=np.exp(rng.normal(0, 0.05)))
    else:
        c.update(w=parent["w"], j=parent["j"] + rng.normal(0, 0.03), tilt=parent["tilt"] + rng.normal(0, 0.01),
                 k=parent["k"], bright=parent["bright"] * np.exp(rng.normal(0, 0.1)), dn=parent["dn"])
    return c


def _advance(rng, q, ids, c, dt):
    """Grow cell c for dt minutes; divide (recursively) when it reaches its division length."""
    L = c["L"] * np.exp(c["mu"] * dt)
    if L < c["Ldiv"]:
        c["L"] = L
        return [c]
    rest = dt - np.log(c["Ldiv"] / c["L"]) / c["mu"]
    gap = rng.uniform(0.05, 0.2)
    f = np.clip(rng.normal(0.5, 0.025), 0.42, 0.58)
    inner = _new_cell(rng, q, ids, (c["Ldiv"] - gap) * f, c)
    outer = _new_cell(rng, q, ids, (c["Ldiv"] - gap) * (1 - f), c)
    inner["gap"], outer["gap"] = c["gap"], gap
    return _advance(rng, q, ids, inner, rest) + _advance(rng, q, ids, outer, rest)


def _fit_in_lumen(c, R, mother_round, g0):
    """Lateral offset, tilt and bend clipped so the capsule stays inside a lumen of half width R."""
    r, h = c["w"] / 2, (c["L"] - c["w"]) / 2
    room = max(R - r - 0.02, 0.0)
    if mother_round:  # the pole cap must stay inside the semicircular end: no tilt or bend
        if g0 < R - r:
            room = min(room, np.sqrt((R - r) ** 2 - (R - r - g0) ** 2))
        return float(np.clip(c["j"], -room, room)), 0.0, 0.0
    k = float(np.clip(c["k"], -room / max(h * h / 3, 1e-6), room / max(h * h / 3, 1e-6)))
    j = float(np.clip(c["j"], -room, room))
    rem = max(room - abs(j) - abs(k) * h * h / 3, 0.0)
    tmax = np.arcsin(min(rem / max(h, 1e-6), 1.0))
    return j, float(np.clip(c["tilt"], -tmax, tmax)), k


def _simulate_trench(rng, q, ids, chip, n_frames):
    """Cells of one filled trench: per frame a list of (cell, centre's distance from the closed end,
    mother, lateral offset, tilt, bend)."""
    fill = chip.L if rng.random() >= q["partial_fill_prob"] else chip.L * rng.uniform(0.2, 0.9)
    g0 = rng.uniform(0.02, 0.2)
    stack, pos = [], g0
    while not stack or pos < fill:
        c = _new_cell(rng, q, ids, 0.0)
        c["L"] = c["Lb"] * (c["Ldiv"] / c["Lb"]) ** rng.uniform(0, 1)
        pos += (c["gap"] if stack else 0.0) + c["L"]
        stack.append(c)
    frames = []
    for t in range(n_frames):
        if t:
            stack = [d for c in stack for d in _advance(rng, q, ids, c, q["frame_interval_min"])]
        out, pos = [], g0
        for i, c in enumerate(stack):
            pos += c["gap"] if i else 0.0
            centre = pos + c["L"] / 2
            if centre > chip.L:
                stack = stack[:i]
                break
            out.append((dict(c), centre, i == 0) + _fit_in_lumen(c, chip.R, i == 0 and chip.rounded, g0))
            pos += c["L"]
        frames.append(out)
    return frames


def _cell_arrays(chip, trenches, per_frame, q):
    """Capsule arrays (pixel centre, axis, h, r, bend, phase/fluor weights) of one frame's trench cells."""
    rows = []
    for ti, c, centre, _, j, tilt, k in per_frame:
        tr = trenches[ti]
        x, y = chip.to_px(tr["u"] + j, tr["v_closed"] + tr["sgn"] * centre)
        ex, ey = chip.axis_px(tr["sgn"], tilt)
        rows.append((x, y, ex, ey, (c["L"] - c["w"]) / 2, c["w"] / 2, k, c["dn"], c["bright"]))
    return _pack(rows, q)


def _pack(rows, q):
    """Rows of (x, y, ex, ey, h, r, bend, phase factor, brightness) -> dict of arrays."""
    a = np.array(rows, float).reshape(-1, 9)
    kphi = 2 * np.pi * q["cell_delta_n"] / q["wavelength_um"]  # rad per um of cell thickness
    return dict(x=a[:, 0], y=a[:, 1], ex=a[:, 2], ey=a[:, 3], h=a[:, 4], r=a[:, 5], k=a[:, 6],
                wphi=kphi * a[:, 7], wfl=q["cell_photons"] * a[:, 8] / (2 * np.maximum(a[:, 5], 1e-6)))


def _loose_objects(rng, q, chip, height, width):
    """Loose cells and debris at random places in the feeding channel (new positions each frame)."""
    rows, (v0, v1) = [], chip.channel
    uc, vc = chip.to_chip(np.array([0, width, 0, width]), np.array([0, 0, height, height]))
    for _ in range(rng.poisson(q["loose_objects_per_frame"])):
        u, v, th = rng.uniform(uc.min(), uc.max()), rng.uniform(v0 + 1, v1 - 1), rng.uniform(0, np.pi)
        x, y = chip.to_px(u, v)
        if rng.random() < 0.6:  # a loose cell
            w = q["cell_width_um"] * rng.uniform(0.9, 1.05)
            L = rng.uniform(1.5, 5.0)
            bright = np.exp(rng.normal(0, q["brightness_sigma"])) * (rng.random() < 0.7)
            rows.append((x, y, np.sin(th), np.cos(th), (L - w) / 2, w / 2, 0.0, 1.0, bright))
        else:  # debris: a small sphere, weakly or not fluorescent
            rows.append((x, y, 0.0, 1.0, 0.0, rng.uniform(0.15, 0.5), 0.0, rng.uniform(0.5, 2.0),
                         rng.uniform(0, 0.2)))
    return _pack(rows, q)


def _render(obj, origin, step, shape, px, inside=False, chunk=300):
    """Rasterise capsules on a grid whose point (i, j) is at pixel coords (origin + j*step, origin + i*step).

    Returns (flat index, value, object index) for every grid point strictly inside an
    object; value is the local thickness in um (2*sqrt(r^2 - d^2)), or 1 when `inside`.
    """
    ny, nx = shape
    res = ([], [], [])
    for c0 in range(0, len(obj["x"]), chunk):
        x, y, ex, ey, h, r, k = (obj[n][c0:c0 + chunk, None, None] for n in ("x", "y", "ex", "ey", "h", "r", "k"))
        bend = np.abs(k) * h * h / 2
        hy = int(np.ceil(np.max(h * np.abs(ey) + r + bend) / (px * step))) + 1
        hx = int(np.ceil(np.max(h * np.abs(ex) + r + bend) / (px * step))) + 1
        gy = np.rint((y - origin) / step).astype(int) + np.arange(-hy, hy + 1)[None, :, None]
        gx = np.rint((x - origin) / step).astype(int) + np.arange(-hx, hx + 1)[None, None, :]
        dy, dx = (origin + gy * step - y) * px, (origin + gx * step - x) * px
        s, n = dx * ex + dy * ey, dy * ex - dx * ey
        sc = np.clip(s, -h, h)
        d2 = (s - sc) ** 2 + (n - k * (sc * sc - h * h / 3) / 2) ** 2
        ok = (d2 < r * r) & (gy >= 0) & (gy < ny) & (gx >= 0) & (gx < nx)
        oi, iy, ix = np.nonzero(ok)
        res[0].append(gy[oi, iy, 0] * nx + gx[oi, 0, ix])
        res[1].append(np.ones(len(oi)) if inside else 2 * np.sqrt(np.maximum(r * r - d2, 0))[ok])
        res[2].append(oi + c0)
    if not res[0]:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, int)
    return tuple(np.concatenate(r) for r in res)


# --------------------------------------------------------------------------- optics
def _defocus(kx, ky, z, lam):
    """Angular-spectrum defocus phase factor for a focus error z (um) in the immersion medium."""
    kz = np.sqrt(np.maximum((N_IMMERSION / lam) ** 2 - kx ** 2 - ky ** 2, 0.0))
    return np.exp(2j * np.pi * z * (kz - N_IMMERSION / lam))


def _phase_pupils(q, rng, shape, d_um):
    """Sparse pupils (flat index, complex value) of the objective + phase ring, one per illumination point."""
    fy, fx = sfft.fftfreq(shape[0], d_um)[:, None], sfft.fftfreq(shape[1], d_um)[None, :]
    lam, na = q["wavelength_um"], q["na"]
    rc, half = q["ring_radius_frac"] * na / lam, q["ring_width_frac"] * na / lam / 2
    ring = np.sqrt(q["ring_transmission"]) * np.exp(-0.5j * np.pi)  # phase advance of the direct light
    out, th0 = [], rng.uniform(0, 2 * np.pi)
    for i in range(q["n_illumination_points"]):
        th = th0 + 2 * np.pi * i / q["n_illumination_points"]
        ri = rc + half * rng.uniform(-0.6, 0.6)  # points spread over the (narrower) condenser annulus
        kx, ky = fx + ri * np.cos(th), fy + ri * np.sin(th)
        rho = np.hypot(kx, ky)
        idx = np.flatnonzero(rho < na / lam)
        kxf, kyf = np.broadcast_to(kx, shape).ravel()[idx], np.broadcast_to(ky, shape).ravel()[idx]
        rr = rho.ravel()[idx]
        val = np.where(np.abs(rr - rc) < half, ring, 1.0) * _defocus(kxf, kyf, q["phase_defocus_um"], lam)
        val *= np.cos(0.5 * np.pi * np.clip((rr * lam / na - 0.85) / 0.15, 0, 1))  # apodised rim
        out.append((idx, val.astype(np.complex64)))
    return out


def _fluor_otf(q, shape, d_um):
    """Real-FFT OTF: Airy/defocused incoherent PSF of the circular pupil plus a weak Gaussian tail."""
    fy, fx = sfft.fftfreq(shape[0], d_um)[:, None], sfft.fftfreq(shape[1], d_um)[None, :]
    lam = q["emission_um"]
    pupil = (np.hypot(fx, fy) < q["na"] / lam) * _defocus(fx, fy, q["fluor_defocus_um"], lam)
    psf = np.abs(sfft.ifft2(pupil, workers=2)) ** 2
    otf = sfft.rfft2(psf / psf.sum(), workers=2)
    k2 = fy ** 2 + sfft.rfftfreq(shape[1], d_um)[None, :] ** 2
    tail = np.exp(-2 * np.pi ** 2 * q["psf_tail_sigma_um"] ** 2 * k2)
    return ((1 - q["psf_tail_frac"]) * otf + q["psf_tail_frac"] * tail).astype(np.complex64)


def _shift_ramp(shape, dy, dx, real=False):
    """Fourier factor that shifts a grid's content by (dy, dx) grid steps."""
    fx = sfft.rfftfreq(shape[1]) if real else sfft.fftfreq(shape[1])
    ry = np.exp(-2j * np.pi * sfft.fftfreq(shape[0]) * dy).astype(np.complex64)
    return ry[:, None] * np.exp(-2j * np.pi * fx * dx).astype(np.complex64)[None, :]


def _smooth_field(rng, height, width, amp):
    """1 + a smooth random field (at most about one cycle across the image), max |deviation| = amp."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    f = np.zeros((height, width))
    for _ in range(4):
        kx, ky = rng.uniform(-1, 1, 2) / max(height, width)
        f += rng.normal() * np.cos(2 * np.pi * (kx * xx + ky * yy) + rng.uniform(0, 2 * np.pi))
    return 1 + amp * f / (np.abs(f).max() + 1e-12)


def _camera(rng, photons, q):
    """Shot noise, read noise, gain and offset -> uint16."""
    e = rng.poisson(np.maximum(photons, 0)) + rng.normal(0, q["read_noise_e"], photons.shape)
    return np.clip(np.rint(q["gain_adu_per_e"] * e + q["offset_adu"]), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- main
def simulate(seed: int, height: int = 1024, width: int = 1024, n_frames: int = 8) -> Acquisition:
    """Simulate one acquisition (T frames, phase + fluorescence + ground truth) for a seed."""
    rng = np.random.default_rng(seed)
    q = _sample_params(rng, height, width)
    px = q["pixel_size_um"]
    chip = _Chip(q, height, width)
    # supersampled grid: fine enough for the phase-contrast intensity band, padded against FFT wrap
    s = max(1, int(np.ceil(px * 3.2 * q["na"] * (1 + q["ring_radius_frac"]) / q["wavelength_um"])))
    margin = int(np.ceil(6.0 / px))
    shape = tuple(sfft.next_fast_len((n + 2 * margin) * s) for n in (height, width))
    step, origin, d_um = 1.0 / s, -margin - 0.5 + 0.5 / s, px / s
    q.update(supersample=s, margin_px=margin)

    trenches = _list_trenches(chip, height, width, margin + 10)
    ids = iter(range(1, 10 ** 9))
    cells_t = [[] for _ in range(n_frames)]
    for ti, tr in enumerate(trenches):
        tr["empty"] = bool(rng.random() < q["empty_fraction"])
        if not tr["empty"]:
            for t, fr in enumerate(_simulate_trench(rng, q, ids, chip, n_frames)):
                cells_t[t] += [(ti,) + row for row in fr]

    steps = rng.normal(0, q["drift_step_sd_px"], (n_frames, 2)) + q["drift_speed_px"] * np.array(
        [np.sin(np.deg2rad(q["drift_direction_deg"])), np.cos(np.deg2rad(q["drift_direction_deg"]))])
    steps[0] = 0
    steps *= np.minimum(1, 0.5 / np.maximum(np.hypot(*steps.T), 1e-9))[:, None]
    drift = np.cumsum(steps, axis=0)
    drift *= np.minimum(1, 3.0 / np.maximum(np.hypot(*drift.T), 1e-9))[:, None]

    xs, ys = origin + step * np.arange(shape[1]), origin + step * np.arange(shape[0])
    lum, ch = chip.static_maps(xs, ys, q["trench_edge_um"], q["channel_edge_um"])
    wall = 1 - np.maximum(lum, ch)
    phi0 = (q["wall_phase_rad"] * wall + q["channel_phase_rad"] * ch).astype(np.float32)
    bg_fl = (q["background_photons"] * (1 + q["pdms_autofluor_frac"] * wall + q["medium_autofluor_frac"] * ch))
    del lum, wall
    pupils = _phase_pupils(q, rng, shape, d_um)
    otf = _fluor_otf(q, shape, d_um)
    illum = _smooth_field(rng, height, width, q["phase_illumination_amp"])
    excite = _smooth_field(rng, height, width, q["excitation_amp"])
    crop = (slice(margin * s, (margin + height) * s), slice(margin * s, (margin + width) * s))
    norm = 1.0 / (q["n_illumination_points"] * q["ring_transmission"])

    phase = np.zeros((n_frames, height, width), np.uint16)
    fluor, labels = np.zeros_like(phase), np.zeros((n_frames, height, width), np.int32)
    cell_list = []
    for t in range(n_frames):
        objs = [_cell_arrays(chip, trenches, cells_t[t], q), _loose_objects(rng, q, chip, height, width)]
        phi, dens = phi0.copy(), bg_fl.copy()
        for ob in objs:
            idx, val, oi = _render(ob, origin, step, shape, px)
            phi += np.bincount(idx, val * ob["wphi"][oi], phi.size).reshape(shape).astype(np.float32)
            dens += np.bincount(idx, val * ob["wfl"][oi], dens.size).reshape(shape)
        field = np.empty(shape, np.complex64)
        field.real, field.imag = np.cos(phi), np.sin(phi)
        spec = sfft.fft2(field, workers=2, overwrite_x=True) * _shift_ramp(shape, drift[t, 0] * s, drift[t, 1] * s)
        inten = np.zeros(shape, np.float32)
        for idx, val in pupils:
            g = np.zeros(shape, np.complex64)
            g.ravel()[idx] = spec.ravel()[idx] * val
            e = sfft.ifft2(g, workers=2, overwrite_x=True)
            inten += e.real ** 2 + e.imag ** 2
        ph = inten[crop].reshape(height, s, width, s).mean(axis=(1, 3)) * norm
        phase[t] = _camera(rng, ph * illum * q["phase_photons"] * rng.uniform(0.99, 1.01), q)
        fs = sfft.rfft2(dens, workers=2) * otf * _shift_ramp(shape, drift[t, 0] * s, drift[t, 1] * s, real=True)
        fl = sfft.irfft2(fs, shape, workers=2)[crop].reshape(height, s, width, s).mean(axis=(1, 3))
        fluor[t] = _camera(rng, fl * excite, q)

        listed = [i for i, row in enumerate(cells_t[t]) if trenches[row[0]]["listed"]]
        ob = {k: v[listed] for k, v in objs[0].items()}
        ob["x"], ob["y"] = ob["x"] + drift[t, 1], ob["y"] + drift[t, 0]
        idx, _, oi = _render(ob, 0.0, 1.0, (height, width), px, inside=True)
        ids_t = np.array([cells_t[t][i][1]["id"] for i in listed], np.int32)
        lab = np.zeros(height * width, np.int32)
        lab[idx] = ids_t[oi]
        labels[t] = lab.reshape(height, width)
        present = set(np.unique(lab).tolist())
        for n, i in enumerate(listed):
            ti, c, _, mother = cells_t[t][i][:4]
            if c["id"] in present:
                cell_list.append(dict(t=t, trench=ti, label=int(c["id"]), mother=bool(mother),
                                      length_px=float(c["L"] / px), width_px=float(c["w"] / px),
                                      centre_xy=(float(ob["x"][n]), float(ob["y"][n]))))
    out_tr = [dict(set=tr["set"], closed_xy=tr["closed_xy"], open_xy=tr["open_xy"], width_px=float(2 * chip.R / px),
                   empty=tr["empty"], visible=tr["visible"]) for tr in trenches if tr["listed"]]
    return Acquisition(phase, fluor, labels, out_tr, cell_list, drift, q["angle_deg"], px, q)


def _stretch(img):
    """Percentile contrast stretch to 8 bits."""
    lo, hi = np.percentile(img, [0.5, 99.5])
    return (np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def main(argv=None):
    """CLI: simulate one seed, print its parameters and counts, optionally write a preview PNG."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--preview", help="write phase | fluorescence of frame 0 to this PNG")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    acq = simulate(args.seed, args.height, args.width, args.frames)
    dt = time.perf_counter() - t0
    print(json.dumps(acq.params, indent=1))
    n_vis = sum(t["visible"] for t in acq.trenches)
    n_empty = sum(t["empty"] for t in acq.trenches)
    per_frame = [sum(c["t"] == t for c in acq.cells) for t in range(args.frames)]
    print(f"trenches: {len(acq.trenches)} listed, {n_vis} visible, {n_empty} empty; "
          f"cells per frame: {per_frame}; drift at end (dy, dx): {acq.drift_yx[-1].round(2).tolist()}; "
          f"{dt:.1f} s")
    if args.preview:
        import matplotlib.pyplot as plt

        img = np.concatenate([_stretch(acq.phase[0]), np.full((args.height, 8), 255, np.uint8),
                              _stretch(acq.fluorescence[0])], axis=1)
        plt.imsave(args.preview, img, cmap="gray", vmin=0, vmax=255)


if __name__ == "__main__":
    main()
