"""Pruning: the trial's objective goes to Optuna after every epoch, and a hopeless trial stops early.

Optuna's own PyTorchLightningPruningCallback lives in optuna-integration; this is the same idea in a few lines.
"""

from __future__ import annotations

import lightning as L
import optuna


class ReportToOptuna(L.Callback):
    """Report `<split>/error` after every epoch; when the pruner says the trial is hopeless, stop after this epoch
    (train.run still evaluates and logs the run, then the trial is recorded as pruned). At the end, the trial's
    number, objective and state go into its W&B run's summary."""

    def __init__(self, trial: optuna.Trial, split: str) -> None:
        self.trial, self.key = trial, f"{split}/error"
        self.last: float | None = None
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.key not in trainer.callback_metrics:
            return
        self.last = float(trainer.callback_metrics[self.key])
        self.trial.report(self.last, step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from pedestrian.core.loggers import wandb_logger

        wl = wandb_logger(trainer.loggers)
        if wl is not None and self.last is not None:
            wl.experiment.summary.update({
                "trial/number": self.trial.number, "trial/objective": self.last,
                "trial/state": "pruned" if self.pruned_at is not None else "complete",
                "trial/epochs": trainer.current_epoch})
