"""Jobs that read and write keys inside the existing per-image containers."""
from __future__ import annotations

import os
from pathlib import Path

from .base import BatchJob, Unit
from .errors import InvalidInputError, InvalidOutputError
from .io import CONTAINER_EXTS, container_format, open_file
from .io.checksum import iter_datasets, metadata_problems, stored_nbytes
from .records import key_run_ids, producer_run_id, read_records, record_stamp


class KeySpec:
    """What a key inside a container must hold.

    Parameters
    ----------
    kind : {"dataset", "group", "table"}
    ndim : int, optional
        Required number of dimensions of a dataset.
    dtype : str, optional
        Required numpy dtype kind(s), e.g. ``"ui"`` for any integer.
    """

    def __init__(self, kind="dataset", ndim=None, dtype=None):
        self.kind, self.ndim, self.dtype = kind, ndim, dtype

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
    produced any input key differs from the one recorded.
    Implement :meth:`process_container`.
    """

    input_keys: dict = {}
    output_keys: dict = {}
    update_in_place = True
    reads_folder = True

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
        # Filled in by check_unit: the run ids of the jobs that produced the
        # input keys, read from the container only when its stamp changed.
        return {}

    def check_unit(self, unit: Unit, cached, triggers, force) -> tuple:
        path = unit.outputs[0]
        stamp = record_stamp(path)
        if stamp is None:
            return False, "container missing", {}
        if (not force and cached and cached.get("state") == "done"
                and cached.get("stamps", {}).get(os.path.basename(path)) == stamp):
            rec = cached.get("record") or {}
            if not self.stale_reason(unit, rec, [t for t in triggers if t in ("params", "version")]) \
                    and not self._keys_deleted(path):
                problem = self.folder_outputs_problem(path, rec)
                if problem:
                    return False, f"output invalid: {problem}", {}
                unit.signature = cached.get("input_signature") or {}
                return True, "up to date", {path: rec}
        try:
            with open_file(path, "r") as f:
                records = read_records(f)
                run_ids = key_run_ids(records)
                producers = {k: producer_run_id(run_ids, k) for k in self.resolved_input_keys()}
                problems = [r for r in (s.check(f, k) for k, s in self.resolved_output_specs().items()) if r]
                # What the record says was written must still be there (metadata only).
                problems += metadata_problems(f, (records.get(self.name) or {}).get("datasets"))
        except Exception as e:  # noqa: BLE001 - never crash planning: a damaged container is redone
            return False, f"container unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})", {}
        unit.signature = {"producers": producers}
        rec = records.get(self.name)
        if force:
            return False, "force_recompute", {}
        if not rec:
            return False, "no completion record", {}
        if problems:
            return False, f"output invalid: {problems[0]}", {}
        if "mtime" in triggers:
            newest = max((r.get("finished_ns", 0) for n, r in records.items() if n != self.name), default=0)
            if newest > rec.get("finished_ns", 0):
                return False, "inputs newer than output", {}
        stale = self.stale_reason(unit, rec, [t for t in triggers if t in ("params", "version", "input")])
        if stale:
            return False, stale, {}
        problem = self.folder_outputs_problem(path, rec)
        if problem:
            return False, f"output invalid: {problem}", {}
        return True, "up to date", {path: rec}

    def fingerprint_signature(self, unit: Unit):
        # What the inputs are (the run ids of the jobs that wrote them) is read
        # from the container, whose identity the fingerprint covers.
        return None

    def fingerprint(self, unit: Unit, triggers, identities=None) -> str | None:
        if identities is None and self._keys_deleted(unit.outputs[0]):
            return None
        return super().fingerprint(unit, triggers, identities)

    def _keys_deleted(self, path) -> bool:
        """n5/zarr: whether an output key's directory is gone (one ``stat`` per key).

        An h5 file's stamp changes with any write; an n5/zarr stamp covers only
        the records, so a deleted output would otherwise go unnoticed while the
        status cache is trusted.
        """
        if container_format(path) == "h5":
            return False
        return any(not os.path.isdir(os.path.join(path, k)) for k in self.resolved_output_specs())

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

    def write_plan(self, unit, records) -> list:
        return [(unit.outputs[0], unit.outputs[0], True)]

    def clean_temporary(self, folder) -> None:
        pass  # containers are modified in place; nothing temporary is created

    def run(self, input_files, output_files, **kwargs):
        for path in output_files:
            with open_file(path, "a") as f:
                self.process_container(f, path)

    def process_container(self, container, path):
        raise NotImplementedError(f"{type(self).__name__} must implement process_container()")
