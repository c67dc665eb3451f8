"""Status files: what is done, what failed and why, for people and for reruns.

Status files are JSON, indented, written atomically (temporary file, then
``os.replace``): a job's summary for people, and the workflow's. What reruns
need about every input is in the job's index (:mod:`batchlib.status_index`),
a *cache* of the completion records: a missing or corrupted one is rebuilt
from the containers, with a warning. The schema is documented in
docs/status_schema.md.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .states import FileState

JOB_SCHEMA = "batchlib-job-status-1"
WORKFLOW_SCHEMA = "batchlib-workflow-status-1"

#: Per-file states (see :class:`batchlib.states.FileState`).
FILE_STATES = tuple(s.value for s in FileState)

logger = logging.getLogger("Workflow.status")


def now_iso() -> str:
    """The local time as ISO 8601 with the UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def status_dir(folder) -> Path:
    """``<folder>/batchlib``: status, lock and log files of a working folder."""
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


def job_status_data(header: dict, **fields) -> dict:
    """The content of a job's ``.status`` file: ``header``, then the run's fields (a run
    that has just started, updated by ``fields``)."""
    return {"schema": JOB_SCHEMA, **header, "state": "running", "started": now_iso(),
            "finished": None, "duration_s": None, "error": None, "counts": {}, "files": {},
            **fields}


