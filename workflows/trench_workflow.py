#!/usr/bin/env python
"""The trench workflow: Ingest -> TrenchDetection -> Compress -> Segment -> Measure -> Track.

    python workflows/trench_workflow.py -c configs/demo.conf [--option value ...]

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
from batchlib.workflow import EXIT_ERROR, main_exit_code, run_workflow

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
    problems = channel_option_problems(args, jobs[0])
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    code = main_exit_code(lambda: run_workflow(args.workflow_name, args.folder, jobs,
                                               **workflow_options(args)))
    if Path(args.folder).is_dir() and code != 130:  # after Ctrl-C: out at once
        if args.export_csv and code in (0, 2):
            try:
                print(f"cells exported to {export_csv(args.folder)}")
            except (OSError, ValueError) as e:  # e.g. a damaged table no container claims
                print(f"error: the CSV export failed: {e}", file=sys.stderr)
                code = 1
        print(format_summary(folder_summary(args.folder)))
    return code


if __name__ == "__main__":
    sys.exit(main())
