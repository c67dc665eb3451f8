"""Batch jobs: map every input image of a folder to its output container(s).

A job declares its parameters, version, inputs and outputs; the framework
(:mod:`batchlib.runner`, :mod:`batchlib.planning`) decides what is up to date
(from the completion records written last into the outputs), validates what
must be computed, runs it on an executor, writes the records and keeps the
``.status`` file. Subclasses implement only the work:
``run(self, input_files, output_files, **kwargs)`` or its per-file helper,
and override the few hooks listed in :class:`BatchJob` where they differ.
"""
from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

from .errors import InvalidInputError, InvalidOutputError
from .io import open_file
from .io.files import is_temporary
from .log import get_logger
from .names import check_name
from .records import file_signature, param_hash


@dataclass(frozen=True)
class Param:
    """A declared job parameter, parsed and checked when the job is built.

    A given value is turned into the type of ``default`` (``"3"`` -> 3 for an
    int parameter, ``"true"`` -> True for a bool, items of a list one by one;
    a dict parameter takes a dict, a JSON object or ``key=value`` items, see
    :func:`parse_mapping`), or by ``parse`` when given. A value that does
    not parse is a ``ValueError`` naming the job and the parameter, so jobs
    never cast their parameters.

    ``affects_result=False`` marks options (threads, device) that change how,
    not what, is computed: they are left out of the parameter hash.
    ``is_name=True`` marks values that become a file name or container key:
    they are checked with :func:`batchlib.names.check_name`.
    ``hash_as`` gives the form hashed into the completion records (default:
    the value; a dict: its JSON text, as when it was given as a string).
    ``unhashed_default=True`` marks a parameter added after outputs were
    recorded whose default reproduces them: at its default it is left out of
    the hash, so adding it recomputes nothing.

    Examples
    --------
    >>> Param(3).convert("7"), Param(0.5).convert(2), Param(False).convert("yes")
    (7, 2.0, True)
    >>> Param([1, 2]).convert(["4", 5])
    [4, 5]
    >>> Param(3).convert("1.5")
    Traceback (most recent call last):
    ...
    ValueError: expected an integer, got '1.5'
    """

    default: Any
    help: str = ""
    choices: tuple | None = None
    affects_result: bool = True
    is_name: bool = False
    parse: Callable[[Any], Any] | None = None
    hash_as: Callable[[Any], Any] | None = None
    unhashed_default: bool = False

    def convert(self, value):
        """``value`` in the parameter's type; ``ValueError`` saying why it is not one."""
        if self.parse is not None:
            return self.parse(value)
        return _like(self.default, value)

    def hashed(self, value):
        """The form of ``value`` hashed into the completion records."""
        if self.hash_as is not None:
            return self.hash_as(value)
        if isinstance(self.default, dict):
            return json.dumps(value, sort_keys=True)
        return value


_TRUE, _FALSE = ("1", "true", "yes", "y", "on"), ("0", "false", "no", "n", "off")


def _like(default, value):
    """``value`` converted to the type of ``default`` (see :class:`Param`)."""
    if default is None or value is None and not isinstance(default, (bool, int, float)):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {value!r}") from None
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if isinstance(default, dict):
        return parse_mapping(value)
    if isinstance(default, (list, tuple)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"expected a list, got {value!r}")
        return [_like(default[0], v) for v in value] if default else list(value)
    return value


