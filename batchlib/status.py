"""Status files: what is done, what failed and why, for people and for reruns.

Status files are JSON, indented, written atomically (temporary file, then
``os.replace``). They are a *cache* of the completion records: a missing or
corrupted status file is rebuilt from the containers, with a warning. The
schema is documented in docs/status_schema.md.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

JOB_SCHEMA = "batchlib-job-status-1"
WORKFLOW_SCHEMA = "batchlib-workflow-status-1"

#: Job states, in the order a person should care about them.
STATES = ("errored", "invalid_inputs", "failed_outputs", "running", "processed")
#: Per-file states.
FILE_STATES = ("done", "failed", "invalid", "pending")

logger = logging.getLogger("Workflow.status")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def status_dir(folder) -> Path:
    return Path(folder) / "batchlib"


def dumps_status(data: dict) -> str:
    """JSON text of a status file: the header indented, one line per file entry.

    ``json.dump(..., indent=2)`` runs the pure-Python encoder, which made
    writing the status of 10,000 files take most of a "nothing to do" rerun;
    each entry is encoded here by the C encoder on a line of its own, which
    also keeps the file easy to ``grep``.
    """
    parts = []
    for key, value in data.items():
        if key == "files" and isinstance(value, dict) and value:
            entries = ",\n".join(f"    {json.dumps(str(k))}: {json.dumps(v, default=str)}"
                                  for k, v in value.items())
            parts.append(f'  "files": {{\n{entries}\n  }}')
        else:
            text = json.dumps(value, indent=2, default=str).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(str(key))}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_json_atomic(path, data) -> None:
    """Write JSON so that readers see the old or the new file, never a mix."""
    from .io.files import atomic_path

    text = dumps_status(data)
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_text(text)


def clean_status_temporaries(sdir) -> list:
    """Remove temporary files (``.<name>.tmp-<pid>...``) left in ``sdir`` by runs that were killed.

    Only files whose writer is gone (a dead pid, or our own pid from before
    this run: the pid was reused) are removed; a live writer's file is kept.
    Called at the start of each run, which holds the folder's lock.
    """
    from .io.files import remove_leftovers

    removed = remove_leftovers(sdir)
    if removed:
        logger.warning("removed %d status temporary file(s) left by interrupted runs: %s",
                       len(removed), ", ".join(removed[:5]))
    return removed


def read_json(path, schema=None) -> dict | None:
    """Read a status file; ``None`` (with a warning) if it is missing or unusable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if (schema and isinstance(data, dict) and data.get("schema") != schema
                and data.get("schema") in (JOB_SCHEMA, WORKFLOW_SCHEMA)):
            return None  # a sound status file of the other kind (scanning *.status): no warning
        if not isinstance(data, dict) or (schema and data.get("schema") != schema):
            raise ValueError(f"not a {schema} file")
        return data
    except (ValueError, OSError) as e:
        logger.warning("%s is unreadable (%s); rebuilding it from the completion records", path, e)
        return None


class JobStatus:
    """The ``<JobName>.status`` file of one job in one folder.

    Parameters
    ----------
    path : Path
        The status file.
    header : dict
        Job name, class, version, parameters and parameter hash.
    min_interval_s : float
        While a job runs, :meth:`save` writes at most this often, so that
        100,000 files do not mean 100,000 rewrites; :meth:`save` with
        ``force=True`` always writes.
    """

    def __init__(self, path, header: dict, min_interval_s: float = 5.0):
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        clean_status_temporaries(self.path.parent)
        previous = read_json(self.path, JOB_SCHEMA) or {}
        self.previous_files = previous.get("files", {}) if isinstance(previous.get("files"), dict) else {}
        self.data = {"schema": JOB_SCHEMA, **header, "state": "running", "started": now_iso(),
                     "finished": None, "duration_s": None, "error": None, "counts": {},
                     "files": {}}
        self._t0 = time.monotonic()
        self._last_save = 0.0

    @property
    def files(self) -> dict:
        return self.data["files"]

    def cached(self, key) -> dict | None:
        """What the previous status said about input ``key`` (a cache, not a fact)."""
        entry = self.previous_files.get(key)
        return entry if isinstance(entry, dict) else None

    def set_file(self, key, **entry) -> None:
        self.files[key] = entry

    def counts(self) -> dict:
        counts = {s: 0 for s in FILE_STATES}
        for entry in self.files.values():
            counts[entry.get("state", "pending")] = counts.get(entry.get("state", "pending"), 0) + 1
        counts["total"] = len(self.files)
        counts["computed_this_run"] = sum(1 for e in self.files.values() if e.get("this_run"))
        return counts

    def finish(self, state, error=None) -> None:
        self.data.update(state=state, error=error, finished=now_iso(),
                         duration_s=round(time.monotonic() - self._t0, 3))
        if state != "errored":
            self.save(force=True)
            return
        try:  # on the way out of an error: never hide it behind a second one (a full disk)
            self.save(force=True)
        except OSError as e:
            logger.warning("could not write %s (%s)", self.path, e)

    def save(self, force=False) -> None:
        if not force and time.monotonic() - self._last_save < self.min_interval_s:
            return
        self.data["counts"] = self.counts()
        write_json_atomic(self.path, self.data)
        self._last_save = time.monotonic()


