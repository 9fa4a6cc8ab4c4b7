"""The NaN guard: a NaN or infinite loss stops the run with the lecture's diagnosis; the last good checkpoint is
kept."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from pedestrian.core.checkpoints import last_path


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message is the diagnosis."""


LIKELY_CAUSES = """\
The lecture's likely causes of an exploding loss, most likely first:
  1. learning rate too high: lower optim.lr 10x (or run the learning-rate search)
  2. numerical instability: exp/log/division on raw values (softmax fed to a loss that wants logits;
     use cross-entropy on logits), overflow in low precision (trainer.precision=32-true to check)
  3. inputs not normalised, or normalised twice (data.normalize=once), or corrupt data in a batch
  4. exploding gradients in a deep net without normalisation: clip them (trainer.gradient_clip_val=1.0)
Find the first op that produces it with debug=anomaly (autograd anomaly detection)."""


class NanGuard(L.Callback):
    """Stops at the first non-finite training loss, before it reaches the weights (on CPU) or one step later
    (on a GPU, where the check reads the previous step's loss asynchronously instead of syncing every step)."""

    def __init__(self) -> None:
        self.last_good: tuple[int, float] | None = None  # (global step, loss)
        self._pending: tuple[int, torch.Tensor, Any] | None = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        step = trainer.global_step
        if loss.device.type == "cpu":
            self._check(trainer, step, loss.item())
            return
        self._flush(trainer)
        host = torch.empty((), dtype=loss.dtype, pin_memory=True)
        host.copy_(loss.detach(), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending = (step, host, event)

    def _flush(self, trainer: L.Trainer) -> None:
        if self._pending is not None:
            step, host, event = self._pending
            self._pending = None
            event.synchronize()
            self._check(trainer, step, float(host))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)  # runs before ModelCheckpoint's save: a NaN step never reaches last.ckpt

    def _check(self, trainer: L.Trainer, step: int, value: float) -> None:
        if math.isfinite(value):
            self.last_good = (step, value)
            return
        raise NonFiniteLossError(self.diagnosis(trainer, step, value))

    def diagnosis(self, trainer: L.Trainer, step: int, value: float) -> str:
        lrs = sorted({g["lr"] for opt in trainer.optimizers for g in opt.param_groups})
        good = (f"last finite loss {self.last_good[1]:.4g} at step {self.last_good[0]}" if self.last_good
                else "no finite loss before it")
        last = last_path(trainer)
        kept = (f"kept the last good checkpoint {last} (nothing after it was saved)" if last.is_file()
                else "no checkpoint was saved before it")
        return (f"the training loss became {value} at step {step} (epoch {trainer.current_epoch}); {good}; "
                f"learning rate {', '.join(f'{lr:g}' for lr in lrs)}; {kept}.\n{LIKELY_CAUSES}")
