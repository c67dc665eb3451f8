"""Segmentation methods resolvable by name in any process.

A job is built in one process and run in others (``processes``, dask and
SLURM workers), so a method must be found again from its *name* wherever a
crop stack is segmented. Three kinds of names resolve everywhere:

* a built-in name (``"threshold"``, ``"unet"``);
* an import path ``"package.module:function"``;
* the name of an entry point in the group ``batchlib.segmentation_methods``
  (a plug-in package declares ``mynet = mypkg.seg:segment`` in its metadata).

:func:`register_method` adds a name in the calling process only; such a
method reaches workers when its function can be pickled by reference (a
module-level function), because the Segment job carries the resolved
:class:`Method`, not just its name.
"""
from __future__ import annotations

import importlib
import inspect
import pickle
from importlib.metadata import entry_points
from typing import Callable, NamedTuple

ENTRY_POINT_GROUP = "batchlib.segmentation_methods"


class UnknownMethodError(KeyError, ValueError):
    """A segmentation method name that cannot be resolved (the message says why and lists the known ones)."""

    def __str__(self):
        return str(self.args[0])


class Method(NamedTuple):
    """A resolved method: its name, function and whether its labels must be renumbered."""

    name: str
    fn: Callable
    relabel: bool = True


_REGISTRY: dict[str, Method] = {}
#: names that resolve in every process without any registration
BUILTINS: dict[str, tuple[str, bool]] = {}


def register_method(name: str, fn: Callable, *, relabel: bool = True, overwrite: bool = True) -> None:
    """Make ``fn`` available as ``segment_trenches(..., method=name)`` in this process.

    Parameters
    ----------
    name : str
    fn : callable
        ``fn(crops: ndarray (..., H, W), kind: str, **params) -> labels`` of the
        same shape.
    relabel : bool
        Renumber its output 1..k from the closed end in every crop (leave True
        unless ``fn`` already guarantees that numbering).
    overwrite : bool
        Replace an existing method of that name; otherwise raise ``ValueError``.

    Notes
    -----
    Worker processes do not see this registration. The Segment job sends the
    function itself to them, which works for module-level functions; for
    anything else use an import path or an entry point (module docstring).
    """
    if not callable(fn):
        raise TypeError(f"method {name!r} must be callable, got {type(fn).__name__}")
    if not overwrite and (name in _REGISTRY or name in BUILTINS):
        raise ValueError(f"segmentation method {name!r} is already registered")
    _REGISTRY[str(name)] = Method(str(name), fn, bool(relabel))


def _builtin(name: str, path: str, relabel: bool) -> None:
    """Declare a built-in method by import path (imported on first use: keeps torch lazy)."""
    BUILTINS[name] = (path, relabel)


def _entry_point_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def available_methods() -> list[str]:
    """Built-in, registered and entry-point method names, sorted."""
    return sorted(set(BUILTINS) | set(_REGISTRY) | set(_entry_point_names()))


def _import_path(path: str, name: str) -> Callable:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownMethodError(f"segmentation method {name!r}: an import path must read "
                                 "'package.module:function'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownMethodError(f"segmentation method {name!r}: cannot import module "
                                 f"{module_name!r}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownMethodError(f"segmentation method {name!r}: module {module_name!r} "
                                     f"has no attribute {attr!r}") from None
    if not callable(obj):
        raise UnknownMethodError(f"segmentation method {name!r}: {path} is not callable")
    return obj


def resolve_method(method) -> Method:
    """The :class:`Method` for a name, an import path or an already resolved ``Method``.

    Raises
    ------
    UnknownMethodError
        Naming the method, why it failed and the available names.
    """
    if isinstance(method, Method):
        return method
    name = str(method)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTINS:
        path, relabel = BUILTINS[name]
        found = Method(name, _import_path(path, name), relabel)
    elif ":" in name:
        found = Method(name, _import_path(name, name), True)
    else:
        eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not eps:
            raise UnknownMethodError(
                f"unknown segmentation method {name!r}; available: {', '.join(available_methods())} "
                f"(or a 'package.module:function' path, or an entry point in the group "
                f"{ENTRY_POINT_GROUP!r}; register_method() only registers in the calling process)")
        try:
            fn = eps[0].load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in package: say which one
            raise UnknownMethodError(f"segmentation method {name!r}: entry point "
                                     f"{eps[0].value!r} failed to load: {e}") from None
        found = Method(name, fn, True)
    _REGISTRY[name] = found  # resolve once per process
    return found


#: the default: the shipped U-Net where ONNX Runtime or PyTorch is installed, else the classical method
AUTO = "auto"


def default_method() -> str:
    """What ``method="auto"`` means in this environment: ``"unet"`` when ONNX Runtime
    (a dependency of the package) or PyTorch can be imported, otherwise ``"threshold"``.

    End to end on 14 generator families (held-out seeds, detected boxes) the
    U-Net is as accurate or more on every figure, phase and fluorescence, at
    about 1.5x the time of the whole workflow (docs/segmentation.md). It runs
    on ONNX Runtime by default (:mod:`.onnx_model`), on PyTorch where only that
    is installed; without either the classical method runs.
    """
    import importlib.util

    if any(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "torch")):
        return "unet"
    return "threshold"


def get_method(name: str) -> Callable:
    """The function of method ``name`` (see :func:`resolve_method`)."""
    return resolve_method(name).fn


def _accepted(fn) -> tuple[set, bool]:
    """Keyword parameters ``fn`` accepts after ``(crops, kind)``, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: cannot tell
        return set(), True
    names, var_kw = set(), False
    positional = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            positional += p.kind is p.POSITIONAL_OR_KEYWORD
            if positional > 2 or p.kind is p.KEYWORD_ONLY:
                names.add(p.name)
    return names, var_kw


def accepted_keywords(fn) -> set:
    """Keyword parameters ``fn`` declares by name (not through ``**kwargs``)."""
    return _accepted(fn)[0]


def check_method(method, params: dict | None = None, gpu: bool = False) -> Method:
    """Resolve ``method`` and check ``params`` and ``gpu`` against it, before any work.

    Parameters
    ----------
    method : str or Method
    params : dict
        Keyword parameters the method will be called with.
    gpu : bool
        Whether the method will get ``device="cuda"``: it must accept
        ``device`` and CUDA must be usable here.

    A method function may carry ``fn.check_params(params)``, called here to
    check more than names (the ``unet`` method loads its weights file).

    Returns
    -------
    Method
        Carrying a function that pickles by reference when possible, so a job
        holding it runs on any executor.

    Raises
    ------
    UnknownMethodError, ValueError, RuntimeError
    """
    from ..jobs.segment import resolve_device  # the single CUDA check of the package

    found = resolve_method(method)
    accepted, var_kw = _accepted(found.fn)
    unknown = sorted(set(params or {}) - accepted) if not var_kw else []
    if unknown:
        raise ValueError(f"segmentation method {found.name!r} does not accept parameter(s) "
                         f"{unknown}; it accepts {sorted(accepted - {'device'})}")
    check = getattr(found.fn, "check_params", None)
    if check is not None:  # a method's own check, e.g. that its weights file loads
        check(dict(params or {}))
    if gpu:
        if not var_kw and "device" not in accepted:
            raise ValueError(f"segmentation method {found.name!r} cannot run on a GPU "
                             "(it takes no 'device' parameter); drop gpu=True")
        resolve_device(True)
    return found


def is_picklable(method: Method) -> bool:
    """Whether ``method`` can be sent to another process (module-level functions can)."""
    try:
        pickle.dumps(method.fn)
    except Exception:  # noqa: BLE001 - lambdas, closures, local functions
        return False
    return True
