"""A complete new job: Gaussian-smoothed trench crops, appended to as frames arrive.

The README includes this file verbatim; tests/test_example_job.py runs it.
"""
import numpy as np
from scipy.ndimage import gaussian_filter

from batchlib import BatchJobOnContainer, KeySpec, Param, run_workflow
from batchlib.io import read_attrs
from batchlib.trench.jobs import Compress, Ingest, TrenchDetection
from batchlib.trench.jobs.stacks import frame_blocks, frames_kept, mark_frames, prepare_stack
from batchlib.trench.layout import CROPS, specs


class SmoothCrops(BatchJobOnContainer):
    """Gaussian-smoothed crops of one channel: ``smoothed/<channel>`` (n_trench, T, H, W)."""

    version = "1"  # bump it when the results change: older outputs are then recomputed
    params = {"sigma": Param(1.0, "smoothing in pixels"),
              "channel": Param("phase", "channel key of the crops", is_name=True)}
    # Checked before the job runs (present, right shape, written by a completed job).
    input_keys = specs(f"{CROPS}/{{channel}}")
    output_keys = {"smoothed/{channel}": KeySpec(ndim=4, dtype="f")}

    def process_container(self, container, path):
        p = self.param_values  # parsed and checked when the job was built: no casts
        crops = container[f"{CROPS}/{p['channel']}"]
        n, n_t, h, w = crops.shape
        key = f"smoothed/{p['channel']}"
        # What the stack is computed from; when it changes, the stack starts over.
        basis = {"sigma": p["sigma"], "crops": read_attrs(crops).get("basis")}
        kept = frames_kept(container, key, (n, h, w), basis)  # frames done by an earlier run
        out = prepare_stack(container, key, (n, h, w), n_t, np.float32, kept)
        for t0, t1 in frame_blocks(kept, n_t):  # only the new frames, one time chunk at a time
            block = crops[:, t0:t1].astype(np.float32)
            out[:, t0:t1] = gaussian_filter(block, (0, 0, p["sigma"], p["sigma"]))
        mark_frames(out, n_t, basis)


def run_example(input_folder, folder, sigma=2.0):
    """Ingest an acquisition, find and crop its trenches, smooth the crops."""
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(), SmoothCrops(sigma=sigma)]
    return run_workflow("Example", folder, jobs, input_folder=input_folder)