class JobStatus:
    """The status of one job in one folder: ``<JobName>.status`` and ``<JobName>.index``.

    The ``.status`` file is for people: the job's header, state and counts,
    and the entries of the inputs worth a look (computed by this run, failed,
    invalid, pending, or with warnings); up-to-date inputs are only counted.
    The ``.index`` (:mod:`batchlib.status_index`) holds every input's entry
    and the fingerprint that lets a rerun find it unchanged with a ``stat``.

    Parameters
    ----------
    path : Path
        The status file.
    header : dict
        Job name, class, version, parameters and parameter hash.
    min_interval_s : float
        While a job runs, :meth:`save` writes at most this often (and at
        least ten times as long as the last save took), so that 100,000
        files do not mean 100,000 rewrites; :meth:`save` with ``force=True``
        always writes.
    """

    def __init__(self, path, header: dict, min_interval_s: float = 5.0):
        from .status_index import StatusIndex

        self.path = Path(path)
        self.min_interval_s = min_interval_s
        clean_status_temporaries(self.path.parent)
        self.index = StatusIndex(self.path.with_suffix(".index"), {"job": header.get("job")})
        if not self.index.load():
            self._migrate()
        self.data = job_status_data(header)
        #: Whether this run listed every input (:meth:`all_listed`); until then the rows of
        #: inputs it has not seen are not those of deleted inputs, and :meth:`finish` keeps them.
        self.listed = False
        self._states: dict = {}  # key -> state, for every input of this run
        self._this_run: set = set()
        self._t0 = time.monotonic()
        self._last_save = 0.0
        self._save_cost = 0.0

    def _migrate(self) -> None:
        """Without an index (a folder of an earlier version, or a lost index): the entries
        of a status file that still holds them all are the cache."""
        previous = read_json(self.path, JOB_SCHEMA) or {}
        files = previous.get("files")
        if isinstance(files, dict):
            for key, entry in files.items():
                if isinstance(entry, dict):
                    self.index.add_text(key, json.dumps(entry, default=str),
                                        json.dumps(entry.get("outputs") or []))

    @property
    def files(self) -> dict:
        """The entries this run put into the ``.status`` file (see the class docstring)."""
        return self.data["files"]

    @property
    def previous_files(self) -> dict:
        """Every entry of the previous runs, ``{key: entry}`` (parses them all)."""
        return dict(self.index.items())

    def cached(self, key) -> dict | None:
        """What the previous runs said about input ``key`` (a cache, not a fact)."""
        return self.index.entry(key)

    def cached_outputs(self, key, signature) -> list | None:
        """The outputs recorded for ``key`` if its input ``signature`` is the one recorded."""
        from .status_index import digest

        row = self.index.rows.get(key)
        if not row:
            return None
        if row[1] is None:  # migrated entry: no digest yet
            entry = self.index.entry(key) or {}
            return entry.get("outputs") if entry.get("input_signature") == signature else None
        return self.index.outputs(key, digest(signature))

    def fingerprint(self, key) -> str | None:
        """The fingerprint stored for ``key`` when it was last found or made up to date."""
        return self.index.fingerprint(key)

    def fingerprint_and_outputs(self, key) -> tuple:
        """``(fingerprint, outputs)`` stored for ``key``; the outputs (relative to the
        folder) are those the fingerprint covers. ``(None, None)`` without a fingerprint."""
        return self.index.fingerprint_and_outputs(key)

    def keep(self, key) -> None:
        """Input ``key`` is unchanged and up to date: its entry stays as it is."""
        self.keep_all([key])

    def keep_all(self, keys) -> None:
        """:meth:`keep` of each of ``keys``, in their order (100,000 at once)."""
        self.index.seen.update(keys)
        self._states.update(dict.fromkeys(keys, "done"))
        for key in self.index.with_warnings(keys):  # people must still see them
            entry = self.index.entry(key) or {}
            self.files[key] = {k: entry.get(k) for k in ("state", "outputs", "finished", "warnings")}

    def set_file(self, key, fingerprint=None, **entry) -> None:
        """Record input ``key``'s entry; ``fingerprint`` when it is up to date (see
        :mod:`batchlib.status_index`)."""
        state = entry.get("state", "pending")
        self.index.put(key, entry, fingerprint, entry.get("input_signature"), append=True)
        self._states[key] = state
        if entry.get("this_run"):
            self._this_run.add(key)
        else:
            self._this_run.discard(key)
        if state != "done" or entry.get("this_run") or entry.get("warnings"):
            self.files[key] = entry
        else:
            self.files.pop(key, None)

    def counts(self) -> dict:
        counts = {s: 0 for s in FILE_STATES}
        for state in self._states.values():
            counts[state] = counts.get(state, 0) + 1
        counts["total"] = len(self._states)
        counts["computed_this_run"] = len(self._this_run)
        return counts

    def all_listed(self) -> None:
        """Every input of this run has been seen (planned): the index rows of the others
        are those of inputs that are gone, which :meth:`finish` drops."""
        self.listed = True

    def _keep_unlisted(self) -> None:
        """The run stopped before it listed every input (an output collision, Ctrl-C while
        planning): the rows it did not reach stay as the earlier runs left them, in the
        index and in the counts, so that nothing finished is forgotten."""
        index = self.index
        rest = [k for k, row in index.rows.items() if k not in index.seen]
        index.seen.update(rest)
        for key in rest:
            row = index.rows[key]
            if row[0] is not None and not row[4]:  # a fingerprint: up to date, no warnings
                self._states[key] = "done"
                continue
            entry = index.entry(key) or {}
            state = entry.get("state")
            self._states[key] = state if state in FILE_STATES else "pending"
            if state != "done" or entry.get("warnings"):  # worth a look, as in set_file
                self.files[key] = {k: entry[k] for k in ("state", "outputs", "finished", "error",
                                                          "warnings") if k in entry}

    def finish(self, state, error=None) -> None:
        self.data.update(state=state, error=error, finished=now_iso(),
                         duration_s=round(time.monotonic() - self._t0, 3))
        try:
            if not self.listed:
                self._keep_unlisted()
            self.index.finish()
            self.save(force=True)
        except OSError as e:
            if state != "errored":
                raise
            # on the way out of an error: never hide it behind a second one (a full disk)
            logger.warning("could not write %s (%s)", self.path, e)

    def save(self, force=False) -> None:
        interval = max(self.min_interval_s, 10 * self._save_cost) if self.min_interval_s > 0 else 0
        if not force and time.monotonic() - self._last_save < interval:
            return
        t0 = time.monotonic()
        self.index.flush()
        self.data["counts"] = self.counts()
        write_json_atomic(self.path, self.data)
        self._last_save = time.monotonic()
        self._save_cost = self._last_save - t0


def write_status_unchanged(path, header: dict, counts: dict, files: dict, duration_s: float) -> None:
    """The ``.status`` file of a run that found nothing changed since a run that found every
    input up to date (:mod:`batchlib.certificate`): that run's counts and entries, this
    run's times. Its index is left as it is."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - duration_s))
    write_json_atomic(path, job_status_data(header, state="processed", started=started,
                                            finished=now_iso(), duration_s=round(duration_s, 3),
                                            counts=counts, files=files))


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
