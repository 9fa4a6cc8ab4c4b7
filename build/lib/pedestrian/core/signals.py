"""Stopping cleanly: SIGTERM (preemption) or Ctrl-C finishes the current batch, saves a checkpoint and exits with
128+signal (143/130). A second Ctrl-C stops at once. SIGKILL cannot be caught: it loses the work since the last
checkpoint.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from rich.console import Console

from pedestrian.core.checkpoints import last_path

console = Console(stderr=True, soft_wrap=True)


class Interrupted(SystemExit):
    """Raised after a clean stop on a signal; exits with the shell's code for that signal (128 + signum)."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint = signum, checkpoint


class Resumable(L.Callback):
    """Stops on SIGTERM / Ctrl-C at the next safe point with a checkpoint; checkpoints carry the RNG state.

    Safe points: after a training batch (save last.ckpt mid-epoch; the data loader records its position), or,
    when the signal came during validation, at the next epoch start (the epoch-end last.ckpt is current). A
    signal during the final epoch's validation lets the run finish. Under DDP the ranks agree every batch.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    # signals -------------------------------------------------------------------------------------------
    def _handler(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, no checkpoint
        self.signum = signum
        console.print(f"\n[yellow]{signal.Signals(signum).name}: stopping after this batch with a checkpoint "
                      f"(Ctrl-C again to stop at once)[/yellow]")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        # Installed after Lightning's own SIGTERM handler, so the stop happens only at our safe points.
        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous[s] = signal.signal(s, self._handler)

    def _restore_signals(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signals()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signals()
        if isinstance(exception, Interrupted) and trainer.is_global_zero:
            wandb = sys.modules.get("wandb")  # only a run that imported it can have a W&B run to mark
            if wandb is not None and wandb.run is not None:
                wandb.run.mark_preempting()  # W&B shows the run as preempted, resumable, not crashed

    def _requested(self, trainer: L.Trainer) -> bool:
        stop = self.signum is not None
        if trainer.world_size > 1:  # every rank must take the same branch (the save is collective)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        return stop

    def _stop(self, trainer: L.Trainer, saved: Path, where: str) -> None:
        if trainer.is_global_zero:
            console.print(f"[yellow]stopped {where}; checkpoint {saved}. Continue with the same command and "
                          f"resume=true hydra.run.dir={Path(trainer.default_root_dir)} "
                          f"(or resume=auto).[/yellow]")
        raise Interrupted(self.signum or signal.SIGTERM, saved)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if not self._requested(trainer):
            return
        path = last_path(trainer)
        trainer.save_checkpoint(path)
        self._stop(trainer, path, f"after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._requested(trainer):  # the signal came during validation: the epoch-end checkpoint is current
            self._stop(trainer, last_path(trainer), f"before epoch {trainer.current_epoch}")

    # RNG state (dropout, anything drawing from torch's global generator) ------------------------------
    def state_dict(self) -> dict:
        state = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch_rng"])
        if "cuda_rng" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda_rng"])
