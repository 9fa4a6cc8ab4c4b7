"""The loss-curve classifier on synthetic curves of each shape the lecture names (and the two it does not)."""

from __future__ import annotations

import numpy as np
import pytest

from pedestrian.doctor.curves import CAUSES, SHAPES, classify, swings

T = np.arange(300, dtype=np.float64)
RNG = np.random.default_rng(0)
L0 = np.log(2)

CURVES = {
    "converges": [L0 * np.exp(-T / 30), L0 * np.exp(-T / 30) * (1 + 0.3 * RNG.random(300)),
                  np.r_[L0 * np.exp(-T[:60] / 8)]],  # stopped early once there
    "goes_up": [L0 + 0.02 * T + 5e-5 * T**2,                       # a flipped sign: steady, accelerating climb
                L0 + 0.01 * T + RNG.normal(0, 0.05, 300)],
    "explodes": [np.r_[L0 * np.exp(-T[:100] / 50), np.full(200, 500.0)],    # down for a while, then shoots up
                 np.r_[L0 * np.exp(-T[:100] / 50), [np.nan] * 200],         # ... or turns into NaN
                 np.r_[L0, 1e4, RNG.uniform(10, 1e3, 298)],                  # a learning rate far too high
                 np.r_[L0 * np.exp(-T[:150] / 50), [np.inf] * 150]],
    "oscillates": [0.5 + 0.3 * np.sin(T / 5),
                   L0 * np.exp(-T / 100) + 0.3 * np.abs(np.sin(T / 7)) + 0.05,
                   0.4 + 0.25 * np.sign(np.sin(T / 3)) + RNG.normal(0, 0.01, 300)],
    "plateaus": [0.3 + 0.39 * np.exp(-T / 20),                      # goes down to 0.3 and stays
                 0.1 + 0.59 * np.exp(-T / 10) + RNG.normal(0, 0.005, 300),
                 np.full(300, L0) + RNG.normal(0, 1e-4, 300)],      # flat from the start (nothing learns)
    "slow": [L0 / (1 + T / 20)],                                   # healthy, but the budget ran out
}


@pytest.mark.parametrize("shape,curve", [(s, c) for s, cs in CURVES.items() for c in cs],
                         ids=[f"{s}-{i}" for s, cs in CURVES.items() for i in range(len(cs))])
def test_each_shape_is_named(shape, curve):
    assert classify(curve, target=0.01) == shape


def test_every_failing_shape_has_the_lectures_causes():
    assert set(CAUSES) == set(SHAPES)
    assert any("sign" in c for c in CAUSES["goes_up"])
    assert any("numerical" in c for c in CAUSES["explodes"]) and any("learning rate" in c for c in CAUSES["explodes"])
    assert any("labels" in c for c in CAUSES["oscillates"])
    assert any("learning rate too low" in c for c in CAUSES["plateaus"])
    assert any("loss function" in c for c in CAUSES["plateaus"]) and any("regularisation" in c
                                                                         for c in CAUSES["plateaus"])


def test_swings_ignore_noise_smaller_than_the_threshold():
    noisy = 0.5 + RNG.normal(0, 0.001, 200)
    assert swings(noisy, threshold=0.05) == 0
    assert swings(np.array([0, 1, 0, 1, 0, 1.0]), threshold=0.5) == 4


def test_a_curve_needs_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        classify([0.5], 0.01)
