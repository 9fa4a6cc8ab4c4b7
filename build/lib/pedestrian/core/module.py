"""The LightningModule: cross-entropy on logits, error rates on the lecture's four evaluation sets."""

from __future__ import annotations

import os

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from pedestrian.data.datamodule import EVAL_SPLITS

# Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 on import (so that checking for a GPU never initialises CUDA
# before a fork). On a machine without an NVIDIA driver every torch.cuda.is_available() then tries to load NVML
# again, about 0.1 ms, and torch's optimizers ask once a step. With no GPU there is no CUDA to protect: use
# torch's own check (a bare PyTorch script pays nothing either).
if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
    del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle")


class ErrorRate(Metric):
    """Fraction misclassified; summed counts, so it reduces exactly across DDP processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("wrong", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, wrong: Tensor, total: int) -> None:
        """Counts: a batch's (validation) or an epoch's, summed in the training step (training)."""
        self.wrong += wrong.long()
        self.total += total

    def compute(self) -> Tensor:
        return self.wrong.float() / self.total.clamp(min=1)


def count_wrong(logits: Tensor, target: Tensor) -> Tensor:
    return (logits.argmax(dim=1) != target).sum()


def build_optimizer(params, cfg: DictConfig | dict) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD by name (the lecture tunes the optimizer and its betas like any hyperparameter)."""
    name, lr, wd = cfg["name"], float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd, nesterov=True)
    raise ValueError(f"optim.name={name!r} is not one of {OPTIMIZERS}")


class Classifier(L.LightningModule):
    """Wraps any nn.Module that maps NCHW floats to class logits."""

    def __init__(self, model: nn.Module, optim: DictConfig | dict, channels_last: bool = False,
                 grad_clip: float | None = None, grad_clip_algorithm: str | None = None) -> None:
        super().__init__()
        # The optimizer step is written out in training_step, as in a plain PyTorch loop (Lightning's manual
        # optimization). Lightning's automatic loop makes the same calls through a closure and 21 hook dispatches
        # a step instead of 15, a cost that shows on small models (python -m pedestrian.bench measures it).
        # Gradient clipping (trainer.gradient_clip_val) and the schedulers are therefore applied here.
        self.automatic_optimization = False
        self.model = model
        self.optim_cfg = dict(optim)
        self.channels_last = channels_last
        self.grad_clip, self.grad_clip_algorithm = grad_clip, grad_clip_algorithm or "norm"
        self.train_error = ErrorRate()
        self.train_loss = MeanMetric()
        self.step_loss: float | None = None  # the last logged training loss (progress bar)
        self._seen: list[tuple[Tensor, Tensor, Tensor]] | None = None  # this epoch's (logits, labels, loss)
        self.eval_error = nn.ModuleDict({f"{s}_set": ErrorRate() for s in EVAL_SPLITS})  # "train" is taken

    # Lightning sets _current_fx_name twice around each of some 40 hook calls a step, and nn.Module's __setattr__
    # checks every value for parameters, buffers and submodules: plain attributes skip that (python -m
    # pedestrian.bench: part of Lightning's cost per step against a bare loop).
    _PLAIN_ATTRS = frozenset({"_current_fx_name", "_seen", "step_loss"})

    def __setattr__(self, name: str, value) -> None:
        if name in Classifier._PLAIN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # (images, labels, indices): moved directly instead of by Lightning's walk through any collection.
        if isinstance(batch, (tuple, list)) and all(isinstance(t, Tensor) for t in batch):
            return tuple(t.to(device, non_blocking=True) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def loss_fn(self, logits: Tensor, y: Tensor) -> Tensor:
        # Logits straight into cross-entropy: it applies log-softmax itself (feeding it softmax is a classic bug).
        return F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y, _ = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)  # Lightning's: mixed precision, DDP's gradient sync, the NaN guard's hook
        if self.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm=self.grad_clip_algorithm)
        opt.step()
        self._step_schedulers("step")
        # Lean on purpose (python -m pedestrian.bench): the step keeps its logits (2 numbers an image), labels and
        # loss; the epoch's training error and mean loss are computed from them once, at its end. A torchmetrics
        # update or a self.log per step costs a fraction of a millisecond, on a CPU a few percent of a LeNet step,
        # and counting the errors (argmax, compare, sum) is three tensor calls. No host sync on a GPU either.
        if self._seen is None:  # here, not at epoch start: a run resumed mid-epoch skips on_train_epoch_start
            self._seen = []
        self._seen.append((logits.detach(), y, loss.detach()))
        if batch_idx % self.trainer.log_every_n_steps == 0:
            self._log_step_loss(loss)
        return loss

    def _log_step_loss(self, loss: Tensor) -> None:
        """train/loss_step straight to the loggers, on Lightning's step axis. (At every call self.log walks all
        the attributes of Lightning's stored metric to move it to the device, and the logger connector flushes
        it: a cost per step that shows on LeNet.) The progress bar shows the value too (trainer.StepLossBar)."""
        self.step_loss = loss.item()  # (self.log's logger connector syncs at the same steps)
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics({"train/loss_step": self.step_loss, "epoch": self.current_epoch},
                                   step=self.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint written before the optimizer step moved into training_step (commit f1d55d4) counts its
        steps in Lightning's automatic loop; the manual loop, whose count global_step now reads, starts from
        its count, so a resumed run goes on from the same step (the logging axis) instead of from 0."""
        loops = checkpoint.get("loops", {}).get("fit_loop", {})
        auto = loops.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
        manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
        if auto and manual and auto["total"]["completed"] > 0 and manual["total"]["completed"] == 0:
            loops["epoch_loop.manual_optimization.optim_step_progress"] = {k: dict(v) for k, v in auto.items()}

    def _step_schedulers(self, interval: str) -> None:
        for c in self.trainer.lr_scheduler_configs:  # (restored from a checkpoint on resume, like the optimizer)
            if c.interval == interval:
                c.scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self._seen:
            logits, y, losses = zip(*self._seen)
            sizes = [len(t) for t in y]
            seen = sum(sizes)
            self.train_error.update(count_wrong(torch.cat(logits), torch.cat(y)), seen)
            # the steps' losses weighted by their batch sizes (a loss need not be a mean over images: the bug zoo)
            n = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
            self.train_loss.update((torch.stack(losses).float() * n).sum() / seen, seen)
        self._seen = None
        self._step_schedulers("epoch")
        self.log("train/loss_epoch", self.train_loss)
        self.log("train/running_error", self.train_error)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y, _ = batch
        split = EVAL_SPLITS[dataloader_idx]
        logits = self(x)
        self.eval_error[f"{split}_set"](count_wrong(logits, y), y.numel())
        kw = dict(on_step=False, on_epoch=True, add_dataloader_idx=False, batch_size=len(y))
        self.log(f"{split}/loss", F.cross_entropy(logits, y), sync_dist=True, **kw)
        self.log(f"{split}/error", self.eval_error[f"{split}_set"], prog_bar=split == "train_val", **kw)

    def configure_optimizers(self):
        opt = build_optimizer(self.model.parameters(), self.optim_cfg)
        sched = self.optim_cfg.get("scheduler", "none")
        if sched == "none":
            return opt
        if sched == "cosine":
            epochs = max(1, int(self.trainer.max_epochs or 1))
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)}
        if sched == "onecycle":
            steps = int(self.trainer.estimated_stepping_batches)
            s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(self.optim_cfg["lr"]), total_steps=steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
        raise ValueError(f"optim.scheduler={sched!r} is not one of {SCHEDULERS}")
