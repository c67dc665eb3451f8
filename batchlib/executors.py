"""Executors: where units of work (one image each) run.

All executors expose :meth:`Executor.map_unordered`, which yields results as
units finish so that the status and the progress bar advance. Only the
coordinating process writes status files; workers write their own containers.
The distributed executors use dask.distributed (and dask-jobqueue for SLURM)
rather than a scheduler of our own.
"""
from __future__ import annotations

import logging
import multiprocessing
from itertools import islice
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

logger = logging.getLogger("Workflow.executor")

EXECUTORS = ("serial", "processes", "dask", "slurm")


class Executor:
    """Run ``fn(item)`` for many items; subclasses decide where."""

    name = "serial"
    n_workers = 1

    def map_unordered(self, fn, items):
        """Yield ``fn(item)`` for every item, in completion order."""
        for item in items:
            yield fn(item)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    """Everything in the calling process: simplest to debug."""


class ProcessExecutor(Executor):
    """Local worker processes (spawned, so safe with threads, h5py and numba).

    At most ``2 * n_jobs`` units are in flight, so 100,000 units do not mean
    100,000 pending futures.
    """

    name = "processes"

    def __init__(self, n_jobs: int):
        if n_jobs < 1:
            raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
        self.n_workers = n_jobs
        self._pool = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"))

    def map_unordered(self, fn, items):
        items = iter(items)
        pending = set()
        window = 2 * self.n_workers
        try:
            while True:
                for item in items:
                    pending.add(self._pool.submit(fn, item))
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """dask.distributed: a running scheduler (``address``) or a LocalCluster.

    Parameters
    ----------
    address : str, optional
        Scheduler address (``tcp://host:8786``); a LocalCluster with
        ``n_workers`` single-threaded worker processes is started when omitted.
    cluster : object, optional
        An existing dask cluster object (e.g. from dask-jobqueue).
    """

    name = "dask"

    def __init__(self, address=None, n_workers: int = 2, cluster=None, window: int | None = None):
        from dask.distributed import Client, LocalCluster

        self._own_cluster = None
        if cluster is None and address is None:
            cluster = self._own_cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                                       processes=True, dashboard_address=None)
        self.client = Client(cluster if cluster is not None else address)
        self.n_workers = max(n_workers, 1)
        self.window = window or 4 * self.n_workers
        logger.info("dask client connected: %s", self.client)

    def map_unordered(self, fn, items):
        from dask.distributed import as_completed

        items = iter(items)
        # islice, not zip(items, range(window)): zip takes one more item from
        # ``items`` before it finds the range exhausted, and that unit was lost.
        futures = [self.client.submit(fn, item, pure=False) for item in islice(items, self.window)]
        if not futures:
            return
        queue = as_completed(futures)
        for fut in queue:
            result = fut.result()
            fut.release()
            for item in items:
                queue.add(self.client.submit(fn, item, pure=False))
                break
            yield result

    def close(self):
        self.client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()


def slurm_cluster(queue=None, cores=1, memory="4GB", walltime="01:00:00", jobs=1,
                  account=None, job_extra_directives=(), log_directory=None):
    """A dask-jobqueue SLURMCluster scaled to ``jobs`` SLURM jobs."""
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(queue=queue, cores=cores, processes=cores, memory=memory,
                           walltime=walltime, account=account,
                           job_extra_directives=list(job_extra_directives),
                           log_directory=log_directory)
    cluster.scale(jobs=jobs)
    return cluster


def make_executor(kind="serial", n_jobs=1, scheduler_address=None, slurm=None) -> Executor:
    """Build an executor from workflow options.

    Parameters
    ----------
    kind : {"serial", "processes", "dask", "slurm"}
        ``processes`` with ``n_jobs == 1`` falls back to serial.
    slurm : dict, optional
        Keyword arguments of :func:`slurm_cluster`.
    """
    if kind == "serial" or (kind == "processes" and n_jobs <= 1):
        return SerialExecutor()
    if kind == "processes":
        return ProcessExecutor(n_jobs)
    if kind == "dask":
        return DaskExecutor(address=scheduler_address, n_workers=n_jobs)
    if kind == "slurm":
        slurm = dict(slurm or {})
        cluster = slurm_cluster(**slurm)
        n = int(slurm.get("jobs", 1)) * int(slurm.get("cores", 1))
        return DaskExecutor(cluster=cluster, n_workers=n)
    raise ValueError(f"unknown executor {kind!r}; choose one of {EXECUTORS}")
