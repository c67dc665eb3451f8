"""Batch jobs: map every input image of a folder to its output container(s).

A job declares its parameters, version, inputs and outputs; the framework
decides what is up to date (from the completion records written last into the
outputs), validates what must be computed, runs it on an executor, writes the
records and keeps the ``.status`` file. Subclasses implement only the work:
``run(self, input_files, output_files, **kwargs)`` or its per-file helper.
"""
from __future__ import annotations

import glob
import os
import time
import traceback
from dataclasses import dataclass, field
from types import MappingProxyType
from pathlib import Path
from typing import Any

from . import folder_outputs
from .errors import InvalidInputError, InvalidOutputError, JobError, OutputCollisionError
from .io import CONTAINER_EXTS, container_format, open_file, remove_container, replace_container
from .io.files import is_temporary, temporary_path
from .io.checksum import describe_datasets, iter_datasets
from .io.space import (DiskFullError, check_free_space, disk_full_message, is_disk_full,
                       reserve_space)
from .log import get_logger
from .names import check_name
from .records import (container_damage, delete_record, file_signature, new_record, param_hash,
                      read_record, record_stamp, write_record)
from .status import JobStatus, status_dir

#: What can make an up-to-date output stale; see :class:`BatchJob`.
RERUN_TRIGGERS = ("input", "params", "version", "mtime")
DEFAULT_TRIGGERS = ("input", "params", "version")


@dataclass(frozen=True)
class Param:
    """A declared job parameter.

    ``affects_result=False`` marks options (threads, device) that change how,
    not what, is computed: they are left out of the parameter hash.
    ``is_name=True`` marks values that become a file name or container key:
    they are checked with :func:`batchlib.names.check_name`.
    """

    default: Any
    help: str = ""
    choices: tuple | None = None
    affects_result: bool = True
    is_name: bool = False


@dataclass
class Unit:
    """One unit of work: one input image and the outputs it maps to."""

    key: str
    inputs: list
    outputs: list
    signature: dict = field(default_factory=dict)
    #: Extra keyword arguments for ``run`` (e.g. the acquisition a set of files forms).
    run_kwargs: dict = field(default_factory=dict)


@dataclass
class JobResult:
    name: str
    state: str
    counts: dict
    failed: dict
    invalid: dict
    computed: list

    @property
    def success(self) -> bool:
        return self.state == "processed"


def _content_only(sig):
    """``sig`` without modification times wherever a content hash identifies the content."""
    if isinstance(sig, dict):
        hashed = "blake2b" in sig
        return {k: _content_only(v) for k, v in sig.items() if not (hashed and k == "mtime_ns")}
    if isinstance(sig, list):
        return [_content_only(v) for v in sig]
    return sig


def same_signature(recorded, current) -> bool:
    """Whether two input signatures describe the same input content.

    Equal signatures match. Where both carry a content hash (``hash_inputs``),
    the modification times are ignored, so a file that was touched or copied
    but not changed is not recomputed.
    """
    if recorded == current:
        return True
    if recorded is None or current is None:
        return False
    return _content_only(recorded) == _content_only(current)


