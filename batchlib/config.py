"""Command-line and config-file options for workflows (configargparse).

Every option can be set in the config file given with ``-c`` and overridden
on the command line. Job parameters become ``--<prefix>_<param>`` options,
typed from their defaults: booleans accept ``true/false/yes/no/1/0`` and a bare
``--flag`` means true.
"""
from __future__ import annotations

import argparse
import os
import warnings

import configargparse

from .planning import DEFAULT_TRIGGERS, RERUN_TRIGGERS
from .executors import EXECUTORS


def str2bool(value) -> bool:
    """``True``/``False`` from a bool or a text such as ``yes``, ``off``, ``1``; an argparse error otherwise."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise configargparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def _add_bool(group, name, default, help_text):
    group.add_argument(f"--{name}", type=str2bool, nargs="?", const=True, default=default,
                       help=f"{help_text} (default: {default})")


def add_param_option(group, name, param):
    """Add one option for a declared :class:`batchlib.base.Param`."""
    default = param.default
    text = param.help or name
    if isinstance(default, bool):
        _add_bool(group, name, default, text)
    elif isinstance(default, dict):  # parsed by the job (Param.convert): key=value items or JSON
        group.add_argument(f"--{name}", nargs="*", default=dict(default),
                           help=f"{text} (default: {default or 'none'})")
    elif isinstance(default, (list, tuple)):
        item_type = type(default[0]) if default else str
        group.add_argument(f"--{name}", type=item_type, nargs="*", default=list(default),
                           help=f"{text} (default: {' '.join(map(str, default)) or 'none'})")
    elif default is None:
        group.add_argument(f"--{name}", default=None, help=f"{text} (default: none)")
    else:
        group.add_argument(f"--{name}", type=type(default), default=default,
                           choices=param.choices, help=f"{text} (default: {default})")


def workflow_parser(description, job_classes, default_config_files=()):
    """A parser with the workflow options and one option group per job.

    Parameters
    ----------
    job_classes : list of (prefix, BatchJob subclass)
        Each declared parameter ``p`` of the class becomes ``--<prefix>_<p>``.
    """
    parser = configargparse.ArgParser(description=description,
                                      default_config_files=list(default_config_files),
                                      formatter_class=configargparse.ArgumentDefaultsRawHelpFormatter)
    parser.add_argument("-c", "--config", is_config_file=True, help="config file")
    io = parser.add_argument_group("folders")
    io.add_argument("--input_folder", required=True, help="folder with the acquisitions")
    io.add_argument("--folder", required=True, help="working folder for containers, status and logs")
    run = parser.add_argument_group("running")
    _add_bool(run, "force_recompute", False, "recompute every output")
    _add_bool(run, "ignore_invalid_inputs", False, "skip and record invalid inputs instead of stopping")
    _add_bool(run, "ignore_failed_outputs", False, "record failures and go on instead of stopping")
    run.add_argument("--rerun_triggers", nargs="*", default=list(DEFAULT_TRIGGERS),
                     choices=RERUN_TRIGGERS, help="changes that make an output stale")
    run.add_argument("--executor", default="serial", choices=EXECUTORS, help="where images are processed")
    run.add_argument("--n_jobs", type=int, default=1, help="worker processes (processes, local dask)")
    run.add_argument("--scheduler_address", default=None, help="dask scheduler (executor=dask)")
    _add_bool(run, "gpu", False, "use a GPU where a job supports it (CPU otherwise)")
    run.add_argument("--lock_timeout", type=float, default=0.0, help="seconds to wait for another run's lock")
    _add_bool(run, "lock", True, "lock the folder while running")
    _add_bool(run, "break_lock", False, "break a lock held by another host")
    run.add_argument("--log_level", default=None, help="DEBUG, INFO, WARNING (default: $LOGLEVEL or INFO)")
    run.add_argument("--progress", type=str2bool, nargs="?", const=True, default=None,
                     help="show progress bars (default: when the terminal is interactive)")
    slurm = parser.add_argument_group("slurm (executor=slurm, through dask-jobqueue)")
    slurm.add_argument("--slurm_queue", default=None, help="partition")
    slurm.add_argument("--slurm_account", default=None, help="account")
    slurm.add_argument("--slurm_cores", type=int, default=4, help="cores per SLURM job")
    slurm.add_argument("--slurm_memory", default="16GB", help="memory per SLURM job")
    slurm.add_argument("--slurm_walltime", default="02:00:00", help="walltime per SLURM job")
    slurm.add_argument("--slurm_jobs", type=int, default=1, help="number of SLURM jobs")
    slurm.add_argument("--slurm_job_extra", nargs="*", default=[],
                       help="further #SBATCH options, '--' added in front: qos=long constraint=skylake")
    slurm.add_argument("--slurm_log_directory", default=None,
                       help="where the worker jobs' logs go (default: <folder>/batchlib/slurm)")
    slurm.add_argument("--slurm_interface", default=None,
                       help="network interface reachable from the compute nodes (e.g. ib0)")
    for prefix, cls in job_classes:
        group = parser.add_argument_group(f"{prefix}: {cls.__name__}",
                                          (cls.__doc__ or "").strip().splitlines()[0])
        for name, param in cls.params.items():
            if name in SHARED_PARAMS:
                # Deprecated per-job spelling of a workflow option (e.g. --segment_gpu).
                group.add_argument(f"--{prefix}_{name}", type=str2bool, nargs="?", const=True,
                                   default=None, help=argparse.SUPPRESS)
            else:
                add_param_option(group, f"{prefix}_{name}", param)
    return parser


#: Job parameters set by one workflow option for every job that declares them
#: (``--gpu``); ``--<prefix>_<name>`` still works, with a deprecation warning.
SHARED_PARAMS = ("gpu",)


def job_params(args, prefix, cls) -> dict:
    """The parameters of ``cls`` from parsed ``args``."""
    values = {}
    for name in cls.params:
        value = getattr(args, f"{prefix}_{name}", None)
        if name in SHARED_PARAMS:
            if value is not None:
                warnings.warn(f"--{prefix}_{name} is deprecated and will be removed: use --{name}",
                              FutureWarning, stacklevel=2)
            value = bool(getattr(args, name)) or bool(value)
        values[name] = value
    return values


def workflow_options(args) -> dict:
    """Keyword arguments of :func:`batchlib.workflow.run_workflow` from parsed ``args``."""
    return dict(
        input_folder=args.input_folder, force_recompute=args.force_recompute,
        ignore_invalid_inputs=args.ignore_invalid_inputs,
        ignore_failed_outputs=args.ignore_failed_outputs, rerun_triggers=args.rerun_triggers,
        executor=args.executor, n_jobs=args.n_jobs, scheduler_address=args.scheduler_address,
        slurm={"queue": args.slurm_queue, "account": args.slurm_account, "cores": args.slurm_cores,
               "memory": args.slurm_memory, "walltime": args.slurm_walltime, "jobs": args.slurm_jobs,
               "job_extra_directives": [x if x.startswith("-") else f"--{x}" for x in args.slurm_job_extra or []],
               "log_directory": args.slurm_log_directory or os.path.join(args.folder, "batchlib", "slurm"),
               "interface": args.slurm_interface},
        lock=args.lock, lock_timeout=args.lock_timeout, break_lock=args.break_lock,
        log_level=args.log_level, progress=args.progress,
    )
