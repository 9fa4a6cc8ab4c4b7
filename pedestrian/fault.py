"""Fault tolerance: a run can be stopped at any moment and continued as if it never was.

* SIGTERM (preemption) or Ctrl-C: finish the current batch, save a checkpoint, exit with 128+signal (143/130).
  A second Ctrl-C stops at once. SIGKILL cannot be caught: it loses the work since the last checkpoint.
* Checkpoints are written atomically (temp file, fsync, rename), verified before loading (a truncated file
  fails its zip directory or CRC check and is reported, never half-loaded) and loaded with weights_only=True.
* Resuming continues the same run folder and W&B run; the checkpoint carries the RNG state and the data
  loader's position in its epoch, so on the CPU a resumed run ends bit-identical to an uninterrupted one.
* A NaN or infinite loss stops the run with the lecture's diagnosis; the last good checkpoint is kept.

`resume`: false (fresh), true (continue run_dir's last.ckpt if there is one), auto (also look for the latest
interrupted run of the same command next to this one and continue it there).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)  # paths in messages stay whole (tests and users grep them)
RESUME_MODES = (False, True, "auto")
LAST = "last.ckpt"
RUN_DIR_ENV = "PEDESTRIAN_RUN_DIR"  # rank 0's resume=auto choice, for the DDP processes it launches


class CheckpointError(RuntimeError):
    """A checkpoint that must not be loaded (truncated, corrupt, or holding more than tensors and plain data)."""


class Interrupted(SystemExit):
    """Raised after a clean stop on a signal; exits with the shell's code for that signal (128 + signum)."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint = signum, checkpoint


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message is the diagnosis."""


# -- checkpoints on disk --------------------------------------------------------------------------------
def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash leaves the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def verify_checkpoint(path: str | Path) -> None:
    """torch.save writes a zip with its directory at the end and a CRC per entry: a truncated or damaged file
    fails here, before a single tensor is loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every entry and checks its CRC
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path} ({size} bytes) is truncated or corrupt ({e}); it was not loaded. "
                              "Delete it to start over, or resume from another checkpoint.") from None
    if bad is not None:
        raise CheckpointError(f"{path} ({size} bytes) is corrupt: entry {bad!r} fails its CRC; it was not loaded.")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Verify, then load with weights_only=True (tensors and plain data only: no code runs on load)."""
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # the weights-only unpickler refuses anything but tensors and plain containers
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): {e}") from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and verified, weights-only loads (used for resuming)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location=map_location or "cpu")


# -- where a run continues ------------------------------------------------------------------------------
def _resume_mode(cfg: DictConfig):
    mode = cfg.get("resume", False)
    if mode not in RESUME_MODES:
        from pedestrian.config import ConfigError

        raise ConfigError(f"resume={mode!r}: must be one of false, true, auto")
    return mode


def _incomplete(run_dir: Path) -> bool:
    """Interrupted (preempted, killed): a last checkpoint but neither results nor a recorded failure."""
    return ((run_dir / "checkpoints" / LAST).is_file() and not (run_dir / "results.json").exists()
            and not (run_dir / "failed.json").exists())


def _held_by_live_process(run_dir: Path) -> bool:
    lock = run_dir / ".running"
    try:
        host, pid = lock.read_text().split()
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError):
        return False


def _command(run_dir: Path) -> list[str] | None:
    """The command-line overrides a Hydra run was started with, without the resume flag."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return sorted(o for o in OmegaConf.load(path) if not str(o).startswith("resume="))


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The folder this run writes to. resume=auto: when cfg.run_dir holds nothing to continue, the latest
    interrupted sibling run started with the same command (its W&B id and checkpoints live there)."""
    run_dir, mode = Path(cfg.run_dir), _resume_mode(cfg)
    if not _rank_zero():  # DDP children follow rank 0's choice (Lightning's launcher passes our environment on);
        return Path(os.environ.get(RUN_DIR_ENV, run_dir))  # torchrun/SLURM ranks need hydra.run.dir given
    os.environ.pop(RUN_DIR_ENV, None)  # (a multirun's earlier job may have set it)
    if mode != "auto" or _incomplete(run_dir):
        return run_dir
    try:
        from hydra.core.hydra_config import HydraConfig

        mine = sorted(o for o in HydraConfig.get().overrides.task if not o.startswith("resume="))
    except ValueError:  # not under the Hydra CLI (an in-process run(cfg)): no command to compare
        return run_dir
    if not run_dir.parent.is_dir():
        return run_dir
    candidates = [d for d in run_dir.parent.iterdir() if d.is_dir() and d != run_dir and _incomplete(d)
                  and _command(d) == mine and not _held_by_live_process(d)]
    if not candidates:
        return run_dir
    found = max(candidates, key=lambda d: (d / "checkpoints" / LAST).stat().st_mtime)
    console.print(f"[bold]resume=auto[/bold]: continuing the interrupted run {found} (same command); "
                  f"{run_dir} keeps only Hydra's logs of this start.")
    os.environ[RUN_DIR_ENV] = str(found)
    return found


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """run_dir's last checkpoint when resuming is asked for and there is one (verified before use)."""
    if not _resume_mode(cfg):
        return None
    last = run_dir / "checkpoints" / LAST
    if not last.is_file():
        console.print(f"resume={cfg.resume}: no checkpoint in {run_dir / 'checkpoints'}, starting from scratch")
        return None
    verify_checkpoint(last)
    console.print(f"resuming from {last}")
    return last


def _rank_zero() -> bool:
    """Before the Trainer exists: rank 0 under torchrun, SLURM and Lightning's own launcher alike."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def mark_running(run_dir: Path) -> None:
    """So resume=auto never picks a run that another live process is still writing."""
    if _rank_zero():
        (run_dir / ".running").write_text(f"{socket.gethostname()} {os.getpid()}")


def mark_stopped(run_dir: Path) -> None:
    if _rank_zero():
        (run_dir / ".running").unlink(missing_ok=True)


# -- stopping cleanly -----------------------------------------------------------------------------------
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
        path = _last_path(trainer)
        trainer.save_checkpoint(path)
        self._stop(trainer, path, f"after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._requested(trainer):  # the signal came during validation: the epoch-end checkpoint is current
            self._stop(trainer, _last_path(trainer), f"before epoch {trainer.current_epoch}")

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


def _last_path(trainer: L.Trainer) -> Path:
    ckpt = trainer.checkpoint_callback
    folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
    return folder / LAST


# -- the NaN guard --------------------------------------------------------------------------------------
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
        last = _last_path(trainer)
        kept = (f"kept the last good checkpoint {last} (nothing after it was saved)" if last.is_file()
                else "no checkpoint was saved before it")
        return (f"the training loss became {value} at step {step} (epoch {trainer.current_epoch}); {good}; "
                f"learning rate {', '.join(f'{lr:g}' for lr in lrs)}; {kept}.\n{LIKELY_CAUSES}")


def callbacks() -> list[L.Callback]:
    """What train.run adds to every Trainer."""
    return [Resumable(), NanGuard()]


if __name__ == "__main__":  # python -m pedestrian.fault CKPT...: is each checkpoint whole?
    for p in sys.argv[1:]:
        verify_checkpoint(p)
        print(f"{p}: ok")
