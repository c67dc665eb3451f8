"""Cell segmentation of trench crops, with a registry of methods.

A method is a function ``fn(crops, kind, **params) -> labels`` taking crops of
shape ``(..., H, W)`` (trench axis vertical, closed end at row 0) and returning
integer labels of the same shape. The default ``"threshold"`` method
(:func:`.threshold.segment_threshold`) needs no trained model; learned models
plug in with :func:`register_method` (see :mod:`.torch_model` for a template).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .numbering import relabel_from_closed_end
from .threshold import segment_threshold

KINDS = ("phase", "fluorescence")

_METHODS: dict[str, tuple[Callable, bool]] = {}


class UnknownMethodError(KeyError, ValueError):
    """A segmentation method name that is not registered (message lists the available ones)."""

    def __str__(self):
        return str(self.args[0])


def register_method(name: str, fn: Callable, *, relabel: bool = True, overwrite: bool = True) -> None:
    """Make ``fn`` available as ``segment_trenches(..., method=name)``.

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
    """
    if not callable(fn):
        raise TypeError(f"method {name!r} must be callable, got {type(fn).__name__}")
    if not overwrite and name in _METHODS:
        raise ValueError(f"segmentation method {name!r} is already registered")
    _METHODS[str(name)] = (fn, bool(relabel))


def available_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> Callable:
    """The function registered as ``name``; :class:`UnknownMethodError` lists the available ones."""
    try:
        return _METHODS[name][0]
    except KeyError:
        raise UnknownMethodError(f"unknown segmentation method {name!r}; available: "
                                 f"{', '.join(available_methods())}") from None


def segment_trenches(crops, method: str = "threshold", kind: str = "phase", **params) -> np.ndarray:
    """Segment cells in trench crops.

    Parameters
    ----------
    crops : ndarray, shape (..., H, W)
        ``(H, W)``, ``(T, H, W)``, ``(N, T, H, W)`` or any leading dimensions.
    method : str
        A registered method (:func:`available_methods`); default ``"threshold"``.
    kind : {"phase", "fluorescence"}
    **params
        Passed to the method.

    Returns
    -------
    labels : int32 ndarray, same shape as ``crops``
        Background 0; in every 2-D crop the cells are numbered 1..k from the
        closed end (label 1 is the mother cell).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    crops = np.asarray(crops)
    if crops.ndim < 2:
        raise ValueError(f"crops must have shape (..., H, W); got {crops.shape}")
    get_method(method)
    fn, relabel = _METHODS[method]
    labels = np.asarray(fn(crops, kind, **params))
    if labels.shape != crops.shape:
        raise ValueError(f"method {method!r} returned shape {labels.shape} for crops {crops.shape}")
    if relabel:
        return relabel_from_closed_end(labels)
    return labels.astype(np.int32, copy=False)


register_method("threshold", segment_threshold, relabel=False)

__all__ = ["segment_trenches", "register_method", "get_method", "available_methods",
           "segment_threshold", "relabel_from_closed_end", "UnknownMethodError", "KINDS"]
