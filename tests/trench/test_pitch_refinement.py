"""The refined pitch keeps to the lattice's fundamental where higher harmonics follow
something else (detection/centres.py: refine_pitch)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from batchlib.trench.detection import centres

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _lattice(pitch=82.0, n=1024, stripes=0.0):
    x = np.arange(float(n))
    d = (x - 30) % pitch
    d = np.where(d > pitch / 2, d - pitch, d)
    return (-np.exp(-d ** 2 / 20) + 0.4 * np.exp(-(np.abs(d) - 12) ** 2 / 4)
            + stripes * np.sin(2 * np.pi * x / 26.3))


@pytest.mark.parametrize("stripes", [0.3, 0.5])
def test_stripes_near_a_third_of_the_pitch_do_not_pull_the_pitch(stripes, monkeypatch):
    # the estimate (the autocorrelation's) lies near the lattice's pitch, as on 1170
    profile = _lattice(stripes=stripes)
    assert abs(centres.refine_pitch(profile, 81.9) - 82.0) < 0.05
    monkeypatch.setattr(centres, "FUNDAMENTAL_KEEP", 0.0)        # the three harmonics alone
    assert centres.refine_pitch(profile, 81.9) < 80.5


def test_the_harmonics_stay_where_the_estimate_agrees_with_them():
    # independent 1015: the fundamental alone peaked 1.5 px off; the harmonics and the
    # estimate agreed on the true pitch. Here the estimate lies nearer the harmonics'
    # answer than the fundamental's, so theirs stands
    profile = _lattice(stripes=0.5)
    harmonics = centres._power_optimum(*centres._clean(profile), 1 / 79.4, 0.04, 3)
    assert abs(centres.refine_pitch(profile, 79.4) - 1 / harmonics) < 1e-6


def test_a_clean_lattice_is_refined_by_its_harmonics_as_before(monkeypatch):
    rng = np.random.default_rng(0)
    profile = _lattice(pitch=47.3) + rng.normal(0, 0.05, 1024)
    refined = centres.refine_pitch(profile, 46.5)
    monkeypatch.setattr(centres, "FUNDAMENTAL_KEEP", 0.0)
    assert refined == centres.refine_pitch(profile, 46.5)
    assert abs(refined - 47.3) < 0.05


def test_independent_1170_boxes_sit_on_its_lumens():
    """Independent simulator 1170: lumens 17 px wide between bright edge lines, pitch 82 px.
    The three harmonics' optimum was 78.6 px, the lattice drifted 7 px off the lumens, every
    box sat on an edge line (confidence 0.15, warned) and the U-Net missed cells in the
    off-centre crops: F1 0.715, mothers within 5 % 0.422."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_independent
    import independent_sim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = bench_independent.run_position(independent_sim.simulate(1170), 1170, "phase")
    assert row["F1"] >= 0.98 and row["mother len 5%"] >= 0.9, row
    assert row["recall"] >= 0.9 and row["end +-2px"] >= 0.95, row
