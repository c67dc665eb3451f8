"""Synthetic mother-machine acquisitions with exact ground truth.

>>> from batchlib.trench.synthetic import SyntheticConfig, simulate_position
>>> pos = simulate_position(SyntheticConfig(n_timepoints=3), position=0)

Scenario families drawn at random (``sample_config(family, seed)``) and the
tuning / held-out seed split live in :mod:`.families`.
See ``docs/synthetic_data.md`` for what is simulated and the file formats.
"""
from .config import SyntheticConfig
from .families import FAMILIES, sample_config, sample_configs, seeds, split_of
from .simulate import GroundTruth, SimulatedPosition, simulate_position
from .writers import load_ground_truth, write_acquisition, write_ground_truth

__all__ = ["SyntheticConfig", "simulate_position", "write_acquisition", "load_ground_truth",
           "write_ground_truth", "GroundTruth", "SimulatedPosition", "FAMILIES", "sample_config",
           "sample_configs", "seeds", "split_of"]
