"""The ``batchlib`` console command: ``status``, ``inventory`` and ``generate``."""
from __future__ import annotations

import argparse
import sys


def _status(args) -> int:
    from .status import summarize

    print(summarize(args.folder, max_listed=args.max_listed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="summarise what is done, failed and invalid in a folder")
    p.add_argument("folder", help="a workflow's working folder")
    p.add_argument("--max_listed", type=int, default=50, help="problems listed at most")
    p.set_defaults(func=_status)

    # The domain commands are imported lazily so that `batchlib status` stays fast.
    p = sub.add_parser("inventory", help="list the acquisitions found in an input folder")
    from .trench import inventory

    inventory.configure_parser(p)
    p.set_defaults(func=inventory.main)

    p = sub.add_parser("generate", help="write a synthetic mother-machine acquisition with ground truth")
    from .trench.synthetic import cli as synthetic_cli

    synthetic_cli.configure_parser(p)
    p.set_defaults(func=synthetic_cli.main)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
