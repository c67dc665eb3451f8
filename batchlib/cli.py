"""The ``batchlib`` console command: ``status``, ``verify``, ``watch``, ``inventory``, ``generate``,
``train-segmenter``, ``export`` and ``report``."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

#: The workflow ``batchlib watch`` runs unless ``--workflow`` names another: the
#: script of the source checkout the package is installed from (``pip install -e``),
#: so that jobs added to its JOBS are run too.
DEFAULT_WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "trench_workflow.py"

WATCH_HELP = ("live mode: run a workflow script with --watch (every option of "
              "`python workflows/trench_workflow.py --help` passes through)")


def _status(args) -> int:
    from .status import summarize

    print(summarize(args.folder, max_listed=args.max_listed))
    return 0


def load_workflow(path):
    """The module of a workflow script (a ``main(argv) -> exit code`` function), by path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the workflow script {path} does not exist (`batchlib watch` runs "
            "workflows/trench_workflow.py of the source checkout batchlib is installed from; "
            "pass another with --workflow PATH)")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"the workflow script {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise AttributeError(f"the workflow script {path} has no main(argv) function")
    return module


def watch_command(argv) -> int:
    """``batchlib watch [--workflow PATH] <workflow options>``: the workflow with ``--watch``.

    Everything but ``--workflow`` is passed to the workflow's ``main`` unchanged,
    ``--watch`` last, so ``batchlib watch -c x.conf`` equals
    ``python workflows/trench_workflow.py -c x.conf --watch``.
    """
    p = argparse.ArgumentParser(prog="batchlib watch", add_help=False)
    p.add_argument("--workflow", default=str(DEFAULT_WORKFLOW))
    known, rest = p.parse_known_args(argv)
    try:
        module = load_workflow(known.workflow)
    except (OSError, AttributeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if "-h" in rest or "--help" in rest:
        print(f"batchlib watch [--workflow PATH] OPTIONS: runs {known.workflow} OPTIONS --watch; "
              "its options:\n")
    return int(module.main([*rest, "--watch"]) or 0)


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

    # Parsed by watch_command (the workflow's own options pass through); here for `--help`.
    p = sub.add_parser("watch", help=WATCH_HELP, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

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
    if argv and argv[0] == "watch":
        return watch_command(argv[1:])
    domain = not (argv and argv[0] in ("status", "verify"))
    args = build_parser(domain).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
