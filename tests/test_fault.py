"""Fault tolerance with real signals through the real CLI: SIGTERM and Ctrl-C save a checkpoint and exit cleanly,
SIGKILL loses only the work since the last checkpoint, and a resumed run (resume=true, or resume=auto: the same
command again) ends with exactly the metrics of an uninterrupted one (CPU, fixed seed). Checkpoints are verified
before loading; the NaN guard stops an exploding learning rate with the lecture's diagnosis."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import wandb_offline
from conftest import ROOT, cli, compose

from pedestrian.core.checkpoints import CheckpointError, load_checkpoint, verify_checkpoint
from pedestrian.core.nan_guard import NonFiniteLossError
from pedestrian.core.signals import Interrupted
from pedestrian.core.train import run

# 32 optimizer steps per epoch (256 tiny images, batch 8): a signal sent as soon as the first epoch's checkpoint
# appears lands in the second epoch. One thread everywhere, so every run sums in the same order.
ARGS = ("+stage=lenet", "profile=tiny", "trainer.max_epochs=4", "data.batch_size=8", "trainer.extras.threads=1",
        "print_config=false")


def _run_in_process(*overrides: str, callbacks=()) -> dict:
    threads = torch.get_num_threads()
    try:
        return run(compose(*ARGS, "logger=none", *overrides), callbacks=callbacks)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root) -> dict:
    """The uninterrupted run every resumed run must match."""
    d = tmp_path_factory.mktemp("reference")
    res = _run_in_process(f"data.root={data_root}", f"run_dir={d}")
    return {"errors": res["errors"], "preds": dict(np.load(d / "predictions.npz")), "run_dir": d}


def test_last_checkpoint_is_the_last_finished_epoch(reference):
    """last.ckpt follows every epoch, not only the ones whose train-val error improved (what resume needs)."""
    last = torch.load(reference["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert (last["epoch"], last["global_step"]) == (3, 4 * 32)  # 4 epochs of 32 steps


def _assert_same_as(reference: dict, run_dir: Path) -> None:
    import json

    res = json.loads((run_dir / "results.json").read_text())
    assert res["errors"] == reference["errors"]  # identical, not close
    preds = np.load(run_dir / "predictions.npz")
    for key, value in reference["preds"].items():
        assert np.array_equal(preds[key], value), key


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    """The CLI in the background (as conftest.cli runs it), to be signalled."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
           "HYDRA_FULL_ERROR": "1"}
    env.pop("WANDB_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "pedestrian", *ARGS, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _after_first_checkpoint(proc: subprocess.Popen, pattern: str, cwd: Path, sig: int) -> tuple[str, str]:
    """Wait for the end of epoch 0 (its last.ckpt), then send `sig`; return the output."""
    deadline = time.time() + 600
    while not list(cwd.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.01)
    proc.send_signal(sig)
    return proc.communicate(timeout=600)


def test_sigterm_saves_exits_cleanly_and_resumes_identically(tmp_path, data_root, reference, monkeypatch):
    """Preemption of a real CLI run; the resume runs in this process (the same code, one interpreter less)."""
    run_dir = tmp_path / "run"
    proc = _start(ROOT, f"data.root={data_root}", f"hydra.run.dir={run_dir}")
    out, err = _after_first_checkpoint(proc, "run/checkpoints/last.ckpt", tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-3000:]
    assert "stopped" in err and "resume=true" in err and "Traceback" not in err, err[-3000:]
    verify_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert not (run_dir / "results.json").exists() and not (run_dir / "failed.json").exists()
    [first] = wandb_offline.run_files(run_dir)
    assert any(r.WhichOneof("record_type") == "preempting" for r in wandb_offline.records(first))

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    threads = torch.get_num_threads()
    try:
        run(compose(*ARGS, f"data.root={data_root}", f"run_dir={run_dir}", "resume=true"))
    finally:
        torch.set_num_threads(threads)
    _assert_same_as(reference, run_dir)
    runs = wandb_offline.run_files(run_dir)
    assert len(runs) == 2 and len({wandb_offline.run_info(f)["id"] for f in runs}) == 1  # the same W&B run


def test_sigkill_then_the_same_command_resumes_identically(tmp_path, data_root, reference):
    """resume=auto: the identical command finds the interrupted run (default timestamped folders) and continues
    it there; SIGKILL lost only the epochs after the last checkpoint."""
    cmd = (f"data.root={data_root}", "logger=csv", "resume=auto")
    proc = _start(tmp_path, *cmd)
    _after_first_checkpoint(proc, "outputs/lenet/*/checkpoints/last.ckpt", tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    [killed] = [p.parents[1] for p in tmp_path.glob("outputs/lenet/*/checkpoints/last.ckpt")]
    time.sleep(1.1)  # Hydra's run folders are named to the second

    r = cli(*ARGS, *cmd, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"continuing the interrupted run {killed}" in " ".join((r.stdout + r.stderr).split())
    assert [p.parent for p in tmp_path.glob("outputs/lenet/*/results.json")] == [killed]
    _assert_same_as(reference, killed)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint(tmp_path, data_root):
    run_dir = tmp_path / "run"
    proc = _start(ROOT, f"data.root={data_root}", f"hydra.run.dir={run_dir}", "logger=none")
    _, err = _after_first_checkpoint(proc, "run/checkpoints/last.ckpt", tmp_path, signal.SIGINT)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "SIGINT" in err and "stopped" in err
    verify_checkpoint(run_dir / "checkpoints" / "last.ckpt")


class SigtermAt(L.Callback):
    """Sends this process a real SIGTERM at a chosen batch, as a cluster's preemption would."""

    def __init__(self, epoch: int, batch: int, during: str) -> None:
        self.epoch, self.batch, self.during = epoch, batch, during

    def _maybe(self, trainer: L.Trainer, batch_idx: int, during: str) -> None:
        if (during, trainer.current_epoch, batch_idx) == (self.during, self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._maybe(trainer, batch_idx, "train")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe(trainer, batch_idx, "validation")


@pytest.mark.parametrize("during", ["train", "validation"])
def test_stop_mid_epoch_or_mid_validation_resumes_identically(tmp_path, data_root, reference, during):
    """Deterministic stop points: after batch 6 of epoch 1 (mid-epoch checkpoint: the loader resumes at batch 7
    of the same permutation, augmentation and RNG state restored) or during epoch 1's validation (the run stops
    before epoch 2 and the epoch-end checkpoint is the resume point)."""
    args = (f"data.root={data_root}", f"run_dir={tmp_path}")
    with pytest.raises(Interrupted) as stop:
        _run_in_process(*args, callbacks=[SigtermAt(1, 5 if during == "train" else 0, during)])
    assert stop.value.code == 143
    _run_in_process(*args, "resume=true")
    _assert_same_as(reference, tmp_path)


def test_truncated_checkpoint_is_reported_not_loaded(tmp_path, data_root):
    _run_in_process(f"data.root={data_root}", f"run_dir={tmp_path}", "trainer.max_epochs=1")
    last = tmp_path / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) * 2 // 3])  # a copy cut short, a full disk
    with pytest.raises(CheckpointError, match="truncated or corrupt.*not loaded"):
        _run_in_process(f"data.root={data_root}", f"run_dir={tmp_path}", "resume=true")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # one damaged byte inside a tensor: its CRC no longer matches
    last.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="(CRC|corrupt)"):
        load_checkpoint(last)
    last.write_bytes(data)
    assert "state_dict" in load_checkpoint(last)  # the intact file loads (weights only)


def test_nan_guard_stops_an_exploding_learning_rate(tmp_path, data_root):
    """A good epoch first (its checkpoints), then the same folder continues from those weights with the bug
    zoo's exploding learning rate: the guard stops at the first non-finite loss with the diagnosis, before
    anything is saved, so the good checkpoints are kept byte for byte."""
    args = (f"data.root={data_root}", f"run_dir={tmp_path}")
    _run_in_process(*args, "trainer.max_epochs=1")
    ckpts = tmp_path / "checkpoints"
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.glob("*.ckpt")}
    assert set(digest) == {"best.ckpt", "last.ckpt"}

    with pytest.raises(NonFiniteLossError) as guard:
        _run_in_process(*args, f"stage.init_from={ckpts / 'best.ckpt'}", "+bug=lr_explodes", "bug.lr=1e8")
    msg = str(guard.value)
    assert "at step" in msg and "last finite loss" in msg and "learning rate 1e+08" in msg
    assert "learning rate too high" in msg and "numerical instability" in msg  # the lecture's causes
    assert f"kept the last good checkpoint {ckpts / 'last.ckpt'}" in msg
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.glob("*.ckpt")} == digest
