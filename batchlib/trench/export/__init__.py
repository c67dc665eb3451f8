"""``batchlib export``: a workflow folder's results for viewers (napari, Fiji).

    batchlib export <folder> --format ome-zarr [--positions A_pos000 ...] [--out DIR]

writes per position an OME-Zarr image with its labels, the trench crops and
the tracks (see :mod:`.omezarr` and :mod:`.tracks`), into ``<folder>/export``
by default. Run it again after new frames: only those are written.
"""
from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from ...io import CONTAINER_EXTS
from .omezarr import LABEL_STRIDE, ExportError, export_position
from .tracks import load_napari_tracks

__all__ = ["export_folder", "export_position", "load_napari_tracks", "LABEL_STRIDE", "ExportError",
           "FORMATS", "containers"]

FORMATS = ("ome-zarr",)


def containers(folder, positions=None) -> list:
    """The workflow containers of ``folder`` (sorted), those matching ``positions`` if given.

    A position is a container's name (``A_pos000.h5``), its stem (``A_pos000``)
    or a glob pattern of either (``A_pos00*``). One that matches nothing is a
    ``ValueError`` naming the containers there.
    """
    folder = Path(folder)
    found = sorted(p for p in folder.iterdir()
                   if p.suffix in CONTAINER_EXTS and not p.name.startswith("."))
    if not positions:
        return found
    chosen, unmatched = [], []
    for pattern in positions:
        hits = [p for p in found if fnmatch.fnmatchcase(p.name, pattern)
                or fnmatch.fnmatchcase(p.stem, pattern)]
        if not hits:
            unmatched.append(pattern)
        chosen += [p for p in hits if p not in chosen]
    if unmatched:
        names = ", ".join(p.stem for p in found) or "none"
        raise ValueError(f"no container in {folder} matches {', '.join(unmatched)} "
                         f"(containers: {names})")
    return sorted(chosen)


def export_folder(folder, fmt="ome-zarr", positions=None, out=None, segmentation="cells",
                  force=False, progress=False) -> tuple:
    """Export the containers of ``folder``; ``(results, problems)`` (one message per position skipped)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    out = Path(out) if out else Path(folder) / "export"
    todo = containers(folder, positions)
    if progress:
        from tqdm import tqdm

        todo = tqdm(todo, desc="export", unit="position")
    results, problems = [], []
    for path in todo:
        try:
            results.append(export_position(path, out, segmentation=segmentation, force=force,
                                           progress=progress))
        except (ExportError, OSError, KeyError, ValueError) as e:
            problems.append(str(e) if isinstance(e, ExportError) else f"{path}: {e}")
    return results, problems


def configure_parser(parser):
    """Add the ``export`` arguments to an ``argparse`` parser."""
    parser.add_argument("folder", type=Path, help="the workflow's working folder")
    parser.add_argument("--format", dest="fmt", default="ome-zarr", choices=FORMATS,
                        help="what to write (ome-zarr: NGFF 0.4 images, labels and napari tracks)")
    parser.add_argument("--positions", nargs="*", default=None,
                        help="containers to export: names, stems or glob patterns (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <folder>/export)")
    parser.add_argument("--segmentation", default="cells", help="segmentation/<name> to export as labels")
    parser.add_argument("--force", action="store_true", help="rewrite the exports from the first frame")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="progress bars (default: when the terminal is interactive)")
    return parser


def main(args) -> int:
    """0: everything exported; 1: bad arguments or nothing could be exported; 2: some positions skipped."""
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"export: {folder} is not a folder", file=sys.stderr)
        return 1
    if any((folder / "batchlib").glob("*.lock")):
        print("export: a workflow run holds this folder; positions it is rewriting are skipped",
              file=sys.stderr)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        results, problems = export_folder(folder, args.fmt, args.positions, args.out, args.segmentation,
                                          args.force, progress)
    except (ValueError, ImportError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r['stem']}: {r['frames']} frames ({r['written']} written now) -> "
              + ", ".join(Path(p).name for p in r["paths"]))
    for problem in problems:
        print(f"export: skipped {problem}", file=sys.stderr)
    if not results and problems:
        return 1
    return 2 if problems else 0
