"""Build ``<folder>/report.html``: one self-contained, offline page per working folder.

The page is rendered with Jinja2 from ``templates/report.html.j2``; its figures
are images drawn by :mod:`.figures` and embedded as ``data:`` URIs, so the file
can be mailed or moved alone. The images are also kept in ``<folder>/report/``
as a cache: a position's figures are redrawn only when its container's
completion records changed (their run ids, see :func:`position_key`), so the
report of a growing folder costs the changed positions only.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ... import __version__
from ...io import CONTAINER_EXTS, open_file, read_attrs, read_table
from ...status import JOB_SCHEMA, WORKFLOW_SCHEMA, read_json, status_dir
from ..layout import (ACQUISITION_ATTR, CROPS, DRIFT_TABLE, OVERVIEW, RAW, SEGMENTATION,
                      TRENCHES_TABLE, container_stem)
from . import figures

if TYPE_CHECKING:  # pandas is imported where tables are read: a rerun that redraws nothing
    import pandas as pd  # rebuilds the page without it

#: Bump when the figures change: every cached figure is then redrawn.
REPORT_VERSION = "2"
REPORT_NAME = "report.html"
CACHE_DIR = "report"
#: Kymographs per position.
N_KYMOGRAPHS = 3


def containers(folder) -> list:
    """The containers (h5 files, n5 folders) of a working folder, sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.suffix in CONTAINER_EXTS and not p.name.startswith("."))


