"""The training loss's weight on the cells' poles (``train(pole_weight=...)``)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # a test dependency: never skipped in CI

from batchlib.trench.segmentation import training  # noqa: E402


def test_pole_rows_are_both_sides_of_every_change_along_the_trench():
    labels = np.zeros((1, 12, 3), np.int32)
    labels[0, 2:6] = 1                 # a cell, rows 2-5
    labels[0, 6:10] = 2                # touching the next, rows 6-9
    rows = training.pole_rows(labels)[0]
    assert rows.all(axis=1).tolist() == [0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    labels[0, 3, 1] = 0                # a hole: its column changes there too
    assert training.pole_rows(labels)[0, 2:5, 1].all() and not training.pole_rows(labels)[0, 3, 0]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(size=(3, 3, 20, 8)).astype(np.float32))
    y = rng.integers(0, 3, (3, 20, 8)).astype(np.int64)
    y[1, 15:] = -100                   # padding: counted by neither loss
    poles = rng.random((3, 20, 8)) < 0.2
    return logits, y, poles


def test_a_pole_weight_of_one_is_torchs_class_weighted_cross_entropy():
    logits, y, poles = _data()
    w = torch.tensor([1.0, 1.0, 2.0])
    plain = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), weight=w)
    got = training._pole_weighted_loss(torch, logits, y, poles, w, 1.0)
    assert float(got) == pytest.approx(float(plain), rel=1e-6)


def test_the_pole_weight_multiplies_the_poles_share_of_the_loss():
    logits, y, poles = _data(1)
    w = torch.tensor([1.0, 1.0, 2.0])
    per = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="none").numpy()
    cw = np.where(y >= 0, np.array([1.0, 1.0, 2.0])[np.clip(y, 0, None)], 0.0)
    pw = cw * np.where(poles, 4.0, 1.0)
    expected = (per * pw).sum() / pw.sum()
    got = float(training._pole_weighted_loss(torch, logits, y, poles, w, 4.0))
    assert got == pytest.approx(expected, rel=1e-5)
    plain = float(training._pole_weighted_loss(torch, logits, y, poles, w, 1.0))
    assert got != pytest.approx(plain, rel=1e-3)


def test_training_with_a_pole_weight_runs_and_is_seeded():
    crops, labels, kinds = training.generated_examples(["nominal"], [31])[:3]
    runs = [training.train(crops[:12], labels[:12], kinds[:12], steps=4, batch_size=4, lr=1e-3,
                           seed=2, threads=1, pole_weight=3.0, progress=False)[2] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = training.train(crops[:12], labels[:12], kinds[:12], steps=4, batch_size=4, lr=1e-3,
                           seed=2, threads=1, progress=False)[2]
    assert runs[0][0] != other[0]      # the first step's loss weighs the poles


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan")])
def test_a_pole_weight_that_is_not_positive_is_refused(bad):
    crops = np.zeros((2, 16, 8), np.float32)
    labels = np.zeros((2, 16, 8), np.int32)
    with pytest.raises(ValueError, match="pole_weight must be positive"):
        training.train(crops, labels, np.array(["phase"] * 2), steps=1, pole_weight=bad,
                       progress=False)


def test_the_cli_refuses_a_pole_weight_that_is_not_positive_before_making_data(tmp_path, capsys):
    from batchlib.cli import main as cli_main

    assert cli_main(["train-segmenter", "--out", str(tmp_path / "x.pt"), "--pole_weight", "0",
                     "--no_progress"]) == 2
    assert "--pole_weight must be positive" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
