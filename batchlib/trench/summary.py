"""A short summary of a trench workflow's folder: positions, trenches, cells, problems."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import CONTAINER_EXTS, open_file, read_attrs
from ..io.files import atomic_path
from ..status import JOB_SCHEMA, status_dir
from .layout import CELLS_DATASET, CYCLES_DATASET, QC_DIR, TRENCHES_TABLE, container_stem


#: Facts read from each container and table, kept with the file's identity (name, size,
#: mtime_ns) so that a rerun that changed nothing reads no table (and imports neither pyarrow
#: nor pandas); a file whose identity changed is read again.
SUMMARY_CACHE = "summary.cache.json"


def folder_summary(folder) -> dict:
    """Counts of a workflow's folder: positions, trenches, cell rows, cycles and problems."""
    folder = Path(folder)
    containers = sorted(p for p in folder.iterdir()
                        if p.suffix in CONTAINER_EXTS and not p.name.startswith("."))
    cache_path = status_dir(folder) / SUMMARY_CACHE
    try:
        old = json.loads(cache_path.read_text())
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    new: dict = {}

    def facts(path, read):
        key = str(path.relative_to(folder))
        try:
            st = path.stat()
        except OSError:
            return None
        ident = [st.st_size, st.st_mtime_ns]
        hit = old.get(key)
        if isinstance(hit, dict) and hit.get("id") == ident:
            new[key] = hit
            return hit["facts"]
        new[key] = {"id": ident, "facts": read(path)}
        return new[key]["facts"]

    n_trenches = sum((facts(p, _container_facts) or {}).get("trenches", 0) for p in containers)
    n_rows = n_cells = 0
    problems = []
    stems = {container_stem(p) for p in containers}
    cells_dir = folder / CELLS_DATASET
    for f in sorted(cells_dir.glob("*.parquet")):
        rel = f.relative_to(folder)
        got = facts(f, _cells_facts)
        if got is None:
            continue
        if "error" in got:
            problems.append(f"{rel}: damaged, not counted ({got['error']}); the next run rebuilds it")
            continue
        n_rows += got["rows"]
        n_cells += got["first_frame"]
        if f.stem not in stems:
            problems.append(f"{rel}: no container {f.stem}.* in the folder (left by a deleted "
                            "position or an older version?): its rows are still read")
    cycles = [facts(f, _cycles_facts) for f in sorted((folder / CYCLES_DATASET).glob("*.parquet"))]
    if new != old and status_dir(folder).is_dir():
        try:
            with atomic_path(cache_path) as tmp:
                tmp.write_text(json.dumps(new))
        except OSError:
            pass  # a read-only folder: the summary is read again next time
    for s in sorted(status_dir(folder).glob("*.status")):
        try:
            d = json.loads(s.read_text())
        except (OSError, ValueError):
            continue  # a damaged status is rebuilt by the next run; a summary only reads
        if isinstance(d, dict) and d.get("schema") == JOB_SCHEMA:
            problems += [f"{d['job']}: {e['state']} {k}: {e.get('error')}"
                         for k, e in d.get("files", {}).items() if e.get("state") in ("failed", "invalid")]
    return {"folder": str(folder), "positions": len(containers), "trenches": n_trenches,
            "cell_rows": n_rows, "cells_first_frame": n_cells, "problems": problems,
            "cells_table": str(cells_dir), "cycles": _combine_cycles(c for c in cycles if c)}


def _container_facts(path) -> dict:
    try:
        with open_file(path, "r") as f:
            if TRENCHES_TABLE in f:
                return {"trenches": int(read_attrs(f[TRENCHES_TABLE])["n_rows"])}
    except (OSError, ValueError, KeyError):
        pass
    return {"trenches": 0}


def _cells_facts(path) -> dict:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
        t = meta.read(columns=["t"]).column("t").to_numpy()
    except Exception as e:  # noqa: BLE001 - a summary reports damage, it never fails on it
        return {"error": f"{type(e).__name__}: {e}"}
    return {"rows": int(meta.metadata.num_rows), "first_frame": int((t == 0).sum())}


def _cycles_facts(path) -> dict | None:
    """Cells and complete cycles of one cycles table; sums and counts so files combine."""
    import numpy as np
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["complete", "tau", "elong_rate"])
    except Exception:  # noqa: BLE001 - damaged tables are reported by the status
        return None
    done = table.column("complete").to_numpy(zero_copy_only=False).astype(bool)
    out = {"cells": int(table.num_rows), "complete": int(done.sum())}
    for name in ("tau", "elong_rate"):
        v = table.column(name).to_numpy(zero_copy_only=False).astype(float)[done]
        v = v[np.isfinite(v)]
        out[name] = [float(v.sum()), int(v.size)]
    return out


def _combine_cycles(per_file) -> dict | None:
    """Cells tracked and complete cycles over the files (None without any); NaN means skipped."""
    per_file = list(per_file)
    if not per_file:
        return None

    def mean(name):
        total, count = (sum(c[name][i] for c in per_file) for i in (0, 1))
        return total / count if count else float("nan")

    return {"cells": sum(c["cells"] for c in per_file),
            "complete": sum(c["complete"] for c in per_file),
            "tau_min": mean("tau"), "elong_rate_per_h": mean("elong_rate")}


def format_summary(s: dict) -> str:
    """The text printed at the end of a workflow run, from :func:`folder_summary`."""
    lines = [
        f"results in {s['folder']}",
        f"  positions (containers): {s['positions']}",
        f"  trenches:               {s['trenches']}",
        f"  cells in the first frame: {s['cells_first_frame']}  (cell-frame rows: {s['cell_rows']})",
        f"  per-cell tables:        {s['cells_table']}/*.parquet "
        "(pandas.read_parquet on the folder reads them as one table)",
        f"  QC pictures:            {Path(s['folder']) / QC_DIR}",
        f"  failures / invalid:     {len(s['problems'])}",
    ]
    lines += [f"    {p}" for p in s["problems"][:10]]
    c = s.get("cycles")
    if c:
        lines.append(f"  cell cycles:            {c['complete']} complete of {c['cells']} cells "
                     f"tracked; mean generation time {c['tau_min']:.1f} min, "
                     f"mean elongation rate {c['elong_rate_per_h']:.2f} /h "
                     f"({Path(s['folder']) / CYCLES_DATASET}/*.parquet)")
    return "\n".join(lines)