def parse_mapping(value) -> dict:
    """A dict from a dict, a JSON object, or ``key=value`` items (values read as JSON if they parse).

    Examples
    --------
    >>> parse_mapping('{"weights": "mine.pt"}')
    {'weights': 'mine.pt'}
    >>> parse_mapping(["lumen_width=12", "weights=mine.pt"])
    {'lumen_width': 12, 'weights': 'mine.pt'}
    >>> parse_mapping("")
    {}
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    items = [value] if isinstance(value, str) else list(value)
    items = [str(item).strip() for item in items if str(item).strip()]
    if len(items) == 1 and items[0].startswith("{"):
        try:
            parsed = json.loads(items[0])
        except ValueError as e:
            raise ValueError(f"is not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return parsed
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value items or a JSON object, got {item!r}")
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text  # a plain string: weights=mine.pt
    return out


@dataclass
class Unit:
    """One unit of work: one input image and the outputs it maps to."""

    key: str
    inputs: list
    outputs: list
    signature: dict = field(default_factory=dict)
    #: Extra keyword arguments for ``run`` (e.g. the acquisition a set of files forms).
    run_kwargs: dict = field(default_factory=dict)


class BatchJob:
    """Base class of jobs that map input files to new output containers.

    Parameters
    ----------
    input_pattern : str
        Glob pattern of the inputs, relative to the input folder.
    output_ext : str
        Extension of the output containers (``.h5``, ``.n5``, ``.zarr``).
    identifier : str, optional
        Appended to the class name to form :attr:`name`, so that one class
        can run twice in a workflow.
    **params
        Values for the parameters declared in :attr:`params`.

    Class attributes
    ----------------
    version : str
        Bump it when the job's results change; outputs of older versions are recomputed.
    params : dict of str to Param
        Declared parameters; workflows build their command-line options from them.
    output_keys : dict
        Keys (or key prefixes) the job writes into each output, recorded so that
        downstream jobs can tell when their inputs changed.
    update_in_place : bool
        Hand existing, completed outputs to ``run`` under their own name (for
        appending) instead of rebuilding them under a temporary name.
    reads_folder : bool
        Whether the inputs are found in the working folder (containers written
        by earlier jobs) rather than in the input folder.
    creates_containers : bool
        Whether the job writes new containers (under temporary names, moved
        into place when complete) or only adds keys to existing ones.

    Notes
    -----
    The override surface. A job implements the work and may override these
    hooks, and no other method:

    * :meth:`run` (or :meth:`process`, one input to one output), or
      ``process_container`` for :class:`~batchlib.container_job.BatchJobOnContainer`;
    * :meth:`list_inputs` (which files are inputs), :meth:`outputs_for`
      (one-to-many jobs) and :meth:`units_for` (jobs whose unit of work is
      not one input file, e.g. one position of a multi-position file);
    * :meth:`folder_outputs` (files it writes beside the containers);
    * :meth:`validate_input`, :meth:`validate_output` and :meth:`validate_unit`
      (what makes an input invalid or an output incomplete);
    * :meth:`input_signature` (what identifies the inputs' content: a changed
      signature makes the output stale, and its ``mtime_ns`` values are what
      the ``mtime`` rerun trigger compares);
    * :meth:`estimate_output_bytes` (space reserved before writing in place).

    Everything else is the framework's. :mod:`batchlib.planning` lists the
    units and decides from the completion records which are up to date (the
    rerun triggers, fingerprints, folder outputs);
    :class:`batchlib.runner.JobRunner` writes plans, cleans temporary
    containers, refuses colliding outputs, runs the units and writes the
    records and the status.
    """

    version = "1"
    params: dict = {}
    output_keys: dict = {}
    update_in_place = False
    reads_folder = False
    creates_containers = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Planning is the framework's (batchlib.planning): a method of these names
        # in a job would be silently ignored, so say what to override instead.
        moved = sorted(set(vars(cls)) & set(_PLANNING_METHODS))
        if moved:
            raise TypeError(f"{cls.__name__} defines {moved}: planning is the framework's "
                            f"(batchlib.planning); override {_PLANNING_METHODS[moved[0]]} instead")

    def __init__(self, input_pattern="*", output_ext=".h5", identifier=None, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.params)}")
        self.input_pattern = input_pattern
        self.output_ext = output_ext
        self.identifier = identifier
        if identifier is not None:
            check_name(str(identifier), f"{type(self).__name__}: identifier")
        values = {k: p.default for k, p in self.params.items()}
        values.update(params)
        for k, v in values.items():
            param = self.params[k]
            try:
                v = values[k] = param.convert(v)
            except ValueError as e:
                raise ValueError(f"{self.name}: {k} {e}") from None
            if param.choices and v not in param.choices:
                raise ValueError(f"{self.name}: {k}={v!r} is not one of {param.choices}")
            if param.is_name:
                check_name(v, f"{self.name}: {k}")
        self._params = values
        self._param_hash = None

    # -- identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__ + (f"_{self.identifier}" if self.identifier else "")

    @property
    def result_params(self) -> dict:
        """The parameters that define the results (hashed into the records)."""
        return {k: self.params[k].hashed(v) for k, v in self.param_values.items()
                if self.params[k].affects_result
                and not (self.params[k].unhashed_default and v == self.params[k].default)}

    @property
    def param_values(self):
        """The job's parameters, read-only: they are fixed when the job is built, so
        the records written for one run all describe the same computation."""
        return MappingProxyType(self._params)

    @property
    def param_hash(self) -> str:
        if self._param_hash is None:  # once per job, not once per image
            self._param_hash = param_hash({"params": self.result_params, "pattern": self.input_pattern})
        return self._param_hash

    @property
    def logger(self):
        return get_logger(self.name)

    def warn(self, message: str) -> None:
        """Record a warning about the image being processed.

        It is logged, and stored with the image's entry in the job status
        (``warnings``), where ``batchlib status`` lists it: for results that
        were produced but should be looked at (e.g. a detection that could
        not be verified).
        """
        self.logger.warning("%s", message)
        self.__dict__.setdefault("_unit_warnings", []).append(str(message))

    # -- what the job works on ------------------------------------------------
    def list_inputs(self, input_folder) -> list:
        """Input paths matching :attr:`input_pattern`, sorted; temporary files skipped."""
        pattern = self.input_pattern
        if os.sep in pattern or (os.altsep and os.altsep in pattern) or "**" in pattern \
                or pattern.startswith("."):
            paths = glob.glob(os.path.join(str(input_folder), pattern), recursive="**" in pattern)
        else:  # a pattern of names: one scandir, what glob does at several times the cost
            import fnmatch

            try:
                with os.scandir(str(input_folder)) as it:
                    names = [e.name for e in it if not e.name.startswith(".")]
            except (FileNotFoundError, NotADirectoryError):
                names = []
            # Hidden names, temporaries among them, are left out already; one prefix
            # sorts as the names do.
            prefix = os.path.join(str(input_folder), "")
            return [prefix + n for n in sorted(fnmatch.filter(names, pattern))]
        return sorted(p for p in paths if not is_temporary(os.path.basename(p)))

    def outputs_for(self, input_path, folder) -> list:
        """Output containers of one input; override for one-to-many jobs."""
        # Only the last extension goes: "exp.v2.npy" and "exp.v3.npy" stay apart.
        stem = Path(input_path).stem
        return [os.path.join(str(folder), stem + self.output_ext)]

    def units_for(self, input_folder, folder, previous: Mapping) -> list | None:
        """The units of work, for jobs whose unit is not one input file.

        Parameters
        ----------
        input_folder, folder : str
            Where the inputs are, and the working folder (where outputs go).
        previous : mapping
            ``{key: entry}`` of what earlier runs recorded (``input_signature``,
            ``outputs``; see docs/status_schema.md), to reuse what they found
            out without opening the inputs again. Parsed only when read.

        Returns
        -------
        list of Unit or None
            ``None`` (the default): one unit per input of :meth:`list_inputs`,
            with the outputs of :meth:`outputs_for` and the signature of
            :meth:`input_signature`.
        """
        return None

    def folder_outputs(self, output_path) -> list:
        """Files beside the containers that this job writes for ``output_path``.

        Override in jobs that write such files (a per-container table, a QC
        picture): they are listed in the completion record and checked at
        planning, so a missing or damaged one gets its container redone.
        """
        return []

    def input_signature(self, unit: Unit) -> dict:
        """What identifies the inputs' content: size and mtime of each input file."""
        with_hash = bool(self.param_values.get("hash_inputs", False))
        return {os.path.basename(p): file_signature(p, with_hash) for p in unit.inputs}

    def validate_input(self, path) -> None:
        """Raise :class:`InvalidInputError` (naming the file and the reason) for a bad input."""
        if not os.path.exists(path):
            raise InvalidInputError(f"{path}: does not exist")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InvalidInputError(f"{path}: file is empty (0 bytes)")

    def validate_output(self, path) -> None:
        """Raise :class:`InvalidOutputError` if an output does not hold what it should."""
        try:
            with open_file(path, "r") as f:
                missing = [k for k in self.resolved_output_keys() if k not in f]
        except Exception as e:  # noqa: BLE001 - a damaged container fails in many ways
            raise InvalidOutputError(f"{path}: cannot be opened ({e})") from e
        if missing:
            raise InvalidOutputError(f"{path}: missing {missing}")

    def validate_unit(self, unit: Unit) -> None:
        """Raise :class:`InvalidInputError` if a unit to compute cannot be: by default,
        if an input is invalid (:meth:`validate_input`) or it has no outputs."""
        for path in unit.inputs:
            self.validate_input(path)
        if not unit.outputs:
            raise InvalidInputError(f"{unit.inputs[0]}: no outputs can be derived from it")

    def resolved_output_keys(self) -> list:
        return [k.format(**self.param_values) for k in self.output_keys]

    #: Space reserved beyond any estimate before writing into an existing h5
    #: container (HDF5 metadata, small tables); see :mod:`batchlib.io.space`.
    #: ``$BATCHLIB_RESERVE_MB`` changes it (e.g. for tests on a small file system).
    reserve_margin_bytes = int(float(os.environ.get("BATCHLIB_RESERVE_MB", "16")) * (1 << 20))

    def input_bytes(self, container, unit) -> int:
        """Size of what a unit's outputs are computed from: the sizes in its input signature."""
        return _signature_bytes(unit.signature)

    def estimate_output_bytes(self, container, unit) -> int:
        """Bytes the job will add to the open, existing ``container`` (before it runs).

        Reserved in h5 containers before an in-place write, so that a full disk
        stops the job before HDF5 writes anything. The default is what this
        job's datasets took last time (from its record), scaled down when the
        inputs grew (outputs are then extended, not rewritten); override it
        when the job knows better.
        """
        from .records import read_records

        rec = read_records(container).get(self.name) or {}
        last = sum(int(d.get("nbytes", 0)) for d in (rec.get("datasets") or {}).values())
        before, now = int(rec.get("input_nbytes") or 0), self.input_bytes(container, unit)
        if last and before and now > before:
            # Twice the proportional growth: appending rewrites the last, partial chunks too.
            return min(last, int(2 * last * (now - before) / before))
        return last

    # -- the work -------------------------------------------------------------
    def run(self, input_files, output_files, **kwargs):
        """Compute the outputs (BatchLib's contract).

        The framework calls it with the inputs of one unit and the paths to
        write (temporary names for new containers). One-to-one jobs can
        implement :meth:`process` instead.
        """
        for inp, out in zip(input_files, output_files):
            self.process(inp, out)

    def process(self, input_file, output_file):
        raise NotImplementedError(f"{type(self).__name__} must implement run() or process()")

    # -- running ----------------------------------------------------------------
    def __call__(self, folder, input_folder=None, **options):
        """Run this job alone on a folder (with its own lock and log); a shortcut for
        :func:`batchlib.workflow.run_job`, which takes the same options as
        :func:`batchlib.workflow.run_workflow`. Returns a :class:`batchlib.runner.JobResult`.
        """
        from .workflow import run_job  # the job does not know how it is run: the workflow does

        return run_job(self, folder, input_folder=input_folder, **options)


#: Methods of earlier versions that planning took over, with the hook to override instead.
_PLANNING_METHODS = {
    "list_units": "units_for", "check_unit": "input_signature or validate_output",
    "stale_reason": "input_signature", "fingerprint": "input_signature",
    "fingerprint_signature": "input_signature", "output_identities": "folder_outputs",
    "folder_outputs_problem": "folder_outputs", "unit_key": "units_for",
}


def _signature_bytes(sig) -> int:
    """Sum of the ``size`` / ``size_bytes`` values in an input signature."""
    if isinstance(sig, dict):
        return sum(int(v) if k in ("size", "size_bytes") and isinstance(v, (int, float))
                   else _signature_bytes(v) for k, v in sig.items())
    if isinstance(sig, list):
        return sum(_signature_bytes(v) for v in sig)
    return 0


__all__ = ["BatchJob", "Param", "parse_mapping", "Unit"]
