"""The stack-wide label statistics, and the clean-ups built on them, against the
per-label and per-crop numpy code they replaced (kept here as the reference):
an optimisation must not change one label."""
import numpy as np
import pytest

from batchlib.trench.segmentation.empty_trenches import drop_fragments
from batchlib.trench.segmentation.fragments import _joined, merge_fragments, row_spans
from batchlib.trench.segmentation.label_stats import highest_labels, label_stats
from batchlib.trench.segmentation.numbering import drop_slivers, relabel_from_closed_end, remove_objects


# -- the code before label_stats ------------------------------------------------------
def _drop_slivers_ref(labels, ratio=0.5):
    h, w = labels.shape[-2:]
    flat = labels.reshape(-1, h, w)
    keep = np.ones(flat.shape[0:1] + (int(flat.max(initial=0)) + 1,), bool)
    for k in range(1, keep.shape[1]):
        obj = flat == k
        rows = obj.any(axis=2)
        length = rows.sum(axis=1)
        width = obj.any(axis=1).sum(axis=1)
        keep[(length > 0) & (length < ratio * width) & ~rows[:, -1], k] = False
    if keep.all():
        return labels.astype(np.int32, copy=False)
    kept = np.take_along_axis(keep, flat.reshape(flat.shape[0], -1), axis=1)
    return relabel_from_closed_end(np.where(kept.reshape(flat.shape), flat, 0)).reshape(labels.shape)


def _merge_fragments_ref(labels, ratio=0.4, gap=3, open_end_rows=2):
    if labels.ndim < 2 or labels.max(initial=0) == 0:
        return labels
    h, w = labels.shape[-2:]
    out = labels.copy()
    groups = [out[:, t] for t in range(out.shape[1])] if out.ndim == 4 else [out.reshape(-1, h, w)]
    for group in groups:
        spans = [row_spans(crop) for crop in group]
        lengths = np.concatenate([bot - top + 1 for top, bot in spans if len(top)] or [np.zeros(0)])
        inside = np.concatenate([bot < h - open_end_rows for top, bot in spans if len(top)]
                                or [np.zeros(0, bool)])
        lengths = lengths[inside & (lengths > 0)]
        if len(lengths) < 3:
            continue
        shortest = ratio * float(np.median(lengths))
        for i, (top, bot) in enumerate(spans):
            fragment = (top >= 0) & (bot - top + 1 < shortest) & (bot < h - open_end_rows)
            if fragment.any():
                group[i] = _joined(group[i], top, bot, fragment, gap)
    return out


def _areas_widths_ref(crop):
    k = int(crop.max())
    if k == 0:
        return np.zeros(0), np.zeros(0)
    area = np.bincount(crop.ravel(), minlength=k + 1)[1:].astype(float)
    present = np.zeros((crop.shape[0], k + 1), bool)
    present[np.arange(crop.shape[0])[:, None], crop] = True
    rows = present[:, 1:].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.where(rows > 0, area / np.maximum(rows, 1), np.inf)
    return np.where(area > 0, area, np.inf), width


def _drop_fragments_ref(labels, empty, narrow=0.6, small=0.4, min_cells=3):
    if labels.ndim != 4 or not empty.any() or empty.all() or labels.max(initial=0) == 0:
        return labels
    out = labels
    for t in range(labels.shape[1]):
        cells = [_areas_widths_ref(labels[n, t]) for n in np.flatnonzero(~empty)]
        area = np.concatenate([a for a, _ in cells])
        width = np.concatenate([w for _, w in cells])
        real = np.isfinite(area)
        area, width = area[real], width[real]
        if len(area) < min_cells:
            continue
        min_area, min_width = small * np.median(area), narrow * np.median(width)
        for n in np.flatnonzero(empty):
            crop = labels[n, t]
            if crop.max() == 0:
                continue
            a, w = _areas_widths_ref(crop)
            gone = (a < min_area) | (w < min_width)
            if not gone.any():
                continue
            if out is labels:
                out = labels.copy()
            out[n, t] = remove_objects(crop, np.concatenate([[False], gone | ~np.isfinite(a)]))
    return out


# -- random stacks like a segmentation's ------------------------------------------------
def _stack(seed, n=9, t=5, h=80, w=16):
    """Cells as rods from the closed end, with fragments, slivers, specks, cells at the
    open end, gaps in the numbering and empty crops."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((n, t, h, w), np.int32)
    for i in range(n):
        for j in range(t):
            if rng.random() < 0.15:
                continue  # an empty crop
            y, k = int(rng.integers(0, 4)), 0
            while y < h:
                length = int(rng.choice([2, 3, 4, 6, 15, 20, 25]))
                x0 = int(rng.integers(1, 5))
                width = int(rng.integers(3, w - x0))
                k += 1 + int(rng.random() < 0.1)  # now and then a label left out
                lab[i, j, y:y + length, x0:x0 + width] = k
                y += length + int(rng.integers(0, 5))
    return lab


@pytest.mark.parametrize("seed", range(12))
def test_cleanups_equal_the_per_label_code_they_replaced(seed):
    lab = _stack(seed)
    np.testing.assert_array_equal(drop_slivers(lab), _drop_slivers_ref(lab))
    np.testing.assert_array_equal(merge_fragments(lab), _merge_fragments_ref(lab))
    np.testing.assert_array_equal(merge_fragments(lab[:, 0]), _merge_fragments_ref(lab[:, 0]))
    empty = np.random.default_rng(seed).random(lab.shape[0]) < 0.4
    np.testing.assert_array_equal(drop_fragments(lab, empty), _drop_fragments_ref(lab, empty))


def test_label_stats_of_one_crop():
    lab = np.zeros((2, 7, 6), np.uint16)
    lab[0, 1:4, 2:4] = 1
    lab[0, 3, 4] = 1            # a second column, in one row only
    lab[0, 6, :] = 3            # label 2 left out
    area, top, bottom, n_rows, n_cols = label_stats(lab)
    assert area.shape == (2, 4)
    assert area[0].tolist() == [42 - 7 - 6, 7, 0, 6] and area[1].tolist() == [42, 0, 0, 0]
    assert top[0].tolist() == [0, 1, -1, 6] and bottom[0].tolist() == [5, 3, -1, 6]
    assert n_rows[0, 1:].tolist() == [3, 0, 1] and n_cols[0, 1:].tolist() == [3, 0, 6]
    assert highest_labels(area).tolist() == [3, 0]
    with pytest.raises(ValueError, match="non-negative"):
        label_stats(-lab.astype(np.int32))
