import pytest

from pedestrian.evaluate import bias_variance as bv


def test_terms_add_up_to_test_error():
    s = bv.summarize({"train": 0.20, "train_val": 0.27, "test_val": 0.30, "test": 0.32}, goal=0.01)
    t = s["terms"]
    assert t["avoidable_bias"] == pytest.approx(0.19)
    assert t["variance"] == pytest.approx(0.07)
    assert t["distribution_shift"] == pytest.approx(0.03)
    assert t["val_overfitting"] == pytest.approx(0.02)
    assert s["goal"] + sum(t.values()) == pytest.approx(0.32)
    # The lecture's running example: bias dominates -> "make the model bigger" first.
    assert s["recommendation"]["term"] == "avoidable_bias"
    assert s["recommendation"]["steps"][0].startswith("Make the model bigger")


@pytest.mark.parametrize("errors,term,first", [
    ({"train": 0.02, "train_val": 0.10, "test_val": 0.11, "test": 0.11}, "variance", "Add more training data"),
    ({"train": 0.02, "train_val": 0.03, "test_val": 0.12, "test": 0.12}, "distribution_shift", "Analyse test-val"),
    ({"train": 0.01, "train_val": 0.01, "test_val": 0.01, "test": 0.05}, "val_overfitting", "Re-collect"),
])
def test_largest_term_picks_the_lecture_list(errors, term, first):
    rec = bv.summarize(errors, goal=0.01)["recommendation"]
    assert rec["term"] == term and rec["steps"][0].startswith(first)


def test_goal_met():
    rec = bv.summarize({"train": 0.005, "train_val": 0.005, "test_val": 0.005, "test": 0.005}, goal=0.01)
    assert rec["recommendation"]["term"] == "none"


def test_missing_error_is_named():
    with pytest.raises(KeyError, match="test_val"):
        bv.summarize({"train": 0.1, "train_val": 0.1, "test": 0.1}, goal=0.01)
