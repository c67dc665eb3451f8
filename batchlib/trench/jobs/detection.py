"""TrenchDetection: find the trench boxes and the per-frame drift of each position."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...base import Param
from ...container_job import BatchJobOnContainer
from ...io import read_attrs, read_table, write_attrs, write_table
from ...io.checksum import content_hash
from ...io.files import atomic_path
from ..layout import (DRIFT_TABLE, QC_DIR, RAW, TRENCHES_TABLE, check_channel, container_stem,
                      folder_output, resolve_channel, specs)

if TYPE_CHECKING:  # pandas is imported where it is used: it is slow to import
    import pandas as pd


class TrenchDetection(BatchJobOnContainer):
    """Detect the trench array (angle, sets, boxes) and track the stage drift.

    The reference is the first frame of a phase-like channel, or the maximum
    projection over time of a fluorescence channel (where empty trenches are
    invisible and may be missed). Drift is measured for every frame against
    the reference; when frames were appended, only the new ones are measured.
    """

    # 4: angle harmonics to 0.2 cycles/px, phase ends from the empty lumens, 1.5 px margin;
    # 5: phase empty flags from both textures, the lumen polarity from the texture relative
    # to the brightness where the plain texture puts the boxes on bright walls;
    # 6: fluorescence angle corrected by the lean of the closed-end line, boxes and drift
    # along the trenches from frame 0's mother tips (tips near the image's edge seen);
    # 7: pixel noise at least the rounding to whole grey levels (JPEG'd frames read 1e-12);
    # fluorescence closed-end lines lean at most 0.1 deg (was 0.3);
    # 8: two phase empty lumens whose ends agree draw their set's end lines (was three);
    # 9: phase sets also from weakly periodic rows as strong as a set found, and lattice
    # sites inside a set whose lumen shows cells' texture (wide halos); boxes the self-check
    # finds on the walls found again with the other lumen polarity, taken if that passes;
    # 10: a fluorescence box is also pushed out past its outermost cell's own foot (found
    # from the outside in), so a dim mother by a bright daughter is not cut; a phase layout
    # with more plain texture between the boxes but more in them relative to the brightness
    # is unverified, not refused; 11: phase empty flags checked over the lumens' whole
    # length (a trench holding only a mother beyond the periodic rows is filled), the
    # pitch as the whole fraction of the highest autocorrelation peak whose multiples stand
    # highest, the angle's coarse search on four harmonics too, the lumen axis by mirror
    # symmetry, fractions of the pitch retried in fluorescence and weakly periodic rows in
    # phase, fluorescence rows at a coherence of 0.6, phase boxes whose texture does not
    # stand out from the brightness unverified, a phase angle searched again between the
    # ends of a set whose periodic rows are few; 12: trench sets beyond two (two feeding
    # channels in view), chips turned beyond the angle search, another frame where frame 0
    # gives no layout, trenches running left-right, boxes as wide as the magnification asks;
    # 13: fluorescence boxes start 1 px outside the cells' foot (was 0.5); a quarter of a
    # fluorescence period tried when half of it resolves nothing; 14: a phase polarity the
    # one-frame self-check left unverified overturned on weaker evidence over time; 15:
    # fluorescence ends cleared of each trench's outermost cell as seen from the end line,
    # the mother tips that lean the angle from the outermost cell; 16: a fluorescence
    # lattice found again at a quarter or a third of the period where cells stand there;
    # 17: empty phase lumens beyond a run of full trenches kept; 18: a phase angle
    # corrected by the lean of the lumens' closed-end lines, empty flags kept per set; 19:
    # phase boxes clear of dark cells' tips where no empty lumens give a reference (the
    # walls' level), twice the pitch refused where half-way stripes are as structured,
    # rows' periodicity from their edges where no run is periodic, unsure phase layouts
    # tried at multiples of their pitch; 20: phase empty flags the texture left unclear
    # checked over time (empty lumens change by the noise alone) and the lines of sets
    # whose confirmed empty lumens end beyond them moved out, lattice sites inside
    # the run with a weak contrast of the lumen's sign kept (empty lumens as bright as walls),
    # an unsure phase layout's pitch doubled or tripled where time says so; 21: phase
    # tips against the walls stop at a tenth of the cells' darkness, cancelled lumens'
    # lines follow their magnitude, and a phase frame's drift along the trenches is
    # matched at the boxes' closed ends (profile_drift.py), the pitch kept to the
    # fundamental where the harmonics follow something else (centres.refine_pitch)
    version = "21"
    params = {
        "channel": Param("", "detection channel, name or key (default or auto: the first "
                         "phase-like channel, else the first fluorescence one)"),
        "kind": Param("auto", "auto (the kind Ingest recorded for the channel), phase or fluorescence",
                      choices=("auto", "phase", "fluorescence")),
        "lumen": Param("auto", "trench lumens are the bright or the dark stripes of the cross "
                       "profile (auto: decided from the image; fluorescence: bright)",
                       choices=("auto", "bright", "dark")),
        "orientation": Param("auto", "trenches run top-bottom (vertical) or left-right "
                             "(horizontal) in the image; auto: top-bottom, and left-right "
                             "when no trench array is found that way",
                             choices=("auto", "vertical", "horizontal"), unhashed_default=True),
        "box_width": Param(0, "crop width in pixels (0: 32 px at 0.1 um pixels, scaled to the "
                           "pixel size the acquisition records; 32 without one)"),
        "box_height": Param(0, "crop height in pixels (0: the trench length found)"),
        "pitch": Param(0.0, "trench pitch in pixels (0: estimated)"),
        "angle_range_deg": Param(5.0, "search range of the trench angle, +- degrees"),
        "n_sets": Param(0, "number of trench sets in the image (0: detected)"),
        "min_trenches": Param(3, "fewer trenches than this is a detection failure"),
        "closed_end_margin": Param(-1.0, "pixels of PDMS every box keeps before the closed end "
                                   "(negative: the default, 1.5 phase, 1 fluorescence)"),
        "qc_plot": Param(True, "write a QC picture per position to <folder>/qc/", affects_result=False),
    }
    input_keys = specs(RAW)
    output_keys = specs(TRENCHES_TABLE, DRIFT_TABLE)

    def validate_input(self, path) -> None:
        super().validate_input(path)
        check_channel(path, self.param_values["channel"], "--detect_channel")

    def process_container(self, container, path):
        from ..detection import plot_detection
        from ..detection.movie import detect_in_movie

        p = self.param_values
        key, kind = resolve_channel(container, p["channel"], "--detect_channel", str(path))
        kind = kind if p["kind"] == "auto" else p["kind"]
        movie = container[f"{RAW}/{key}"]
        n_t = movie.shape[0]
        layout, reference = detect_in_movie(
            movie, kind, box_width=p["box_width"] or self._box_width(container),
            box_height=p["box_height"] or None,
            pitch=p["pitch"] or None, angle_range_deg=p["angle_range_deg"],
            n_sets=p["n_sets"] or None, min_trenches=p["min_trenches"], lumen=p["lumen"],
            closed_end_margin=p["closed_end_margin"] if p["closed_end_margin"] >= 0 else None,
            orientation=p["orientation"])
        trenches = layout.trenches.reset_index(drop=True)
        drift = self._drift(container, movie, reference, layout, kind)
        drawn = read_attrs(container[TRENCHES_TABLE]).get("qc_picture") if TRENCHES_TABLE in container else None
        write_table(container, TRENCHES_TABLE, trenches)
        write_table(container, DRIFT_TABLE, drift)
        quality = {k: float(v) for k, v in layout.quality.items()}
        write_attrs(container[TRENCHES_TABLE], {
            "angle_deg": float(layout.angle_deg), "pitch": float(layout.pitch),
            "channel": key, "kind": kind, "lumen_option": p["lumen"], "quality": quality,
            "n_frames": int(n_t),
            "layout_hash": _layout_hash(trenches),
            "sets": layout.sets.to_dict(orient="list"),
            "note": ("fluorescence reference: empty trenches may be missed"
                     if kind == "fluorescence" else ""),
            "warnings": list(layout.warnings),
        })
        for warning in layout.warnings:
            self.warn(f"{os.path.basename(path)}: {warning}")
        verdict = {1.0: "self-check passed", 0.5: "NOT VERIFIED",
                   0.0: "self-check failed"}.get(layout.quality.get("self_check"), "")
        title = f"{container_stem(path)} ({key}, {kind}) - {verdict}"
        # What the picture shows: when frames are appended, a phase reference (frame 0) and
        # its layout stay the same, and redrawing it (1-2 s) would be every live cycle's.
        shows, hashes = _picture_key(reference, layout, title), {}
        for picture in self.folder_outputs(path):
            old_hash = (drawn or {}).get("files", {}).get(os.path.basename(picture))
            if not (drawn or {}).get("key") == shows or not os.path.isfile(picture) \
                    or content_hash(picture) != old_hash:  # (a damaged picture is drawn again)
                # Drawn under a temporary name, then renamed: never a half-written picture.
                with atomic_path(picture) as tmp:
                    plot_detection(reference, layout, str(tmp), title=title)
            hashes[os.path.basename(picture)] = content_hash(picture)
        write_attrs(container[TRENCHES_TABLE], {"qc_picture": {"key": shows, "files": hashes}})
        self.logger.debug("%s: %d trenches, angle %.3f", os.path.basename(path), len(trenches),
                          layout.angle_deg)

    @staticmethod
    def _box_width(container) -> int:
        """32 px at the magnification the segmentation was trained at (0.1 µm pixels),
        scaled to the acquisition's (an even number): at 0.056 µm pixels lumens are
        25-29 px wide, and 32 px boxes left the U-Net almost no wall (phase mean IoU
        0.96 -> 0.72 on the generator's nominal chip seen 1.8 times larger)."""
        from ..layout import AcquisitionMeta
        from ..segmentation.scale import zoom_for

        zoom = zoom_for(AcquisitionMeta.read(container).pixel_size_um)
        return 32 if zoom == 1.0 else max(16, 2 * int(round(16 / zoom)))

    def folder_outputs(self, output_path) -> list:
        """``<folder>/qc/<container>_trenches.png`` when ``qc_plot`` is set."""
        return [folder_output(output_path, QC_DIR, "_trenches.png")] if self.param_values["qc_plot"] else []

    def _drift(self, container, movie, reference, layout, kind):
        import numpy as np
        import pandas as pd
        from ..detection.movie import movie_drift

        n_t = movie.shape[0]
        trenches = layout.trenches.reset_index(drop=True)
        old = None
        if DRIFT_TABLE in container and TRENCHES_TABLE in container and kind == "phase":
            attrs = read_attrs(container[TRENCHES_TABLE])
            if attrs.get("layout_hash") == _layout_hash(trenches):
                old = read_table(container, DRIFT_TABLE)
        start = 0 if old is None else min(len(old), n_t)
        previous = None if old is None else old[["dy", "dx"]].to_numpy()
        with _one_blas_thread():
            d = movie_drift(movie, reference, layout, kind, start, previous)
        return pd.DataFrame({"t": np.arange(n_t, dtype=np.int64), "dy": d[:, 0], "dx": d[:, 1]})


def _one_blas_thread():
    """The drift's small matrix products run faster on one BLAS thread than on a
    pool that other processes compete with (4.4-20.7 s against 3.4 s)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _picture_key(reference, layout, title) -> str:
    """A hash of everything the QC picture is drawn from."""
    import zlib

    import numpy as np
    from ...records import param_hash

    image = np.ascontiguousarray(reference)
    return param_hash({"image": [zlib.crc32(image.tobytes()), list(image.shape), str(image.dtype)],
                       "trenches": _layout_hash(layout.trenches), "angle": float(layout.angle_deg),
                       "sets": layout.sets.to_dict(orient="list"), "title": title,
                       # the temporal check's figure grows with the frames and is not drawn
                       "quality": {k: float(v) for k, v in layout.quality.items()
                                   if k != "temporal_contrast"}})


def _layout_hash(trenches: pd.DataFrame) -> str:
    import numpy as np
    from ...records import param_hash

    cols = [c for c in ("set", "trench", "x_center", "y_closed", "direction", "height", "width")
            if c in trenches]
    return param_hash({"rows": np.round(trenches[cols].to_numpy(dtype=float), 3).tolist()})
