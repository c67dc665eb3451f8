"""A short summary of a trench workflow's folder: positions, trenches, cells, problems."""
from __future__ import annotations

import json

from pathlib import Path

from ..io import CONTAINER_EXTS, open_file, read_attrs
from ..status import JOB_SCHEMA, status_dir
from .layout import CELLS_DATASET, CYCLES_DATASET, QC_DIR, TRENCHES_TABLE, container_stem


def folder_summary(folder) -> dict:
    """Counts of a workflow's folder: positions, trenches, cell rows, cycles and problems."""
    folder = Path(folder)
    containers = sorted(p for p in folder.iterdir()
                        if p.suffix in CONTAINER_EXTS and not p.name.startswith("."))
    n_trenches = 0
    for p in containers:
        try:
            with open_file(p, "r") as f:
                if TRENCHES_TABLE in f:
                    n_trenches += int(read_attrs(f[TRENCHES_TABLE])["n_rows"])
        except (OSError, ValueError, KeyError):
            continue
    cells_dir = folder / CELLS_DATASET
    n_rows = n_cells = 0
    problems = []
    if cells_dir.is_dir():
        import pyarrow.parquet as pq

        stems = {container_stem(p) for p in containers}
        for f in sorted(cells_dir.glob("*.parquet")):
            rel = f.relative_to(folder)
            try:
                meta = pq.ParquetFile(f)
                table = meta.read(columns=["t"]).column("t").to_numpy()
            except Exception as e:  # noqa: BLE001 - a summary reports damage, it never fails on it
                problems.append(f"{rel}: damaged, not counted ({type(e).__name__}: {e}); "
                                "the next run rebuilds it")
                continue
            n_rows += meta.metadata.num_rows
            n_cells += int((table == 0).sum())
            if f.stem not in stems:
                problems.append(f"{rel}: no container {f.stem}.* in the folder (left by a deleted "
                                "position or an older version?): its rows are still read")
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
            "cells_table": str(cells_dir), "cycles": cycles_summary(folder)}


def cycles_summary(folder) -> dict | None:
    """Cells tracked and complete cycles of ``<folder>/tables/cycles`` (None without it)."""
    files = sorted((Path(folder) / CYCLES_DATASET).glob("*.parquet"))
    if not files:
        return None
    import pandas as pd

    cols = ["complete", "tau", "elong_rate"]
    c = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    done = c[c["complete"]]
    return {"cells": len(c), "complete": len(done), "tau_min": float(done["tau"].mean()),
            "elong_rate_per_h": float(done["elong_rate"].mean())}


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
