"""Segmentation plug-ins resolve in worker processes (processes executor, dask LocalCluster)."""
import json
import shutil
import sys
import textwrap

import numpy as np
import pytest

from batchlib import run_workflow
from batchlib.io import open_file, read_table
from batchlib.trench.jobs import Compress, Ingest, Segment, TrenchDetection
from batchlib.trench.segmentation import (check_method, register_method, resolve_method,
                                          segment_trenches)
from batchlib.trench.layout import TRENCHES_TABLE
from batchlib.trench.segmentation.empty_trenches import clean_empty_trenches
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

CFG = SyntheticConfig(height=256, width=256, n_positions=2, n_timepoints=2, channels=("phase",),
                      seed=3)
PLUGIN = textwrap.dedent('''
    """A third-party segmentation plug-in: keeps only the mother cell of the default method."""
    from batchlib.trench.segmentation import segment_threshold

    def mothers(crops, kind, *, keep=1, lumen_width=14):
        labels = segment_threshold(crops, kind, lumen_width=lumen_width)
        return labels * (labels <= keep)
''')


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """An importable module ``batchlib_test_plugin`` and an installed-looking distribution
    declaring it as the entry point ``mothers`` (found by importlib.metadata on sys.path)."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "batchlib_test_plugin.py").write_text(PLUGIN)
    dist = root / "batchlib_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: batchlib-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[batchlib.segmentation_methods]\nmothers = batchlib_test_plugin:mothers\n")
    return root


@pytest.fixture
def on_path(plugin_path, monkeypatch):
    """The plug-in importable here and in workers (spawned workers inherit sys.path and the env)."""
    monkeypatch.syspath_prepend(str(plugin_path))
    monkeypatch.setenv("PYTHONPATH", str(plugin_path))
    import batchlib.trench.segmentation.methods as methods
    monkeypatch.setattr(methods, "_REGISTRY", {})
    return plugin_path


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """A folder of two containers with trench crops (Ingest, TrenchDetection, Compress done)."""
    root = tmp_path_factory.mktemp("plugin_wf")
    raw, out = root / "raw", root / "out"
    write_acquisition(raw, CFG, layout="ome-tiff", name="acq")
    shutil.rmtree(raw / "ground_truth")
    res = run_workflow("Base", out, [Ingest(), TrenchDetection(qc_plot=False), Compress()],
                       input_folder=raw, progress=False)
    assert res.success
    return raw, out


def segment_in(cropped, tmp_path, job, executor):
    raw, base = cropped
    out = tmp_path / "out"
    shutil.copytree(base, out)
    res = run_workflow("Seg", out, [Ingest(), TrenchDetection(qc_plot=False), Compress(), job],
                       input_folder=raw, executor=executor, n_jobs=2, progress=False,
                       ignore_failed_outputs=True)
    status = json.loads((out / "batchlib" / f"{job.name}.status").read_text())
    labels = {}
    for name, entry in status["files"].items():
        if entry["state"] == "done":
            with open_file(out / name, "r") as f:
                labels[name] = f[f"segmentation/{job.param_values['name']}"][:]
    return res, status, labels


def only_mothers(cropped, labels):
    """The plug-in ran: every crop has only label 1, where the default method puts its mother."""
    _, base = cropped
    assert sorted(labels) == ["acq_pos000.h5", "acq_pos001.h5"]
    n_cells = 0
    for name, lab in labels.items():
        with open_file(base / name, "r") as f:
            crops = f["trench_crops/phase"][:]
            empty = read_table(f, TRENCHES_TABLE)["empty"].to_numpy(bool)
        # what recurs in most empty trenches is dropped by the job, whatever the method
        ref = clean_empty_trenches(segment_threshold_ref(crops), empty)
        np.testing.assert_array_equal(lab, np.where(ref == 1, 1, 0))
        n_cells += int((lab.reshape(-1, *lab.shape[-2:]).max(axis=(1, 2)) == 1).sum())
    assert n_cells > 5


def segment_threshold_ref(crops):
    return segment_trenches(crops, method="threshold", kind="phase", lumen_width=14)


@pytest.mark.parametrize("executor", ["processes", "dask"])
@pytest.mark.parametrize("how", ["path", "entry_point", "registered"])
def test_plugin_reaches_workers(cropped, tmp_path, on_path, executor, how):
    method = {"path": "batchlib_test_plugin:mothers", "entry_point": "mothers",
              "registered": "my_mothers"}[how]
    if how == "registered":  # in this process only: the job carries the function
        import batchlib_test_plugin

        register_method("my_mothers", batchlib_test_plugin.mothers)
    job = Segment(method=method, method_params='{"lumen_width": 14}')
    res, status, labels = segment_in(cropped, tmp_path, job, executor)
    assert res.success, status
    only_mothers(cropped, labels)


def test_unpicklable_registration_fails_in_workers_with_a_clear_error(cropped, tmp_path, on_path):
    from batchlib_test_plugin import mothers

    register_method("local_only", lambda crops, kind, **kw: mothers(crops, kind, **kw))
    res, status, labels = segment_in(cropped, tmp_path, Segment(method="local_only"), "processes")
    assert not res.success and not labels
    errors = [e["error"] for e in status["files"].values()]
    assert len(errors) == 2
    assert all("unknown segmentation method 'local_only'" in e and "register_method" in e
               and "package.module:function" in e for e in errors)
    # The same registration works in the calling process (serial executor).
    res, status, labels = segment_in(cropped, tmp_path / "serial", Segment(method="local_only"),
                                     "serial")
    assert res.success
    only_mothers(cropped, labels)


def test_methods_are_checked_when_the_job_is_built(on_path):
    with pytest.raises(ValueError, match="Segment: unknown segmentation method 'mothrs'.*threshold"):
        Segment(method="mothrs")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.mod': "
                                         "No module named 'no_such_pkg'"):
        Segment(method="no_such_pkg.mod:fn")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        Segment(method="batchlib_test_plugin:nope")
    with pytest.raises(ValueError, match=r"does not accept parameter\(s\) \['kep'\]; it accepts "
                                         r"\['keep', 'lumen_width'\]"):
        Segment(method="mothers", method_params='{"kep": 2}')
    with pytest.raises(ValueError, match="method_params is not valid JSON"):
        Segment(method_params="{lumen")
    with pytest.raises(ValueError, match="cannot run on a GPU"):
        Segment(method="mothers", gpu=True)
    assert resolve_method("mothers").fn is resolve_method("batchlib_test_plugin:mothers").fn
    assert check_method("threshold", {"lumen_width": 12}).name == "threshold"
    assert "batchlib_test_plugin" in sys.modules
