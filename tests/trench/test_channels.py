"""Channel kinds from names and from pixels, and the choice of a configured channel."""
import numpy as np
import pytest
import tifffile

from batchlib.trench.channels import (ChannelChoiceError, choose_channel, kind_from_data,
                                      kind_from_name)
from batchlib.trench.synthetic import SyntheticConfig, simulate_position


@pytest.fixture(scope="module")
def generated():
    """First frames of phase and fluorescence channels of three generated positions."""
    out = []
    for seed, extra in enumerate([{}, {"fluor_background": 500, "illumination_variation": 0.3},
                                  {"phase_pdms_contrast": 0.8, "phase_cell_contrast": 0.5,
                                   "read_noise": 10.0, "fluor_amplitude": 40.0}]):
        cfg = SyntheticConfig(height=256, width=256, n_positions=1, n_timepoints=1,
                              channels=("phase", "gfp"), seed=seed, **extra)
        pos = simulate_position(cfg, 0)
        out.append((pos.movies["phase"][0], pos.movies["gfp"][0]))
    return out


@pytest.mark.parametrize("name,kind", [("Phase", "phase"), ("BF", "phase"), ("DIC", "phase"),
                                       ("Trans", "phase"), ("GFP", "fluorescence"),
                                       ("mCherry", "fluorescence"), ("5-FAM/pH 9.0", "fluorescence"),
                                       ("FM 4-64", "fluorescence"), ("c0", None), ("c1", None),
                                       ("channel 2", None)])
def test_kind_from_name_says_nothing_for_placeholders(name, kind):
    assert kind_from_name(name) == kind


def test_generated_channels_of_both_lumen_polarities(generated):
    for phase, gfp in generated:
        kind, conf = kind_from_data(phase)
        assert kind == "phase" and conf > 0.75, conf
        # The other polarity (bright walls, dark lumens and cells with bright halos)
        inverted = phase.max() + phase.min() - phase.astype(np.int64)
        assert kind_from_data(inverted)[0] == "phase"
        kind, conf = kind_from_data(gfp)
        assert kind == "fluorescence" and conf > 0.75, conf


def test_real_fixtures(shared_data):
    import nd2

    frame = tifffile.imread(shared_data / "phase_fov" / "molyso_example_frame.tif")
    assert kind_from_data(frame)[0] == "phase"
    assert kind_from_data(255 - frame)[0] == "phase"
    stack = tifffile.imread(shared_data / "chamber_stack" / "example_stack.tiff")
    kind, conf = kind_from_data([stack[0], stack[5], stack[9]])
    assert kind == "fluorescence" and conf > 0.9
    movie = nd2.imread(shared_data / "nd2" / "cluster.nd2")  # T Z C Y X
    for c in range(movie.shape[2]):
        assert kind_from_data(movie[0, 5, c])[0] == "fluorescence"


def test_noise_only_and_bad_frames():
    rng = np.random.default_rng(1)
    # An empty fluorescence frame: camera offset and noise, nothing darker than the background.
    assert kind_from_data(rng.normal(100, 3, (200, 200)))[0] == "fluorescence"
    with pytest.raises(ValueError, match="2-D"):
        kind_from_data(np.zeros(5))
    with pytest.raises(ValueError, match="no frames"):
        kind_from_data([])


def test_choose_channel_defaults_and_errors():
    names, keys = ["5-FAM/pH 9.0", "c1", "c2"], ["5-FAM_pH_9.0", "c1", "c2"]
    kinds = ["fluorescence", "fluorescence", "phase"]
    assert choose_channel("", names, keys, kinds) == 2  # the phase channel
    assert choose_channel("auto", names, keys, ["fluorescence"] * 3) == 0
    assert choose_channel("c1", names, keys, kinds) == 1
    assert choose_channel("5-FAM_pH_9.0", names, keys, kinds) == 0
    assert choose_channel("5-FAM/pH 9.0", names, keys, kinds) == 0
    with pytest.raises(ChannelChoiceError) as err:
        choose_channel("phase", names, keys, kinds, option="--segment_channel", where="a.h5")
    msg = str(err.value)
    assert msg.startswith("a.h5: no channel 'phase'")
    assert "c1 (fluorescence), c2 (phase)" in msg and "--segment_channel" in msg
