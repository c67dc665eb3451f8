"""The ``batchlib`` console command: ``status``, ``verify``, ``inventory``, ``generate``,
``train-segmenter``, ``export`` and ``report``."""
from __future__ import annotations

import argparse
import importlib
import sys


def _status(args) -> int:
    from .status import summarize

    print(summarize(args.folder, max_listed=args.max_listed))
    return 0


def _configure_verify(p) -> None:
    from .verify import configure_parser, main

    configure_parser(p)
    p.set_defaults(func=main)


def _add_domain_command(sub, name, help_text, module) -> None:
    """Add ``batchlib <name>`` from ``module`` (``configure_parser`` and ``main``).

    A domain module that cannot be imported must not break the other
    commands: the command then explains why it is unavailable.
    """
    p = sub.add_parser(name, help=help_text)
    try:
        mod = importlib.import_module(module, __package__)
        configure, run = mod.configure_parser, mod.main
    except (ImportError, AttributeError) as e:
        def unavailable(args, _error=e):
            print(f"error: `batchlib {name}` is unavailable: {_error}", file=sys.stderr)
            return 1

        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=unavailable)
        return
    configure(p)
    p.set_defaults(func=run)


def build_parser(domain: bool = True) -> argparse.ArgumentParser:
    """The ``batchlib`` command's parser; ``domain=False`` leaves out the trench commands (faster start)."""
    parser = argparse.ArgumentParser(prog="batchlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="summarise what is done, failed and invalid in a folder")
    p.add_argument("folder", help="a workflow's working folder")
    p.add_argument("--max_listed", type=int, default=50, help="problems listed at most")
    p.set_defaults(func=_status)

    p = sub.add_parser("verify", help="read every stored dataset and table, report damaged ones "
                                      "and mark them for recompute (exit code 1 when damage is found)")
    _configure_verify(p)

    # The domain commands import the heavy domain modules: `batchlib status`
    # (domain=False) skips them, so it stays fast and works without them.
    if domain:
        _add_domain_command(sub, "inventory", "list the acquisitions found in an input folder",
                            ".trench.inventory")
        _add_domain_command(sub, "generate",
                            "write a synthetic mother-machine acquisition with ground truth",
                            ".trench.synthetic.cli")
        _add_domain_command(sub, "train-segmenter",
                            "train the U-Net segmenter on generated data, or fine-tune it",
                            ".trench.segmentation.train_cli")
        _add_domain_command(sub, "export",
                            "export a folder's movies, labels, trench crops and tracks for viewers "
                            "(OME-Zarr for napari and Fiji); again after new frames: only those",
                            ".trench.export")
        _add_domain_command(sub, "report", "write <folder>/report.html: one offline page with the "
                            "run, the jobs' problems and figures per position", ".trench.report.build")
    return parser


def main(argv=None) -> int:
    """Run the ``batchlib`` command; returns its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    domain = not (argv and argv[0] in ("status", "verify"))
    args = build_parser(domain).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