def position_key(f, name) -> str:
    """What a position's figures depend on: the run ids of the container's completion records."""
    runs = {}
    if "batchlib" in f:
        for job in sorted(f["batchlib"].keys()):
            rec = read_attrs(f[f"batchlib/{job}"]).get("record") or {}
            runs[job] = rec.get("run_id")
    text = json.dumps({"v": REPORT_VERSION, "name": name, "runs": runs}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _times_h(md, n):
    t = np.array([np.nan if v is None else v for v in (md.get("times_s") or [])], float)[:n]
    return t / 3600 if len(t) == n and n and np.isfinite(t).all() else None


def _channel(md, f) -> str | None:
    """The channel shown: the phase-like one, else the first."""
    keys = md.get("channel_keys") or []
    kinds = md.get("channel_kinds") or []
    for k, kind in zip(keys, kinds):
        if kind == "phase":
            return k
    return keys[0] if keys else None


def _first_name(f, group):
    return sorted(f[group].keys())[0] if group in f and len(f[group].keys()) else None


def draw_position(path) -> tuple[dict, dict]:
    """``(figures, facts)`` of one container: PNG bytes by name, and numbers for the page."""
    import pandas as pd

    facts, figs = {"container": path.name}, {}
    with open_file(path, "r") as f:
        md = read_attrs(f).get(ACQUISITION_ATTR) or {}
        ch = _channel(md, f)
        n_t = int(md.get("n_timepoints_ingested", 0))
        facts.update(acquisition=md.get("name"), position=md.get("position_label", md.get("position")),
                     frames=n_t, channels=md.get("channels"))
        trenches = read_table(f, TRENCHES_TABLE) if TRENCHES_TABLE in f else pd.DataFrame()
        facts["trenches"] = len(trenches)
        if TRENCHES_TABLE in f:
            facts["confidence"] = (read_attrs(f[TRENCHES_TABLE]).get("quality") or {}).get("confidence")
        frame, scale = None, 1.0
        if ch and f"{RAW}/{ch}" in f:
            frame = f[f"{RAW}/{ch}"][0]
        elif ch and f"{OVERVIEW}/{ch}" in f:
            frame = f[f"{OVERVIEW}/{ch}"][0]
            scale = frame.shape[1] / max(1, (md.get("shape_yx") or frame.shape)[1])
        if frame is not None:
            figs["overlay"] = figures.trench_overlay(frame, trenches, scale,
                                                     f"{path.stem}: {len(trenches)} trenches (blue: empty)")
        drift = read_table(f, DRIFT_TABLE) if DRIFT_TABLE in f else None
        figs["drift"] = figures.drift_plot(drift, _times_h(md, len(drift)) if drift is not None else None)
        seg = _first_name(f, "tables/cells")
        cells = read_table(f, f"tables/cells/{seg}", columns=["n", "t", "label"]) if seg else None
        facts["cell_rows"] = 0 if cells is None else len(cells)
        figs["cells"] = figures.cells_per_frame(cells, n_t)
        panels = []
        if ch and f"{CROPS}/{ch}" in f and len(trenches):
            crops = f[f"{CROPS}/{ch}"]
            labels = f[f"{SEGMENTATION}/{seg}"] if seg and f"{SEGMENTATION}/{seg}" in f else None
            for n in _busy_trenches(cells, trenches, crops.shape[0]):
                lab = labels[n] if labels is not None else None
                panels.append((f"trench {n}", figures.kymograph_image(crops[n], lab)))
        figs["kymographs"] = figures.kymographs(panels)
    return figs, facts


def _busy_trenches(cells, trenches, n_crops) -> list:
    """A few trenches to show: those with the most cells, spread over the position."""
    if cells is not None and len(cells):
        counts = cells.groupby("n").size().sort_values(ascending=False, kind="stable")
        order = [int(n) for n in counts.index if n < n_crops]
    else:
        order = list(range(n_crops))
    best = sorted(order[:max(N_KYMOGRAPHS * 3, 1)])
    if len(best) <= N_KYMOGRAPHS:
        return best
    pick = np.linspace(0, len(best) - 1, N_KYMOGRAPHS).round().astype(int)
    return [best[i] for i in pick]


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cached_position(path: Path, cache: Path) -> tuple[dict, dict, bool]:
    """``(figure files, facts, redrawn)`` of a position, redrawn only when its key changed."""
    stem = container_stem(path)
    index_file = cache / f"{stem}.json"
    with open_file(path, "r") as f:
        key = position_key(f, path.name)
    old = {}
    try:
        index = json.loads(index_file.read_text())
        old = dict(index["figures"])
        if index.get("key") == key and all((cache / n).is_file() for n in old.values()):
            return index["figures"], index["facts"], False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    figs, facts = draw_position(path)
    files = {}
    for name, data in figs.items():
        files[name] = f"{stem}_{name}.{figures.image_type(data)}"
        _write(cache / files[name], data)
    for stale in set(old.values()) - set(files.values()):
        (cache / os.path.basename(str(stale))).unlink(missing_ok=True)
    _write(index_file, json.dumps({"key": key, "figures": files, "facts": facts}).encode())
    return files, facts, True


def _read_parquets(folder: Path, sub: str, columns=None) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for p in sorted((folder / "tables" / sub).glob("*.parquet")):
        try:
            frames.append(pd.read_parquet(p, columns=columns))
        except Exception:  # noqa: BLE001 - damaged tables are reported by status/summary
            continue
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _folder_figures(folder: Path, cache: Path, keys: list) -> tuple[dict, dict]:
    """Distributions across positions: redrawn when any position changed."""
    key = hashlib.sha1(json.dumps([REPORT_VERSION, keys]).encode()).hexdigest()[:16]
    index_file = cache / "_folder.json"
    try:
        index = json.loads(index_file.read_text())
        if index.get("key") == key and all((cache / n).is_file() for n in index["figures"].values()):
            return index["figures"], index["facts"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import pyarrow.parquet as pq

    first = next(iter(sorted((folder / "tables" / "cells").glob("*.parquet"))), None)
    names = pq.read_schema(first).names if first else []
    fluo = [c for c in names if c.endswith("_mean_bgsub")]
    wanted = [c for c in ("t", "time_s", "length_um", "width_um", *fluo) if c in names]
    cells = _read_parquets(folder, "cells", wanted or None)
    cols = [("length_um", "cell length (µm)"), ("width_um", "cell width (µm)")] + \
        [(c, f"{c[:-len('_mean_bgsub')]} mean, background-subtracted") for c in fluo]
    figs = {"distributions": figures.distributions_over_time(cells, cols)}
    cycles = _read_parquets(folder, "cycles")
    facts = {"cells_rows": len(cells), "cycles": len(cycles),
             "complete_cycles": int(cycles["complete"].astype(bool).sum()) if len(cycles) else 0}
    if len(cycles):
        figs["cycles"] = figures.cycle_figures(cycles)
        done = cycles[cycles["complete"].astype(bool)]
        for col, name in (("tau", "tau_min"), ("elong_rate", "elong_rate_per_h"), ("sb", "sb_um"),
                          ("delta", "delta_um")):
            facts[name] = float(np.nanmedian(done[col])) if len(done) else None
    files = {}
    for name, png in figs.items():
        files[name] = f"_folder_{name}.png"
        _write(cache / files[name], png)
    _write(index_file, json.dumps({"key": key, "figures": files, "facts": facts}).encode())
    return files, facts


def _jobs(folder: Path) -> tuple[dict | None, list]:
    """The workflow status and, per job in workflow order, its counts, parameters and problems."""
    sdir = status_dir(folder)
    workflow = None
    for p in sorted(sdir.glob("*.status")):
        d = read_json(p)
        if isinstance(d, dict) and d.get("schema") == WORKFLOW_SCHEMA:
            if workflow is None or str(d.get("started")) > str(workflow.get("started")):
                workflow = d
    order = [j["name"] for j in (workflow or {}).get("jobs", [])]
    jobs = []
    for p in sorted(sdir.glob("*.status")):
        d = read_json(p)
        if not (isinstance(d, dict) and d.get("schema") == JOB_SCHEMA):
            continue
        problems = [{"input": k, "state": e.get("state"), "reason": e.get("error") or e.get("reason")}
                    for k, e in sorted(d.get("files", {}).items())
                    if e.get("state") in ("failed", "invalid")]
        # results that were produced but should be looked at (e.g. an unverified
        # detection, cells barely above the noise)
        warnings = [{"input": k, "reason": w} for k, e in sorted(d.get("files", {}).items())
                    if e.get("state") == "done" for w in e.get("warnings") or []]
        jobs.append({"name": d.get("job"), "state": d.get("state"), "counts": d.get("counts") or {},
                     "params": d.get("params") or {}, "version": d.get("version"),
                     "finished": d.get("finished"), "problems": problems, "warnings": warnings})
    jobs.sort(key=lambda j: (order.index(j["name"]) if j["name"] in order else len(order), j["name"]))
    return workflow, jobs


def _acquisitions(facts_by_pos: list, mds: dict) -> list:
    """One row per acquisition: format, files, positions, channels, pixel size, interval."""
    rows = {}
    for md in mds.values():
        name = md.get("name")
        row = rows.setdefault(name, {"name": name, "format": md.get("format"),
                                     "reader": md.get("reader"), "positions": 0,
                                     "channels": ", ".join(f"{c} ({k})" for c, k in zip(
                                         md.get("channels") or [], md.get("channel_kinds") or [])),
                                     "shape": "×".join(map(str, md.get("shape_yx") or [])),
                                     "dtype": md.get("dtype"), "pixel_size_um": md.get("pixel_size_um"),
                                     "frames": 0, "interval_s": None,
                                     "source": ", ".join((md.get("source_files") or [])[:3])})
        row["positions"] += 1
        row["frames"] = max(row["frames"], int(md.get("n_timepoints_ingested", 0)))
        t = np.array([np.nan if v is None else v for v in md.get("times_s") or []], float)
        if np.isfinite(t).sum() >= 2:
            row["interval_s"] = float(np.nanmedian(np.diff(t)))
    return list(rows.values())


def _data_uri(path: Path) -> str:
    mime = "image/jpeg" if path.suffix == ".jpeg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_report(folder, out=None, progress=False) -> dict:
    """Write ``<folder>/report.html`` (or ``out``); redraw the changed positions only.

    Parameters
    ----------
    folder : path-like
        A trench workflow's working folder.
    out : path-like, optional
        Where to write the page (default ``<folder>/report.html``).
    progress : bool
        A tqdm bar over the positions.

    Returns
    -------
    dict
        ``path``, ``positions``, ``redrawn`` (positions whose figures were
        drawn now), ``seconds`` and ``bytes``.
    """
    from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, select_autoescape

    start = time.perf_counter()
    folder = Path(folder)
    out = Path(out) if out is not None else folder / REPORT_NAME
    cache = folder / CACHE_DIR
    cache.mkdir(exist_ok=True)
    paths = containers(folder)
    positions, keys, redrawn, mds = [], [], 0, {}
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc="report", unit="position")
    for path in iterator:
        try:
            files, facts, new = _cached_position(path, cache)
            with open_file(path, "r") as f:
                mds[path.name] = read_attrs(f).get(ACQUISITION_ATTR) or {}
                keys.append(position_key(f, path.name))
        except Exception as e:  # noqa: BLE001 - one unreadable container must not hide the others
            positions.append({"facts": {"container": path.name}, "figures": {},
                              "error": f"{type(e).__name__}: {e}"})
            continue
        redrawn += new
        positions.append({"facts": facts, "error": None,
                          "figures": {n: _data_uri(cache / fn) for n, fn in files.items()}})
    folder_files, folder_facts = _folder_figures(folder, cache, keys)
    workflow, jobs = _jobs(folder)
    # the compiled template is kept beside the figures: a rerun renders without compiling it
    env = Environment(loader=PackageLoader("batchlib.trench.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]),
                      bytecode_cache=FileSystemBytecodeCache(str(cache)))
    html = env.get_template("report.html.j2").render(
        folder=str(folder.resolve()), version=__version__, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        workflow=workflow, jobs=jobs, acquisitions=_acquisitions(positions, mds),
        positions=positions, folder_facts=folder_facts,
        folder_figures={n: _data_uri(cache / fn) for n, fn in folder_files.items()})
    _write(out, html.encode("utf-8"))
    return {"path": str(out), "positions": len(paths), "redrawn": redrawn,
            "seconds": time.perf_counter() - start, "bytes": out.stat().st_size}


def configure_parser(p) -> None:
    """Options of ``batchlib report``."""
    p.add_argument("folder", help="a trench workflow's working folder")
    p.add_argument("--out", default=None, help="where to write the page (default <folder>/report.html)")


def main(args) -> int:
    """``batchlib report FOLDER``: write the page; 1 when the folder is not there."""
    if not Path(args.folder).is_dir():
        print(f"error: {args.folder}: not a folder", file=sys.stderr)
        return 1
    r = build_report(args.folder, args.out, progress=True)
    print(f"report written to {r['path']} ({r['bytes'] / 1e6:.1f} MB, {r['positions']} positions, "
          f"{r['redrawn']} redrawn, {r['seconds']:.1f} s)")
    return 0
