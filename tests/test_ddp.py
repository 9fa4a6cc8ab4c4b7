"""Multi-process training through Lightning's DDP on the CPU (gloo, 2 processes, the `ddp` strategy that
re-launches the CLI for rank 1): error rates reduced across processes equal the single-process figure on the
same weights and data, and only rank 0 writes results, checkpoints and the W&B run."""

from __future__ import annotations

import csv
import json

import numpy as np
import wandb_offline
from conftest import cli

from pedestrian.core.checkpoints import verify_checkpoint


def test_two_process_error_rates_equal_one_process(tmp_path, data_root):
    # Odd split sizes: a padding sampler would count an image twice on one of the two ranks.
    run_dir = tmp_path / "ddp"
    r = cli("+stage=lenet", "profile=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.precision=32-true", "data.n_train_val=127", "data.n_test=125", "data.eval_train_max=101",
            f"data.root={data_root}", f"hydra.run.dir={run_dir}", "print_config=false")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Starting with 2 processes" in r.stdout + r.stderr

    # Per-epoch metrics: each rank evaluated its own shard, ErrorRate summed the counts across both.
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    [epoch] = [row for row in rows if row.get("train_val/error")]
    # The final evaluation: rank 0 alone over each whole split, with the same (only, best) weights.
    res = json.loads((run_dir / "results.json").read_text())
    assert res["n"] == {"train": 101, "train_val": 127, "test_val": 128, "test": 125, "train_total": 256}
    for split, err in res["errors"].items():
        n, reduced = res["n"][split], float(epoch[f"{split}/error"])
        assert round(reduced * n) == round(err * n), (split, reduced, err)  # the same images wrong
        assert np.float32(reduced) == np.float32(err)  # and the same rate (ErrorRate computes in float32)

    # One writer: one results file, one checkpoint set, one W&B run.
    assert len(list(tmp_path.rglob("results.json"))) == 1
    verify_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    assert len(wandb_offline.run_files(run_dir)) == 1
