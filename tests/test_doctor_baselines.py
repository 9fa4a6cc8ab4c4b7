"""Known results: the baselines on data where their accuracy is known, the association test, and the digits."""

from __future__ import annotations

import numpy as np
import pytest

from pedestrian.doctor.known_results import DigitsDataModule, association_z, auc_z, linear_baseline, majority_baseline

RNG = np.random.default_rng(0)


def test_majority_baseline_is_the_share_of_the_training_majority_in_the_eval_set():
    train = np.r_[np.ones(70), np.zeros(30)].astype(int)
    assert majority_baseline(train, np.r_[np.ones(70), np.zeros(30)].astype(int)) == pytest.approx(0.7)
    # the training majority decides, even when the eval set leans the other way
    assert majority_baseline(train, np.r_[np.ones(40), np.zeros(60)].astype(int)) == pytest.approx(0.4)


def _images(n: int, signal: bool) -> tuple[np.ndarray, np.ndarray]:
    y = RNG.integers(0, 2, n)
    x = RNG.integers(0, 200, (n, 8, 8, 3)).astype(np.uint8)
    if signal:  # a bright square in one corner for class 1: linearly separable
        x[y == 1, :3, :3] = 255
    return x, y


def test_linear_baseline_solves_linearly_separable_pixels_and_not_noise():
    x, y = _images(600, signal=True)
    lin = linear_baseline(x[:400], y[:400], x[400:], y[400:], c=1.0)
    assert lin["accuracy"] > 0.97 and lin["auc"] > 0.99
    x, y = _images(600, signal=False)
    lin = linear_baseline(x[:400], y[:400], x[400:], y[400:], c=1.0)
    assert abs(lin["accuracy"] - 0.5) < 0.1 and abs(lin["auc"] - 0.5) < 0.1  # chance, +- 2 s.e.


def test_association_z_is_near_zero_for_predictions_unrelated_to_the_labels():
    y = RNG.integers(0, 2, 2000)
    zs = [association_z(RNG.integers(0, 2, 2000), y) for _ in range(50)]
    assert abs(np.mean(zs)) < 0.5 and np.std(zs) == pytest.approx(1.0, abs=0.3)
    # a constant prediction (the majority baseline) carries no information either, whatever its accuracy
    assert association_z(np.ones(2000, int), y) == pytest.approx(0.0, abs=1e-9)
    # a predictor right 60% of the time is ~9 standard errors above chance on 2000 images
    right = RNG.random(2000) < 0.6
    assert association_z(np.where(right, y, 1 - y), y) > 6


def test_auc_z_tells_a_weak_model_from_one_that_learned_nothing():
    y = RNG.integers(0, 2, 2000)
    noise = [auc_z(RNG.random(2000), y)[1] for _ in range(50)]
    assert abs(np.mean(noise)) < 0.5 and np.std(noise) == pytest.approx(1.0, abs=0.3)
    assert auc_z(np.full(2000, 0.7), y) == (0.5, 0.0)  # a constant score ranks nothing
    weak = RNG.random(2000) + 0.15 * y  # barely better than chance at the 0.5 threshold...
    auc, z = auc_z(weak, y)
    assert 0.55 < auc < 0.7 and z > 4  # ...but its ranking is clearly informative
    assert auc_z(y + 0.0, y) == (1.0, pytest.approx(np.sqrt(12 * (y == 1).sum() * (y == 0).sum() / 2001) / 2))


def test_digits_datamodule_is_the_sklearn_digits_at_the_stage_size():
    dm = DigitsDataModule(image_size=16, n_holdout=500, seed=0)
    dm.setup()
    tr, ho = dm.splits["train"], dm.splits["train_val"]
    assert len(tr) + len(ho) == 1797 and len(ho) == 500
    assert tr.images.shape[1:] == (16, 16, 3) and tr.images.dtype == np.uint8
    assert set(np.unique(tr.attrs["label"])) == set(range(10)) and dm.num_classes == 10
    # a linear model on these pixels is known to do well (~95%); the majority class ~10%
    lin = linear_baseline(tr.images, tr.attrs["label"], ho.images, ho.attrs["label"])
    assert lin["accuracy"] > 0.9 and lin["auc"] is None
    assert majority_baseline(tr.attrs["label"], ho.attrs["label"]) < 0.15
