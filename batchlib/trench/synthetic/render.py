"""Image formation: rotated-frame scenes, warped to the camera frame.

Per position a static phase scene (the chip plus stuck debris, blurred once)
is built on the canvas. Per frame the cells of every trench are drawn in
trench-local canvases that share the crop coordinates of the box (row 0 = the
closed end), blurred as one stack and pasted into the scene, flipped for
trenches with ``direction == -1``. Labels are pasted only inside the boxes, so
the crop of the label canvas is exactly the perfect segmentation. One numba pass
then warps all planes and the labels to the raw frame. With
``cell_optics="zernike"`` the cells' factor is formed physically instead
(:mod:`.zernike`), from thicknesses drawn on a grid twice as fine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .. import geometry
from .cells import _EXPONENTIAL_HALO, blur, halo_blur, phase_term, rod
from .config import SyntheticConfig, rng_for
from .chip import Layout, pdms_coverage
from .kernels import warp_to_raw
from .zernike import ZernikeOptics, zernike_log_factor

__all__ = ["Renderer", "IlluminationField"]


class IlluminationField:
    """Smooth gain field of one channel (tilt times vignetting), around 1.

    The field belongs to the microscope, so it is the same at every position.
    """

    def __init__(self, cfg: SyntheticConfig, channel_index: int):
        rng = rng_for(cfg, "illumination", None, channel_index)
        v = cfg.illumination_variation
        self.tilt, self.phi = v * rng.uniform(0.25, 0.5), rng.uniform(0, 2 * np.pi)
        self.vignette = v * rng.uniform(0.5, 1.0)
        self.oy, self.ox = rng.uniform(-0.3, 0.3, 2)
        self.height, self.width = cfg.height, cfg.width

    def _terms(self, y, x):
        u = (y - (self.height - 1) / 2) / (self.height / 2)
        w = (x - (self.width - 1) / 2) / (self.width / 2)
        return (self.tilt * np.cos(self.phi) * u, self.tilt * np.sin(self.phi) * w,
                (u - self.oy) ** 2, (w - self.ox) ** 2)

    def __call__(self, points_yx) -> np.ndarray:
        """Gain at raw-frame points ``(..., 2)``."""
        p = np.asarray(points_yx, float)
        ty, tx, vy, vx = self._terms(p[..., 0], p[..., 1])
        return ((1 + ty + tx) * (1 - self.vignette * (vy + vx) / 2)).astype(np.float32)

    def full_frame(self) -> np.ndarray:
        """Gain of every raw pixel, built from separable row and column terms."""
        rows = np.arange(self.height, dtype=float)[:, None]
        cols = np.arange(self.width, dtype=float)[None, :]
        ty, tx, vy, vx = (a.astype(np.float32) for a in self._terms(rows, cols))
        return (1 + ty + tx) * (1 - np.float32(self.vignette / 2) * (vy + vx))


@dataclass
class _Box:
    """Where a trench's local canvas (``rows, cols``) and its crop box (``crop_rows,
    crop_cols``) sit on the scene canvas; ``flip`` for ``direction == -1``."""

    rows: slice
    cols: slice
    crop_rows: slice
    crop_cols: slice
    flip: bool


class Renderer:
    """Renders the frames of one position (see the module docstring)."""

    def __init__(self, cfg: SyntheticConfig, layout: Layout, position: int, cell_row):
        self.cfg, self.layout, self.position = cfg, layout, position
        self.cell_row = np.asarray(cell_row, np.intp)  # trench row of each cell id
        self.phase = [c for c in cfg.channels if cfg.is_phase(c)]
        self.fluo = list(cfg.fluorescence_channels)
        self.n_planes = (1 if self.phase else 0) + len(self.fluo)
        L, bw = layout.trench_length, layout.box_width
        halo = cfg.cell_halo_sigma_px * (
            1.0 if cfg.halo_model == "gaussian" else max(s for _, s in _EXPONENTIAL_HALO))
        wide = math.sqrt(float(layout.psf_sigma.max()) ** 2 + halo ** 2)
        self.pad = int(math.ceil(3.5 * wide)) + 2
        # Cells stick out of the open end by at most half their longest length: the
        # longest division length, grown for one more frame at the fastest rate.
        longest = cfg.birth_length_px * (2.3 + 3 * cfg.added_length_cv) * math.exp(
            math.log(2) / cfg.doubling_time_s * (1 + 3 * cfg.growth_rate_cv) * cfg.frame_interval_s)
        self.overhang = int(math.ceil(longest / 2)) + self.pad
        self.local_shape = (self.pad + L + self.overhang, bw + 2 * self.pad)
        self.boxes, self.grids = {}, {}
        for row, tr in enumerate(layout.trenches.itertuples()):
            self.boxes[row] = self._box(tr.x_center, tr.y_closed, tr.direction)
            grid = geometry.box_sample_grid(tr.x_center, tr.y_closed, tr.direction, L, bw)
            self.grids[row] = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1)
        self.fields = {ch: IlluminationField(cfg, i) for i, ch in enumerate(cfg.channels)}
        self.gain = {ch: f.full_frame() for ch, f in self.fields.items()}
        self.static = self._static_phase() if self.phase else None
        self.optics = ZernikeOptics(
            cfg.zernike_cutoff, cfg.zernike_ring_radius, cfg.zernike_ring_width,
            cfg.zernike_ring_transmission, cfg.zernike_defocus_waves) if (
            self.phase and cfg.cell_optics == "zernike") else None
        self._wall_images = {}  # trench row -> (fine wall phase, log image of the walls alone)
        self.planes = np.zeros((self.n_planes,) + layout.canvas_shape, np.float32)
        self.labels = np.zeros(layout.canvas_shape, np.int32)

    # -- geometry -----------------------------------------------------------------
    def _box(self, x_center, y_closed, direction) -> _Box:
        m, p = self.layout.margin, self.pad
        L, bw = self.layout.trench_length, self.layout.box_width
        x0 = int(round(x_center - (bw - 1) / 2)) + m
        cols, crop_cols = slice(x0 - p, x0 - p + self.local_shape[1]), slice(x0, x0 + bw)
        y = int(y_closed) + m
        if direction == 1:
            return _Box(slice(y - p, y - p + self.local_shape[0]), cols,
                        slice(y, y + L), crop_cols, False)
        return _Box(slice(y + p + 1 - self.local_shape[0], y + p + 1), cols,
                    slice(y - L + 1, y + 1), crop_cols, True)

    def _paste(self, target, box: _Box, local, multiply=False):
        """Add (or multiply by the exp of) ``local`` (crop orientation) into ``target``."""
        if box.flip:
            local = local[..., ::-1, :]
        r0, c0 = box.rows.start, box.cols.start
        H, W = target.shape[-2:]
        ys = slice(max(r0, 0), min(box.rows.stop, H))
        xs = slice(max(c0, 0), min(box.cols.stop, W))
        part = local[..., ys.start - r0:ys.stop - r0, xs.start - c0:xs.stop - c0]
        if multiply:
            target[..., ys, xs] *= np.exp(part)
        else:
            target[..., ys, xs] += part

    def _local(self, canvas, box: _Box) -> np.ndarray:
        """The local canvas of ``box`` cut from a canvas plane (crop orientation; the
        nearest canvas value where it reaches past the canvas)."""
        H, W = canvas.shape
        ys = np.clip(np.arange(box.rows.start, box.rows.stop), 0, H - 1)
        xs = np.clip(np.arange(box.cols.start, box.cols.stop), 0, W - 1)
        local = canvas[np.ix_(ys, xs)]
        return local[::-1] if box.flip else local

    def crop(self, canvas, row):
        """The box of trench ``row`` cut from a canvas plane (a view), closed end at row 0."""
        box = self.boxes[row]
        local = canvas[..., box.crop_rows, box.crop_cols]
        return local[..., ::-1, :] if box.flip else local

    # -- static scene -------------------------------------------------------------
    def _static_phase(self) -> np.ndarray:
        cfg, lay = self.cfg, self.layout
        B = cfg.phase_background
        cover = self._cover = pdms_coverage(lay, cfg)
        # Two halo scales: a wide glow that lights up the narrow lumens and a narrow
        # one that draws bright lines along every wall. Only part of the contrast is
        # restored as halo, so large PDMS areas stay darker than the medium.
        w = cfg.phase_edge_halo_weight
        if cfg.halo_model == "gaussian":
            halo = (1 - w) * blur(cover, cfg.phase_halo_sigma_px) + w * blur(
                cover, cfg.phase_edge_halo_sigma_px)
        else:
            halo = (1 - w) * halo_blur(cover, cfg.phase_halo_sigma_px, cfg.halo_model) + \
                w * halo_blur(cover, cfg.phase_edge_halo_sigma_px, cfg.halo_model)
        # "dark" flips the wall term: the PDMS then shows brighter than the medium
        # and the narrow lumens between bright walls come out dark.
        sign = 1.0 if cfg.phase_lumen == "bright" else -1.0
        scene = 1 - sign * cfg.phase_pdms_contrast * (cover - cfg.phase_halo_fraction * halo)
        # A soft floor keeps the darkest walls positive without flattening them.
        f = cfg.phase_floor
        scene = B * f * np.logaddexp(0.0, scene / f)
        if cfg.background_texture > 0:
            scene = scene * self._texture(scene.shape)
        self._add_debris(scene)
        return blur(scene, cfg.psf_sigma_px).astype(np.float32)

    def _texture(self, shape):
        """Static multiplicative texture around 1: smooth speckle plus faint fringes.

        Stands for a rough chip surface and stray interference, which neither the
        halo model nor the illumination field produce.
        """
        cfg = self.cfg
        rng = rng_for(cfg, "clutter", self.position, 2)
        speckle = blur(rng.standard_normal(shape).astype(np.float32), rng.uniform(3.0, 8.0))
        speckle /= max(float(speckle.std()), 1e-12)
        yy, xx = np.indices(shape, dtype=np.float32)
        theta, period = rng.uniform(0, np.pi), rng.uniform(40.0, 120.0)
        fringes = np.sin(2 * np.pi * (yy * np.cos(theta) + xx * np.sin(theta)) / period
                         + rng.uniform(0, 2 * np.pi))
        return np.clip(1 + cfg.background_texture * (speckle + 0.5 * fringes), 0.2, None)

    def _add_debris(self, scene):
        cfg, lay = self.cfg, self.layout
        rng = rng_for(cfg, "clutter", self.position, 0)
        n = rng.poisson(cfg.debris_per_mpx * cfg.height * cfg.width / 1e6)
        m = lay.margin
        H, W = scene.shape
        for _ in range(n):
            y, x = rng.uniform(0, H), rng.uniform(0, W)
            if self._in_lumen(y - m, x - m):
                continue  # debris inside a trench would hide or mimic cells
            sigma = rng.uniform(0.8, 2.5)
            amp = rng.uniform(0.2, 0.7) * (1 if rng.random() < 0.4 else -1)
            e = int(3.5 * sigma) + 1
            y0, x0 = max(int(y) - e, 0), max(int(x) - e, 0)
            yy = np.arange(y0, min(int(y) + e + 1, H))[:, None]
            xx = np.arange(x0, min(int(x) + e + 1, W))[None, :]
            scene[y0:y0 + yy.shape[0], x0:x0 + xx.shape[1]] *= np.exp(amp * np.exp(
                -((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2)))

    def _in_lumen(self, y, x) -> bool:
        lum, L = self.layout.lumens, self.layout.trench_length
        s = (y - lum.y_closed.to_numpy()) * lum.direction.to_numpy()
        near = np.abs(x - lum.x_center.to_numpy()) <= self.cfg.trench_width_px / 2 + 3
        return bool(np.any(near & (s >= -3) & (s <= L + 3)))

    # -- frames -------------------------------------------------------------------
    def _trench_stacks(self, frame, psf):
        """Blurred phase and fluorescence stacks of the occupied trenches, and crop labels."""
        cfg, lay = self.cfg, self.layout
        rows, first = np.unique(frame["row"], return_index=True)
        # Plane 0: cell thickness (phase); planes 1..: fluorescence. One blur for all.
        stack = np.zeros((1 + len(self.fluo), len(rows)) + self.local_shape, np.float32)
        thick, fluo = stack[0], stack[1:]
        L, bw, p = lay.trench_length, lay.box_width, self.pad
        crop_labels = np.zeros((len(rows), L, bw), np.int32)
        axis = p + (bw - 1) / 2
        k_of = np.searchsorted(rows, frame["row"])
        # Physical optics (cell_optics="zernike") images the optical path drawn on a
        # grid twice as fine as the pixels, as the camera integrates over each pixel.
        fine = np.zeros((len(rows),) + tuple(2 * n for n in self.local_shape),
                        np.float32) if self.optics else None
        amps = frame["amps"]
        n = len(frame["row"])
        curv = frame.get("curvature", np.zeros(n)).tolist()
        taper = frame.get("taper", np.zeros(n)).tolist()
        for i, (k, s, lat, length, width, tilt, label) in enumerate(zip(
                k_of.tolist(), frame["s_center"].tolist(), frame["lateral"].tolist(),
                frame["length"].tolist(), frame["width"].tolist(), frame["tilt"].tolist(),
                frame["label"].tolist())):
            win, th, inside = rod(self.local_shape, p + s, axis + lat, length, width, tilt,
                                  curv[i], taper[i])
            if win is None:
                continue
            thick[k][win] += th
            if fine is not None:
                w2, th2, _ = rod(fine.shape[1:], 2 * (p + s) + 0.5, 2 * (axis + lat) + 0.5,
                                 2 * length, 2 * width, tilt, curv[i] / 2, taper[i])
                if w2 is not None:
                    fine[k][w2] += th2
            for j in range(len(self.fluo)):
                fluo[j, k][win] += amps[i, j] * th
            # Labels only inside the box: the perfect segmentation of the crop.
            ys = np.arange(win[0].start, win[0].stop) - p
            xs = np.arange(win[1].start, win[1].stop) - p
            ok = inside & ((ys >= 0) & (ys < L))[:, None] & ((xs >= 0) & (xs < bw))[None, :]
            yi, xi = np.nonzero(ok)
            crop_labels[k, ys[yi], xs[xi]] = label
        sharp = blur(stack, psf)
        phase = None
        if fine is not None:
            phase = self._zernike_trench_terms(rows, fine, psf)
        elif self.phase:
            phase = phase_term(thick, cfg.phase_cell_contrast, psf, cfg.cell_halo_sigma_px,
                               sharp=sharp[0], halo_model=cfg.halo_model,
                               focus_rim=cfg.phase_focus_rim_px2)
        return rows, first, phase, sharp[1:], crop_labels

    def _feeding_cells(self, t, psf):
        """Cells floating in the feeding channel: drawn in every channel, never labelled."""
        cfg, lay = self.cfg, self.layout
        rng = rng_for(cfg, "clutter", self.position, 1, t)
        m = lay.margin
        f0, f1 = lay.feed_edges
        H, W = lay.canvas_shape
        for _ in range(rng.poisson(cfg.feeding_cells_per_kpx * W / 1000.0)):
            width = cfg.cell_width_px * (1 + cfg.cell_width_cv * rng.standard_normal())
            lo, hi = f0 + width, f1 - width
            if hi <= lo:
                return
            length = cfg.birth_length_px * rng.uniform(1.0, 2.0)
            tilt = np.pi / 2 + rng.normal(0, 0.4)  # flowing along the channel
            cy, cx = rng.uniform(lo, hi) + m, rng.uniform(0, W)
            win, th, _ = rod((H, W), cy, cx, length, width, tilt)
            if win is None:
                continue
            pad = self.pad
            ys = slice(max(win[0].start - pad, 0), min(win[0].stop + pad, H))
            xs = slice(max(win[1].start - pad, 0), min(win[1].stop + pad, W))
            local = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.float32)
            local[win[0].start - ys.start:win[0].stop - ys.start,
                  win[1].start - xs.start:win[1].stop - xs.start] = th
            i = 0
            if self.optics:
                self.planes[0, ys, xs] *= np.exp(self._zernike_term(local, psf, 1))
                i = 1
            elif self.phase:
                self.planes[0, ys, xs] *= np.exp(phase_term(
                    local, cfg.phase_cell_contrast, psf, cfg.cell_halo_sigma_px,
                    halo_model=cfg.halo_model, focus_rim=cfg.phase_focus_rim_px2))
                i = 1
            blurred = blur(local, psf)
            for j, ch in enumerate(self.fluo):
                amp = cfg.amplitude(ch) * rng.lognormal(0.0, cfg.fluor_cell_sigma)
                self.planes[i + j, ys, xs] += amp * blurred

    def _zernike_trench_terms(self, rows, fine, psf):
        """Log-factors of the cells of each trench (``fine``: thickness on the doubled
        grid), imaged together with the trench's PDMS walls (``zernike_wall_phase_rad``),
        relative to the walls imaged alone: the walls' own image is the static scene,
        but a cell's edge a pixel from a wall's is imaged coherently with it."""
        cfg = self.cfg
        if not cfg.zernike_wall_phase_rad:
            return self._zernike_term(fine, psf, 2)
        out = np.empty((len(rows),) + self.local_shape, np.float32)
        for k, row in enumerate(rows.tolist()):
            if row not in self._wall_images:
                cover = ndimage.zoom(self._local(self._cover, self.boxes[row]), 2, order=1,
                                     grid_mode=True, mode="nearest")
                wall = np.float32(cfg.zernike_wall_phase_rad) * cover
                self._wall_images[row] = (wall, zernike_log_factor(wall, self.optics, 2))
            wall, alone = self._wall_images[row]
            out[k] = zernike_log_factor(wall + cfg.cell_phase_rad * fine[k], self.optics, 2) - alone
        return self._refocused(out, psf)

    def _zernike_term(self, thickness, psf, supersample):
        """Log-factor of cells of ``thickness`` (drawn ``supersample`` times finer than
        the pixels) under :attr:`optics`; a frame blurred beyond the configured PSF (a
        focus change) blurs it by the difference."""
        return self._refocused(zernike_log_factor(self.cfg.cell_phase_rad * thickness, self.optics,
                                                  supersample), psf)

    def _refocused(self, image, psf):
        """``image`` (rendered at the configured PSF) blurred further to a frame's
        ``psf``, when a focus change widened it."""
        extra = math.sqrt(max(psf ** 2 - self.cfg.psf_sigma_px ** 2, 0.0))
        return blur(image, extra) if extra > 1e-6 else image

    def render(self, t, frame):
        """Noise-free raw planes, raw labels and the truth of frame ``t``.

        Parameters
        ----------
        t : int
        frame : dict of ndarray
            The cells visible at ``t``, sorted by trench row and label: ``row,
            cell_id, label, s_center, lateral, tilt, length, width`` and ``amps``
            (n_cells, n_fluorescence_channels).

        Returns
        -------
        raw : ndarray, shape (n_planes, H, W)
            Phase intensity (if any phase channel) then one plane per fluorescence
            channel, before gain, background, offset and noise.
        frame_labels : ndarray, shape (H, W), int32
        crop_labels : dict row -> ndarray (L, bw) int32 (occupied trenches only)
        crop_fluo : dict row -> ndarray (n_fluo, L, bw): noise-free fluorescence in
            the crop, gain applied (for ``<ch>_mean_true``)
        """
        lay = self.layout
        psf = float(lay.psf_sigma[t])
        i = 0
        if self.phase:
            self.planes[0] = self._refocused(self.static, psf)
            i = 1
        self.planes[i:] = 0.0
        self.labels[...] = 0
        rows, first, phase, fluo, crop_labels = self._trench_stacks(frame, psf)
        for k, row in enumerate(rows.tolist()):
            box = self.boxes[row]
            if self.phase:
                self._paste(self.planes[0], box, phase[k], multiply=True)
            if self.fluo:
                self._paste(self.planes[i:], box, fluo[:, k])
        self._feeding_cells(t, psf)

        ends = np.append(first[1:], len(frame["row"]))
        for k, row in enumerate(rows.tolist()):
            lut = np.zeros(crop_labels[k].max() + 1, np.int32)
            sel = slice(first[k], ends[k])
            lut[frame["label"][sel]] = frame["cell_id"][sel]
            self.crop(self.labels, row)[...] = lut[crop_labels[k]]

        raw, frame_labels = warp_to_raw(self.planes, self.labels, lay.angle_deg, lay.shape,
                                        lay.drift[t], lay.margin)
        self._clip_labels_to_boxes(frame_labels, t)
        crop_fluo = {}
        for row in rows.tolist():
            pts = geometry.rotated_to_raw(self.grids[row], lay.angle_deg, lay.shape, lay.drift[t])
            crop_fluo[row] = np.stack([self.crop(self.planes[i + j], row) * self.fields[ch](pts)
                                       for j, ch in enumerate(self.fluo)]) if self.fluo else None
        labels_by_row = {row: crop_labels[k] for k, row in enumerate(rows.tolist())}
        return raw, frame_labels, labels_by_row, crop_fluo

    def _clip_labels_to_boxes(self, frame_labels, t):
        """Drop raw pixels whose exact rotated position falls outside their box.

        Nearest-neighbour sampling can pick a box pixel for a raw pixel lying up to
        half a pixel outside the box; the truth promises labels inside the box polygon.
        """
        lay = self.layout
        yi, xi = np.nonzero(frame_labels)
        if yi.size == 0:
            return
        rot = geometry.raw_to_rotated(np.column_stack([yi, xi]).astype(float), lay.angle_deg,
                                      lay.shape, lay.drift[t])
        tr = lay.trenches
        row = self.cell_row[frame_labels[yi, xi]]
        s = (rot[:, 0] - tr.y_closed.to_numpy()[row]) * tr.direction.to_numpy()[row]
        j = rot[:, 1] - (tr.x_center.to_numpy()[row] - (lay.box_width - 1) / 2)
        eps = 1e-6
        bad = (s < -eps) | (s > lay.trench_length - 1 + eps) | (j < -eps) | (
            j > lay.box_width - 1 + eps)
        frame_labels[yi[bad], xi[bad]] = 0
