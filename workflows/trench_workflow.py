#!/usr/bin/env python
"""The trench workflow: Ingest -> TrenchDetection -> Compress -> Segment -> Measure -> Track.

    python workflows/trench_workflow.py -c configs/demo.conf [--option value ...]
    python workflows/trench_workflow.py -c configs/demo.conf --watch   # live, while acquiring

Every option can be set in the config file and overridden on the command line
(`--help` lists them). Exit code: 0 everything processed, 1 stopped on an error,
2 finished with ignored invalid inputs or failed outputs, 3 the folder is locked.
"""
from __future__ import annotations

import sys
from pathlib import Path

from batchlib.names import check_name
from batchlib.config import job_params, str2bool, workflow_options, workflow_parser
from batchlib.trench.channels import ChannelChoiceError, choose_channel
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, Track, TrenchDetection, export_csv
from batchlib.trench.summary import folder_summary, format_summary
from batchlib.watch import BACKENDS
from batchlib.workflow import EXIT_ERROR, EXIT_LOCKED, main_exit_code, run_workflow

JOBS = [("ingest", Ingest), ("detect", TrenchDetection), ("compress", Compress),
        ("segment", Segment), ("measure", Measure), ("track", Track)]


def build_parser():
    """The workflow's options: every job's parameters plus the trench workflow's own."""
    parser = workflow_parser(__doc__, JOBS)
    group = parser.add_argument_group("trench workflow")
    group.add_argument("--workflow_name", default="TrenchWorkflow", help="names the lock, log and status")
    group.add_argument("--container_ext", default=".h5", choices=(".h5", ".n5", ".zarr"),
                       help="container format of the outputs")
    group.add_argument("--export_csv", type=str2bool, nargs="?", const=True, default=False,
                       help="also write <folder>/tables/cells.csv")
    group.add_argument("--demo", type=str2bool, nargs="?", const=True, default=False,
                       help="generate a synthetic acquisition into input_folder when it is empty")
    group.add_argument("--demo_positions", type=int, default=2)
    group.add_argument("--demo_timepoints", type=int, default=12)
    group.add_argument("--demo_size", type=int, default=512, help="frame height and width")
    group.add_argument("--demo_seed", type=int, default=0)
    group.add_argument("--report", type=str2bool, nargs="?", const=True, default=True,
                       help="write <folder>/report.html after every run (changed positions redrawn)")
    live = parser.add_argument_group("live mode (--watch)")
    live.add_argument("--watch", type=str2bool, nargs="?", const=True, default=False,
                      help="keep running: poll input_folder and process new data as it completes")
    live.add_argument("--watch_poll_s", type=float, default=2.0, help="seconds between polls")
    live.add_argument("--watch_stable_s", type=float, default=3.0,
                      help="a file is complete when its size and mtime have not changed for this long")
    live.add_argument("--watch_idle_timeout", type=float, default=0.0,
                      help="end the session after this many seconds without new data (0: never)")
    live.add_argument("--watch_backend", default="poll", choices=BACKENDS,
                      help="poll: scan every watch_poll_s (works on network shares); watchdog: also "
                           "wake on file events (the optional watchdog package, pip install "
                           "'batchlib[live]'); the same stability rule either way")
    return parser


def ensure_demo(args) -> None:
    """Write the embedded demo acquisition when the input folder is empty."""
    folder = Path(args.input_folder)
    if folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
        return
    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    print(f"generating a synthetic demo acquisition in {folder} ...", file=sys.stderr)
    cfg = SyntheticConfig(height=args.demo_size, width=args.demo_size,
                          n_positions=args.demo_positions, n_timepoints=args.demo_timepoints,
                          channels=("phase", "gfp"), seed=args.demo_seed)
    write_acquisition(folder, cfg, layout="ome-tiff", name="demo")


def build_jobs(args) -> list:
    """The jobs of ``JOBS``, in order, built from the parsed options."""
    extra = {"ingest": {"output_ext": args.container_ext}}
    return [cls(**job_params(args, prefix, cls), **extra.get(prefix, {})) for prefix, cls in JOBS]


def channel_option_problems(args, ingest) -> list:
    """What is wrong with the channel options for the acquisitions in input_folder.

    Checked before anything runs, so that a config naming a channel the data do
    not have stops at once (listing the channels found) rather than fails in
    every container. Nothing is opened when no channel option is set.
    """
    wanted = {opt: value for opt, value in (("--detect_channel", args.detect_channel),
                                            ("--segment_channel", args.segment_channel))
              if value not in ("", None, "auto")}
    if not (wanted or args.ingest_channel_names or args.ingest_channel_kinds) \
            or not Path(args.input_folder).is_dir():
        return []
    problems = []
    for acq in ingest.planned_channels(args.input_folder):
        if acq["problem"]:
            problems.append(acq["problem"])
            continue
        for option, channel in wanted.items():
            try:
                choose_channel(channel, acq["names"], acq["keys"], [""] * len(acq["names"]),
                               option=option, where=acq["path"])
            except ChannelChoiceError as e:
                problems.append(str(e))
    return problems


