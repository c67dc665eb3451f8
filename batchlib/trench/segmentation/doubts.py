"""Whether a position's labels should be looked at: Segment's warnings.

The figures are measured per block of frames (:func:`block_figures`) and
judged together (:func:`judge`); the thresholds and how they were chosen are
in :mod:`.mother_lengths`, :mod:`.fill`, :mod:`.contrast`,
:mod:`.boundaries`, :mod:`.frame_counts`, :mod:`.sharpness`, :mod:`.mirror`,
:mod:`.single_file` and :mod:`.static_objects`.
"""
from __future__ import annotations

import numpy as np

from .boundaries import LOW_BOUNDARY, SLIP_SHARE, boundary_contrast, frame_boundary_contrast
from .contrast import LOW_CONTRAST, contrast_to_noise
from .fill import LOW_FILL, MOSTLY_SPANNING, SPANNING, spanning_counts, trench_fill
from .frame_counts import OUT_OF_LINE, frame_cell_counts, frames_out_of_line
from .mirror import LOW_AGREEMENT, agreement
from .mother_lengths import WIDE_SPREAD, mother_length_spread, mother_lengths
from .sharpness import (BLURRED_OUT_OF_LINE, BLURRED_SHARE, blurred_out_of_line,
                        frame_sharpness)
from .single_file import SIDE_SHARE
from .static_objects import STILL_PX, STILL_SHARE, static_trenches

__all__ = ["block_figures", "judge"]


def block_figures(crops, labels, kind, first_frame=0, mirror=None, side_crops=None) -> dict:
    """Mother lengths, trench fill, cells per frame and (fluorescence) the contrast of the
    cells and of the dips between them, of one block of frames (``(N, T, H, W)``
    labels: its frames are ``first_frame`` on); ``mirror``: the block's
    :func:`~.mirror.mirror_counts`, when measured; ``side_crops``: how many of its
    trench-frames lost an object beside a cell (:func:`~.single_file.drop_side_objects`),
    when counted."""
    fluorescence = kind == "fluorescence"
    counts = frame_cell_counts(labels) if np.ndim(labels) == 4 else None
    frames = None if counts is None else np.arange(first_frame, first_frame + len(counts))
    still = static_trenches(labels)[0]  # none unless (N, T, H, W)
    last = first_frame + np.shape(labels)[1] - 1 if still else first_frame
    dips = per_frame = None
    if fluorescence and counts is not None:
        per_frame, dips = frame_boundary_contrast(crops, labels)
    elif fluorescence:
        dips = boundary_contrast(crops, labels)
    return {"mothers": mother_lengths(labels), "fill": trench_fill(labels),
            "still": [(int(i), int(first_frame), int(last)) for i in still],
            "spanning": spanning_counts(labels), "counts": counts, "frames": frames,
            "sharpness": frame_sharpness(crops) if counts is not None and np.ndim(crops) == 4
            else None,
            "contrast": contrast_to_noise(crops, labels) if fluorescence else None,
            "boundaries": dips, "frame_boundaries": per_frame,
            "mirror": None if mirror is None else np.asarray(mirror, np.int64),
            "side": None if side_crops is None else (int(side_crops),
                                                     int(np.prod(np.shape(labels)[:-2])))}


def _finite_median(values):
    finite = [v for v in values if v is not None and np.isfinite(v)]  # inf: nothing to measure
    return float(np.median(finite)) if finite else None


