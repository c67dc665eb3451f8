"""Planning: which units a job has, and which of them are up to date.

The runner (:class:`batchlib.runner.JobRunner`) calls these functions; jobs
never do. A job only answers the questions planning asks through its hooks
(:meth:`~batchlib.base.BatchJob.list_inputs`,
:meth:`~batchlib.base.BatchJob.outputs_for`,
:meth:`~batchlib.base.BatchJob.units_for`,
:meth:`~batchlib.base.BatchJob.input_signature`,
:meth:`~batchlib.base.BatchJob.folder_outputs`,
:meth:`~batchlib.base.BatchJob.validate_output`); what "up to date" means is
decided here, from the completion records written into the outputs:

* a job that creates containers (:class:`~batchlib.base.BatchJob`): every
  output has a record of this job, with the same parameter hash, version and
  input signature (the rerun triggers say which of these count), and its
  folder outputs match the record;
* a job on existing containers (:class:`~batchlib.container_job.BatchJobOnContainer`):
  the same, where the input signature is the run ids of the jobs that wrote
  the input keys, read from the container.

A *fingerprint* digests everything such a decision reads; while it is
unchanged, a unit is up to date without opening anything (see
:mod:`batchlib.status_index`). :func:`plan_units` does this for all units of
a job at once (the job's part of the fingerprints digested once, nothing
kept of an unchanged unit but its key), which is what a rerun with nothing
to do over 100,000 images costs; :func:`list_units` and one
:func:`fingerprint` per unit are the reference it is tested against.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from . import folder_outputs
from .base import BatchJob, Unit
from .container_job import BatchJobOnContainer
from .errors import InvalidInputError, InvalidOutputError
from .io import container_format, open_file
from .io.checksum import metadata_problems
from .records import (container_damage, key_run_ids, producer_run_id, read_record, read_records,
                      record_stamp)
from .status import JobStatus
from .status_index import digest_text

#: What can make an up-to-date output stale (``--rerun_triggers``).
RERUN_TRIGGERS = ("input", "params", "version", "mtime")
DEFAULT_TRIGGERS = ("input", "params", "version")


# -- listing ------------------------------------------------------------------
class PreviousEntries(Mapping):
    """``{key: entry}`` of what earlier runs recorded, parsed only when read.

    Given to :meth:`~batchlib.base.BatchJob.units_for`, so that a job can reuse
    what it found out before (e.g. the positions of an unchanged file) without
    every job paying for parsing the whole status.
    """

    def __init__(self, status: JobStatus):
        self._status = status
        self._entries: dict | None = None

    @property
    def _all(self) -> dict:
        if self._entries is None:
            self._entries = self._status.previous_files
        return self._entries

    def __getitem__(self, key):
        return self._all[key]

    def __iter__(self):
        return iter(self._all)

    def __len__(self):
        return len(self._all)


def unit_key(path, input_folder) -> str:
    """Status key of an input: its path relative to the input folder."""
    prefix = os.path.join(str(input_folder), "")
    if path.startswith(prefix):  # os.path.relpath is slow for 100,000 inputs
        return path[len(prefix):]
    return os.path.relpath(path, input_folder)


def list_units(job: BatchJob, input_folder, folder, status: JobStatus) -> list:
    """The job's units: those of :meth:`~batchlib.base.BatchJob.units_for`, else one per input.

    An input whose signature is the one recorded keeps the outputs recorded
    for it (no :meth:`~batchlib.base.BatchJob.outputs_for`, which may open it).
    """
    units = job.units_for(input_folder, folder, PreviousEntries(status))
    if units is not None:
        return units
    units = []
    for path in job.list_inputs(input_folder):
        unit = Unit(unit_key(path, input_folder), [path], [])
        units.append(_with_outputs(job, unit, _signature(job, unit), folder, status))
    return units


def _signature(job: BatchJob, unit: Unit) -> dict:
    try:
        return job.input_signature(unit)
    except OSError as e:  # vanished between glob and stat
        return {"error": str(e)}


def _with_outputs(job: BatchJob, unit: Unit, signature, folder, status: JobStatus) -> Unit:
    """``unit`` with its signature and outputs: the recorded ones while the signature is unchanged."""
    unit.signature = signature
    outputs = status.cached_outputs(unit.key, signature)
    if outputs:
        unit.outputs = [os.path.join(str(folder), o) for o in outputs]
    else:
        try:
            unit.outputs = job.outputs_for(unit.inputs[0], folder)
        except InvalidInputError:
            unit.outputs = []  # validate_input reports it
    return unit


# -- many units at once -------------------------------------------------------
def plan_units(job: BatchJob, input_folder, folder, status: JobStatus, triggers) -> tuple:
    """:func:`list_units` and a :func:`fingerprint` per unit, for all units at once.

    What a rerun with nothing to do over 100,000 inputs costs: the job's part
    of the fingerprints is taken once, and of a unit whose fingerprint
    matches the stored one only the key is kept (no :class:`Unit`, no
    parsed entry). Returns ``(items, owners)``: ``items`` in the order of the
    units, each either the key of a unit found unchanged since it was up to
    date or the :class:`Unit` to check (:func:`check_unit`); ``owners`` the
    :class:`OutputOwners` of all units. The decisions are those of
    :func:`list_units` followed by :func:`fingerprint` per unit (the runner's
    ``batched_planning = False``).
    """
    fingerprints = Fingerprints(job, triggers)
    owners = OutputOwners(job, folder)
    items: list = []
    units = job.units_for(input_folder, folder, PreviousEntries(status))
    if units is not None:
        for unit in units:
            owners.add(unit.key, unit.outputs)
            stored = status.fingerprint(unit.key)
            unchanged = stored is not None and fingerprints.get(unit.signature, unit.outputs) == stored
            items.append(unit.key if unchanged else unit)
        return items, owners
    folder = str(folder)
    prefix = os.path.join(str(input_folder), "")
    plain, on_containers = fingerprints.plain, fingerprints.on_containers
    for path in job.list_inputs(input_folder):
        key = path[len(prefix):] if path.startswith(prefix) else unit_key(path, input_folder)
        unit = signature = None
        # A matching fingerprint covers the signature, so the recorded outputs are
        # those list_units would give.
        stored, recorded = status.fingerprint_and_outputs(key)
        if stored is not None and recorded:
            if plain and len(recorded) == 1 and _plain_name(recorded[0]) and recorded[0].endswith(".h5"):
                fingerprint = fingerprints.of_plain_input(path, recorded[0], folder)
            else:
                unit = Unit(key, [path], [])
                if not on_containers:  # whose fingerprint does not cover it
                    signature = _signature(job, unit)
                fingerprint = fingerprints.get(signature, [os.path.join(folder, o) for o in recorded])
            if fingerprint == stored:
                owners.add_recorded(key, recorded)
                items.append(key)
                continue
        unit = unit or Unit(key, [path], [])
        unit = _with_outputs(job, unit, _signature(job, unit) if signature is None else signature,
                             folder, status)
        owners.add(key, unit.outputs)
        items.append(unit)
    return items, owners


class Fingerprints:
    """:func:`fingerprint` of many units of one job, with the job's part taken once.

    The digests are those of :func:`fingerprint` (the index stores them): the
    ``repr`` of ``(job part, signature, identities)`` is put together from
    that of the job's part, made once, and those of the unit's parts.
    """

    def __init__(self, job: BatchJob, triggers):
        self.job = job
        self.on_containers = isinstance(job, BatchJobOnContainer)
        self._head = "(" + repr((job.param_hash, str(job.version), tuple(sorted(triggers)))) + ", "
        #: Whether the job has the default hooks, so that the fingerprint of a unit of
        #: one input and one h5 container is written directly (:meth:`of_plain_input`).
        self.plain = (type(job).folder_outputs is BatchJob.folder_outputs and os.sep == "/"
                      and (self.on_containers or (type(job).input_signature is BatchJob.input_signature
                                                  and not job.param_values.get("hash_inputs", False))))

    def get(self, signature, outputs) -> str | None:
        """The fingerprint of a unit with input ``signature`` and ``outputs``; ``None``
        when it cannot tell (an output missing or unreadable)."""
        try:
            return self.of(signature, outputs)
        except Exception:  # noqa: BLE001 - as the runner treats fingerprint(): the check decides
            return None

    def of(self, signature, outputs, identities=None) -> str | None:
        """:func:`fingerprint`: :meth:`get` with the outputs' identities given or taken
        now, and its errors raised."""
        if not outputs:
            return None
        if identities is None:
            job = self.job
            if isinstance(job, BatchJobOnContainer) and keys_deleted(job, outputs[0]):
                return None
            identities = output_identities(job, outputs)
        if any(v is None for v in identities.values()):
            return None
        # A job on containers reads its inputs (the run ids of the jobs that wrote
        # them) from the container, whose identity the fingerprint covers.
        sig = "None" if self.on_containers else repr(signature)
        return digest_text(f"{self._head}{sig}, {identities!r})")

    def of_plain_input(self, path, output, folder) -> str | None:
        """:meth:`get` for a job with :attr:`plain` hooks and a unit of input ``path``
        and h5 container ``output`` (a name in ``folder``): a stat of each, its text
        written directly."""
        try:
            out = os.stat(folder + "/" + output if folder and not folder.endswith("/") else folder + output)
        except OSError:  # missing: no fingerprint; or not readable: the check says why
            return None
        if self.on_containers:
            sig = "None"
        else:
            try:
                st = os.stat(path)
            except OSError as e:  # as _signature says it
                sig = repr({"error": str(e)})
            else:
                name = path[path.rfind("/") + 1:]  # os.path.basename, with os.sep "/"
                sig = f"{{{name!r}: {{'size': {st.st_size}, 'mtime_ns': {st.st_mtime_ns}}}}}"
        return digest_text(f"{self._head}{sig}, {{{output!r}: [{out.st_ino}, {out.st_size}, {out.st_mtime_ns}]}})")


class OutputOwners:
    """Which units write each output (a container or a file beside it), to refuse
    two units writing one (:class:`~batchlib.errors.OutputCollisionError`).

    One key per output path; lists only for paths claimed more than once.
    """

    def __init__(self, job: BatchJob, folder=""):
        self.job = job
        self.folder = str(folder)
        self._first: dict = {}
        self._more: dict = {}
        self._plain = type(job).folder_outputs is BatchJob.folder_outputs and bool(self.folder)
        self._normfolder = os.path.join(os.path.normpath(self.folder), "")

    def add(self, key, outputs) -> None:
        """Unit ``key`` writes ``outputs`` (and their :meth:`~batchlib.base.BatchJob.folder_outputs`)."""
        for out in outputs:
            for path in [out] + self.job.folder_outputs(out):
                self._claim(os.path.normpath(path), key)

    def add_recorded(self, key, recorded) -> None:
        """:meth:`add` of outputs ``recorded`` relative to the folder."""
        if self._plain and len(recorded) == 1 and _plain_name(recorded[0]):
            self._claim(self._normfolder + recorded[0], key)  # its normpath, without os.path.normpath
        else:
            self.add(key, [os.path.join(self.folder, o) for o in recorded])

    def _claim(self, path, key) -> None:
        first = self._first
        n = len(first)
        first.setdefault(path, key)
        if len(first) == n:  # claimed before
            self._more.setdefault(path, [first[path]]).append(key)

    def collisions(self) -> dict:
        """``{output: [keys, in the order of the units]}`` of the outputs of more than one unit."""
        more = self._more
        if not more:
            return {}
        return {p: more[p] for p in self._first if p in more and len(set(more[p])) > 1}


def _plain_name(name) -> bool:
    return bool(name) and "/" not in name and os.sep not in name and name not in (".", "..")


# -- up to date? --------------------------------------------------------------
def check_unit(job: BatchJob, unit: Unit, cached, triggers, force) -> tuple:
    """``(up_to_date, reason, records)`` for one unit.

    ``cached`` is the unit's entry of the previous run (a cache: used only
    where the output's stamp shows it unchanged), ``records`` the completion
    records read, ``{output: record}``.
    """
    if isinstance(job, BatchJobOnContainer):
        return _check_container_unit(job, unit, cached, triggers, force)
    if force:
        return False, "force_recompute", {}
    if not unit.outputs:
        return False, "outputs unknown", {}
    if cached and cached.get("state") == "failed":
        return False, "failed last time", {}
    records = {}
    fast = bool(cached) and cached.get("state") == "done"
    for out in unit.outputs:
        stamp = record_stamp(out)
        if stamp is None:
            return False, f"output {os.path.basename(out)} missing", {}
        if fast and cached.get("stamps", {}).get(os.path.basename(out)) == stamp:
            records[out] = cached.get("record")
            continue
        # The container changed since the job last saw it: one that no longer
        # opens or walks (a full disk during another job's write) is rebuilt.
        damage = container_damage(out, job.resolved_output_keys())
        if damage:
            return False, f"output damaged: {damage}", {}
        try:
            job.validate_output(out)
        except InvalidOutputError as e:
            return False, f"output invalid: {e}", {}
        records[out] = read_record(out, job.name)
    for out, rec in records.items():
        if not rec:
            return False, f"{os.path.basename(out)} has no completion record (unfinished)", records
        stale = stale_reason(job, unit, rec, triggers) or folder_outputs_problem(job, out, rec)
        if stale:
            return False, stale, records
    return True, "up to date", records


def _check_container_unit(job: BatchJobOnContainer, unit: Unit, cached, triggers, force) -> tuple:
    """:func:`check_unit` of a job on existing containers.

    Fills in ``unit.signature``: the run ids of the jobs that produced the
    input keys, read from the container only when its stamp changed.

    Under the ``mtime`` trigger the output is stale when a record of a job that
    wrote one of its input keys (a *producer*, known by the run ids above)
    finished after this job's own record. Records of other jobs in the same
    container do not count: a job downstream (one reading this job's keys, or
    writing keys of its own beside them) always finishes later, and counting
    it would recompute this job, then that one, on every run.
    """
    path = unit.outputs[0]
    stamp = record_stamp(path)
    if stamp is None:
        return False, "container missing", {}
    if (not force and cached and cached.get("state") == "done"
            and cached.get("stamps", {}).get(os.path.basename(path)) == stamp):
        rec = cached.get("record") or {}
        if not stale_reason(job, unit, rec, [t for t in triggers if t in ("params", "version")]) \
                and not keys_deleted(job, path):
            problem = folder_outputs_problem(job, path, rec)
            if problem:
                return False, f"output invalid: {problem}", {}
            unit.signature = cached.get("input_signature") or {}
            return True, "up to date", {path: rec}
    try:
        with open_file(path, "r") as f:
            records = read_records(f)
            run_ids = key_run_ids(records)
            producers = {k: producer_run_id(run_ids, k) for k in job.resolved_input_keys()}
            problems = [r for r in (s.check(f, k) for k, s in job.resolved_output_specs().items()) if r]
            # What the record says was written must still be there (metadata only).
            problems += metadata_problems(f, (records.get(job.name) or {}).get("datasets"))
    except Exception as e:  # noqa: BLE001 - never crash planning: a damaged container is redone
        return False, f"container unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})", {}
    unit.signature = {"producers": producers}
    rec = records.get(job.name)
    if force:
        return False, "force_recompute", {}
    if not rec:
        return False, "no completion record", {}
    if problems:
        return False, f"output invalid: {problems[0]}", {}
    if "mtime" in triggers:
        upstream = set(producers.values()) - {None}
        newest = max((r.get("finished_ns", 0) for n, r in records.items()
                      if n != job.name and upstream & set((r.get("outputs") or {}).values())), default=0)
        if newest > rec.get("finished_ns", 0):
            return False, "inputs newer than output", {}
    stale = stale_reason(job, unit, rec, [t for t in triggers if t in ("params", "version", "input")])
    if stale:
        return False, stale, {}
    problem = folder_outputs_problem(job, path, rec)
    if problem:
        return False, f"output invalid: {problem}", {}
    return True, "up to date", {path: rec}


def stale_reason(job: BatchJob, unit: Unit, rec: dict, triggers) -> str | None:
    """Why the completed output with record ``rec`` is stale under ``triggers`` (None: it is not)."""
    if "params" in triggers and rec.get("param_hash") != job.param_hash:
        return "parameters changed"
    if "version" in triggers and str(rec.get("version")) != str(job.version):
        return f"job version changed ({rec.get('version')} -> {job.version})"
    if "input" in triggers and not same_signature(rec.get("input_signature"), unit.signature):
        return "input changed"
    if "mtime" in triggers and newest_mtime(unit.signature) > rec.get("finished_ns", 0):
        return "input newer than output"
    return None


def newest_mtime(sig) -> int:
    """The largest ``mtime_ns`` anywhere in an input signature (0 if none).

    Covers both the signature of input files (``{name: {"mtime_ns", ...}}``)
    and one of a whole acquisition (``{"mtime_ns", ...}``).

    Examples
    --------
    >>> newest_mtime({"a.tif": {"size": 5, "mtime_ns": 7}, "b.tif": {"size": 5, "mtime_ns": 9}})
    9
    >>> newest_mtime({"n_files": 3, "mtime_ns": 4}), newest_mtime({"producers": {}})
    (4, 0)
    """
    if isinstance(sig, dict):
        own = sig.get("mtime_ns")
        own = own if isinstance(own, int) and not isinstance(own, bool) else 0
        return max([own] + [newest_mtime(v) for v in sig.values() if isinstance(v, (dict, list))])
    if isinstance(sig, list):
        return max((newest_mtime(v) for v in sig), default=0)
    return 0


def _content_only(sig):
    """``sig`` without modification times wherever a content hash identifies the content."""
    if isinstance(sig, dict):
        hashed = "blake2b" in sig
        return {k: _content_only(v) for k, v in sig.items() if not (hashed and k == "mtime_ns")}
    if isinstance(sig, list):
        return [_content_only(v) for v in sig]
    return sig


def same_signature(recorded, current) -> bool:
    """Whether two input signatures describe the same input content.

    Equal signatures match. Where both carry a content hash (``hash_inputs``),
    the modification times are ignored, so a file that was touched or copied
    but not changed is not recomputed.

    Examples
    --------
    >>> same_signature({"a.nd2": {"size": 5, "mtime_ns": 1}}, {"a.nd2": {"size": 5, "mtime_ns": 2}})
    False
    >>> same_signature({"a.nd2": {"size": 5, "mtime_ns": 1, "blake2b": "f0"}},
    ...                {"a.nd2": {"size": 5, "mtime_ns": 2, "blake2b": "f0"}})
    True
    """
    if recorded == current:
        return True
    if recorded is None or current is None:
        return False
    return _content_only(recorded) == _content_only(current)


def folder_outputs_problem(job: BatchJob, output_path, rec) -> str | None:
    """Why the folder outputs of ``output_path`` do not match its record ``rec``."""
    paths = job.folder_outputs(output_path)
    if not paths:
        return None
    return folder_outputs.problem(paths, os.path.dirname(os.path.normpath(output_path)),
                                  (rec or {}).get("folder_outputs"))


def keys_deleted(job: BatchJobOnContainer, path) -> bool:
    """n5/zarr: whether an output key's directory is gone (one ``stat`` per key).

    An h5 file's stamp changes with any write; an n5/zarr stamp covers only
    the records, so a deleted output would otherwise go unnoticed while the
    status cache is trusted.
    """
    if container_format(path) == "h5":
        return False
    return any(not os.path.isdir(os.path.join(path, k)) for k in job.resolved_output_specs())


# -- fingerprints -------------------------------------------------------------
def output_identities(job: BatchJob, outputs) -> dict:
    """``{name: identity}`` of the output containers and the files beside them.

    The identity is ``[inode, size, mtime_ns]`` of a file (an h5
    container changes it with any write, a replaced one has another
    inode), for n5/zarr directories the inode and the stamp of the
    records; ``None`` for what is missing.
    """
    from .status_index import file_identity

    out = {}
    for path in outputs:
        name = os.path.basename(path)
        if container_format(path) == "h5":
            out[name] = file_identity(path)
        else:
            ident = file_identity(path)
            out[name] = None if ident is None else [ident[0], record_stamp(path)]
        for extra in job.folder_outputs(path):
            out[os.path.relpath(extra, os.path.dirname(path))] = file_identity(extra)
    return out


def fingerprint(job: BatchJob, unit: Unit, triggers, identities=None) -> str | None:
    """Digest of everything an "up to date" decision about ``unit`` reads.

    The parameter hash, version, rerun triggers, the input signature and
    :func:`output_identities` (taken now unless given). Equal
    fingerprints mean the decision would come out the same, so a stored
    one that still matches makes the unit up to date without opening
    anything (see :mod:`batchlib.status_index`). ``None``: cannot tell.
    """
    return Fingerprints(job, triggers).of(unit.signature, unit.outputs, identities)


__all__ = ["RERUN_TRIGGERS", "DEFAULT_TRIGGERS", "PreviousEntries", "list_units", "plan_units",
           "Fingerprints", "OutputOwners", "check_unit",
           "stale_reason", "same_signature", "newest_mtime", "folder_outputs_problem", "output_identities",
           "fingerprint"]
