"""The shipped U-Net run by ONNX Runtime: the ``unet`` method without PyTorch.

Next to every weights file ``<name>.pt`` may lie ``<name>.onnx``, the same
network exported by :func:`export_onnx` (``batchlib train-segmenter`` writes
both; ``python -m batchlib.trench.segmentation.onnx_model unet.pt`` exports
an existing one). The export records the SHA-256 of the ``.pt`` it came from,
so a ``.onnx`` left behind by older weights is never used for newer ones.

Why: ``import torch`` costs about 1.1 s and 218 MB in every process that
segments; ONNX Runtime loads in 0.03 s and 52 MB. Per crop it is slower
(304 x 24 crops: 1.19 against 0.95 ms on one thread), which the import makes
up for (the workflow: docs/benchmarks.md). Its logits
agree with PyTorch's within 1e-4 (float32 summation order), which moves a
pixel across a class boundary only where the probabilities tie to that
precision (docs/segmentation.md measures how often).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np

#: where the ``.pt`` file's digest is kept in the ONNX model's metadata
SOURCE_KEY = "batchlib_source_sha256"
META_KEY = "batchlib_meta"
OPSET = 17


def onnx_path(weights) -> Path:
    """The ``.onnx`` file that belongs to a ``.pt`` weights file."""
    return Path(weights).with_suffix(".onnx")


def file_sha256(path) -> str:
    """The SHA-256 hex digest of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_export(weights, threads: int | None = None):
    """An :class:`OnnxUNet` of the ``.onnx`` export of ``weights``, or None when there is
    none or it was made from other weights (its recorded digest differs)."""
    path = onnx_path(weights)
    if not path.is_file():
        return None
    try:
        net = OnnxUNet(path, threads)
    except Exception:  # noqa: BLE001 - unreadable: as if absent, PyTorch runs the .pt
        return None
    return net if net.source == file_sha256(weights) else None


class OnnxUNet:
    """The U-Net of an ONNX export: ``(B, 2, H, W)`` float32 in, logits ``(B, 3, H, W)`` out.

    Parameters
    ----------
    path : path
        The ``.onnx`` file (:func:`export_onnx`).
    threads : int, optional
        Intra-op threads; by default 1 in a worker process (the executor runs one
        worker per core) and ONNX Runtime's own choice in the main process.
    """

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        if threads is None and multiprocessing.parent_process() is not None:
            threads = 1
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        # (ONNX Runtime's threads spin between operators, as its default: with two
        # threads in the main process 21.5 against 27.4 ms for 32 crops of 304 x 24
        # without; a worker runs one thread, which does not spin)
        self.path = str(path)
        self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        self.meta = json.loads(meta.get(META_KEY, "{}"))
        self.source = meta.get(SOURCE_KEY)
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]

    def __getstate__(self):  # a session does not pickle: workers open their own
        raise TypeError("OnnxUNet does not pickle; load it in the worker")


def softmax_classes(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 (the classes) in float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def export_onnx(weights, out=None) -> Path:
    """Export a weights file to ONNX (needs PyTorch), recording its digest and metadata.

    Parameters
    ----------
    weights : path
        A ``.pt`` file of :func:`~.torch_model.save_weights`.
    out : path, optional
        Default: ``weights`` with the suffix ``.onnx``.

    Returns
    -------
    Path of the written file (written to a temporary name, then renamed).
    """
    import warnings

    import onnx
    import torch

    from .torch_model import load_weights, load_model

    weights = Path(weights)
    out = Path(out) if out else onnx_path(weights)
    model = load_model(weights, "cpu")
    meta = load_weights(weights)[2]
    tmp = out.with_name(out.name + ".tmp")
    x = torch.zeros(2, 2, 64, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), str(tmp), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load(str(tmp))
    for key, value in ((SOURCE_KEY, file_sha256(weights)), (META_KEY, json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


def main(argv=None) -> int:
    """``python -m batchlib.trench.segmentation.onnx_model WEIGHTS.pt [OUT.onnx]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    print(f"wrote {export_onnx(*args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
