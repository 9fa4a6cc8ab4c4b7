"""Error analysis on a hand-made prediction set whose slice counts are known, shaped like the lecture's example:
hard-to-see pedestrians rare in both sets (low), reflections common in both (medium), night errors mostly in
test-val (high)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from pedestrian.evaluate import error_analysis as ea


def _set(groups: list[tuple[int, int, dict]]) -> dict[str, np.ndarray]:
    """groups of (n images, n errors among them, attributes): probabilities that are right or wrong on purpose."""
    cols: dict[str, list] = {"prob": [], "label": [], "night": [], "reflection": [], "hard": []}
    for n, wrong, attrs in groups:
        for i in range(n):
            label = attrs.get("label", i % 2)
            cols["label"].append(label)
            cols["prob"].append(float(1 - label) if i < wrong else float(label))  # wrong: the other class, sure
            for a in ("night", "reflection", "hard"):
                cols[a].append(attrs.get(a, 0))
    return {k: np.asarray(v, dtype=np.float32 if k == "prob" else np.int64) for k, v in cols.items()}


def lecture_like() -> dict[str, np.ndarray]:
    train_val = _set([  # 100 images, 95 day; 11 errors
        (70, 3, {}),                                  # plain day
        (20, 6, {"reflection": 1}),                   # day with a reflection
        (5, 1, {"label": 1, "hard": 1}),              # day, hard-to-see pedestrian
        (5, 1, {"night": 1}),                         # night
    ])
    test_val = _set([  # 100 images, 50 night; 25 errors
        (35, 3, {}),
        (10, 2, {"reflection": 1}),
        (5, 0, {"label": 1, "hard": 1}),
        (35, 15, {"night": 1}),
        (10, 4, {"night": 1, "reflection": 1}),
        (5, 1, {"night": 1, "label": 1, "hard": 1}),
    ])
    return {f"{s}/{k}": v for s, arrs in (("train_val", train_val), ("test_val", test_val)) for k, v in arrs.items()}


def test_slice_counts_rates_shares_and_priorities():
    a = ea.analyze(lecture_like())
    tv = a["totals"]["train_val"]
    assert (tv["n"], tv["errors"], tv["error_rate"]) == (100, 11, 0.11)
    assert tv["false_negatives"] + tv["false_positives"] == 11
    assert a["totals"]["test_val"]["errors"] == 25 and a["distribution_shift"] == pytest.approx(0.14)
    rows = {r["slice"]: r for r in a["slices"]}

    night = rows["night"]
    assert (night["train_val"]["n"], night["train_val"]["errors"]) == (5, 1)
    assert (night["test_val"]["n"], night["test_val"]["errors"]) == (50, 20)
    assert night["test_val"]["error_rate"] == pytest.approx(0.4)
    assert night["test_val"]["share"] == pytest.approx(20 / 25)
    assert night["train_val"]["share"] == pytest.approx(1 / 11)
    # beyond the train-val error rate (11%): 0.5 * (40% - 11%) in test-val, less 0.05 * (20% - 11%) in train-val
    assert night["shift"] == pytest.approx(0.5 * 0.29 - 0.05 * 0.09)
    assert night["priority"] == "high"

    refl = rows["reflection"]
    assert (refl["train_val"]["errors"], refl["test_val"]["errors"]) == (6, 6)
    assert (refl["train_val"]["n"], refl["test_val"]["n"]) == (20, 20)
    assert refl["shift"] == pytest.approx(0.0) and refl["priority"] == "medium"

    day = rows["day"]
    assert (day["train_val"]["n"], day["train_val"]["errors"], day["test_val"]["errors"]) == (95, 10, 5)
    assert day["shift"] == pytest.approx(0.5 * (0.10 - 0.11) - 0.95 * (10 / 95 - 0.11))
    assert day["priority"] == "medium"  # 91% of train-val errors
    assert day["shift"] + night["shift"] == pytest.approx(a["distribution_shift"])  # a partition: they add up

    hard = rows["hard"]
    assert (hard["train_val"]["errors"], hard["test_val"]["errors"]) == (1, 1) and hard["priority"] == "low"

    # sorted by priority, then by shift: the lecture would work on night scenes first
    assert [r["slice"] for r in a["slices"]] == ["night", "reflection", "day", "hard"]
    json.dumps(a)  # JSON-ready


def test_major_but_not_new_is_medium_and_empty_slices_are_reported():
    arrays = lecture_like()
    arrays["test_val/night"] = np.zeros_like(arrays["test_val/night"])  # pretend test-val has no night at all
    a = ea.analyze(arrays)
    rows = {r["slice"]: r for r in a["slices"]}
    assert rows["night"]["test_val"] == {"n": 0, "errors": 0, "error_rate": None, "share": 0.0, "contribution": 0.0}
    assert rows["night"]["priority"] == "low"
    assert rows["day"]["priority"] == "high"  # now day carries all of test-val's extra errors
    md = ea.to_markdown(a)
    assert "| night | 5 | 20.0% | 9.1% | 0 | - | 0.0% |" in md


def test_a_slice_only_more_frequent_in_test_val_is_not_a_source_of_the_shift():
    """Night 10x more frequent in test-val but exactly as hard as day: no shift term, nothing to blame on night."""
    groups = lambda n_day, n_night: _set([(n_day, n_day // 4, {}), (n_night, n_night // 4, {"night": 1})])  # noqa: E731
    a = ea.analyze({f"{s}/{k}": v for s, arrs in (("train_val", groups(400, 40)), ("test_val", groups(220, 220)))
                    for k, v in arrs.items()})
    rows = {r["slice"]: r for r in a["slices"]}
    assert a["distribution_shift"] == pytest.approx(0.0)
    assert rows["night"]["shift"] == pytest.approx(0.0) and rows["day"]["shift"] == pytest.approx(0.0)
    assert rows["night"]["test_val"]["share"] == pytest.approx(0.5) and rows["night"]["priority"] == "medium"


def test_a_shift_term_within_noise_blames_no_slice():
    """3 points of shift on 100 images each is within 2 standard errors (9 points): nothing is 'high'."""
    train_val = _set([(95, 10, {}), (5, 1, {"night": 1})])
    test_val = _set([(50, 5, {}), (50, 9, {"night": 1})])
    a = ea.analyze({f"{s}/{k}": v for s, arrs in (("train_val", train_val), ("test_val", test_val))
                    for k, v in arrs.items()})
    assert a["distribution_shift"] == pytest.approx(0.03) and 2 * a["distribution_shift_se"] > 0.03
    rows = {r["slice"]: r for r in a["slices"]}
    assert rows["night"]["shift"] > 0.5 * a["distribution_shift"] and rows["night"]["priority"] == "medium"


def test_bad_input_names_the_missing_column():
    arrays = lecture_like()
    del arrays["test_val/reflection"]
    with pytest.raises(KeyError, match="test_val/reflection"):
        ea.analyze(arrays)
    arrays = lecture_like()
    arrays["train_val/prob"] = arrays["train_val/prob"][:-1]
    with pytest.raises(ValueError, match="99 probabilities but 100 labels"):
        ea.analyze(arrays)


def test_folder_data_without_renderer_attributes_uses_its_tags():
    arrays = {k: v for k, v in lecture_like().items() if not k.endswith(("/reflection", "/hard"))}
    for s in ea.SETS:
        arrays[f"{s}/tag_rain"] = lecture_like()[f"{s}/reflection"]  # same rows, another name
    a = ea.analyze(arrays)
    assert a["skipped_slices"] == ["reflection", "hard"]
    rows = {r["slice"]: r for r in a["slices"]}
    assert set(rows) == {"day", "night", "rain"} and rows["rain"]["test_val"]["errors"] == 6
    assert "Not analysed (no such column in the data): reflection, hard." in ea.to_markdown(a)


def test_cli_writes_json_and_markdown_and_wandb_table_has_thumbnails(tmp_path):
    arrays = lecture_like()
    np.savez(tmp_path / "predictions.npz", **arrays)
    r = cli(str(tmp_path), module="pedestrian.evaluate.error_analysis", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "night" in r.stdout and "high" in r.stdout
    saved = json.loads((tmp_path / "error_analysis.json").read_text())
    assert saved == json.loads(json.dumps(ea.analyze(arrays)))
    assert "| reflection |" in (tmp_path / "error_analysis.md").read_text()

    r = cli(str(tmp_path / "nowhere"), module="pedestrian.evaluate.error_analysis", timeout=120)
    assert r.returncode != 0 and "predictions.npz" in r.stderr

    images = {s: np.random.default_rng(0).integers(0, 255, (100, 16, 16, 3), dtype=np.uint8) for s in ea.SETS}
    table = ea.wandb_table(saved, arrays, images, per_slice=4)
    assert len(table.data) == 4 and table.columns[-2:] == ["train-val errors", "test-val errors"]
    night = next(row for row in table.data if row[0] == "night")
    thumb = night[-1].image  # PIL image: 4 errors, 16 px scaled x4, 2 px gaps
    assert thumb.size == (4 * 64 + 3 * 2, 64)
