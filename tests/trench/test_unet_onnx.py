"""The shipped U-Net run by ONNX Runtime (the default) agrees with PyTorch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # a test dependency: never skipped in CI
pytest.importorskip("onnxruntime")    # a dependency of the package

from batchlib.trench.segmentation import onnx_model, torch_model  # noqa: E402
from batchlib.trench.segmentation.scale import resized  # noqa: E402
from batchlib.trench.segmentation.training import generated_examples  # noqa: E402


@pytest.fixture(scope="module")
def crops():
    x, _, kinds = generated_examples(["nominal", "low_snr", "dark_lumen"], [21, 22])[:3]
    return x, kinds


def test_the_shipped_export_is_of_the_shipped_weights():
    net = onnx_model.load_export(torch_model.DEFAULT_WEIGHTS)
    assert net is not None, "models/unet.onnx is missing or stale: python -m " \
                            "batchlib.trench.segmentation.onnx_model batchlib/trench/segmentation/models/unet.pt"
    assert net.source == onnx_model.file_sha256(torch_model.DEFAULT_WEIGHTS)
    assert net.meta == torch_model.load_weights()[2]              # box_margin etc. travel with it


@pytest.mark.parametrize("zoom", [None, 0.7, 1.45])
def test_onnx_and_torch_give_the_same_probabilities_and_labels(crops, zoom):
    x, kinds = crops
    for kind in ("phase", "fluorescence"):
        c = x[kinds == kind][:24]
        nets = {b: torch_model._cached_model(None, "cpu", b)[0] for b in ("onnx", "torch")}
        assert isinstance(nets["onnx"], onnx_model.OnnxUNet) and hasattr(nets["torch"], "parameters")
        p = {b: torch_model.predict_probabilities(n, c, kind) for b, n in nets.items()}
        assert p["onnx"].shape == (3, *c.shape)
        np.testing.assert_allclose(p["onnx"], p["torch"], atol=1e-4)
        labels = {b: torch_model.segment_unet(c, kind, backend=b, zoom=zoom) for b in nets}
        assert labels["onnx"].max() >= 3                            # cells found
        np.testing.assert_array_equal(labels["onnx"], labels["torch"])


@pytest.mark.parametrize("shape,zoom", [((190, 32), 0.55), ((190, 32), 0.71), ((301, 29), 1.43),
                                        ((90, 24), 1.8)])
def test_resizing_matches_torch_interpolate(shape, zoom):
    h, w = shape
    x = np.random.default_rng(0).normal(size=(3, h, w)).astype(np.float32)
    size = (round(h * zoom), round(w * zoom))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=size, mode="bilinear",
                                          align_corners=False, antialias=zoom < 1)[:, 0].numpy()
    np.testing.assert_allclose(resized(x, size, antialias=zoom < 1), ref, atol=1e-4)


def test_an_export_of_other_weights_is_not_used(tmp_path, crops):
    x, kinds = crops
    c = x[kinds == "phase"][:4]
    weights = tmp_path / "mine.pt"
    model = torch_model.build_unet()                               # random weights
    torch_model.save_weights(model, weights, {}, {"box_margin": [0.0, 3.0]})
    assert onnx_model.load_export(weights) is None                 # no export yet
    out = onnx_model.export_onnx(weights)
    assert out == tmp_path / "mine.onnx" and not list(tmp_path.glob("*.tmp"))
    net = onnx_model.load_export(weights)
    assert net.meta == {"box_margin": [0.0, 3.0]}
    np.testing.assert_array_equal(segment(c, weights, "onnx"), segment(c, weights, "torch"))
    # new weights under the same name: the old export no longer belongs to them
    torch_model.save_weights(torch_model.build_unet(channels=(8, 16, 32)), weights,
                             {"channels": [8, 16, 32]})
    torch_model._CACHE.clear()
    assert onnx_model.load_export(weights) is None
    with pytest.raises(ValueError, match="exported from other weights"):
        segment(c, weights, "onnx")
    assert segment(c, weights, "auto").shape == c.shape           # auto falls back to PyTorch
    torch_model._CACHE.clear()


def segment(c, weights, backend):
    return torch_model.segment_unet(c, "phase", weights=str(weights), backend=backend)


def test_a_bad_backend_is_refused_when_the_job_is_built(monkeypatch):
    import importlib.util

    from batchlib.trench.jobs import Segment

    with pytest.raises(ValueError, match="Segment: backend must be one of auto, onnx, torch, not 'tf'"):
        Segment(method="unet", method_params='{"backend": "tf"}')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "onnxruntime") else real(name, *a))
    for backend, missing in (("torch", "torch"), ("onnx", "onnxruntime")):
        with pytest.raises(ImportError, match=f"Segment: backend={backend} needs {missing}, which is "
                                              "not installed"):
            Segment(method="unet", method_params=f'{{"backend": "{backend}"}}')


def test_the_segment_job_records_what_ran_the_network(tmp_path):
    """The labels say whether ONNX Runtime or PyTorch ran the U-Net, with its version;
    the labels are the same."""
    import onnxruntime

    from batchlib.io import open_file, read_attrs
    from batchlib.trench.jobs import Compress, Ingest, Segment, TrenchDetection
    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition
    from batchlib import run_workflow

    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acquisition(raw, SyntheticConfig(height=256, width=256, n_positions=1, n_timepoints=2,
                                           channels=("phase",), seed=3), layout="ome-tiff",
                      name="acq", ground_truth=False)
    jobs = [Ingest(), TrenchDetection(qc_plot=False), Compress(),
            Segment(method="unet", name="by_onnx"),
            Segment(method="unet", method_params='{"backend": "torch"}', name="by_torch",
                    identifier="torch")]
    run_workflow("Test", out, jobs, input_folder=raw, progress=False, log_level="WARNING")
    with open_file(out / "acq_pos000.h5", "r") as f:
        onnx, by_torch = f["segmentation/by_onnx"], f["segmentation/by_torch"]
        assert read_attrs(onnx)["runtime"] == f"onnxruntime {onnxruntime.__version__}"
        assert read_attrs(by_torch)["runtime"] == f"torch {torch.__version__}"
        assert onnx[:].max() >= 2
        np.testing.assert_array_equal(onnx[:], by_torch[:])


@pytest.mark.parametrize("scale", ["stack", "per_frame"])
def test_the_network_sees_the_whole_stacks_normalisation_a_batch_at_a_time(scale):
    """predict_probabilities normalises and pads a batch at a time (no float copy of the
    stack): every crop reaches the network as normalise() of the whole stack gives it."""
    rng = np.random.default_rng(5)
    crops = rng.integers(200, 4000, (7, 3, 61, 21)).astype(np.uint16)  # pads to 64 x 24
    frame_scale = torch_model.frame_scales(crops) if scale == "per_frame" else None
    seen = []

    def net(x):                                        # numpy in and out, as ONNX Runtime
        seen.append(x.copy())
        return np.stack([x[:, 0], -x[:, 0], 0 * x[:, 0]], axis=1)

    p = torch_model.predict_probabilities(net, crops, "phase", batch_size=4, scale=frame_scale)
    assert [len(x) for x in seen] == [4] * 5 + [1]                   # 21 crops, 4 at a time
    whole = torch_model.pad_to(torch_model.normalise(crops, "phase", frame_scale), 8)
    np.testing.assert_array_equal(np.concatenate(seen), whole)
    logits = np.stack([whole[:, 0], -whole[:, 0], 0 * whole[:, 0]], axis=1)
    expected = onnx_model.softmax_classes(logits)[:, :, :61, :21].transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(p, expected.reshape(3, 7, 3, 61, 21))
