"""What the completion records store must keep its meaning: a change recomputes every output.

The parameter hashes below are those of the released jobs. If one changes on purpose
(a new parameter that affects results), update it here and say so: every existing
output of that job, and of the jobs after it, is recomputed once.
"""
import pytest

from batchlib.trench.jobs import Compress, Ingest, Measure, Segment, Track, TrenchDetection

RECORDED = [
    (Ingest, {}, "652b1fc49f877a3c"),
    (Ingest, {"z_reduction": "4"}, "a87afadfd3392f3e"),
    # closed_end_margin added (with version 4); box_width's default 32 -> 0 (32 px at 0.1 um
    # pixels, scaled to the acquisition's) with version 12: recomputed once, deliberately
    (TrenchDetection, {}, "b840ac4e91d497b5"),
    (Compress, {}, "4575595700dad0d8"),
    # threshold was the default before "auto" (which names the method it resolves to)
    (Segment, {"method": "threshold"}, "6848329bac4506b1"),
    (Segment, {"method": "threshold", "method_params": '{"lumen_width": 12}'}, "02501acbeb9d1cae"),
    (Segment, {"method": "threshold", "method_params": ["lumen_width=12"]}, "02501acbeb9d1cae"),
    (Measure, {}, "fd6c63fc174495fe"),
    (Track, {}, "84182722ce40c190"),
]


def test_a_parameter_added_at_its_old_behaviour_leaves_the_hash_alone():
    """``unhashed_default``: Ingest's pixel_size_um and TrenchDetection's orientation were
    added with defaults that reproduce the recorded outputs; set otherwise, they count."""
    assert Ingest(pixel_size_um=0.0).param_hash == "652b1fc49f877a3c"
    assert Ingest(pixel_size_um=0.065).param_hash != "652b1fc49f877a3c"
    assert TrenchDetection(orientation="auto").param_hash == TrenchDetection().param_hash
    assert TrenchDetection(orientation="vertical").param_hash != TrenchDetection().param_hash


@pytest.mark.parametrize("cls, params, digest", RECORDED)
def test_parameter_hashes_keep_their_meaning(cls, params, digest):
    assert cls(**params).param_hash == digest, (
        f"{cls.__name__}({params}): the parameter hash changed, so every existing output of it "
        "would be recomputed; if that is deliberate, update RECORDED")
