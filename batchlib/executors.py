"""Executors: where units of work (one image each) run.

All executors expose :meth:`Executor.map_unordered`, which yields results as
units finish so that the status and the progress bar advance. Only the
coordinating process writes status files; workers write their own containers.
The distributed executors use dask.distributed (and dask-jobqueue for SLURM)
rather than a scheduler of our own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from itertools import islice

logger = logging.getLogger("Workflow.executor")

EXECUTORS = ("serial", "processes", "dask", "slurm")


class Executor:
    """Run ``fn(item)`` for many items; subclasses decide where."""

    name = "serial"
    n_workers = 1

    def map_unordered(self, fn, items, on_crash=None):
        """Yield ``fn(item)`` for every item, in completion order.

        ``fn`` handles its own errors; ``on_crash(item, exc)`` gives the result
        for an item whose worker died under it (killed for memory, a crash in
        compiled code), so that one dead worker does not end the whole run.
        """
        for item in items:
            yield fn(item)

    def close(self, abort=False):
        """Release the workers; ``abort``: at once, without waiting for running units."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    """Everything in the calling process: simplest to debug."""


#: The thread pools of the numeric libraries (BLAS, OpenMP, numba). Each worker
#: process uses one core: threads of their own only fight for the cores (the
#: drift's matrix products took up to 6x longer with two workers on OpenBLAS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def pin_threads(n: int = 1) -> None:
    """Limit the numeric libraries of this process to ``n`` threads.

    Set in the environment before they are imported (what a user set there
    wins), and through threadpoolctl for those already loaded.
    """
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(n))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)


def _ignore_sigint():
    """Worker initializer: Ctrl-C is the coordinator's to handle (no worker tracebacks);
    one thread per numeric library (:func:`pin_threads`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_threads(1)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C while worker processes may be started, then deliver it.

    Ctrl-C in a terminal signals the whole process group, workers included.
    A worker still starting up (importing, or reading its start-up data from
    the coordinator) would die with a traceback before its initializer could
    ignore SIGINT. Here SIGINT is blocked in this thread, so that workers
    started meanwhile inherit the blocked mask and never see it, and Python's
    handler is swapped for one that only takes note (another thread may
    receive the signal, and Python runs handlers in the main thread anyway),
    so that a start is never cut in half. A Ctrl-C that came meanwhile is
    raised as :class:`KeyboardInterrupt` when the block ends.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGINT, previous)
        if received and previous not in (signal.SIG_IGN, None):
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
            else:
                raise KeyboardInterrupt


class ProcessExecutor(Executor):
    """Local worker processes (spawned, so safe with threads, h5py and numba).

    At most ``2 * n_jobs`` units are in flight, so 100,000 units do not mean
    100,000 pending futures. Workers ignore Ctrl-C; the coordinator stops
    them at once (:meth:`abort`) when it is interrupted.
    """

    name = "processes"

    def __init__(self, n_jobs: int):
        if n_jobs < 1:
            raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
        self.n_workers = n_jobs
        self._aborted = False
        self._pool = self._new_pool()

    def _new_pool(self):
        # Imported here: a run with nothing to do, or a serial one, does not need them.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self.n_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_ignore_sigint)

    def _submit(self, fn, item):
        with _sigint_deferred():  # submit may start a worker process
            return self._pool.submit(fn, item)

    def map_unordered(self, fn, items, on_crash=None):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        items = iter(items)
        pending = {}
        window = 2 * self.n_workers
        try:
            while True:
                for item in items:
                    pending[self._submit(fn, item)] = item
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool as e:
                        if on_crash is None:
                            raise
                        # Every unit in flight is lost with the pool; which one
                        # killed it cannot be told, so all are reported failed
                        # (the next run retries them) and a new pool goes on.
                        logger.error("a worker process died: %s", e)
                        lost = [item] + list(pending.values())
                        pending.clear()
                        self._pool.shutdown(wait=False, cancel_futures=True)
                        self._pool = self._new_pool()
                        for it in lost:
                            yield on_crash(it, e)
                        break
                    yield result
        except (KeyboardInterrupt, SystemExit):
            self.abort()
            raise
        finally:
            if not self._aborted:  # an aborted pool fails its futures itself
                for fut in pending:
                    fut.cancel()

    def abort(self):
        """Stop now: terminate the workers (their units are redone by the next run).

        Futures are not cancelled here: the pool marks them broken itself,
        and cancelling them as well makes Python 3.11's pool thread fail.
        """
        if self._aborted:
            return
        self._aborted = True
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=False)
        for p in procs:
            p.terminate()
        for p in procs:  # gone before the caller releases the folder's lock
            p.join(timeout=2)

    def close(self, abort=False):
        if abort or self._aborted:
            self.abort()
            return
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

    def map_unordered(self, fn, items, on_crash=None):
        from dask.distributed import as_completed

        items = iter(items)
        submitted = {}

        def submit(item):
            fut = self.client.submit(fn, item, pure=False)
            submitted[fut.key] = item
            return fut

        # islice, not zip(items, range(window)): zip takes one more item from
        # ``items`` before it finds the range exhausted, and that unit was lost.
        futures = [submit(item) for item in islice(items, self.window)]
        if not futures:
            return
        queue = as_completed(futures)
        for fut in queue:
            item = submitted.pop(fut.key)
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - fn catches its own errors; this is a dead worker
                if on_crash is None:
                    raise
                logger.error("a dask worker died processing a unit: %s", e)
                result = on_crash(item, e)
            fut.release()
            for nxt in items:
                queue.add(submit(nxt))
                break
            yield result

    def close(self, abort=False):
        self.client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()


def slurm_cluster(queue=None, cores=1, memory="4GB", walltime="01:00:00", jobs=1,
                  account=None, job_extra_directives=(), log_directory=None, interface=None,
                  scale=True):
    """A dask-jobqueue SLURMCluster scaled to ``jobs`` SLURM jobs.

    Each SLURM job runs ``cores`` single-threaded worker processes, so one
    image is processed per core. ``scale=False`` only builds the cluster (its
    ``job_script()`` shows what would be submitted). What maps to which
    ``#SBATCH`` line is listed in the README (SLURM section).

    Parameters
    ----------
    job_extra_directives : list of str
        Further ``#SBATCH`` options, e.g. ``["--qos=long"]``.
    log_directory : str, optional
        Where the jobs' ``dask-worker-<jobid>.out/.err`` go (default: the
        submitting directory).
    interface : str, optional
        Network interface the scheduler listens on and the workers use (e.g.
        ``ib0``) when the default one is not reachable from the compute nodes.
    """
    from dask_jobqueue import SLURMCluster

    extra = {}
    if interface:
        extra = {"interface": interface, "scheduler_options": {"interface": interface}}
    if log_directory:
        os.makedirs(log_directory, exist_ok=True)
    cluster = SLURMCluster(queue=queue, cores=cores, processes=cores, memory=memory,
                           walltime=walltime, account=account,
                           job_extra_directives=list(job_extra_directives or ()),
                           log_directory=log_directory, **extra)
    if scale:
        # adapt, not scale: a worker job that ends (walltime, preemption, scancel) is
        # replaced, so the run goes on instead of waiting for workers that never come.
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
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
        executor = DaskExecutor(cluster=cluster, n_workers=n)
        executor._own_cluster = cluster  # the SLURM jobs end with the run
        return executor
    raise ValueError(f"unknown executor {kind!r}; choose one of {EXECUTORS}")
