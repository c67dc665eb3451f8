"""``batchlib verify <folder>``: read everything stored, find damage, mark it for recompute.

Planning checks only what is cheap (records, metadata). ``verify`` reads
every dataset of every container: where the completion record holds a digest
of the stored bytes (:mod:`batchlib.io.checksum`) it must match, and the
others must decode; every table must read back whole, and so must every
parquet file below ``<folder>/tables``.

Damaged outputs are *marked for recompute*: the damaged datasets are deleted
(so that jobs that extend their outputs do not keep damaged frames) with the
completion record of the job that wrote them and of every job downstream of
it in that container (found through the ``producers`` run ids of their
records). The next run then redoes exactly those. A container that cannot be
opened at all is moved aside to ``<name>.damaged``, so that the job that
created it builds it again.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .io import CONTAINER_EXTS, open_file, read_attrs
from .io.checksum import content_problem, iter_datasets
from .io.table import TABLE_FORMAT, read_table
from .records import delete_record, read_records
from .status import status_dir


@dataclass
class Damage:
    """One damaged output: ``key`` ``None`` means the whole container (or file)."""

    path: str
    key: str | None
    job: str | None
    reason: str
    action: str = "not marked"


def list_containers(folder) -> list:
    """Containers directly in ``folder`` (temporary and damaged ones skipped)."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or os.path.splitext(entry.name)[1] not in CONTAINER_EXTS:
            continue
        out.append(entry.path)
    return out


def _owner(records: dict, key: str):
    """``(job, recorded info)`` of the record that lists dataset ``key``, else the job whose
    output keys cover it (records written before digests existed), else ``(None, None)``."""
    for name, rec in records.items():
        info = (rec.get("datasets") or {}).get(key)
        if info is not None:
            return name, info
    parts = key.split("/")
    for n in range(len(parts), 0, -1):
        prefix = "/".join(parts[:n])
        for name, rec in sorted(records.items(), key=lambda kv: -kv[1].get("finished_ns", 0)):
            if prefix in (rec.get("outputs") or {}):
                return name, None
    return None, None


def verify_container(path, job=None) -> list:
    """Every damaged dataset or table of one container (reads all of it)."""
    damages = []
    try:
        with open_file(path, "r") as f:
            records = read_records(f)
            datasets = list(iter_datasets(f))
            seen = set()
            for key, ds in datasets:
                seen.add(key)
                owner, info = _owner(records, key)
                if job and owner != job:
                    continue
                reason = content_problem(ds, info)
                if reason:
                    damages.append(Damage(path, key, owner, reason))
            for name, rec in records.items():
                if job and name != job:
                    continue
                for key in sorted(set(rec.get("datasets") or {}) - seen - _removed_later(records, rec)):
                    damages.append(Damage(path, key, name, "missing (the record lists it)"))
            damages += _table_damage(f, path, records, job, {d.key for d in damages})
    except Exception as e:  # noqa: BLE001 - a container that does not open is damaged as a whole
        return [Damage(path, None, None, f"cannot be read ({type(e).__name__}: "
                                         f"{str(e).splitlines()[0][:200]})")]
    return damages


def _removed_later(records: dict, rec: dict) -> set:
    """Datasets that a job finished after ``rec`` removed on purpose (its record's ``removed``)."""
    t = rec.get("finished_ns", 0)
    return {k for r in records.values() if r.get("finished_ns", 0) > t for k in r.get("removed") or []}


def _table_damage(f, path, records, job, already) -> list:
    tables = []
    f.visititems(lambda name, obj: tables.append(name)
                 if not hasattr(obj, "shape") and read_attrs(obj).get("format") == TABLE_FORMAT else None)
    damages = []
    for name in tables:
        owner, _ = _owner(records, name)
        if (job and owner != job) or any(k == name or k.startswith(name + "/") for k in already):
            continue
        try:
            table = read_table(f, name)
            n_rows = int(read_attrs(f[name])["n_rows"])
            if len(table) != n_rows:
                raise ValueError(f"{len(table)} rows read, {n_rows} recorded")
        except Exception as e:  # noqa: BLE001
            damages.append(Damage(path, name, owner, f"table unreadable ({type(e).__name__}: "
                                                      f"{str(e).splitlines()[0][:200]})"))
    return damages


