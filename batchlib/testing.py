"""Small jobs for tests, benchmarks and as examples of how to write a job.

They live in the package (not in tests/) so that worker processes, which
import jobs by module name, find them under every executor.
"""
from __future__ import annotations

import os
import time

from .base import BatchJob, Param
from .container_job import BatchJobOnContainer, KeySpec
from .errors import InvalidInputError
from .io import create_dataset, open_file, write_table


def write_array_file(path, array) -> None:
    """Write a ``.npy`` input file for :class:`ImportArray`."""
    import numpy as np  # where used: a rerun with nothing to do does not import it

    np.save(path, np.asarray(array))


def make_array_inputs(folder, n, shape=(3, 8, 8), dtype="uint16", seed=0, prefix="im",
                      start=0) -> dict:
    """Write ``n`` random ``<prefix><i>.npy`` files; return ``{stem: array}``."""
    os.makedirs(folder, exist_ok=True)
    import numpy as np

    rng = np.random.default_rng(seed + start)
    arrays = {}
    for i in range(start, start + n):
        stem = f"{prefix}{i:06d}"
        arrays[stem] = rng.integers(0, 1000, size=shape).astype(dtype)
        write_array_file(os.path.join(str(folder), stem + ".npy"), arrays[stem])
    return arrays


def units_by_group(job, input_folder, folder):
    """One unit per group of inputs ``<group>_<i>.npy``, into ``<group>.h5`` (a
    ``units_for`` for test jobs that gather several inputs into one container)."""
    from .base import Unit

    groups: dict = {}
    for path in job.list_inputs(input_folder):
        groups.setdefault(os.path.basename(path).split("_")[0], []).append(path)
    units = []
    for group, paths in sorted(groups.items()):
        unit = Unit(group, paths, [os.path.join(str(folder), group + ".h5")])
        unit.signature = job.input_signature(unit)
        units.append(unit)
    return units


class ImportArray(BatchJob):
    """Read ``*.npy`` files into ``raw`` of one container each (a minimal ingest)."""

    params = {
        # fail_on and hash_inputs do not change what is computed: fixing a
        # simulated failure must retry only the failed files, not everything.
        "fail_on": Param("", "fail on inputs whose name contains this text (for tests)",
                         affects_result=False),
        "sleep_s": Param(0.0, "pause per image (for tests of killing)", affects_result=False),
        "crash_on": Param("", "kill the worker process on inputs whose name contains this text "
                          "(for tests of dead workers)", affects_result=False),
        "hash_inputs": Param(False, "add a content hash to the input signature", affects_result=False),
    }
    output_keys = {"raw": KeySpec()}

    def __init__(self, input_pattern="*.npy", output_ext=".h5", **kwargs):
        super().__init__(input_pattern=input_pattern, output_ext=output_ext, **kwargs)

    def validate_input(self, path):
        import numpy as np

        super().validate_input(path)
        try:
            np.load(path, mmap_mode="r")
        except Exception as e:  # noqa: BLE001 - any read error makes the input invalid
            raise InvalidInputError(f"{path}: not a readable .npy file ({e})") from e

    def process(self, input_file, output_file):
        import numpy as np

        if self.param_values["crash_on"] and self.param_values["crash_on"] in os.path.basename(input_file):
            os._exit(77)  # as if the kernel killed the worker for memory
        if self.param_values["fail_on"] and self.param_values["fail_on"] in os.path.basename(input_file):
            raise RuntimeError(f"simulated failure on {os.path.basename(input_file)}")
        data = np.load(input_file)
        with open_file(output_file, "a") as f:
            ds = create_dataset(f, "raw", shape=data.shape, dtype=data.dtype, chunks=(1,) + data.shape[1:])
            for i in range(data.shape[0]):  # frame by frame, so a kill can land mid-write
                ds[i] = data[i]
                if self.param_values["sleep_s"]:
                    time.sleep(self.param_values["sleep_s"])


class ScaleRaw(BatchJobOnContainer):
    """Multiply ``raw`` by ``factor`` into ``scaled`` and tabulate the frame sums."""

    params = {"factor": Param(2.0, "multiplier"),
              "fail_on": Param("", "fail on containers whose name contains this text",
                               affects_result=False)}
    input_keys = {"raw": KeySpec(ndim=3)}
    output_keys = {"scaled": KeySpec(ndim=3, dtype="f"), "tables/sums": KeySpec(kind="table")}

    def process_container(self, container, path):
        if self.param_values["fail_on"] and self.param_values["fail_on"] in os.path.basename(path):
            raise RuntimeError(f"simulated failure on {os.path.basename(path)}")
        import numpy as np

        raw = container["raw"][:]
        scaled = raw.astype("float32") * self.param_values["factor"]
        create_dataset(container, "scaled", data=scaled)
        import pandas as pd

        write_table(container, "tables/sums", pd.DataFrame({
            "t": np.arange(len(scaled), dtype=np.int64), "sum": scaled.reshape(len(scaled), -1).sum(1),
            "name": [os.path.basename(path)] * len(scaled)}))


class SumScaled(BatchJobOnContainer):
    """Sum ``scaled`` (written by :class:`ScaleRaw`) into a one-row table: a second on-container job."""

    params = {"fail_on": Param("", "fail on containers whose name contains this text",
                               affects_result=False)}
    input_keys = {"scaled": KeySpec(ndim=3, dtype="f")}
    output_keys = {"tables/total": KeySpec(kind="table")}

    def process_container(self, container, path):
        if self.param_values["fail_on"] and self.param_values["fail_on"] in os.path.basename(path):
            raise RuntimeError(f"simulated failure on {os.path.basename(path)}")
        import pandas as pd

        total = float(container["scaled"][:].sum())
        write_table(container, "tables/total", pd.DataFrame({"total": [total]}))
