"""The stage pipeline end to end, through the real CLI: every stage runs, a real run learns, its JSON and its
W&B offline run hold the same figures, and a seeded run is reproducible."""

from __future__ import annotations

import json
import os
from csv import DictReader
from pathlib import Path

import numpy as np
import pytest
import wandb_offline
from conftest import cli, compose
from test_config import STAGES

from pedestrian.core.train import run


def test_every_stage_runs_fast_dev_run(tmp_path, data_root):
    """All stages in one Hydra multirun (one process start), then night_finetune from a real checkpoint."""
    first = [s for s in STAGES if s != "night_finetune"]
    r = cli("-m", f"+stage={','.join(first)}", "profile=tiny", "debug=fast_dev_run", f"data.root={data_root}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", "logger=none", "print_config=false")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for i, stage in enumerate(first):
        res = json.loads((tmp_path / "sweep" / f"{i}_{stage}" / "results.json").read_text())
        assert res["stage"] == stage and set(res["errors"]) == {"train", "train_val", "test_val", "test"}

    # night_finetune needs night_synth's weights: a one-epoch real run makes them, fine-tuning starts from them.
    src = tmp_path / "night_synth"
    r = cli("+stage=night_synth", "profile=tiny", f"data.root={data_root}", f"hydra.run.dir={src}", "logger=none")
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = src / "checkpoints" / "best.ckpt"
    assert ckpt.exists()
    r = cli("+stage=night_finetune", "profile=tiny", f"stage.init_from={ckpt}", "debug=fast_dev_run",
            f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'ft'}", "logger=none")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert res["n"]["train_total"] == res["config"]["data"]["n_target_pool"]  # trained on the target pool


def test_real_run_learns_and_wandb_matches_json(tmp_path, data_root):
    """A short real CPU-profile run: train error falls clearly below chance; W&B's offline run agrees."""
    run_dir = tmp_path / "run"
    # The CPU profile's lenet (2,500 images, 12 epochs); smaller held-out sets keep the test quick.
    r = cli("+stage=lenet", "profile=cpu", "data.n_train_val=500", "data.n_test_val=500", "data.n_test=500",
            "data.eval_train_max=1000", f"data.root={data_root}",
            f"hydra.run.dir={run_dir}", "group=pytest-ladder", "tags=[pytest]")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "bias-variance" in r.stdout and "next step" in r.stdout
    res = json.loads((run_dir / "results.json").read_text())
    assert res["errors"]["train"] < 0.40, res["errors"]  # chance is 0.5
    assert (run_dir / "checkpoints" / "best.ckpt").exists() and (run_dir / "csv" / "metrics.csv").exists()

    [log] = wandb_offline.run_files(run_dir)
    info = wandb_offline.run_info(log)
    assert info["name"] == "lenet" and info["job_type"] == "lenet" and info["group"] == "pytest-ladder"
    assert "pytest" in info["tags"]
    summary = wandb_offline.summary(log)
    for split, err in res["errors"].items():
        assert summary[f"final/{split}_error"] == pytest.approx(err, abs=0)
    for term, val in res["terms"].items():
        assert summary[f"final/{term}"] == pytest.approx(val, abs=0)
    assert summary["final/recommendation"] == res["recommendation"]["term"]
    # per-epoch metrics on all four sets, the misclassified table and the best checkpoint
    epochs = [h for h in wandb_offline.history(log) if "test_val/error" in h]
    n_epochs = res["config"]["trainer"]["max_epochs"]
    assert len(epochs) == n_epochs == res["epochs"]
    assert all(f"{s}/error" in epochs[0] for s in ("train", "train_val", "test"))
    kinds = {t for _, t in wandb_offline.artifacts(log)}
    assert {"model", "run_table"} <= kinds
    # the step loss (logged by the module itself, every log_every_n_steps=10 of an epoch's 20 steps), in W&B and CSV
    steps = [h for h in wandb_offline.history(log) if "train/loss_step" in h]
    assert [h["trainer/global_step"] for h in steps] == [e * 20 + b + 1 for e in range(n_epochs) for b in (0, 10)]
    losses = [h["train/loss_step"] for h in steps]
    assert all(0 < v < 2 for v in losses) and losses[-1] < losses[0]
    with open(run_dir / "csv" / "metrics.csv") as f:
        csv_steps = [(int(r["step"]), float(r["train/loss_step"])) for r in DictReader(f) if r["train/loss_step"]]
    assert csv_steps == [(h["trainer/global_step"], pytest.approx(h["train/loss_step"])) for h in steps]


def test_seeded_runs_are_identical(tmp_path, data_root):
    """Same seed, same data, same metrics on the CPU (deterministic mode), down to the last bit."""
    def once(d: Path) -> dict:
        cfg = compose("+stage=resnet", "profile=tiny", f"data.root={data_root}", f"run_dir={d}", "logger=none",
                      "trainer.max_epochs=2")
        return run(cfg)

    a, b = once(tmp_path / "a"), once(tmp_path / "b")
    assert a["errors"] == b["errors"]
    pa, pb = (np.load(tmp_path / d / "predictions.npz") for d in ("a", "b"))
    assert np.array_equal(pa["test_val/prob"], pb["test_val/prob"])


def test_wandb_files_land_in_the_run_folder_whichever_service_writes_them(tmp_path, data_root):
    """A W&B service inherited from a parent process (WANDB_SERVICE: a notebook, a test, a sweep agent) works in
    its own directory; a run folder given as a relative path must still receive its own W&B run."""
    import wandb

    wandb.setup()  # this process's service, as an in-process run would start it
    try:
        r = cli("+stage=lenet", "profile=tiny", "trainer.max_epochs=1", f"data.root={data_root}", "run_dir=rel/run",
                f"hydra.run.dir={tmp_path / 'hydra'}", "print_config=false", cwd=tmp_path,
                env={"WANDB_SERVICE": os.environ["WANDB_SERVICE"]})
    finally:
        wandb.teardown()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(wandb_offline.run_files(tmp_path / "rel" / "run")) == 1
