"""Live mode of the trench workflow: what makes an input ready, and one workflow cycle.

Readiness, on top of the framework's "size and mtime stable" (:mod:`batchlib.watch`):

* **TIFF sequences and per-timepoint files**: a stable, non-empty file is
  ready; a timepoint counts once every position/channel file of it is ready
  (Ingest counts complete timepoints only, and the files still being written
  are hidden from it).
* **ND2 files still being written** wait until the file is closed: ready when
  it is stable *and* ``nd2`` opens it. While NIS-Elements writes, the file
  has no chunk map (the index at its end) and no experiment metadata, and
  ``nd2.ND2File`` refuses it ("Invalid ChunkMap signature"). ``nd2`` offers
  ``nd2.rescue_nd2``, which scans a file for image chunks without the index,
  but it yields flat pixel vectors with neither the frame shape nor which
  position, channel, z-plane and time each belongs to (that metadata is
  written at the end too), and the last frame may be half written: not a
  reliable source for the per-position movies, so it is not used.
"""
from __future__ import annotations

import os
import time

from ..io import open_file, read_attrs
from ..watch import CycleReport
from .layout import ACQUISITION_ATTR
from .readers.sequence import DEFAULT_SEQUENCE_PATTERN, compile_pattern, parse_filename
from .report.build import containers


def input_ready(path) -> bool:
    """Whether a stable input file can be read now (ND2: its index is written)."""
    if not str(path).lower().endswith(".nd2"):
        return True
    try:
        import nd2

        with nd2.ND2File(path) as f:
            f.sizes  # noqa: B018 - reads the metadata the index points to
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def complete_timepoints(ready: set, present: set, pattern=DEFAULT_SEQUENCE_PATTERN) -> set:
    """The ready files, less the TIFF-sequence members of timepoints not wholly ready.

    Per sequence (files grouped by folder and name prefix): the last
    timepoint waits until the files of every position, channel and plane seen
    so far are ready for it; a timepoint with a file still being written
    (present, not ready) holds back the later ones too, so that hiding it never
    opens a gap. A file simply missing from an earlier timepoint holds nothing
    back: the gap is real, and Ingest reports it. Files that are not sequence
    members pass through.
    """
    regex = compile_pattern(pattern)
    groups, members = {}, {}
    for p in present:
        labels = parse_filename(regex, os.path.basename(p)) if p.lower().endswith((".tif", ".tiff")) else None
        if labels is None:
            continue
        g = groups.setdefault((os.path.dirname(p), labels["name"]), {"combos": set(), "t": {}})
        combo = (labels["position"], labels["channel"], labels["z"])
        g["combos"].add(combo)
        g.setdefault("present_t", set()).add(labels["t"])
        if p in ready:
            g["t"].setdefault(labels["t"], set()).add(combo)
        else:
            g.setdefault("writing", []).append(_t_key(labels["t"]))
        members[p] = (os.path.dirname(p), labels["name"], labels["t"])
    out = set()
    for p in ready:
        if p not in members:
            out.add(p)
            continue
        d, name, t = members[p]
        g = groups[(d, name)]
        last = max(_t_key(x) for x in g["present_t"])
        complete = g["t"].get(t, set()) >= g["combos"]
        if (complete or _t_key(t) < last) and _t_key(t) < min(g.get("writing", [_LAST])):
            out.add(p)
    return out


_LAST = (2, 0, "")


def _t_key(label: str):
    """Sort key of a time label: numeric when it is digits."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def frames_ingested(folder) -> dict:
    """``{container name: frames ingested}`` of a working folder."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for p in containers(folder):
        try:
            with open_file(p, "r") as f:
                out[p.name] = int((read_attrs(f).get(ACQUISITION_ATTR) or {}).get("n_timepoints_ingested", 0))
        except Exception:  # noqa: BLE001 - a damaged container is the workflow's to rebuild
            continue
    return out


def make_cycle(run_once, folder):
    """A :func:`batchlib.watch.watch` cycle from ``run_once(hidden) -> state``.

    ``run_once`` runs the workflow (and its CSV export and report) leaving out
    the hidden files; the cycle counts the frames it added.
    """
    def cycle(hidden):
        before = frames_ingested(folder)
        state = run_once(hidden)
        after = frames_ingested(folder)
        new = sum(n - before.get(k, 0) for k, n in after.items())
        return CycleReport(new_frames=max(new, 0), state=state,
                           extra={"positions": len(after), "time": time.time()})
    return cycle