def main(argv=None) -> int:
    """Run the trench workflow; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        check_name(args.workflow_name, "--workflow_name")
        jobs = build_jobs(args)
    except ValueError as e:  # a bad option value (e.g. an unsafe name): say so, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.demo:
        ensure_demo(args)
    if args.watch:
        return watch_main(args)
    problems = channel_option_problems(args, jobs[0])
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    code = main_exit_code(lambda: run_workflow(args.workflow_name, args.folder, jobs,
                                               **workflow_options(args)))
    if Path(args.folder).is_dir() and code != 130:  # after Ctrl-C: out at once
        code = after_run(args, code)
        print(format_summary(folder_summary(args.folder)))
    return code


def after_run(args, code, quiet=False) -> int:
    """The CSV export and the report after a run; returns the exit code."""
    if args.export_csv and code in (0, 2):
        try:
            path = export_csv(args.folder)
            if not quiet:
                print(f"cells exported to {path}")
        except (OSError, ValueError) as e:  # e.g. a damaged table no container claims
            print(f"error: the CSV export failed: {e}", file=sys.stderr)
            code = 1
    if args.report:
        from batchlib.trench.report import build_report

        try:
            r = build_report(args.folder)
            if not quiet:
                print(f"report: {r['path']} ({r['bytes'] / 1e6:.1f} MB, {r['redrawn']} of "
                      f"{r['positions']} positions redrawn, {r['seconds']:.1f} s)")
        except Exception as e:  # noqa: BLE001 - the results are written; only the page is missing
            print(f"warning: the report could not be written: {type(e).__name__}: {e}",
                  file=sys.stderr)
    return code


def watch_main(args) -> int:
    """``--watch``: one locked session of workflow cycles, each on the data complete so far."""
    from batchlib.errors import JobError, LockError
    from batchlib.executors import make_executor
    from batchlib.lock import FolderLock
    from batchlib.log import get_logger, workflow_logging
    from batchlib.status import status_dir
    from batchlib.trench.live import complete_timepoints, input_ready, make_cycle
    from batchlib.watch import check_backend, watch
    from batchlib.workflow import sigterm_as_exit

    try:
        check_backend(args.watch_backend, args.input_folder)
    except ValueError as e:  # e.g. watchdog chosen and not installed: before the lock is taken
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    sdir = status_dir(args.folder)
    sdir.mkdir(parents=True, exist_ok=True)
    log = get_logger("watch")

    options = workflow_options(args)
    executor = []  # made at the first cycle, kept for the session: its workers stay warm

    def run_once(hidden):
        jobs = build_jobs(args)
        jobs[0].hidden_files = set(hidden)
        if not executor:
            executor.append(make_executor(options["executor"], options["n_jobs"],
                                          options["scheduler_address"], options["slurm"]))
        try:
            result = run_workflow(args.workflow_name, args.folder, jobs,
                                  **{**options, "lock": False, "executor": executor[0]})
            state, code = result.state, result.exit_code
        except JobError as e:  # e.g. an invalid input without --ignore_invalid_inputs
            log.error("%s", e)
            state, code = "errored", EXIT_ERROR
        after_run(args, code, quiet=True)
        return state

    lock = FolderLock(sdir / f"{args.workflow_name}.lock", timeout_s=args.lock_timeout,
                      break_foreign=args.break_lock)
    try:
        with workflow_logging(sdir / f"{args.workflow_name}.log", args.log_level, session=True), \
                sigterm_as_exit():
            if args.lock:
                lock.acquire()  # held for the whole session, not per cycle
            try:
                pattern = args.ingest_sequence_pattern
                watch(args.input_folder, make_cycle(run_once, args.folder), ready=input_ready,
                      select=lambda ok, present: complete_timepoints(ok, present, pattern),
                      poll_s=args.watch_poll_s, stable_s=args.watch_stable_s,
                      idle_timeout_s=args.watch_idle_timeout or None, log=log,
                      backend=args.watch_backend)
            finally:
                if executor:
                    executor[0].close()
                lock.release()
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        print("interrupted: watching stopped; rerun to go on from here", file=sys.stderr)
        return 130
    except SystemExit as e:  # SIGTERM
        print("terminated: watching stopped; rerun to go on from here", file=sys.stderr)
        return e.code if isinstance(e.code, int) else 1
    if Path(args.folder).is_dir():
        print(format_summary(folder_summary(args.folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