class BatchJob:
    """Base class of jobs that map input files to new output containers.

    Parameters
    ----------
    input_pattern : str
        Glob pattern of the inputs, relative to the input folder.
    output_ext : str
        Extension of the output containers (``.h5``, ``.n5``, ``.zarr``).
    identifier : str, optional
        Appended to the class name to form :attr:`name`, so that one class
        can run twice in a workflow.
    **params
        Values for the parameters declared in :attr:`params`.

    Class attributes
    ----------------
    version : str
        Bump it when the job's results change; outputs of older versions are recomputed.
    params : dict of str to Param
        Declared parameters; workflows build their command-line options from them.
    output_keys : dict
        Keys (or key prefixes) the job writes into each output, recorded so that
        downstream jobs can tell when their inputs changed.
    update_in_place : bool
        Hand existing, completed outputs to ``run`` under their own name (for
        appending) instead of rebuilding them under a temporary name.
    reads_folder : bool
        Whether the inputs are found in the working folder (containers written
        by earlier jobs) rather than in the input folder.
    """

    version = "1"
    params: dict = {}
    output_keys: dict = {}
    update_in_place = False
    reads_folder = False

    def __init__(self, input_pattern="*", output_ext=".h5", identifier=None, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.params)}")
        self.input_pattern = input_pattern
        self.output_ext = output_ext
        self.identifier = identifier
        values = {k: p.default for k, p in self.params.items()}
        values.update(params)
        self._params = values
        self._param_hash = None
        if identifier is not None:
            check_name(str(identifier), f"{type(self).__name__}: identifier")
        for k, v in self.param_values.items():
            choices = self.params[k].choices
            if choices and v not in choices:
                raise ValueError(f"{self.name}: {k}={v!r} is not one of {choices}")
            if self.params[k].is_name:
                check_name(v, f"{self.name}: {k}")

    # -- identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__ + (f"_{self.identifier}" if self.identifier else "")

    @property
    def result_params(self) -> dict:
        """The parameters that define the results (hashed into the records)."""
        return {k: v for k, v in self.param_values.items() if self.params[k].affects_result}

    @property
    def param_values(self):
        """The job's parameters, read-only: they are fixed when the job is built, so
        the records written for one run all describe the same computation."""
        return MappingProxyType(self._params)

    @property
    def param_hash(self) -> str:
        if self._param_hash is None:  # once per job, not once per image
            self._param_hash = param_hash({"params": self.result_params, "pattern": self.input_pattern})
        return self._param_hash

    @property
    def logger(self):
        return get_logger(self.name)

    def warn(self, message: str) -> None:
        """Record a warning about the image being processed.

        It is logged, and stored with the image's entry in the job status
        (``warnings``), where ``batchlib status`` lists it: for results that
        were produced but should be looked at (e.g. a detection that could
        not be verified).
        """
        self.logger.warning("%s", message)
        self.__dict__.setdefault("_unit_warnings", []).append(str(message))

    # -- what the job works on ------------------------------------------------
    def list_inputs(self, input_folder) -> list:
        """Input paths matching :attr:`input_pattern`, sorted; temporary files skipped."""
        pattern = self.input_pattern
        if os.sep in pattern or (os.altsep and os.altsep in pattern) or "**" in pattern \
                or pattern.startswith("."):
            paths = glob.glob(os.path.join(str(input_folder), pattern), recursive="**" in pattern)
        else:  # a pattern of names: one scandir, what glob does at several times the cost
            import fnmatch

            try:
                with os.scandir(str(input_folder)) as it:
                    names = [e.name for e in it if not e.name.startswith(".")]
            except (FileNotFoundError, NotADirectoryError):
                names = []
            prefix = os.path.join(str(input_folder), "")
            paths = [prefix + n for n in fnmatch.filter(names, pattern)]
        return sorted(p for p in paths if not is_temporary(os.path.basename(p)))

    def unit_key(self, path, input_folder) -> str:
        prefix = os.path.join(str(input_folder), "")
        if path.startswith(prefix):  # os.path.relpath is slow for 100,000 inputs
            return path[len(prefix):]
        return os.path.relpath(path, input_folder)

    def outputs_for(self, input_path, folder) -> list:
        """Output containers of one input; override for one-to-many jobs."""
        # Only the last extension goes: "exp.v2.npy" and "exp.v3.npy" stay apart.
        stem = Path(input_path).stem
        return [os.path.join(str(folder), stem + self.output_ext)]

    def folder_outputs(self, output_path) -> list:
        """Files beside the containers that this job writes for ``output_path``.

        Override in jobs that write such files (a per-container table, a QC
        picture): they are listed in the completion record and checked at
        planning, so a missing or damaged one gets its container redone.
        """
        return []

    def folder_outputs_problem(self, output_path, rec) -> str | None:
        """Why the folder outputs of ``output_path`` do not match its record ``rec``."""
        paths = self.folder_outputs(output_path)
        if not paths:
            return None
        return folder_outputs.problem(paths, os.path.dirname(os.path.normpath(output_path)),
                                      (rec or {}).get("folder_outputs"))

    def input_signature(self, unit: Unit) -> dict:
        """What identifies the inputs' content: size and mtime of each input file."""
        with_hash = bool(self.param_values.get("hash_inputs", False))
        return {os.path.basename(p): file_signature(p, with_hash) for p in unit.inputs}

    def validate_input(self, path) -> None:
        """Raise :class:`InvalidInputError` (naming the file and the reason) for a bad input."""
        if not os.path.exists(path):
            raise InvalidInputError(f"{path}: does not exist")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InvalidInputError(f"{path}: file is empty (0 bytes)")

    def validate_output(self, path) -> None:
        """Raise :class:`InvalidOutputError` if an output does not hold what it should."""
        try:
            with open_file(path, "r") as f:
                missing = [k for k in self.resolved_output_keys() if k not in f]
        except Exception as e:  # noqa: BLE001 - a damaged container fails in many ways
            raise InvalidOutputError(f"{path}: cannot be opened ({e})") from e
        if missing:
            raise InvalidOutputError(f"{path}: missing {missing}")

    def resolved_output_keys(self) -> list:
        return [k.format(**self.param_values) for k in self.output_keys]

    #: Space reserved beyond any estimate before writing into an existing h5
    #: container (HDF5 metadata, small tables); see :mod:`batchlib.io.space`.
    #: ``$BATCHLIB_RESERVE_MB`` changes it (e.g. for tests on a small file system).
    reserve_margin_bytes = int(float(os.environ.get("BATCHLIB_RESERVE_MB", "16")) * (1 << 20))

    def input_bytes(self, container, unit) -> int:
        """Size of what a unit's outputs are computed from: the sizes in its input signature."""
        return _signature_bytes(unit.signature)

    def estimate_output_bytes(self, container, unit) -> int:
        """Bytes the job will add to the open, existing ``container`` (before it runs).

        Reserved in h5 containers before an in-place write, so that a full disk
        stops the job before HDF5 writes anything. The default is what this
        job's datasets took last time (from its record), scaled down when the
        inputs grew (outputs are then extended, not rewritten); override it
        when the job knows better.
        """
        from .records import read_records

        rec = read_records(container).get(self.name) or {}
        last = sum(int(d.get("nbytes", 0)) for d in (rec.get("datasets") or {}).values())
        before, now = int(rec.get("input_nbytes") or 0), self.input_bytes(container, unit)
        if last and before and now > before:
            # Twice the proportional growth: appending rewrites the last, partial chunks too.
            return min(last, int(2 * last * (now - before) / before))
        return last

    # -- the work -------------------------------------------------------------
    def run(self, input_files, output_files, **kwargs):
        """Compute the outputs (BatchLib's contract).

        The framework calls it with the inputs of one unit and the paths to
        write (temporary names for new containers). One-to-one jobs can
        implement :meth:`process` instead.
        """
        for inp, out in zip(input_files, output_files):
            self.process(inp, out)

    def process(self, input_file, output_file):
        raise NotImplementedError(f"{type(self).__name__} must implement run() or process()")

    # -- planning (coordinator side) ------------------------------------------
    def list_units(self, input_folder, folder, status: JobStatus) -> list:
        units = []
        for path in self.list_inputs(input_folder):
            key = self.unit_key(path, input_folder)
            unit = Unit(key, [path], [])
            try:
                unit.signature = self.input_signature(unit)
            except OSError as e:  # vanished between glob and stat
                unit.signature = {"error": str(e)}
            outputs = status.cached_outputs(key, unit.signature)
            if outputs:
                unit.outputs = [os.path.join(str(folder), o) for o in outputs]
            else:
                try:
                    unit.outputs = self.outputs_for(path, folder)
                except InvalidInputError:
                    unit.outputs = []  # validate_input reports it
            units.append(unit)
        return units

    def check_distinct_outputs(self, units) -> None:
        """Raise :class:`OutputCollisionError` if two units would write one output
        (a container or one of its :meth:`folder_outputs`)."""
        owners = {}
        for unit in units:
            for out in unit.outputs:
                for path in [out] + self.folder_outputs(out):
                    owners.setdefault(os.path.normpath(path), []).append(unit.key)
        collisions = {out: keys for out, keys in owners.items() if len(set(keys)) > 1}
        if collisions:
            raise OutputCollisionError(self.name, collisions)

    def output_identities(self, outputs) -> dict:
        """``{name: identity}`` of the output containers and the files beside them.

        The identity is ``[inode, size, mtime_ns]`` of a file (an h5
        container changes it with any write, a replaced one has another
        inode), for n5/zarr directories the inode and the stamp of the
        records; ``None`` for what is missing.
        """
        from .status_index import file_identity

        out = {}
        for path in outputs:
            name = os.path.basename(path)
            if container_format(path) == "h5":
                out[name] = file_identity(path)
            else:
                ident = file_identity(path)
                out[name] = None if ident is None else [ident[0], record_stamp(path)]
            for extra in self.folder_outputs(path):
                out[os.path.relpath(extra, os.path.dirname(path))] = file_identity(extra)
        return out

    def fingerprint(self, unit: Unit, triggers, identities=None) -> str | None:
        """Digest of everything an "up to date" decision about ``unit`` reads.

        The parameter hash, version, rerun triggers, the input signature and
        :meth:`output_identities` (taken now unless given). Equal
        fingerprints mean the decision would come out the same, so a stored
        one that still matches makes the unit up to date without opening
        anything (see :mod:`batchlib.status_index`). ``None``: cannot tell.
        """
        from .status_index import digest

        if identities is None:
            identities = self.output_identities(unit.outputs)
        if not unit.outputs or any(v is None for v in identities.values()):
            return None
        job = (self.param_hash, str(self.version), tuple(sorted(triggers)))
        return digest((job, self.fingerprint_signature(unit), identities))

    def fingerprint_signature(self, unit: Unit):
        """The part of the input signature the fingerprint covers (all of it here)."""
        return unit.signature

    def check_unit(self, unit: Unit, cached, triggers, force) -> tuple:
        """``(up_to_date, reason, records)`` for one unit."""
        if force:
            return False, "force_recompute", {}
        if not unit.outputs:
            return False, "outputs unknown", {}
        if cached and cached.get("state") == "failed":
            return False, "failed last time", {}
        records = {}
        fast = bool(cached) and cached.get("state") == "done"
        for out in unit.outputs:
            stamp = record_stamp(out)
            if stamp is None:
                return False, f"output {os.path.basename(out)} missing", {}
            if fast and cached.get("stamps", {}).get(os.path.basename(out)) == stamp:
                records[out] = cached.get("record")
                continue
            # The container changed since the job last saw it: one that no longer
            # opens or walks (a full disk during another job's write) is rebuilt.
            damage = container_damage(out, self.resolved_output_keys())
            if damage:
                return False, f"output damaged: {damage}", {}
            try:
                self.validate_output(out)
            except InvalidOutputError as e:
                return False, f"output invalid: {e}", {}
            records[out] = read_record(out, self.name)
        for out, rec in records.items():
            if not rec:
                return False, f"{os.path.basename(out)} has no completion record (unfinished)", records
            stale = self.stale_reason(unit, rec, triggers) or self.folder_outputs_problem(out, rec)
            if stale:
                return False, stale, records
        return True, "up to date", records

    def stale_reason(self, unit, rec, triggers) -> str | None:
        if "params" in triggers and rec.get("param_hash") != self.param_hash:
            return "parameters changed"
        if "version" in triggers and str(rec.get("version")) != str(self.version):
            return f"job version changed ({rec.get('version')} -> {self.version})"
        if "input" in triggers and not same_signature(rec.get("input_signature"), unit.signature):
            return "input changed"
        if "mtime" in triggers:
            newest = max((s.get("mtime_ns", 0) for s in unit.signature.values()
                          if isinstance(s, dict)), default=0)
            if newest > rec.get("finished_ns", 0):
                return "input newer than output"
        return None

    def validate_unit(self, unit: Unit) -> None:
        for path in unit.inputs:
            self.validate_input(path)
        if not unit.outputs:
            raise InvalidInputError(f"{unit.inputs[0]}: no outputs can be derived from it")

    def write_plan(self, unit: Unit, records: dict) -> list:
        """``[(final path, path to write, in place)]`` for each output of a unit."""
        plan = []
        for out in unit.outputs:
            if self.update_in_place and records.get(out):
                plan.append((out, out, True))
            else:
                plan.append((out, str(temporary_path(out)), False))
        return plan

    def clean_temporary(self, folder) -> None:
        """Remove temporary containers left by a killed run (the lock says none is live)."""
        try:
            with os.scandir(str(folder)) as it:  # one pass, not a glob per extension
                hidden = sorted(e.path for e in it if e.name.startswith("."))
        except FileNotFoundError:
            return
        for p in hidden:
            name = os.path.basename(p)
            if is_temporary(name) and name.endswith(CONTAINER_EXTS):
                self.logger.warning("removing %s, left unfinished by an interrupted run", p)
                remove_container(p)
            # Old n5/zarr directories that replace_container had renamed aside
            # (".<name><ext>.old-<pid>") when a run was killed before deleting them.
            elif any(f"{ext}.old-" in name for ext in CONTAINER_EXTS):
                self.logger.warning("removing %s, an old container left by an interrupted run", p)
                remove_container(p)

    # -- running ----------------------------------------------------------------
    def __call__(self, folder, input_folder=None, force_recompute=False, ignore_invalid_inputs=False,
                 ignore_failed_outputs=False, executor="serial", n_jobs=1, lock=True,
                 lock_timeout=0.0, **kwargs) -> JobResult:
        """Run this job alone on a folder (with its own lock and log).

        See :func:`batchlib.workflow.run_workflow` for the options; a job run
        alone is a workflow of one job named after it.
        """
        from .workflow import run_workflow

        result = run_workflow(self.name, folder, [self], input_folder=input_folder,
                              force_recompute=force_recompute,
                              ignore_invalid_inputs=ignore_invalid_inputs,
                              ignore_failed_outputs=ignore_failed_outputs, executor=executor,
                              n_jobs=n_jobs, lock=lock, lock_timeout=lock_timeout,
                              write_workflow_status=False, **kwargs)
        return result.jobs[0]

    def run_in_folder(self, folder, input_folder, get_executor, force_recompute=False,
                      ignore_invalid_inputs=False, ignore_failed_outputs=False,
                      rerun_triggers=DEFAULT_TRIGGERS, progress=True, status_interval_s=5.0) -> JobResult:
        """Plan, validate and run the job; called by the workflow, which holds the lock."""
        from .runner import JobRunner

        return JobRunner(self, folder, input_folder, get_executor, force_recompute,
                         ignore_invalid_inputs, ignore_failed_outputs, rerun_triggers,
                         progress, status_interval_s).run()


