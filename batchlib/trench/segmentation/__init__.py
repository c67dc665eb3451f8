"""Cell segmentation of trench crops, with a registry of methods.

A method is a function ``fn(crops, kind, **params) -> labels`` taking crops of
shape ``(..., H, W)`` (trench axis vertical, closed end at row 0) and returning
integer labels of the same shape. The default ``"threshold"`` method
(:func:`.threshold.segment_threshold`) needs no trained model. Methods are
resolved by name in any process (built-ins, ``"package.module:function"``
paths, ``batchlib.segmentation_methods`` entry points; see :mod:`.methods`).
"""
from __future__ import annotations

import numpy as np

from .methods import (BUILTINS, ENTRY_POINT_GROUP, Method, UnknownMethodError, _builtin,
                      available_methods, check_method, get_method, register_method, resolve_method)
from .numbering import relabel_from_closed_end

# The classical method (scipy.ndimage, numba: about 0.4 s to import) is loaded when
# first used: a job checks its method when it is built, also on a rerun with
# nothing to do.


def __getattr__(name):
    if name == "segment_threshold":
        from .threshold import segment_threshold

        return segment_threshold
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


KINDS = ("phase", "fluorescence")


def segment_trenches(crops, method: str = "threshold", kind: str = "phase", **params) -> np.ndarray:
    """Segment cells in trench crops.

    Parameters
    ----------
    crops : ndarray, shape (..., H, W)
        ``(H, W)``, ``(T, H, W)``, ``(N, T, H, W)`` or any leading dimensions.
    method : str or Method
        A method name (:func:`available_methods`), a ``"package.module:function"``
        path or a :class:`Method` from :func:`resolve_method`; default ``"threshold"``.
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
    name, fn, relabel = resolve_method(method)
    labels = np.asarray(fn(crops, kind, **params))
    if labels.shape != crops.shape:
        raise ValueError(f"method {name!r} returned shape {labels.shape} for crops {crops.shape}")
    if relabel:
        return relabel_from_closed_end(labels)
    return labels.astype(np.int32, copy=False)


_builtin("threshold", "batchlib.trench.segmentation.threshold:segment_threshold", relabel=False)
_builtin("unet", "batchlib.trench.segmentation.torch_model:segment_unet", relabel=False)

__all__ = ["segment_trenches", "register_method", "get_method", "resolve_method", "check_method",
           "available_methods", "segment_threshold", "relabel_from_closed_end", "Method",
           "UnknownMethodError", "ENTRY_POINT_GROUP", "BUILTINS", "KINDS"]
