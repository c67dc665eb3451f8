"""``batchlib inventory <folder>``: one table row per acquisition found.

Reads headers and metadata only (no pixel data), so it is quick on large
folders; content hashes, which do read every byte, are only computed for
acquisitions that share their total size with another one, since only those
can be duplicates.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.checksum import content_hash
from .readers import (DEFAULT_SEQUENCE_PATTERN, InvalidAcquisitionError, find_acquisitions,
                      open_acquisition)

__all__ = ["COLUMNS", "inventory", "content_hash", "configure_parser", "main"]

COLUMNS = ["name", "format", "positions", "timepoints", "channels", "channel_names", "size_y",
           "size_x", "dtype", "pixel_size_um", "time_span_s", "size_bytes", "files",
           "duplicate_of", "error", "key"]
_PROGRESS_MIN_FILES = 50


def _describe(src) -> dict:
    row = {"name": src.name, "format": src.format, "files": len(src.files), "key": src.key,
           "size_bytes": src.signature()["size_bytes"], "duplicate_of": "", "error": "",
           "channel_names": "", "dtype": ""}
    try:
        with open_acquisition(src) as acq:
            times = np.concatenate([acq.times_s(p) for p in range(acq.n_positions)])
            finite = times[np.isfinite(times)]
            row.update({
                "format": acq.format, "positions": acq.n_positions, "timepoints": acq.n_timepoints,
                "channels": acq.n_channels, "channel_names": "; ".join(acq.channels),
                "size_y": acq.shape_yx[0], "size_x": acq.shape_yx[1], "dtype": str(acq.dtype),
                "pixel_size_um": acq.pixel_size_um,
                "time_span_s": float(finite.max() - finite.min()) if finite.size else np.nan,
            })
    except (InvalidAcquisitionError, OSError) as exc:
        row["error"] = str(exc)
    return row


def inventory(folder, sequence_pattern=DEFAULT_SEQUENCE_PATTERN, hash_files=True, progress=None):
    """Describe every acquisition under ``folder``.

    Parameters
    ----------
    folder : path-like
    sequence_pattern : str
        See :data:`batchlib.trench.readers.DEFAULT_SEQUENCE_PATTERN`.
    hash_files : bool
        Fill ``duplicate_of`` from content hashes (only acquisitions of equal
        total size are hashed).
    progress : bool, optional
        Show a tqdm bar; default: when there are many files and stderr is a terminal.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per acquisition, sorted by key;
        unreadable acquisitions keep their row, with ``error`` set.
    """
    from tqdm import tqdm

    sources = find_acquisitions(folder, sequence_pattern=sequence_pattern)
    if progress is None:  # tqdm's None: on only when stderr is a terminal
        disable = None if sum(len(s.files) for s in sources) >= _PROGRESS_MIN_FILES else True
    else:
        disable = not progress
    rows = [_describe(s) for s in tqdm(sources, desc="inventory", unit="acq", disable=disable,
                                       file=sys.stderr)]
    if hash_files:
        _mark_duplicates(sources, rows)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("positions", "timepoints", "channels", "size_y", "size_x"):
        df[col] = df[col].astype("Int64")
    return df


def _mark_duplicates(sources, rows):
    by_size = {}
    for i, row in enumerate(rows):
        by_size.setdefault((row["size_bytes"], row["files"]), []).append(i)
    first_with = {}
    for idx in by_size.values():
        if len(idx) < 2 or rows[idx[0]]["size_bytes"] == 0:
            continue
        for i in idx:
            try:
                digest = content_hash(sources[i].files)
            except OSError:
                continue
            if digest in first_with:
                rows[i]["duplicate_of"] = rows[first_with[digest]]["name"]
            else:
                first_with[digest] = i


def configure_parser(parser):
    """Add the ``inventory`` arguments to an ``argparse`` parser."""
    parser.add_argument("folder", type=Path, help="folder to scan (recursively)")
    parser.add_argument("--out", "--csv", dest="csv", type=Path, default=None,
                        help="where to write the table (default: inventory.csv in the current "
                             "directory; never into the scanned folder unless given here)")
    parser.add_argument("--no-hash", dest="hash_files", action="store_false",
                        help="skip content hashes (no duplicate detection)")
    parser.add_argument("--sequence-pattern", default=DEFAULT_SEQUENCE_PATTERN,
                        help="filename regex grouping single-plane TIFFs into sequences")
    return parser


def _inside(path, folder) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def main(args) -> int:
    """Print the inventory of ``args.folder`` and write it as CSV (``--out``, default
    ``./inventory.csv``); 0 on success, 2 on a bad folder or a default target inside it."""
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"inventory: {folder} is not a folder", file=sys.stderr)
        return 2
    csv = Path(args.csv) if getattr(args, "csv", None) else Path.cwd() / "inventory.csv"
    if not getattr(args, "csv", None) and _inside(csv, folder):
        # Raw folders are often read-only or shared: writing there is only done when asked.
        print(f"inventory: the current directory is inside the scanned folder {folder}; "
              "pass --out PATH to say where inventory.csv goes", file=sys.stderr)
        return 2
    pattern = getattr(args, "sequence_pattern", DEFAULT_SEQUENCE_PATTERN)
    df = inventory(folder, sequence_pattern=pattern, hash_files=getattr(args, "hash_files", True))
    try:
        df.to_csv(csv, index=False)
    except OSError as e:
        print(f"inventory: cannot write {csv} ({e}); pass --out PATH", file=sys.stderr)
        return 1
    if df.empty:
        print(f"no acquisitions found in {folder}")
    else:
        shown = df.drop(columns=["key"])
        # errors start with the full path; the folder part is noise in a table
        shown["error"] = shown["error"].str.replace(f"{folder}{os.sep}", "", regex=False)
        print(shown.to_string(index=False))
    n_bad = int((df["error"] != "").sum()) if not df.empty else 0
    print(f"\n{len(df)} acquisition(s), {n_bad} unreadable; table written to {csv}")
    return 0


if __name__ == "__main__":
    import argparse

    parser = configure_parser(argparse.ArgumentParser(prog="batchlib inventory"))
    sys.exit(main(parser.parse_args()))