def _signature_bytes(sig) -> int:
    """Sum of the ``size`` / ``size_bytes`` values in an input signature."""
    if isinstance(sig, dict):
        return sum(int(v) if k in ("size", "size_bytes") and isinstance(v, (int, float))
                   else _signature_bytes(v) for k, v in sig.items())
    if isinstance(sig, list):
        return sum(_signature_bytes(v) for v in sig)
    return 0


def execute_unit(task) -> dict:
    """Worker side: run one unit, write the completion records, move outputs into place.

    Returns a plain dict (picklable) that the coordinator records in the status.
    """
    job, unit, plan, signature = task
    t0 = time.monotonic()
    write_paths = [w for _, w, _ in plan]
    present = {}  # datasets of the containers updated in place, to record what the job removed
    try:
        for _, path, in_place in plan:
            if in_place:
                h5 = container_format(path) == "h5"
                if not h5:  # before anything opens them
                    _drop_broken_keys(path, job.resolved_output_keys(), job.logger)
                with open_file(path, "a") as f:
                    estimate = job.estimate_output_bytes(f, unit) + job.reserve_margin_bytes
                    present[path] = {k for k, _ in iter_datasets(f)}
                    delete_record(f, job.name)  # flushes, which gives back any earlier reservation
                if h5:
                    reserve_space(path, estimate)
                else:  # n5/zarr: each chunk is a file of its own; a failed write loses only it
                    check_free_space(path, job.reserve_margin_bytes)
            else:
                if os.path.lexists(path):
                    # The temporary name is this unit's in this run: only an attempt on a
                    # worker that died (dask retries its units elsewhere) leaves a file
                    # there, maybe truncated. Start afresh.
                    job.logger.warning("%s: removing what an earlier attempt left", path)
                    remove_container(path)
                check_free_space(path, job.reserve_margin_bytes)
        job.__dict__["_unit_warnings"] = []
        job.run(list(unit.inputs), write_paths, **unit.run_kwargs)
        for _, path, _ in plan:
            if container_format(path) != "h5":
                # z5py does not report a write that failed for lack of space (it leaves
                # empty files): a disk that is full now cannot be trusted to hold the result.
                check_free_space(path, min(job.reserve_margin_bytes, 1 << 20))
        record = new_record(job.name, job.version, job.param_hash, signature,
                            job.resolved_output_keys())
        warnings = list(job.__dict__.get("_unit_warnings", []))
        if warnings:
            # kept with the output, so that the status lists them after any rerun
            record["warnings"] = warnings
        for final, path, in_place in plan:
            job.validate_output(path)
            files = job.folder_outputs(final)
            if files:
                record = dict(record, folder_outputs=folder_outputs.signatures(
                    files, os.path.dirname(os.path.normpath(final))))
            with open_file(path, "a") as f:
                # What was written, so that planning and `batchlib verify` can check it later.
                datasets = describe_datasets(f, job.resolved_output_keys())
                extra = {"datasets": datasets, "input_nbytes": job.input_bytes(f, unit)}
                if path in present:  # e.g. raw movies replaced by an overview: not damage
                    removed = sorted(present[path] - {k for k, _ in iter_datasets(f)})
                    if removed:
                        extra["removed"] = removed
                write_record(f, job.name, {**record, **extra})
            if not in_place:
                replace_container(path, final)
        finals = [f for f, _, _ in plan]
        return {"key": unit.key, "state": "done", "duration_s": round(time.monotonic() - t0, 4),
                "stamps": {os.path.basename(f): record_stamp(f) for f in finals},
                "identities": job.output_identities(finals),
                "record": record, "warnings": warnings}
    except Exception as e:  # noqa: BLE001 - any failure of one image is recorded, not fatal
        disk_full = is_disk_full(e)
        for final, path, in_place in plan:
            if not in_place and path != final:
                remove_container(path)
                # An older output stays in place, but it no longer matches what
                # this job was asked to compute: take its record away so that
                # downstream jobs see its keys as not completed (as they do for
                # in-place jobs, whose record is removed before they run).
                # Not on a full disk: writing into an h5 file then is what damages it.
                if not disk_full:
                    _forget_record(final, job.name)
            # Files beside the containers that no record covers any more.
            folder_outputs.remove(_folder_outputs_or_none(job, final))
        state = "invalid" if isinstance(e, InvalidInputError) else "failed"
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        error = f"{type(e).__name__}: {e}"
        if disk_full and not isinstance(e, DiskFullError):
            error = f"{disk_full_message(plan[0][0] if plan else '.')} ({error.splitlines()[0][:300]})"
        elif disk_full:
            error = str(e)
        return {"key": unit.key, "state": state, "duration_s": round(time.monotonic() - t0, 4),
                "error": error, "traceback": "".join(tb[-6:])[-4000:], "disk_full": disk_full}


def _drop_broken_keys(path, keys, logger) -> None:
    """n5/zarr: delete the job's own output keys whose metadata an earlier failure left
    unreadable (z5py cannot even replace them then); the job writes them again."""
    import shutil

    from .io.checksum import broken_metadata

    for key in keys:
        root = os.path.join(path, key)
        if os.path.isdir(root) and broken_metadata(root):
            logger.warning("%s: %s was left unreadable by an interrupted write; rewriting it", path, key)
            shutil.rmtree(root)


def _folder_outputs_or_none(job, path) -> list:
    try:
        return job.folder_outputs(path)
    except Exception:  # noqa: BLE001 - cleaning up after a failure must not fail
        return []


def _forget_record(path, job_name) -> None:
    if not os.path.exists(path):
        return
    try:
        with open_file(path, "a") as f:
            delete_record(f, job_name)
    except Exception:  # noqa: BLE001 - the container may be the reason it failed
        pass


__all__ = ["BatchJob", "Param", "Unit", "JobResult", "JobError", "RERUN_TRIGGERS",
           "DEFAULT_TRIGGERS", "execute_unit", "status_dir"]
