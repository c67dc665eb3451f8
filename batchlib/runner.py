"""Running one job over a folder: plan, validate, dispatch, record.

The runner drives the job; the job (:mod:`batchlib.base`) knows nothing of
how it is run.

This is the coordinator's side. It plans (:mod:`batchlib.planning` lists the
units and decides from the completion records which are up to date),
validates the rest, sends them to the executor, and records every result in
the job's status file as it streams back. :func:`execute_unit` is the
worker's side.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable


from . import certificate, folder_outputs, planning
from .base import BatchJob, Unit
from .errors import InvalidInputError, JobError, OutputCollisionError
from .io import CONTAINER_EXTS, container_format, open_file, remove_container, replace_container
from .io.checksum import dataset_paths, describe_datasets
from .io.files import is_temporary, temporary_path
from .io.space import (DiskFullError, check_free_space, disk_full_message, is_disk_full,
                       reserve_space)
from .records import delete_record, new_record, record_stamp, write_record
from .states import JobState
from .termination import raise_if_terminated
from .planning import DEFAULT_TRIGGERS, RERUN_TRIGGERS
from .status import JobStatus, clean_status_temporaries, status_dir, write_status_unchanged


@dataclass(frozen=True)
class RunOptions:
    """How a workflow runs its jobs (the same for every job of one run).

    Parameters
    ----------
    force_recompute : bool
        Recompute every output, up to date or not.
    ignore_invalid_inputs : bool
        Record invalid inputs and go on with the others (otherwise stop before processing).
    ignore_failed_outputs : bool
        Record failures and go on (otherwise stop at the first).
    rerun_triggers : tuple of str
        What makes an up-to-date output stale: any of :data:`batchlib.planning.RERUN_TRIGGERS`.
    progress : bool
        Show a tqdm progress bar per job.
    status_interval_s : float
        Least seconds between two writes of a job's status file while it runs.

    Examples
    --------
    >>> RunOptions(rerun_triggers=["params"]).rerun_triggers
    ('params',)
    >>> RunOptions(rerun_triggers=("size",))
    Traceback (most recent call last):
    ...
    ValueError: unknown rerun trigger(s) ['size']; choose from ('input', 'params', 'version', 'mtime')
    """

    force_recompute: bool = False
    ignore_invalid_inputs: bool = False
    ignore_failed_outputs: bool = False
    rerun_triggers: tuple = DEFAULT_TRIGGERS
    progress: bool = True
    status_interval_s: float = 5.0

    def __post_init__(self):
        triggers = tuple(self.rerun_triggers)
        unknown = set(triggers) - set(RERUN_TRIGGERS)
        if unknown:
            raise ValueError(f"unknown rerun trigger(s) {sorted(unknown)}; choose from {RERUN_TRIGGERS}")
        object.__setattr__(self, "rerun_triggers", triggers)


@dataclass
class JobResult:
    """What one run of one job did."""

    name: str
    state: JobState
    counts: dict
    failed: dict
    invalid: dict
    computed: list

    @property
    def success(self) -> bool:
        return self.state == JobState.PROCESSED


class JobRunner:
    """One run of one job over a folder: plan, validate, dispatch, record.

    Parameters
    ----------
    job : BatchJob
    folder : path
        The working folder (outputs, status files).
    input_folder : path or None
        Where the job's inputs are (``folder`` for jobs that read the folder).
    get_executor : callable
        Returns the executor; called only when there is work.
    options : RunOptions
    """

    def __init__(self, job: BatchJob, folder, input_folder, get_executor: Callable,
                 options: RunOptions = RunOptions()):
        self.job = job
        self.folder = str(folder)
        self.input_folder = str(folder if job.reads_folder or input_folder is None else input_folder)
        self.get_executor = get_executor
        self.options = options
        self.force = options.force_recompute
        self.ignore_invalid = options.ignore_invalid_inputs
        self.ignore_failed = options.ignore_failed_outputs
        self.triggers = options.rerun_triggers
        self.progress = options.progress
        status_interval_s = options.status_interval_s
        self.log = job.logger
        header = {"job": job.name, "class": f"{type(job).__module__}.{type(job).__qualname__}",
                  "version": str(job.version), "params": dict(job.param_values),
                  "param_hash": job.param_hash, "input_pattern": job.input_pattern,
                  "folder": os.path.abspath(self.folder),
                  "input_folder": os.path.abspath(self.input_folder),
                  "rerun_triggers": list(self.triggers)}
        self._header = header
        self._status: JobStatus | None = None
        self._status_interval_s = status_interval_s
        #: Digest of what this run's up-to-date decisions read, taken before planning
        #: (:mod:`batchlib.certificate`); ``None``: no certificate for this run.
        self._digest: str | None = None

    @property
    def status(self) -> JobStatus:
        """The job's status (its index is read on first use: a certified run never reads it)."""
        if self._status is None:
            self._status = JobStatus(self._status_path, self._header,
                                     min_interval_s=self._status_interval_s)
        return self._status

    @property
    def _status_path(self):
        return status_dir(self.folder) / f"{self.job.name}.status"

    @property
    def _certificate_path(self):
        return status_dir(self.folder) / f"{self.job.name}.uptodate"

    #: Plan all units at once (:func:`batchlib.planning.plan_units`); ``False``: one by
    #: one, the reference the tests compare it with.
    batched_planning = True

    def _rel(self, paths):
        # os.path.relpath is slow (it normalises both paths); outputs are almost
        # always directly below the folder, so cut the prefix when it is there.
        prefix = os.path.join(self.folder, "")
        return [p[len(prefix):] if p.startswith(prefix) else os.path.relpath(p, self.folder)
                for p in paths]

    def _clean_folder_output_leftovers(self) -> None:
        """Temporaries of files beside the containers (a table, a QC picture) that a killed
        run left; the lock says no writer of them is live."""
        from .io.files import remove_leftovers

        for d in folder_outputs.beside_dirs(self.job, self.folder) or []:
            for name in remove_leftovers(d, any_writer=True):
                self.log.warning("removed %s, left unfinished by an interrupted run", os.path.join(d, name))

    def plan(self):
        """Split the units into up to date, to compute and invalid."""
        if not os.path.isdir(self.input_folder):
            raise FileNotFoundError(f"{self.job.name}: input folder {self.input_folder} does not exist")
        clean_temporary(self.job, self.folder)
        self._clean_folder_output_leftovers()
        if self.batched_planning and not self.force:
            # Units found unchanged are only their keys (see planning.plan_units).
            units, owners = planning.plan_units(self.job, self.input_folder, self.folder, self.status,
                                                self.triggers)
        else:
            units, owners = planning.list_units(self.job, self.input_folder, self.folder, self.status), None
        try:
            check_distinct_outputs(self.job, units, owners)  # before anything is written
        except JobError as e:
            self.status.finish("errored", error=str(e))
            raise
        todo, invalid, kept = [], {}, []
        for unit in units:
            if isinstance(unit, str):
                kept.append(unit)  # unchanged since it was found up to date
                continue
            if kept:  # in the order of the units, as one by one
                self.status.keep_all(kept)
                kept = []
            fingerprint = None
            if not self.force:
                # Taken before the check, so that a change made meanwhile makes it stale.
                try:
                    fingerprint = planning.fingerprint(self.job, unit, self.triggers)
                except Exception:  # noqa: BLE001 - no fingerprint: the check decides
                    fingerprint = None
                if fingerprint is not None and fingerprint == self.status.fingerprint(unit.key):
                    self.status.keep(unit.key)  # unchanged since it was found up to date
                    continue
            cached = self.status.cached(unit.key)
            try:
                ok, reason, records = planning.check_unit(self.job, unit, cached, self.triggers, self.force)
            except Exception as e:  # noqa: BLE001 - never crash planning: what cannot be checked is redone
                ok, reason, records = False, f"cannot be checked ({type(e).__name__}: {e})", {}
            if ok:
                rec = next(iter(records.values()), None) or (cached or {}).get("record")
                stamps = (cached or {}).get("stamps") if cached and cached.get("record") == rec else None
                if stamps is None:
                    stamps = {os.path.basename(o): record_stamp(o) for o in unit.outputs}
                extra = {"warnings": rec["warnings"]} if rec and rec.get("warnings") else {}
                self.status.set_file(unit.key, fingerprint=fingerprint, state="done",
                                     outputs=self._rel(unit.outputs),
                                     input_signature=unit.signature, stamps=stamps,
                                     record=_lean(rec), finished=(rec or {}).get("finished"),
                                     duration_s=(cached or {}).get("duration_s"), **extra)
                continue
            try:
                self.job.validate_unit(unit)
            except InvalidInputError as e:
                invalid[unit.key] = str(e)
                self.status.set_file(unit.key, state="invalid", outputs=self._rel(unit.outputs),
                                     error=str(e), input_signature=unit.signature)
                continue
            self.status.set_file(unit.key, state="pending", reason=reason,
                                 outputs=self._rel(unit.outputs), input_signature=unit.signature)
            todo.append((unit, records))
        self.status.keep_all(kept)
        self.status.all_listed()  # from here on, a row not seen is that of an input gone
        return units, todo, invalid

    def run(self) -> JobResult:
        try:
            return self._run()
        except DiskFullError:
            raise
        except OSError as e:
            if is_disk_full(e):  # e.g. writing the status file itself: one line, exit code 1
                raise DiskFullError(f"{self.job.name} stopped: {disk_full_message(self.folder)}") from e
            raise

    def _certified(self, t0) -> JobResult | None:
        """The result of a run with nothing to do, when the job's certificate holds
        (:mod:`batchlib.certificate`); ``None``: plan as usual."""
        if self.force or not certificate.eligible(self.job) or not os.path.isdir(self.input_folder):
            return None
        # No temporary container can be left behind since the certificate was written:
        # every run that is not certified removes it first (see _run).
        try:
            self._digest = certificate.folder_digest(self.job, self.input_folder, self.folder,
                                                     self.triggers)
        except OSError:
            return None
        cert = certificate.read(self._certificate_path)
        if cert is None or not certificate.holds(cert, self._digest, self._status_path.with_suffix(".index")):
            return None  # (no digest: the job's folders beside the containers are unknown)
        clean_status_temporaries(self._status_path.parent)  # of a certified run killed while writing
        counts = cert["counts"]
        write_status_unchanged(self._status_path, self._header, counts, cert["files"],
                               time.monotonic() - t0)
        self.log.info("%d input(s): %d up to date (nothing changed since they were found so), "
                      "0 to compute, 0 invalid", counts.get("total", 0), counts.get("done", 0))
        return JobResult(self.job.name, JobState.PROCESSED, counts, {}, {}, [])

    def _certify(self, state, computed, failed, invalid) -> None:
        """After a run that found every input up to date: write the certificate (or
        remove a stale one)."""
        status, path = self._status, self._certificate_path
        if status is None:
            return
        counts = status.counts()
        if (self._digest is None or state != JobState.PROCESSED or computed or failed or invalid
                or counts.get("done") != counts.get("total") or not status.listed):
            certificate.remove(path)
            return
        index = status.index
        try:
            certificate.write(path, self._digest, index.path, counts, status.files,
                              (row[2] for row in index.rows.values()))
        except OSError as e:  # a full disk: the next run plans in full, nothing else is lost
            self.log.debug("no up-to-date certificate written (%s)", e)
            certificate.remove(path)

    def _run(self) -> JobResult:
        t0 = time.monotonic()
        certified = self._certified(t0)
        if certified is not None:
            return certified
        # Whatever this run does (or where it is killed), the next one plans in full
        # until a run finds every input up to date again and certifies it (_certify).
        certificate.remove(self._certificate_path)
        try:
            units, todo, invalid = self.plan()
            self.log.info("%d input(s): %d up to date, %d to compute, %d invalid",
                          len(units), len(units) - len(todo) - len(invalid), len(todo), len(invalid))
            for key, reason in invalid.items():
                self.log.warning("invalid input %s", reason)
            if invalid and not self.ignore_invalid:
                err = JobError(self.job.name, invalid, "invalid inputs")
                self.status.finish("invalid_inputs", error=str(err))
                raise err
            if todo:  # with nothing to do, finish() below writes the status once
                self.status.save(force=True)
            failed, computed = self._dispatch(todo) if todo else ({}, [])
        except JobError:
            raise
        except BaseException as e:
            self.status.finish("errored", error=f"{type(e).__name__}: {e}")
            raise
        state = JobState.FAILED_OUTPUTS if failed else JobState.INVALID_INPUTS if invalid \
            else JobState.PROCESSED
        self.status.finish(state)
        self._certify(state, computed, failed, invalid)
        counts = self.status.counts()
        self.log.info("%s in %.1f s: %d computed, %d failed, %d invalid", state,
                      time.monotonic() - t0, len(computed), len(failed), len(invalid))
        if failed and not self.ignore_failed:
            err = JobError(self.job.name, failed, "failed outputs")
            self.status.data["error"] = str(err)
            self.status.save(force=True)
            raise err
        return JobResult(self.job.name, state, counts, failed, invalid, computed)

    def _dispatch(self, todo):
        failed, computed = {}, []
        stop = False
        disk_full = {}

        def tasks():
            for unit, records in todo:
                raise_if_terminated()
                if stop:
                    return
                yield (self.job, unit, write_plan(self.job, unit, records), unit.signature)

        from tqdm import tqdm  # here: a run with nothing to do does not import it

        executor = self.get_executor()
        units = {unit.key: unit for unit, _ in todo}
        n_results = 0
        bar = tqdm(total=len(todo), desc=self.job.name, unit="image", disable=not self.progress,
                   dynamic_ncols=True, leave=True)
        try:
            for result in executor.map_unordered(execute_unit, tasks(), on_crash=_crashed):
                key = result["key"]
                unit = units[key]
                entry = {"outputs": self._rel(unit.outputs), "input_signature": unit.signature,
                         "duration_s": result["duration_s"], "this_run": True,
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if result["state"] == "done":
                    computed.append(key)
                    rec = result["record"]
                    if result.get("warnings"):
                        entry["warnings"] = result["warnings"]
                    fingerprint = None
                    if result.get("identities") is not None:
                        fingerprint = planning.fingerprint(self.job, unit, self.triggers, result["identities"])
                    self.status.set_file(key, fingerprint=fingerprint, state="done",
                                         stamps=result["stamps"], record=_lean(rec), **entry)
                else:
                    failed[key] = result["error"]
                    self.status.set_file(key, state="failed" if result["state"] == "failed" else "invalid",
                                         error=result["error"], traceback=result["traceback"], **entry)
                    self.log.error("%s failed: %s", key, result["error"])
                    self.log.debug("%s", result["traceback"])
                    if result.get("disk_full"):
                        disk_full[key] = result["error"]
                    if not self.ignore_failed or disk_full:
                        stop = True  # on a full disk every other image would fail too
                n_results += 1
                bar.update(1)
                self.status.save()
                raise_if_terminated()  # the unit is recorded; stop before waiting on more
        finally:
            bar.close()
        if disk_full:
            self.status.finish("failed_outputs", error=next(iter(disk_full.values())))
            raise DiskFullError(f"{self.job.name} stopped: {next(iter(disk_full.values()))}\n"
                                f"Free space (or move the folder) and rerun: the images not "
                                f"finished are redone.", disk_full)
        if not stop and n_results != len(todo):
            # Never report "processed" with units silently left pending.
            raise RuntimeError(f"{self.job.name}: the {executor.name} executor returned {n_results} "
                               f"results for {len(todo)} units")
        return failed, computed


def check_distinct_outputs(job, units, owners=None) -> None:
    """Raise :class:`OutputCollisionError` if two units would write one output
    (a container or one of its folder outputs); ``owners``: the units' outputs
    as :func:`batchlib.planning.plan_units` collected them."""
    if owners is None:
        owners = planning.OutputOwners(job)
        for unit in units:
            owners.add(unit.key, unit.outputs)
    collisions = owners.collisions()
    if collisions:
        raise OutputCollisionError(job.name, collisions)


def write_plan(job, unit: Unit, records: dict) -> list:
    """``[(final path, path to write, in place)]`` for each output of a unit.

    Jobs that add keys to existing containers write in place; jobs that create
    containers write a temporary one, moved into place when complete, unless
    they update a completed output in place (``update_in_place``).
    """
    if not job.creates_containers:
        return [(unit.outputs[0], unit.outputs[0], True)]
    plan = []
    for out in unit.outputs:
        if job.update_in_place and records.get(out):
            plan.append((out, out, True))
        else:
            plan.append((out, str(temporary_path(out)), False))
    return plan


def clean_temporary(job, folder) -> None:
    """Remove temporary containers left by a killed run (the lock says none is live)."""
    if not job.creates_containers:
        return  # containers are modified in place; nothing temporary is created
    try:
        with os.scandir(str(folder)) as it:  # one pass, not a glob per extension
            hidden = sorted(e.path for e in it if e.name.startswith("."))
    except FileNotFoundError:
        return
    for p in hidden:
        name = os.path.basename(p)
        if is_temporary(name) and name.endswith(CONTAINER_EXTS):
            job.logger.warning("removing %s, left unfinished by an interrupted run", p)
            remove_container(p)
        # Old n5/zarr directories that replace_container had renamed aside
        # (".<name><ext>.old-<pid>") when a run was killed before deleting them.
        elif any(f"{ext}.old-" in name for ext in CONTAINER_EXTS):
            job.logger.warning("removing %s, an old container left by an interrupted run", p)
            remove_container(p)


def _crashed(task, exc) -> dict:
    """The result of a unit whose worker process died under it."""
    unit = task[1]
    return {"key": unit.key, "state": "failed", "duration_s": None,
            "error": f"the worker process died while processing this image ({type(exc).__name__}: {exc}); "
                     "out of memory? It is retried on the next run.",
            "traceback": ""}


def _lean(rec):
    """The part of a record the status keeps to decide the next run quickly."""
    if not rec:
        return None
    lean = {k: rec.get(k) for k in ("param_hash", "version", "input_signature", "run_id",
                                     "finished", "finished_ns", "folder_outputs") if k in rec}
    if rec.get("warnings"):
        lean["warnings"] = rec["warnings"]
    return lean


def _interrupt_inside(exc):
    """The KeyboardInterrupt behind ``exc``, if any.

    Ctrl-C arriving while a C or Cython extension runs (h5py's lock, Blosc)
    can surface as ``SystemError: ... returned a result with an exception set``
    whose cause is the KeyboardInterrupt: that is an interruption, not a
    failure of the image, and must stop the run as Ctrl-C does elsewhere.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def execute_unit(task) -> dict:
    """Worker side: run one unit, write the completion records, move outputs into place.

    Returns a plain dict (picklable) that the coordinator records in the status.
    """
    job, unit, plan, signature = task
    t0 = time.monotonic()
    try:
        present = _prepare_outputs(job, unit, plan)
        job.__dict__["_unit_warnings"] = []
        job.run(list(unit.inputs), [w for _, w, _ in plan], **unit.run_kwargs)
        for _, path, _ in plan:
            if container_format(path) != "h5":
                # z5py does not report a write that failed for lack of space (it leaves
                # empty files): a disk that is full now cannot be trusted to hold the result.
                check_free_space(path, min(job.reserve_margin_bytes, 1 << 20))
        warnings = list(job.__dict__.get("_unit_warnings", []))
        record = _complete_outputs(job, unit, plan, signature, present, warnings)
        finals = [f for f, _, _ in plan]
        return {"key": unit.key, "state": "done", "duration_s": round(time.monotonic() - t0, 4),
                "stamps": {os.path.basename(f): record_stamp(f) for f in finals},
                "identities": planning.output_identities(job, finals),
                "record": record, "warnings": warnings}
    except Exception as e:  # noqa: BLE001 - any failure of one image is recorded, not fatal
        return _failed(job, unit, plan, e, t0)


def _prepare_outputs(job, unit, plan) -> dict:
    """Make room for the unit's outputs before the job writes them.

    Containers updated in place lose this job's record (and on h5, space for
    what the job will add is reserved); a temporary one an earlier attempt left
    is removed. Returns ``{path: datasets}`` of the containers updated in
    place, to record what the job removed.
    """
    present = {}
    for _, path, in_place in plan:
        if in_place:
            h5 = container_format(path) == "h5"
            if not h5:  # before anything opens them
                _drop_broken_keys(path, job.resolved_output_keys(), job.logger)
            with open_file(path, "a") as f:
                estimate = job.estimate_output_bytes(f, unit) + job.reserve_margin_bytes
                present[path] = set(dataset_paths(f))
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
    return present


def _complete_outputs(job, unit, plan, signature, present, warnings) -> dict:
    """Validate the outputs the job wrote, write their completion records and move new
    containers into place; returns the record."""
    record = new_record(job.name, job.version, job.param_hash, signature,
                        job.resolved_output_keys())
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
                removed = sorted(present[path] - set(dataset_paths(f)))
                if removed:
                    extra["removed"] = removed
            write_record(f, job.name, {**record, **extra})
        if not in_place:
            replace_container(path, final)
    return record


def _failed(job, unit, plan, e, t0) -> dict:
    """Clean up after a unit that failed with ``e`` and say why (Ctrl-C is raised again)."""
    interrupt = _interrupt_inside(e)
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
    if interrupt is not None:
        # Ctrl-C, not a failure of this image: cleaned up like one, then stop
        raise interrupt from e
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
