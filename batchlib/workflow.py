"""Workflows: jobs chained in order over one folder, under one lock and one log."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field

from .planning import DEFAULT_TRIGGERS
from .errors import JobError
from .executors import Executor, make_executor
from .lock import FolderLock
from .log import get_logger, workflow_logging
from .names import check_name
from .runner import JobResult, JobRunner, RunOptions
from .states import JobState
from .status import WorkflowStatus, status_dir
from .termination import raise_if_terminated, sigterm_as_exit  # noqa: F401 - sigterm_as_exit: the API

#: Exit codes of workflow scripts.
EXIT_OK, EXIT_ERROR, EXIT_INCOMPLETE, EXIT_LOCKED = 0, 1, 2, 3


@dataclass
class WorkflowResult:
    """What a workflow run did: its state and one :class:`JobResult` per job."""

    name: str
    state: str
    jobs: list = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.state == JobState.PROCESSED

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.success else EXIT_INCOMPLETE


class _LazyExecutor:
    """Start the executor (maybe a dask cluster) only when a job has work.

    An :class:`~batchlib.executors.Executor` given instead of a kind is the
    caller's (e.g. a live session's, whose workers stay warm between runs): it
    is used as is and closed only when the run is interrupted.
    """

    def __init__(self, **options):
        self.options, self.executor = options, None
        self.owned = not isinstance(options["kind"], Executor)
        if not self.owned:
            self.executor = options["kind"]

    def __call__(self):
        if self.executor is None:
            self.executor = make_executor(**self.options)
        return self.executor

    def close(self, abort=False):
        if self.executor is not None and (self.owned or abort):
            self.executor.close(abort=abort)

    def exit(self, exc_type, exc, tb):
        """ExitStack callback: interrupted or terminated runs stop their workers at once."""
        self.close(abort=exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)))


def run_workflow(name, folder, jobs, input_folder=None, force_recompute=False,
                 ignore_invalid_inputs=False, ignore_failed_outputs=False, executor="serial",
                 n_jobs=1, scheduler_address=None, slurm=None, rerun_triggers=DEFAULT_TRIGGERS,
                 lock=True, lock_timeout=0.0, break_lock=False, log_level=None, progress=None,
                 status_interval_s=5.0, write_workflow_status=True) -> WorkflowResult:
    """Run ``jobs`` in order on ``folder``.

    Parameters
    ----------
    name : str
        Workflow name: names the lock, log and workflow status files in
        ``<folder>/batchlib/``.
    folder : path
        Working folder, where the output containers are written.
    jobs : list of BatchJob
    input_folder : path, optional
        Where jobs that read raw inputs (e.g. Ingest) find them; default ``folder``.
    force_recompute : bool
        Recompute every output, up to date or not.
    ignore_invalid_inputs : bool
        Record invalid inputs with their reason and go on with the others
        (otherwise stop with an error naming them).
    ignore_failed_outputs : bool
        Record failures with the error and go on (otherwise stop at the first).
    executor : {"serial", "processes", "dask", "slurm"} or Executor
        An Executor instance is used as is and left open (the caller closes it).
    n_jobs : int
        Worker processes for ``processes`` and a local dask cluster.
    scheduler_address : str, optional
        A running dask scheduler (``executor="dask"``).
    slurm : dict, optional
        dask-jobqueue settings (queue, cores, memory, walltime, jobs, account).
    rerun_triggers : sequence of str
        Which changes make an output stale: any of ``input`` (input size and
        mtime, or content with hashing), ``params``, ``version``, ``mtime``
        (input newer than output, Snakemake's classic rule).
    lock : bool
        Take ``<folder>/batchlib/<name>.lock`` (on by default).
    lock_timeout : float
        Seconds to wait for another run's lock.
    break_lock : bool
        Break a lock held by another host.
    log_level : str, optional
        Default from ``$LOGLEVEL``, else INFO.
    progress : bool, optional
        tqdm progress bars; default on when stderr is a terminal.

    Returns
    -------
    WorkflowResult
        ``state`` is "processed" only when every job processed every input.

    Raises
    ------
    JobError
        Invalid inputs or failed outputs without the matching ``ignore_*`` flag.
    LockError
        Another run holds the lock.
    """
    names = _check_names(name, jobs, write_workflow_status)
    folder = os.fspath(folder)
    input_folder = os.fspath(input_folder) if input_folder is not None else folder
    if progress is None:
        progress = sys.stderr.isatty()
    options = RunOptions(force_recompute=force_recompute, ignore_invalid_inputs=ignore_invalid_inputs,
                         ignore_failed_outputs=ignore_failed_outputs, rerun_triggers=rerun_triggers,
                         progress=progress, status_interval_s=status_interval_s)
    os.makedirs(status_dir(folder), exist_ok=True)
    sdir = status_dir(folder)
    folder_lock = FolderLock(sdir / f"{name}.lock", timeout_s=lock_timeout, break_foreign=break_lock)
    get_executor = _LazyExecutor(kind=executor, n_jobs=n_jobs, scheduler_address=scheduler_address,
                                 slurm=slurm)
    with contextlib.ExitStack() as stack:
        logger = stack.enter_context(workflow_logging(sdir / f"{name}.log", log_level))
        stack.enter_context(sigterm_as_exit())
        if lock:
            stack.enter_context(folder_lock)
        stack.push(get_executor.exit)
        wf_status = WorkflowStatus(sdir / f"{name}.status", {
            "workflow": name, "folder": os.path.abspath(folder),
            "input_folder": os.path.abspath(input_folder), "command": sys.argv,
            "options": {"force_recompute": options.force_recompute,
                        "ignore_invalid_inputs": options.ignore_invalid_inputs,
                        "ignore_failed_outputs": options.ignore_failed_outputs,
                        "executor": getattr(executor, "name", executor),
                        "n_jobs": n_jobs, "rerun_triggers": list(options.rerun_triggers)},
        })
        if write_workflow_status:
            wf_status.start()
        logger.info("workflow %s on %s: %s", name, folder, " -> ".join(names))
        results = _run_jobs(name, jobs, folder, input_folder, get_executor, options,
                            wf_status if write_workflow_status else None, logger)
        bad = [r for r in results if not r.success]
        state = JobState.PROCESSED if not bad else bad[0].state
        if write_workflow_status:
            wf_status.finish(state)
        logger.info("workflow %s finished: %s", name, state)
        return WorkflowResult(name, state, results)


def _check_names(name, jobs, write_workflow_status) -> list:
    """The jobs' names; ``ValueError`` when a name is unsafe or two status files would collide."""
    check_name(name, "workflow name")  # it names the lock, log and status files
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique in a workflow (use identifier=...): {names}")
    if write_workflow_status and name in names:
        # Both would write batchlib/<name>.status, each overwriting the other.
        raise ValueError(f"the workflow name {name!r} is also the name of one of its jobs; their "
                         f"status files would collide: choose another workflow name")
    return names


def _run_jobs(name, jobs, folder, input_folder, get_executor, options, wf_status, logger) -> list:
    """Run the jobs in order (the lock is held); record each in ``wf_status`` unless it is None."""
    results: list[JobResult] = []
    try:
        for job in jobs:
            raise_if_terminated()
            result = JobRunner(job, folder, input_folder, get_executor, options).run()
            results.append(result)
            if wf_status is not None:
                wf_status.job_done(job.name, result.state, result.counts, f"{job.name}.status")
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            logger.warning("workflow %s interrupted: stopped; rerun to go on from here", name)
            setattr(e, "batchlib_reported", True)  # main_exit_code adds no second line
        else:
            logger.error("workflow %s stopped: %s", name, e)
        if wf_status is not None:
            wf_status.finish("errored", error=f"{type(e).__name__}: {e}")
        raise
    return results


def run_job(job, folder, input_folder=None, **options) -> JobResult:
    """Run one job alone on a folder: a workflow of one job named after it.

    Takes the options of :func:`run_workflow`; writes no workflow status
    (the job's status is the whole story). ``job(folder, ...)`` does the same.
    """
    result = run_workflow(job.name, folder, [job], input_folder=input_folder,
                          write_workflow_status=False, **options)
    return result.jobs[0]


def main_exit_code(run) -> int:
    """Call ``run()`` and map its outcome to an exit code for scripts."""
    from .errors import LockError

    log = get_logger()
    try:
        result = run()
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        if not getattr(e, "batchlib_reported", False):
            print("interrupted", file=sys.stderr)
        return 130
    if not result.success:
        log.warning("finished with problems; run `batchlib status <folder>` for details")
    return result.exit_code
