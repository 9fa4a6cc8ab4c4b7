"""The Trainer every run uses: best and last checkpoints, a clean stop on signals, the NaN guard, a progress bar
only on a terminal; and the trainer config split into Trainer arguments and our extras."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from pedestrian.base.logs import filter_noise
from pedestrian.core.checkpoints import SafeCheckpointIO
from pedestrian.core.nan_guard import NanGuard
from pedestrian.core.signals import Resumable

console = Console()


def _trainer_cfg(cfg: DictConfig) -> tuple[dict, dict]:
    """Split trainer config into Trainer kwargs and our extras; fall back to CPU when no GPU is present."""
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    extras = tcfg.pop("extras", {}) or {}
    for key in ("gradient_clip_val", "gradient_clip_algorithm"):  # applied by our training step (module.py)
        extras[key] = tcfg.pop(key, None)
    if tcfg.get("accelerator") == "gpu" and not torch.cuda.is_available():
        console.print("[yellow]trainer=gpu asked for a GPU but torch sees none: running on the CPU "
                      "(fp32, no channels_last). The code path is the same.[/yellow]")
        tcfg.update(accelerator="cpu", precision="32-true", benchmark=False)
        extras["channels_last"] = False
    return tcfg, extras


class StepLossBar(RichProgressBar):
    """Lightning's rich progress bar, plus the training loss our module logs every log_every_n_steps."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if getattr(pl_module, "step_loss", None) is not None:
            metrics["train/loss_step"] = f"{pl_module.step_loss:.3f}"
        return metrics


class BestAndLast(ModelCheckpoint):
    """best.ckpt on the monitored error and last.ckpt after every epoch, both at the hook Lightning saves at.
    (Lightning 2.6 writes last.ckpt only when it also saved a best checkpoint in that step: a resume would redo
    every epoch since the last improvement.)"""

    @property
    def state_key(self) -> str:  # Lightning rebuilds it (a dict's repr) at each of ~10 hook calls a step
        if "_state_key" not in self.__dict__:
            self._state_key = super().state_key
        return self._state_key

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def _save_last_anyway(self, trainer: L.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # (skipped when a best was saved in this step)
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def build_trainer(tcfg: dict, run_dir: Path, loggers: list, callbacks: list | tuple = (),
                  monitor: str = "train_val/error") -> tuple[L.Trainer, ModelCheckpoint]:
    """The Trainer every run uses: best/last checkpoints written atomically and verified on load, a clean stop
    on SIGTERM/Ctrl-C, the NaN guard, and a progress bar only on a terminal (never one line per step in logs)."""
    filter_noise()
    ckpt = BestAndLast(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min",
                       save_last=True, auto_insert_metric_name=False)
    tty = sys.stdout.isatty()
    callbacks = [ckpt, Resumable(), NanGuard(), *callbacks]
    if loggers:  # (LearningRateMonitor refuses a Trainer without a logger)
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if tty:
        callbacks.append(StepLossBar())
    trainer: L.Trainer = instantiate({"enable_progress_bar": tty, **tcfg}, logger=loggers or False,
                                     callbacks=callbacks, plugins=[SafeCheckpointIO()],
                                     default_root_dir=str(run_dir), _convert_="all")
    return trainer, ckpt
