"""The report from a ladder root written by hand (the same files a ladder writes): one row per stage with that
stage's own figures, the lecture's trends checked against known numbers, the fine-tuning before/after with a
forgetting verdict, learning curves merged across a resumed stage's attempts, plots, hand-written notes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from pedestrian import report
from pedestrian.evaluate import bias_variance
from pedestrian.evaluate import error_analysis as ea
from pedestrian.ladder import MARKER

N = 2000
ERRORS = {  # stage -> train, train-val, test-val, test
    "lenet": (0.30, 0.45, 0.50, 0.49),
    "deeper": (0.35, 0.42, 0.47, 0.46),       # train error up: the trend check must say "no"
    "night_synth": (0.20, 0.25, 0.35, 0.36),
    "night_finetune": (0.22, 0.30, 0.31, 0.31),  # shift 10 -> 1 point, day error up 5 points: forgetting
}


def _predictions(day_err_tv: float, night_err_tv: float) -> dict[str, np.ndarray]:
    """train-val (95% day) and test-val (50% night) with the given error rates, as predictions.npz holds them."""
    rng = np.random.default_rng(0)
    out = {}
    for split, p_night in (("train_val", 0.05), ("test_val", 0.5)):
        night = (np.arange(N) < p_night * N).astype(np.int64)
        label = rng.integers(0, 2, N)
        err = np.where(night == 1, night_err_tv, day_err_tv)
        wrong = np.arange(N) % 100 < np.round(err * 100)
        out |= {f"{split}/prob": np.where(wrong, 1 - label, label).astype(np.float32), f"{split}/label": label,
                f"{split}/night": night, f"{split}/reflection": np.zeros(N, np.int64),
                f"{split}/hard": np.zeros(N, np.int64)}
    return out


def _write_curve(path: Path, epochs: range, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ["epoch", "step", "train/error", "train_val/error", "test_val/error", "test/error"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for e in epochs:
            w.writerow({"epoch": "", "step": e * 10})  # a step row without validation metrics
            w.writerow({"epoch": e, "step": e * 10 + 9, **{k: value - 0.01 * e for k in keys[2:]}})


@pytest.fixture()
def ladder_root(tmp_path) -> Path:
    root = tmp_path / "ladder"
    lrs = {"lenet": 3e-4, "deeper": 3e-4, "night_synth": 1e-3, "night_finetune": 1e-4}
    for name, errs in ERRORS.items():
        d = root / name
        d.mkdir(parents=True)
        summary = bias_variance.summarize(dict(zip(bias_variance.ERROR_KEYS, errs)), 0.01)
        cfg = {"stage": {"name": name, "init_from": str(root / "night_synth" / "checkpoints" / "best.ckpt")
                         if name == "night_finetune" else None},
               "model": {"_target_": "pedestrian.models.LeNet" if name == "lenet" else "pedestrian.models.ConvNet"},
               "optim": {"lr": lrs[name]}, "run_dir": str(d)}
        (d / "results.json").write_text(json.dumps({
            "stage": name, **summary, "n": {k: N for k in bias_variance.ERROR_KEYS}, "epochs": 5,
            "wall_time_s": 90.0, "machine": "test machine", "config": cfg}))
        (d / MARKER).write_text(json.dumps({"stage": name, "key": name, "status": "complete",
                                            "attempts": [{"cpu_s": 60.0}] * (2 if name == "deeper" else 1)}))
        day, night = {"night_synth": (0.20, 0.50), "night_finetune": (0.25, 0.37)}.get(name, (0.45, 0.55))
        (d / "error_analysis.json").write_text(json.dumps(ea.analyze(_predictions(day, night))))
        if name == "deeper":  # resumed after epoch 2: the earlier attempt's curve is kept by the ladder
            _write_curve(d / "attempts" / "1" / "metrics.csv", range(0, 3), 0.9)
            _write_curve(d / "csv" / "metrics.csv", range(2, 5), 0.5)
        else:
            _write_curve(d / "csv" / "metrics.csv", range(0, 5), 0.5)
    (root / "ladder.json").write_text(json.dumps({"id": "ladder-test", "invocations": [
        {"command": "python -m pedestrian.ladder profile=test", "finished": "2026-01-01T00:00:00", "wall_s": 600.0,
         "cpu_s": 500.0, "load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [2.0, 2.0, 2.0], "nice": 10,
         "actions": {s: "ran" for s in ERRORS}}]}))
    return root


def test_rows_trends_finetune_and_plots(ladder_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("The deeper step fails because of the budget.")
    path = report.write_report(ladder_root, out, "test")
    text = path.read_text()
    for name, (tr, tv, te_v, te) in ERRORS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2:6] == [f"{v:.1%}" for v in (tr, tv, te_v, te)]
        assert cells[8] == f"{te_v - tv:+.1%}" and "test machine" in row
    assert "| `lenet` | the starting point |" in text
    deeper = next(line for line in text.splitlines() if line.startswith("| `deeper` |"))
    assert "model ConvNet" in deeper and "optim.lr" not in deeper  # the config diff against lenet
    assert "last of 2 attempts" in text

    trends = {t["stage"]: t for t in report.trends(report.load(ladder_root))}
    assert set(trends) == {"deeper", "night_finetune"}  # only steps whose predecessor is present
    assert not trends["deeper"]["ok"] and trends["deeper"]["delta"] == pytest.approx(0.05)
    assert trends["night_finetune"]["ok"] and trends["night_finetune"]["clear"]
    assert trends["night_finetune"]["delta"] == pytest.approx(0.01 - 0.10)
    assert "1 of 2 steps move the way the lecture says. Not: `deeper`" in text

    assert "## Domain adaptation" in text and "**forgetting**" in text  # day error 20% -> 25% on train-val
    assert "| distribution shift (test-val − train-val) | 10.0% | 1.0% | -9.0% |" in text
    assert "The deeper step fails because of the budget." in text  # the hand-written notes
    assert "python -m pedestrian.ladder profile=test" in text and "8.3 min" in text  # CPU time of the run
    for png in ("learning_curves.png", "decomposition.png", "error_analysis.png"):
        assert (out / png).stat().st_size > 10_000
    rows = {r["stage"]: r for r in json.loads((out / "results.json").read_text())}  # for scripts
    assert list(rows) == list(ERRORS)
    for name, r in rows.items():
        assert [r[k] for k in ("train", "train-val", "test-val", "test")] == list(ERRORS[name])
        assert set(report.TABLE_COLUMNS[2:10]) <= set(r)  # the table's names: "train-val", "avoidable bias", ...
        assert r["variance"] == pytest.approx(r["train-val"] - r["train"])
        assert r["distribution shift"] == pytest.approx(r["test-val"] - r["train-val"])
        assert r[r["largest term"]] == max(r[t] for t in report.TABLE_COLUMNS[6:10])  # names a key of the row


def test_learning_curve_merges_a_resumed_stages_attempts(ladder_root):
    curve = report.learning_curve(ladder_root / "deeper")
    assert list(curve) == [0, 1, 2, 3, 4]
    assert curve[0]["train"] == pytest.approx(0.9)  # only the first attempt has epoch 0
    assert curve[2]["train"] == pytest.approx(0.5 - 0.02)  # both have epoch 2: the later attempt wins (not 0.88)


def test_cli_and_a_missing_ladder(ladder_root, tmp_path):
    r = cli("profile=test", "--root", str(ladder_root), "--out", str(tmp_path / "o"), module="pedestrian.report",
            timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "o" / "RESULTS.md").exists()
    r = cli("profile=test", "--root", str(tmp_path / "none"), module="pedestrian.report", timeout=300)
    assert r.returncode == 2 and "python -m pedestrian.ladder profile=test" in r.stderr