def judge(blocks) -> tuple[dict, list]:
    """``(figures, warnings)`` of a position from its blocks' :func:`block_figures`.

    ``figures`` (``mother_length_spread``, ``trench_fill``, ``spanning_fraction``,
    ``frames_out_of_line``, ``frames_blurred_out_of_line``, ``mirror_agreement``,
    ``side_objects_share`` and, in fluorescence,
    ``contrast_to_noise``, ``boundary_contrast_to_noise`` and ``frames_blurred``;
    ``None`` where not measurable) are
    recorded with the labels; ``warnings`` are sentences for the status.

    Examples
    --------
    >>> labels = np.zeros((30, 1, 100, 8), int); labels[:, :, :5, 2:6] = 1   # 5-row mothers
    >>> figures, warnings = judge([block_figures(None, labels, "phase")])
    >>> figures["trench_fill"], len(warnings)
    (0.05, 1)
    """
    blocks = list(blocks)
    spread = mother_length_spread(np.concatenate([b["mothers"] for b in blocks]) if blocks else [])
    figures = {"mother_length_spread": spread if np.isfinite(spread) else None,
               "trench_fill": _finite_median(b["fill"] for b in blocks)}
    warnings = []
    fill = figures["trench_fill"]
    if fill is not None and fill < LOW_FILL:
        warnings.append(f"the cells found fill only {fill:.0%} of their trenches' length (cells "
                        "grow until they fill a trench): cells below the mother missed? A freshly "
                        "loaded chip looks like this too. Look at the kymographs")
    spanning, holding = (sum(b["spanning"][i] for b in blocks) for i in (0, 1))
    figures["spanning_fraction"] = spanning / holding if holding else None
    if holding and spanning >= MOSTLY_SPANNING * holding:
        warnings.append(f"in {spanning} of {holding} trench-frames holding cells one object "
                        f"covers {SPANNING:.0%} or more of the trench (cells are a few times "
                        "shorter than a trench): the lumen taken for a cell, or the cells "
                        "merged? Look at the kymographs")
    if np.isfinite(spread) and spread > WIDE_SPREAD:
        warnings.append(f"the mother cells' lengths span a factor {spread:.1f} (growth and "
                        f"division give about 2; warned above {WIDE_SPREAD:.0f}): mothers merged "
                        "with a daughter or cut in pieces? Look at the kymographs")
    if any(b["contrast"] is not None for b in blocks):
        ratio = _finite_median(b["contrast"] for b in blocks)
        figures["contrast_to_noise"] = ratio
        if ratio is not None and ratio < LOW_CONTRAST:
            warnings.append(f"the cells stand only {ratio:.1f}x the pixel noise above the "
                            f"background (reliable from {LOW_CONTRAST:.0f}x): expect touching "
                            "cells merged or split and mother lengths off by a pixel or two")
    if any(b.get("boundaries") is not None for b in blocks):
        dips = _finite_median(b.get("boundaries") for b in blocks)
        figures["boundary_contrast_to_noise"] = dips
        if dips is not None and dips < LOW_BOUNDARY:
            warnings.append(f"the dips between touching cells stand only {dips:.1f}x the noise "
                            f"(reliable from {LOW_BOUNDARY:.0f}x): blur and noise hide divisions; "
                            "expect cells merged or split. Look at the kymographs")
    per_frame = [b for b in blocks if b.get("frame_boundaries") is not None]
    if per_frame:
        values = np.concatenate([b["frame_boundaries"] for b in per_frame])
        frames = np.concatenate([b["frames"] for b in per_frame])
        typical = _finite_median(values)
        slipped = frames[np.nan_to_num(values, nan=np.inf)
                         < min(LOW_BOUNDARY, SLIP_SHARE * (typical or 0.0))]
        figures["frames_blurred"] = int(slipped.size)
        if slipped.size:
            listed = ", ".join(str(int(t)) for t in slipped[:5]) + \
                (" ..." if slipped.size > 5 else "")
            warnings.append(f"{slipped.size} frame(s) show the dips between touching cells "
                            f"under {LOW_BOUNDARY:.0f}x the noise and under {SLIP_SHARE:.0%} of "
                            f"the position's typical depth (frame {listed}): a focus slip? "
                            "Expect cells merged in those frames. Look at them")
    mirrored = [b["mirror"] for b in blocks if b.get("mirror") is not None]
    if mirrored:
        agree = agreement(np.sum(mirrored, axis=0))
        figures["mirror_agreement"] = agree
        if agree is not None and agree < LOW_AGREEMENT:
            warnings.append(f"segmented mirrored left-right, the crops give other cells: the two "
                            f"agree on only {agree:.0%} of them (on conditions the method knows, "
                            f"{LOW_AGREEMENT:.0%} or more): the crops look unlike what it was "
                            "made for (trench width, optics, contrast?); expect cells merged, "
                            "split or cut short. Look at the kymographs")
    sides = [b["side"] for b in blocks if b.get("side") is not None]
    if sides:
        lost, crops = np.sum(sides, axis=0)
        share = float(lost / crops) if crops else None
        figures["side_objects_share"] = share
        if share is not None and share >= SIDE_SHARE:
            warnings.append(f"in {lost} of {crops} trench-frames an object was found beside a "
                            f"cell, sharing its rows (cells lie in single file; on conditions "
                            f"the method knows, under {SIDE_SHARE:.0%} of them): they were "
                            "dropped, but the crops look unlike what the method was made for "
                            "(magnification, optics?); expect cells split or cut short and "
                            "objects in empty lumens. Look at the kymographs")
    still = sorted({s for b in blocks for s in b.get("still") or []})
    figures["still_trenches"] = sorted({s[0] for s in still})
    if still:
        listed = ", ".join(f"{i} (frames {a}-{b})" for i, a, b in still[:5]) + \
            (" ..." if len(still) > 5 else "")
        warnings.append(f"{len(figures['still_trenches'])} trench(es) hold objects that neither grow "
                        f"nor move (no end moves over {STILL_PX} px, or {STILL_SHARE:.0%} of what "
                        f"the other trenches' cells move, from the first frames to the last) while "
                        f"the cells in the other trenches do: trench {listed}. Debris, "
                        "a chip defect or background texture taken for cells, or dead cells? Look "
                        "at those kymographs")
    with_counts = [b for b in blocks if b.get("counts") is not None]
    if with_counts:
        counts = np.concatenate([b["counts"] for b in with_counts])
        frames = np.concatenate([b["frames"] for b in with_counts])
        out = frames_out_of_line(counts)
        odd = frames[out]
        figures["frames_out_of_line"] = int(odd.size)
        if odd.size:
            listed = ", ".join(str(int(t)) for t in odd[:5]) + (" ..." if odd.size > 5 else "")
            warnings.append(f"{odd.size} frame(s) hold {OUT_OF_LINE:.0%} more or fewer cells "
                            f"than the frames around them (frame {listed}): cells do not "
                            "merge and split back from one frame to the next; a focus slip or "
                            "a flash? Look at those frames")
        if all(b.get("sharpness") is not None for b in with_counts):
            sharpness = np.concatenate([b["sharpness"] for b in with_counts])
            slipped = frames[np.setdiff1d(blurred_out_of_line(counts, sharpness), out)]
            figures["frames_blurred_out_of_line"] = int(slipped.size)
            if slipped.size:
                listed = ", ".join(str(int(t)) for t in slipped[:5]) + \
                    (" ..." if slipped.size > 5 else "")
                warnings.append(f"{slipped.size} frame(s) are blurred (under {BLURRED_SHARE:.0%} "
                                "of the sharpness of most frames) and hold "
                                f"{BLURRED_OUT_OF_LINE:.0%} more or fewer cells than the sharp "
                                f"frames around them (frame {listed}): a focus slip, cells merged? "
                                "Look at those frames")
    return figures, warnings
