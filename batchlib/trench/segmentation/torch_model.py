"""Template: plugging a learned (PyTorch) model into the segmentation registry.

Nothing here is used by default and ``torch`` is imported only inside the
functions, so the package imports and its tests run without it. The network is
a deliberately tiny, *untrained* UNet-style module: it shows the contract, not
a working segmenter. To use a real model:

1. train a network mapping a normalised crop ``(B, 1, H, W)`` to per-pixel
   logits ``(B, 2, H, W)`` (background, cell interior) or replace
   :class:`TinyUNet` by your architecture;
2. save ``model.state_dict()`` with ``torch.save``;
3. opt in, e.g. in the job configuration hook::

       from batchlib.trench.segmentation import torch_model
       torch_model.register(weights="unet.pt", device="cuda")   # or "cpu"
       labels = segment_trenches(crops, method="unet", kind="phase")

The registered method turns probabilities into instances with the same numba
splitting as the default method, so touching cells are separated and numbered
from the closed end in the same way.
"""
from __future__ import annotations

import numpy as np

from .splitting import label_crops


def _require_torch():
    try:
        import torch
    except ImportError as exc:  # the plug-in is opt-in; say how to get it
        raise ImportError("the 'unet' segmentation method needs PyTorch: pip install torch") from exc
    return torch


def build_tiny_unet(channels: int = 8):
    """An untrained two-level UNet (1 input channel, 2 output logits)."""
    torch = _require_torch()
    nn = torch.nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

    class TinyUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = block(1, channels)
            self.bottom = block(channels, 2 * channels)
            self.up = nn.ConvTranspose2d(2 * channels, channels, 2, stride=2)
            self.out = nn.Sequential(block(2 * channels, channels), nn.Conv2d(channels, 2, 1))

        def forward(self, x):
            d = self.down(x)
            b = self.bottom(nn.functional.max_pool2d(d, 2))
            return self.out(torch.cat([d, self.up(b)], dim=1))

    return TinyUNet()


def load_model(weights=None, device: str = "cpu", channels: int = 8):
    """The tiny UNet on ``device``, with a ``state_dict`` file loaded when given."""
    torch = _require_torch()
    model = build_tiny_unet(channels)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval()


def predict_probability(model, crops, kind: str, device: str = "cpu", batch_size: int = 256):
    """Cell probability ``(..., H, W)`` of crops, cells bright for both kinds.

    Each crop is standardised (phase inverted) and padded to even sides for
    the network's single down/up-sampling step.
    """
    torch = _require_torch()
    crops = np.asarray(crops, dtype=np.float32)
    shape = crops.shape
    h, w = shape[-2:]
    x = crops.reshape(-1, 1, h, w)
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True) + 1e-6
    x = (x - mean) / std * (-1.0 if kind == "phase" else 1.0)
    x = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)), mode="reflect"))
    out = np.empty((x.shape[0], h, w), np.float32)
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            logits = model(torch.from_numpy(x[i:i + batch_size]).to(device))
            out[i:i + batch_size] = torch.softmax(logits, dim=1)[:, 1, :h, :w].cpu().numpy()
    return out.reshape(shape)


def make_method(model, device: str = "cpu", threshold: float = 0.5):
    """A registry function wrapping ``model``: probability, threshold, numba splitting."""

    def segment_unet(crops, kind, *, split_depth=0.25, min_length=8, min_area=40, open_end="keep",
                     device=device):
        # ``device`` at call time (the Segment job's --gpu) overrides the registration's.
        prob = predict_probability(model.to(device), crops, kind, device)
        flat = prob.reshape(-1, *prob.shape[-2:])
        n, w = len(flat), flat.shape[-1]
        labels = label_crops(flat, flat, flat > threshold, 0.0, np.zeros(n), np.full(n, (w - 1) / 2),
                             float(w), float(split_depth), int(min_length), int(min_area),
                             open_end == "drop", True)
        return labels.reshape(prob.shape)

    return segment_unet


def register(weights=None, device: str = "cpu", name: str = "unet", channels: int = 8):
    """Load the model and register it as segmentation method ``name`` (opt-in)."""
    from . import register_method

    register_method(name, make_method(load_model(weights, device, channels), device), relabel=False)