class WorkflowStatus:
    """The ``<WorkflowName>.status`` file: one line per job, and the overall state."""

    def __init__(self, path, header: dict):
        self.path = Path(path)
        self.data = {"schema": WORKFLOW_SCHEMA, **header, "state": "running", "started": now_iso(),
                     "finished": None, "error": None, "jobs": []}

    def job_done(self, name, state, counts, status_file) -> None:
        self.data["jobs"].append({"name": name, "state": state, "counts": counts,
                                  "status_file": str(status_file)})
        self._write()

    def finish(self, state, error=None) -> None:
        self.data.update(state=state, error=error, finished=now_iso())
        try:
            write_json_atomic(self.path, self.data)
        except OSError as e:
            if state != "errored":
                raise
            logger.warning("could not write %s (%s)", self.path, e)

    def start(self) -> None:
        self._write()

    def _write(self) -> None:
        try:
            write_json_atomic(self.path, self.data)
        except OSError as e:
            from .io.space import DiskFullError, disk_full_message, is_disk_full

            if is_disk_full(e):  # one clear line and exit code 1, not a traceback
                raise DiskFullError(f"{self.data.get('workflow')} stopped: "
                                    f"{disk_full_message(self.path)}") from e
            raise


def summarize(folder, max_listed: int = 20) -> str:
    """A readable summary of every status file in ``<folder>/batchlib``."""
    sdir = status_dir(folder)
    if not sdir.is_dir():
        return f"{folder}: no batchlib run has been recorded here (no {sdir})"
    lines = []
    files = sorted(sdir.glob("*.status"))
    # Read each file once and sort by schema; read_json(path, schema) would warn
    # about every file of the other kind and talk of rebuilding, which a
    # read-only summary never does.
    loaded, unreadable = {}, []
    for p in files:
        try:
            data = json.loads(p.read_text())
        except (ValueError, OSError):
            data = None
        if isinstance(data, dict) and data.get("schema") in (JOB_SCHEMA, WORKFLOW_SCHEMA):
            loaded[p] = data
        else:
            unreadable.append(p.name)
    workflows = [d for d in loaded.values() if d["schema"] == WORKFLOW_SCHEMA]
    locked = any(sdir.glob("*.lock"))
    for wf in workflows:
        lines.append(f"workflow {wf.get('workflow')}: {wf.get('state')} "
                     f"(started {wf.get('started')}, finished {wf.get('finished') or '-'})")
        if wf.get("error"):
            lines.append(f"  error: {wf['error'].splitlines()[0]}")
    lines.append("")
    header = f"{'job':<28} {'state':<15} {'done':>7} {'failed':>7} {'invalid':>8} {'pending':>8} {'this run':>9}"
    lines += [header, "-" * len(header)]
    problems = []
    # Jobs in the order the workflows ran them, then any others by name.
    order = [j.get("name") for wf in workflows for j in wf.get("jobs", [])]
    jobs = sorted(((p, d) for p, d in loaded.items() if d["schema"] == JOB_SCHEMA),
                  key=lambda pd: (order.index(pd[1].get("job")) if pd[1].get("job") in order
                                  else len(order), pd[0].name))
    for p, d in jobs:
        c = d.get("counts", {})
        lines.append(f"{d.get('job', p.stem):<28} {d.get('state', '?'):<15} {c.get('done', 0):>7} "
                     f"{c.get('failed', 0):>7} {c.get('invalid', 0):>8} {c.get('pending', 0):>8} "
                     f"{c.get('computed_this_run', 0):>9}")
        if d.get("error"):
            problems.append(f"{d['job']} stopped: {d['error'].splitlines()[0]}")
        if d.get("state") == "running" and not locked:
            problems.append(f"{d.get('job', p.stem)} was interrupted (its status says running and no "
                            f"lock is held); a rerun finishes it")
        for key, entry in d.get("files", {}).items():
            if entry.get("state") in ("failed", "invalid"):
                problems.append(f"{d['job']}: {entry['state']:<7} {key}: {entry.get('error')}")
            for warning in entry.get("warnings", []):
                problems.append(f"{d['job']}: warning {key}: {warning}")
    if unreadable:
        lines += ["", f"unreadable status file(s), rebuilt by the next run: {', '.join(unreadable)}"]
    if problems:
        lines += ["", f"{len(problems)} problem(s):"]
        lines += [f"  {p}" for p in problems[:max_listed]]
        if len(problems) > max_listed:
            lines.append(f"  ... and {len(problems) - max_listed} more (see the .status files in {sdir})")
    else:
        lines += ["", "no failed or invalid files"]
    return "\n".join(lines)
