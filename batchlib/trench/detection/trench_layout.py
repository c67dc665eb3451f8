"""``TrenchLayout``: the trench array found on one image, its boxes and their columns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..geometry import corners_inside, lumen_share, rotated_to_raw


_CORNERS = [f"rot_{a}{i}" for a in "yx" for i in range(4)] + \
           [f"raw_{a}{i}" for a in "yx" for i in range(4)]
TRENCH_COLUMNS = ["set", "trench", "x_center", "y_closed", "direction", "height", "width",
                  "empty", "score", *_CORNERS]
#: Columns a detected layout adds (absent from older layouts and the generator's truth).
OPTIONAL_TRENCH_COLUMNS = ["empty_unclear", "lumen_like"]
SET_COLUMNS = ["set", "y_closed", "y_open", "direction"]


#: A box that leaves the frame's side (its lumen inside) is kept when its site matches the
#: lumens' template at least this well (the edge sites of independent seeds 1058-1068 that
#: were trenches: 0.98-1.0).
EDGE_MATCH = 0.9
#: ... or, in phase contrast, at least this well where its lumen shows cells
#: (:func:`holds_cells_at_edge`).
EDGE_CELLS_MATCH = 0.8
#: The lumen's texture over the walls' (the phase empty flag's signal) that shows cells at
#: a site the empty flags call filled: the flags' floor (:func:`.quality.empty_flags_clear`).
EDGE_CELLS_TEXTURE = 4.0


def holds_cells_at_edge(score, signal, empty, flags_clear) -> np.ndarray:
    """Per phase site: whether its lumen holds cells, and its site matches the lumens'
    template at :data:`EDGE_CELLS_MATCH` or more.

    At the frame's side edge a filled trench's site sees part of its neighbourhood, its
    cells in a lumen whose outer wall may lie beyond the frame: independent simulator
    1019, 1423 and 1428 each lost their last trench, filled, unwarned, at matches of
    0.84-0.90 (under :data:`EDGE_MATCH`), the lumens' texture 9-33 times the walls'
    (the sets' filled lumens: 12-30; empty ones 0.8-1.8). Plain PDMS beyond the last
    trench matched at 0.65-0.88 but shows no cells' texture. Only where the set's empty
    flags were decided on a clear gap (``flags_clear``): an empty lumen's texture reaches
    five times the walls' under JPEG artefacts.

    >>> holds_cells_at_edge([0.85, 0.85, 0.75, 0.85], [9.0, 1.2, 9.0, 9.0],
    ...                     [False, True, False, False], True).tolist()
    [True, False, False, True]
    >>> holds_cells_at_edge([0.85], [9.0], [False], False).tolist()
    [False]
    """
    score = np.nan_to_num(np.asarray(score, float))
    signal = np.nan_to_num(np.asarray(signal, float))
    return (bool(flags_clear) & (score >= EDGE_CELLS_MATCH) & (signal >= EDGE_CELLS_TEXTURE)
            & ~np.asarray(empty, bool))


def boxes_on_frame(raw_corners, shape, lumen_width, box_width, score,
                   lumen_like=None) -> np.ndarray:
    """Per box: whether it lies on the image, or its lumen does and its site matches the
    lumens' template at :data:`EDGE_MATCH` or more (``score``), or is known to be a
    lumen otherwise (``lumen_like``: an empty lumen like its set's others,
    :func:`.centres.like_other_empty_lumens`, or a lumen holding cells,
    :func:`holds_cells_at_edge`).

    A trench at the frame's side edge whose lumen lies in the frame (with a pixel of
    wall either side, :func:`~batchlib.trench.geometry.lumen_share`) is kept, the
    crop's samples beyond the edge filled (independent simulator 1058: a filled trench
    9 px from the edge, whose 42 px box left the frame, was dropped), where its site
    matches closely: at the edge a site sees part of its neighbourhood only (tuning
    dark_lumen 7 at 512²: plain PDMS matched at 0.65).
    """
    lumen_in = corners_inside(raw_corners, shape, keep=lumen_share(lumen_width, box_width))
    known = np.asarray(score, float) >= EDGE_MATCH
    if lumen_like is not None:
        known |= np.asarray(lumen_like, bool)
    return corners_inside(raw_corners, shape) | (lumen_in & known)


@dataclass
class TrenchLayout:
    """The trench array found on one image.

    Attributes
    ----------
    angle_deg : float
        Trench angle (see :mod:`batchlib.trench.geometry`).
    pitch : float
        Trench spacing in pixels.
    sets : DataFrame
        ``set, y_closed, y_open, direction`` (rotated frame); set 0 has the
        closed end with the smaller row.
    trenches : DataFrame
        One row per box, ordered by ``(set, trench)``: ``set, trench,
        x_center, y_closed, direction, height, width, empty, score`` and the
        box corners in the rotated (``rot_y0..3, rot_x0..3``) and raw
        (``raw_y0..3, raw_x0..3``) frames, order closed-left, closed-right,
        open-right, open-left. A detected layout also has ``empty_unclear``: the
        lumens' texture called the trench empty, but its set's flags were unclear
        and not used (a movie's frames may confirm them); and ``lumen_like``: the
        site is known to be a lumen otherwise than by its match (``lumen_like`` of
        :func:`boxes_on_frame`), so its box stays where it leaves the frame.
    quality : dict of float
        ``pitch_regularity, contrast, empty_fraction, confidence,
        n_trenches`` and diagnostics (see ``docs/trench_detection.md``).
    image_shape : tuple of int
    kind : str
        ``"phase"`` or ``"fluorescence"``.
    profiles : dict
        Diagnostic profiles for the QC figure (not needed to use the layout).
    """

    angle_deg: float
    pitch: float
    sets: pd.DataFrame
    trenches: pd.DataFrame
    quality: dict
    image_shape: tuple
    kind: str = "phase"
    profiles: dict = field(default_factory=dict, repr=False)
    warnings: list = field(default_factory=list)

    @property
    def n_trenches(self) -> int:
        return len(self.trenches)

    def moved_along(self, shifts) -> "TrenchLayout":
        """A copy with the boxes of set ``k`` moved by ``shifts[k]`` rotated rows (along
        the trenches; sets missing from ``shifts`` stay), raw corners recomputed."""
        trenches, sets = self.trenches.copy(), self.sets.copy()
        by_box = trenches["set"].map(lambda k: float(shifts.get(int(k), 0.0))).to_numpy(float)
        trenches["y_closed"] += by_box
        rot = np.stack([np.stack([trenches[f"rot_y{i}"] + by_box, trenches[f"rot_x{i}"]], -1)
                        for i in range(4)], axis=1)
        raw = rotated_to_raw(rot, self.angle_deg, self.image_shape)
        for i in range(4):
            trenches[f"rot_y{i}"] = rot[:, i, 0]
            trenches[f"raw_y{i}"], trenches[f"raw_x{i}"] = raw[:, i, 0], raw[:, i, 1]
        by_set = sets["set"].map(lambda k: float(shifts.get(int(k), 0.0))).to_numpy(float)
        sets["y_closed"] += by_set
        sets["y_open"] += by_set
        return TrenchLayout(self.angle_deg, self.pitch, sets, trenches, dict(self.quality),
                            self.image_shape, self.kind, self.profiles, list(self.warnings))

    def boxes_inside(self) -> np.ndarray:
        """Per box: :func:`boxes_on_frame` (on the image, or a trench at its side edge
        whose lumen is and whose site matches closely or is known to be a lumen, the
        column ``lumen_like``: a layout found on a turned copy of the frame keeps such
        boxes when turned back)."""
        tr = self.trenches
        raw = np.stack([tr[[f"raw_y{i}" for i in range(4)]].to_numpy(float),
                        tr[[f"raw_x{i}" for i in range(4)]].to_numpy(float)], axis=-1)
        width = float(tr["width"].max()) if len(tr) else 0.0
        score = tr["score"].to_numpy(float) if "score" in tr else np.full(len(tr), np.nan)
        like = tr["lumen_like"].to_numpy(bool) if "lumen_like" in tr else None
        return boxes_on_frame(raw, self.image_shape, self.quality.get("lumen_width_px"),
                              width, score, like)

    def to_dict(self) -> dict:
        """JSON-friendly form (without the diagnostic profiles)."""
        return {"angle_deg": float(self.angle_deg), "pitch": float(self.pitch),
                "sets": self.sets.to_dict(orient="list"),
                "trenches": self.trenches.to_dict(orient="list"),
                "quality": {k: float(v) for k, v in self.quality.items()},
                "image_shape": [int(s) for s in self.image_shape], "kind": self.kind,
                "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrenchLayout":
        optional = [c for c in OPTIONAL_TRENCH_COLUMNS if c in d["trenches"]]
        trenches = pd.DataFrame(d["trenches"], columns=TRENCH_COLUMNS + optional)
        trenches = trenches.astype({"set": int, "trench": int, "direction": int, "height": int,
                                    "width": int, "empty": bool, **{c: bool for c in optional}})
        return cls(float(d["angle_deg"]), float(d["pitch"]),
                   pd.DataFrame(d["sets"], columns=SET_COLUMNS), trenches,
                   dict(d["quality"]), tuple(d["image_shape"]), d.get("kind", "phase"),
                   warnings=list(d.get("warnings", [])))
