"""`python -m pedestrian.calibrate`: the reference model and the learning curves, as a real subprocess on the
tiny profile, and the slice errors it reads from a run's predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from pedestrian import calibrate


def test_cli_writes_the_ceiling_and_the_curves(data_root, tmp_path):
    out = tmp_path / "cal"
    r = cli("profile=tiny", "logger=csv", f"data.root={data_root}", "--out", str(out), "--sizes", "64,128",
            "--ref-train", "256", "--ref-epochs", "1", module="pedestrian.calibrate", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "calibration.json").read_text())
    ref = res["reference"]
    assert ref["overrides"] == ["data.n_train=256", "trainer.max_epochs=1", "model.width=8",  # tiny's own width
                                "optim.scheduler=cosine"]
    assert set(ref["slices"]) == {"train_val", "test_val", "test"}
    tv = ref["slices"]["test_val"]
    assert tv["all"]["error"] == pytest.approx(ref["errors"]["test_val"], abs=1e-9)
    assert tv["day"]["n"] + tv["night"]["n"] == tv["all"]["n"]
    assert [p["n_train"] for p in res["learning_curves"]["lenet"]] == [64, 128]
    assert set(res["learning_curves"]) == {"lenet", "resnet_lr"}
    assert res["difficulty"]["ped_min_px"] > 0 and "profile=tiny" in res["command"]
    md = (out / "CALIBRATION.md").read_text()
    assert "## The reference model" in md and "| `lenet` | 128 |" in md and "5 runs" in md
    again = cli("profile=tiny", "logger=csv", f"data.root={data_root}", "--out", str(out), "--sizes", "64,128",
                "--ref-train", "256", "--ref-epochs", "1", module="pedestrian.calibrate", timeout=600)
    assert again.returncode == 0
    ref2 = json.loads((out / "calibration.json").read_text())["reference"]
    assert ref2["reused"] and not ref["reused"] and {**ref2, "reused": False} == ref  # the finished run is reused
    assert "5 of them finished by an earlier invocation" in (out / "CALIBRATION.md").read_text()


def test_slice_errors(tmp_path):
    label = np.array([1, 1, 0, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.1, 0.8, 0.7, 0.4])  # wrong: index 1 (a missed positive), 3 (a false alarm)
    attrs = dict(night=np.array([0, 0, 0, 1, 1, 1]), hard=np.array([0, 1, 0, 0, 0, 0]),
                 reflection=np.zeros(6, int), mannequin=np.zeros(6, int), n_distractors=np.array([0, 0, 0, 3, 0, 1]))
    np.savez(tmp_path / "p.npz", **{f"test_val/{k}": v for k, v in dict(attrs, label=label, prob=prob).items()})
    s = calibrate.slice_errors(tmp_path / "p.npz", "test_val")
    assert s["all"] == {"n": 6, "errors": 2, "error": pytest.approx(2 / 6)}
    assert s["day"]["errors"] == 1 and s["night"]["errors"] == 1
    assert s["hard-to-see (positives)"] == {"n": 1, "errors": 1, "error": 1.0}
    assert s["negatives with >= 3 distractors"]["errors"] == 1
    assert "reflection" not in s  # an empty slice is left out, not shown as 0 of 0
