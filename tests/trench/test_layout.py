"""The container contract: one KeySpec per key, and the acquisition metadata reader."""
import numpy as np
import pytest

from batchlib.container_job import KeySpec
from batchlib.errors import InvalidInputError
from batchlib.io import create_dataset, open_file, write_attrs
from batchlib.trench import layout
from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, Track, TrenchDetection


def test_producers_and_consumers_share_one_spec_per_key():
    for cls in (Ingest, TrenchDetection, Compress, Segment, Measure, Track):
        keys = {**getattr(cls, "input_keys", {}), **cls.output_keys}
        for key, spec in keys.items():
            assert isinstance(spec, KeySpec), (cls.__name__, key)
            assert spec == layout.spec(key), (cls.__name__, key)
    # Measure and Track check the labels' dtype as Segment writes them.
    assert Measure.input_keys["segmentation/{segmentation}"] == Segment.output_keys["segmentation/{name}"] \
        == KeySpec(ndim=4, dtype="ui")
    with pytest.raises(KeyError, match="not a key of the trench container"):
        layout.spec("tables/unknown")


def test_acquisition_meta(tmp_path):
    with open_file(tmp_path / "a.h5", "a") as f:
        for key in ("gfp", "phase"):
            create_dataset(f, f"trench_crops/{key}", data=np.zeros((1, 1, 2, 2), np.uint16))
        # Without the Ingest attribute: the keys come from the group, every kind fluorescence.
        meta = layout.AcquisitionMeta.read(f, keys_from="trench_crops")
        assert meta.channel_keys == ["gfp", "phase"] and meta.channel_kinds == ["fluorescence"] * 2
        assert meta.pixel_size_um is None
        with pytest.raises(InvalidInputError, match="no channels recorded"):
            layout.resolve_channel(f, "auto", where="a.h5")
        write_attrs(f, {"acquisition": {"channels": ["Phase", "GFP"], "channel_keys": ["phase", "gfp"],
                                        "channel_kinds": ["phase", "fluorescence"], "pixel_size_um": 0.1}})
        meta = layout.AcquisitionMeta.read(f, keys_from="trench_crops")
        assert meta.channel_keys == ["phase", "gfp"] and meta.kind("gfp") == "fluorescence"
        assert meta.pixel_size_um == 0.1
        assert layout.resolve_channel(f, "auto") == ("phase", "phase")
        assert layout.resolve_channel(f, "GFP") == ("gfp", "fluorescence")
        with pytest.raises(InvalidInputError, match="no channel 'rfp'.*--segment_channel"):
            layout.resolve_channel(f, "rfp", option="--segment_channel")