def _downstream(records: dict, jobs: set) -> set:
    """``jobs`` and every job whose record names one of their run ids as a producer."""
    jobs = set(jobs)
    while True:
        run_ids = {records[j].get("run_id") for j in jobs if j in records}
        more = {name for name, rec in records.items() if name not in jobs
                and set(((rec.get("input_signature") or {}).get("producers") or {}).values()) & run_ids}
        if not more:
            return jobs
        jobs |= more


def mark_for_recompute(path, damages) -> None:
    """Delete the damaged datasets and the records of their jobs and of the jobs downstream."""
    if any(d.key is None for d in damages):
        target = Path(f"{path}.damaged")
        n = 1
        while target.exists():
            target, n = Path(f"{path}.damaged-{n}"), n + 1
        os.replace(path, target)
        for d in damages:
            d.action = f"moved aside to {target.name}; rebuilt by the job that creates it"
        return
    owned = [d for d in damages if d.job]
    if not owned:
        return
    with open_file(path, "a") as f:
        records = read_records(f)
        jobs = _downstream(records, {d.job for d in owned})
        for d in owned:
            if d.key in f:
                del f[d.key]
        for name in sorted(jobs):
            delete_record(f, name)
    for d in owned:
        d.action = "record removed: " + ", ".join(sorted(jobs))


def verify_parquet(folder) -> list:
    """Parquet files below ``<folder>/tables`` that do not read back."""
    import pyarrow.parquet as pq

    damages = []
    for p in sorted((Path(folder) / "tables").rglob("*.parquet")):
        if p.name.startswith("."):
            continue
        try:
            pq.read_table(p)
        except Exception as e:  # noqa: BLE001
            damages.append(Damage(str(p), None, None, f"unreadable ({type(e).__name__}: "
                                                       f"{str(e).splitlines()[0][:200]})",
                                  "not marked: no completion record covers it; delete it and "
                                  "rerun the job that writes it"))
    return damages


def verify_folder(folder, job=None, mark=True, progress=None) -> list:
    """Verify every container (and parquet table) of a working folder; mark what is damaged.

    Parameters
    ----------
    folder : path
        A workflow's working folder.
    job : str, optional
        Verify only the outputs recorded by this job.
    mark : bool
        Mark damaged outputs for recompute (see the module docstring).
    progress : bool, optional
        A progress bar; default when stderr is a terminal.

    Returns
    -------
    list of Damage
    """
    folder = os.fspath(folder)
    containers = list_containers(folder)
    damages = []
    bar = tqdm(containers, desc="verify", unit="container",
               disable=not (sys.stderr.isatty() if progress is None else progress))
    for path in bar:
        found = verify_container(path, job)
        if found and mark:
            mark_for_recompute(path, found)
        damages += found
    if job is None:
        damages += verify_parquet(folder)
    return damages


def format_report(folder, damages, n_containers) -> str:
    """The table of damaged outputs that ``batchlib verify`` prints."""
    if not damages:
        return f"{folder}: {n_containers} container(s) verified, no damage found"
    rows = [(os.path.relpath(d.path, folder), d.key or "(all)", d.job or "-", d.reason, d.action)
            for d in damages]
    head = ("output", "key", "job", "reason", "action")
    widths = [min(48, max(len(r[i]) for r in rows + [head])) for i in range(3)]
    lines = [f"{len(damages)} damaged output(s) in {folder}:",
             "  ".join(h.ljust(w) for h, w in zip(head[:3], widths)) + "  reason  ->  action"]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + f"  {r[3]}  ->  {r[4]}")
    lines.append("Rerun the workflow to recompute what was marked.")
    return "\n".join(lines)


def configure_parser(p) -> None:
    p.add_argument("folder", help="a workflow's working folder")
    p.add_argument("--job", default=None, help="verify only the outputs written by this job")
    p.add_argument("--no_mark", action="store_true",
                   help="only report; do not mark damaged outputs for recompute")


def main(args) -> int:
    folder = args.folder
    if not os.path.isdir(folder):
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 1
    mark = not args.no_mark
    locks = sorted(status_dir(folder).glob("*.lock"))
    if mark and locks:
        print(f"warning: {locks[0]} exists (a run may be active): reporting only, nothing marked",
              file=sys.stderr)
        mark = False
    damages = verify_folder(folder, job=args.job, mark=mark)
    print(format_report(folder, damages, len(list_containers(folder))))
    return 1 if damages else 0


__all__ = ["Damage", "verify_folder", "verify_container", "mark_for_recompute", "format_report"]
