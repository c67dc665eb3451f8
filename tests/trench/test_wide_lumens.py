"""Phase trenches whose lumens are wide against the pitch and full of cells: dark cells
between bright rims average to the walls' level over the lumen's middle, so their
contrast is near zero, yet they match the template closely at its own scale
(detection/centres.py: ``locate_centres``' ``matched`` sites)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.special import expit

from batchlib.trench.detection.centres import _amplitude, locate_centres

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _lumen_run(pitch, n, first, extra, level, sharp, lumen):
    """``(profile, sites, pitch)``: ``n`` lumens ``pitch`` apart from column ``first`` on
    a ``level`` background (``extra`` columns beyond the last period), lumen ``i`` adding
    ``lumen(i, stripe)``, ``stripe(w)`` a stripe ``w`` wide about it, blurred by
    ``sharp``."""
    x = np.arange(extra + pitch * n, dtype=float)
    sites = first + pitch * np.arange(n)
    prof = np.full(x.size, level)
    for i, c in enumerate(sites):
        def stripe(w, c=c):
            return expit((w / 2 - np.abs(x - c)) / sharp)
        prof += lumen(i, stripe)
    return prof, sites, pitch


def _profile(pitch=63.0, n=16, empty=(2, 6, 11, 14)):
    def lumen(i, stripe):
        if i in empty:                      # a bright lumen between bright rims
            return 220 * stripe(18) + 250 * (stripe(18) - stripe(14))
        return -250 * stripe(8) + 400 * (stripe(18) - stripe(8))   # dark cells, halos

    return _lumen_run(pitch, n, 30.0, 40, 780.0, 1.0, lumen)


def test_full_wide_lumens_are_trenches_wherever_they_lie():
    prof, sites, pitch = _profile()
    found = locate_centres(prof, pitch, sites[5] % pitch, 0, prof.size - 1, "phase")
    assert np.allclose(np.sort(found["centres"]), sites, atol=0.5)


def test_amplitude_is_the_templates_scale():
    offsets = np.arange(-5, 6)
    tmpl = np.cos(offsets / 2.0)
    prof = np.concatenate([np.zeros(10), 3 * np.cos(offsets / 2.0) + 7, np.zeros(10)])
    assert np.allclose(_amplitude(prof, [15.0], offsets, tmpl), 3.0)
    assert np.isnan(_amplitude(prof, [-20.0], offsets, tmpl)).all()    # outside


def test_independent_1207_a_set_of_wide_full_lumens_is_found_whole():
    """Independent simulator 1207: 18 px lumens at a 63 px pitch, two sets. The upper
    set's full trenches had a contrast of 0.03-0.25 of the template's at NCC 0.95-0.97;
    only those within the run of its four empty lumens and above 0.1 were kept: 9 of
    16, confidence 0.70, no warning (a confident wrong answer). The lower set's 16th
    trench, an empty lumen at the frame's edge whose box leaves the frame, is kept
    since it is compared with the set's other empty lumens
    (``centres.like_other_empty_lumens``): 32 of 32."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent
    import independent_sim

    from batchlib.trench.detection import detect_trenches

    acq = independent_sim.simulate(1207)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout = detect_trenches(acq.phase[0], "phase",
                                 box_width=bench_independent.box_width(acq.pixel_size_um))
    per_set = layout.trenches.groupby("set").size().to_dict()
    assert per_set == {0: 16, 1: 16}, per_set


def _half_filled_run(pitch=25.5, n=12, half_filled=5):
    """A run of lumens full of dark cells between bright halo rims, one of them
    (``half_filled``) full over half the set's rows and bright between the same rims
    over the other half: its mean over the rows is near the walls' level (0.06 of the
    template's contrast; NCC 0.79 at 0.53 of its scale)."""
    def lumen(i, stripe):
        filled = -300 * stripe(6) + 350 * (stripe(11) - stripe(6))
        empty = 180 * stripe(6) + 350 * (stripe(11) - stripe(6))
        return 0.5 * (filled + empty) if i == half_filled else filled

    return _lumen_run(pitch, n, 12.0, 20, 800.0, 0.7, lumen)


def test_a_lumen_full_at_one_end_and_empty_at_the_other_is_a_trench():
    """Its contrast cancels (under a tenth of the template's), its rims match the
    template's shape at its scale: inside the run, a trench (independent simulator 1494,
    missed at confidence 0.60 without a warning). A gap of plain PDMS in the run is
    not one."""
    prof, sites, pitch = _half_filled_run()
    found = locate_centres(prof, pitch, sites[5] % pitch, 0, prof.size - 1, "phase")
    assert np.allclose(np.sort(found["centres"]), sites, atol=0.5)
    gap = prof.copy()
    x = np.arange(prof.size)
    gap[np.abs(x - sites[5]) <= 0.5 * pitch] = 800.0
    found = locate_centres(gap, pitch, sites[5] % pitch, 0, prof.size - 1, "phase")
    assert np.allclose(np.sort(found["centres"]), np.delete(sites, 5), atol=0.5)
