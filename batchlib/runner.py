"""Running one job over a folder: plan, validate, dispatch, record.

This is the coordinator's side. It decides from the completion records which
units are up to date, validates the rest, sends them to the executor, and
records every result in the job's status file as it streams back.
"""
from __future__ import annotations

import os
import time

from .base import JobResult, execute_unit
from .errors import InvalidInputError, JobError
from .io.space import DiskFullError, disk_full_message, is_disk_full
from .status import JobStatus, status_dir


class JobRunner:
    """One run of one job; see :meth:`batchlib.base.BatchJob.run_in_folder`."""

    def __init__(self, job, folder, input_folder, get_executor, force_recompute,
                 ignore_invalid_inputs, ignore_failed_outputs, rerun_triggers, progress,
                 status_interval_s):
        self.job = job
        self.folder = str(folder)
        self.input_folder = str(folder if job.reads_folder or input_folder is None else input_folder)
        self.get_executor = get_executor
        self.force = force_recompute
        self.ignore_invalid = ignore_invalid_inputs
        self.ignore_failed = ignore_failed_outputs
        self.triggers = tuple(rerun_triggers)
        self.progress = progress
        self.log = job.logger
        header = {"job": job.name, "class": f"{type(job).__module__}.{type(job).__qualname__}",
                  "version": str(job.version), "params": dict(job.param_values),
                  "param_hash": job.param_hash, "input_pattern": job.input_pattern,
                  "folder": os.path.abspath(self.folder),
                  "input_folder": os.path.abspath(self.input_folder),
                  "rerun_triggers": list(self.triggers)}
        self.status = JobStatus(status_dir(self.folder) / f"{job.name}.status", header,
                                min_interval_s=status_interval_s)

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

        try:
            dirs = {os.path.dirname(p) for p in self.job.folder_outputs(os.path.join(self.folder, "x.h5"))}
        except Exception:  # noqa: BLE001 - a job whose outputs cannot be guessed like this
            return
        for d in sorted(dirs):
            for name in remove_leftovers(d, any_writer=True):
                self.log.warning("removed %s, left unfinished by an interrupted run", os.path.join(d, name))

    def plan(self):
        """Split the units into up to date, to compute and invalid."""
        if not os.path.isdir(self.input_folder):
            raise FileNotFoundError(f"{self.job.name}: input folder {self.input_folder} does not exist")
        self.job.clean_temporary(self.folder)
        self._clean_folder_output_leftovers()
        units = self.job.list_units(self.input_folder, self.folder, self.status)
        try:
            self.job.check_distinct_outputs(units)  # before anything is written
        except JobError as e:
            self.status.finish("errored", error=str(e))
            raise
        todo, invalid = [], {}
        for unit in units:
            fingerprint = None
            if not self.force:
                # Taken before the check, so that a change made meanwhile makes it stale.
                try:
                    fingerprint = self.job.fingerprint(unit, self.triggers)
                except Exception:  # noqa: BLE001 - no fingerprint: the check decides
                    fingerprint = None
                if fingerprint is not None and fingerprint == self.status.fingerprint(unit.key):
                    self.status.keep(unit.key)  # unchanged since it was found up to date
                    continue
            cached = self.status.cached(unit.key)
            try:
                ok, reason, records = self.job.check_unit(unit, cached, self.triggers, self.force)
            except Exception as e:  # noqa: BLE001 - never crash planning: what cannot be checked is redone
                ok, reason, records = False, f"cannot be checked ({type(e).__name__}: {e})", {}
            if ok:
                rec = next(iter(records.values()), None) or (cached or {}).get("record")
                stamps = (cached or {}).get("stamps") if cached and cached.get("record") == rec else None
                if stamps is None:
                    from .records import record_stamp

                    stamps = {os.path.basename(o): record_stamp(o) for o in unit.outputs}
                extra = {"warnings": rec["warnings"]} if (rec or {}).get("warnings") else {}
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

    def _run(self) -> JobResult:
        t0 = time.monotonic()
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
        state = "failed_outputs" if failed else "invalid_inputs" if invalid else "processed"
        self.status.finish(state)
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
                if stop:
                    return
                yield (self.job, unit, self.job.write_plan(unit, records), unit.signature)

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
                        fingerprint = self.job.fingerprint(unit, self.triggers, result["identities"])
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
