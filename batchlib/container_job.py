"""Jobs that read and write keys inside the existing per-image containers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import BatchJob, Unit
from .errors import InvalidInputError, InvalidOutputError
from .io import CONTAINER_EXTS, open_file
from .io.checksum import iter_datasets, stored_nbytes
from .records import key_run_ids, producer_run_id, read_records


@dataclass(frozen=True)
class KeySpec:
    """What a key inside a container must hold.

    Parameters
    ----------
    kind : {"dataset", "group", "table"}
    ndim : int, optional
        Required number of dimensions of a dataset.
    dtype : str, optional
        Required numpy dtype kind(s), e.g. ``"ui"`` for any integer.

    Examples
    --------
    >>> import h5py, numpy as np
    >>> with h5py.File("spec.h5", "w", driver="core", backing_store=False) as f:
    ...     _ = f.create_dataset("labels", data=np.zeros((2, 3, 4, 5), np.uint16))
    ...     KeySpec(ndim=4, dtype="ui").check(f, "labels"), KeySpec(ndim=3).check(f, "labels")
    (None, "'labels' has 4 dimensions, expected 3")
    """

    kind: str = "dataset"
    ndim: int | None = None
    dtype: str | None = None

    def check(self, container, key) -> str | None:
        """``None`` when ``container[key]`` matches, else the reason."""
        if key not in container:
            return f"{key!r} is missing"
        obj = container[key]
        is_dataset = hasattr(obj, "shape") and hasattr(obj, "dtype")
        if self.kind == "dataset":
            if not is_dataset:
                return f"{key!r} is not a dataset"
            if self.ndim is not None and len(obj.shape) != self.ndim:
                return f"{key!r} has {len(obj.shape)} dimensions, expected {self.ndim}"
            if self.dtype is not None and obj.dtype.kind not in self.dtype:
                return f"{key!r} has dtype {obj.dtype}, expected kind {self.dtype!r}"
        elif is_dataset:
            return f"{key!r} is a dataset, expected a {self.kind}"
        elif self.kind == "group" and not len(list(obj.keys())):
            return f"{key!r} is an empty group"
        elif self.kind == "table" and "columns" not in obj.attrs:
            return f"{key!r} is not a table"
        return None


class BatchJobOnContainer(BatchJob):
    """A job that reads and writes keys inside the existing per-image containers.

    Declare ``input_keys`` and ``output_keys`` as ``{key: KeySpec}``; keys may
    use ``{param}`` placeholders. Inputs are validated (present, right
    dimensions and dtype, and written by a job that completed); outputs are
    checked the same way. An output is stale when the run id of the job that
    produced any input key differs from the one recorded (decided by
    :func:`batchlib.planning.check_unit`).
    Implement :meth:`process_container`; the other hooks are those of
    :class:`~batchlib.base.BatchJob`.
    """

    input_keys: dict = {}
    output_keys: dict = {}
    update_in_place = True
    reads_folder = True
    creates_containers = False  # keys are added in place: no temporary containers

    def __init__(self, input_pattern=None, identifier=None, **params):
        super().__init__(input_pattern=input_pattern or "*", output_ext=None,
                         identifier=identifier, **params)

    def list_inputs(self, input_folder) -> list:
        paths = super().list_inputs(input_folder)
        return [p for p in paths if Path(p).suffix in CONTAINER_EXTS]

    def outputs_for(self, input_path, folder) -> list:
        return [str(input_path)]

    def resolved_input_keys(self) -> dict:
        return {k.format(**self.param_values): s for k, s in self.input_keys.items()}

    def resolved_output_keys(self) -> list:
        return [k.format(**self.param_values) for k in self.output_keys]

    def input_signature(self, unit: Unit) -> dict:
        # Filled in by planning (batchlib.planning.check_unit): the run ids of the
        # jobs that produced the input keys, read from the container only when its
        # stamp changed.
        return {}

    def input_bytes(self, container, unit) -> int:
        """Stored size of the input keys in the container."""
        try:
            return sum(stored_nbytes(ds) for _, ds in iter_datasets(container, self.resolved_input_keys()))
        except Exception:  # noqa: BLE001 - a guess; the input check reports damage
            return 0

    def estimate_output_bytes(self, container, unit) -> int:
        """What this job wrote last time (scaled to the growth of its inputs), or else
        the stored size of what it reads.

        The second is an upper bound for jobs that derive smaller data from
        their inputs (crops, labels, tables); override it when a job knows better.
        """
        return super().estimate_output_bytes(container, unit) or self.input_bytes(container, unit)

    def resolved_output_specs(self) -> dict:
        return {k.format(**self.param_values): s for k, s in self.output_keys.items()}

    def validate_input(self, path) -> None:
        super().validate_input(path)
        try:
            with open_file(path, "r") as f:
                records = read_records(f)
                run_ids = key_run_ids(records)
                for key, spec in self.resolved_input_keys().items():
                    if producer_run_id(run_ids, key) is None:
                        # Say why first: the upstream job failed here (its record was
                        # removed), found its input invalid, or has not run.
                        what = "is missing" if key not in f else "is present but incomplete"
                        raise InvalidInputError(
                            f"{path}: input {key!r} {what}: no completion record lists it, so the "
                            f"job that writes it failed on this container, had an invalid input "
                            f"or has not run (see `batchlib status`)")
                    reason = spec.check(f, key)
                    if reason:
                        raise InvalidInputError(f"{path}: {reason}")
        except InvalidInputError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read makes the input invalid
            raise InvalidInputError(f"{path}: cannot be read ({e})") from e

    def validate_output(self, path) -> None:
        try:
            with open_file(path, "r") as f:
                problems = [r for r in (s.check(f, k) for k, s in self.resolved_output_specs().items()) if r]
        except Exception as e:  # noqa: BLE001 - a damaged container fails in many ways
            raise InvalidOutputError(f"{path}: cannot be opened ({e})") from e
        if problems:
            raise InvalidOutputError(f"{path}: {'; '.join(problems)}")

    def run(self, input_files, output_files, **kwargs):
        for path in output_files:
            with open_file(path, "a") as f:
                self.process_container(f, path)

    def process_container(self, container, path):
        raise NotImplementedError(f"{type(self).__name__} must implement process_container()")
