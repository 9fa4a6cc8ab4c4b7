"""What every doctor check shares: the result it returns, the subject it examines and the loop that runs them.

A check sees its subject only through `Subject`'s methods, so the same check serves this project's stages
(pedestrian.doctor.stage: the real datamodule, LightningModule and Trainer) and anyone's model
(pedestrian.doctor.any_model: an nn.Module, a DataLoader, a loss and an optimizer, or the user's own step).
"""

from __future__ import annotations

import importlib
import logging
import random
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

CHECKS = ("run_trace", "inputs", "init_loss", "overfit_batch", "modes", "grad_dependency", "training_step",
          "known_results")


class DoctorError(ValueError):
    """The doctor cannot examine what it was given (a loader of the wrong structure, a loss that is not a
    scalar...): the message names what is wrong and what was expected."""


@dataclass
class CheckResult:
    check: str
    status: str                      # pass | warn | fail | skip
    summary: str                     # one line: what was measured
    diagnosis: str | None = None     # a short code when it is not a pass, e.g. "goes_up", "not_normalized"
    explanation: str = ""            # what was seen and why it matters
    fixes: list[str] = field(default_factory=list)   # the lecture's suggested fixes, most likely first
    details: dict = field(default_factory=dict)      # the numbers behind it (JSON-able)
    files: dict[str, str] = field(default_factory=dict)  # images it wrote
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class Patient(nn.Module):
    """A model and the loss its training minimises, as one object: what `Subject.fresh()` returns. A stage's
    LightningModule already has this shape (`.model`, `.loss_fn`, forward = the model's)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "loss_fn", loss_fn)  # a plain attribute, even when the loss is an nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Subject:
    """What the checks examine. Batches are in the subject's own format (`labels(batch)` reads them); every
    tensor a check feeds the model directly comes from `batch()` or `eval_inputs()`, already normalised."""

    name: str                        # for titles: "stage lenet", "resnet18"
    settings: DictConfig             # conf/doctor/default.yaml, with overrides
    seed: int
    out_dir: Path
    device: torch.device
    num_classes: int
    kind: str                        # "stage" | "model"
    pretrained: bool = False         # starts from trained weights (fine-tuning): its first loss need not be ln C

    def reseed(self) -> None:
        """Before each check, as if it ran alone."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

    def fresh(self) -> nn.Module:
        """A fresh copy of the model at its initial weights, with `.model` and `.loss_fn`."""
        raise NotImplementedError

    def batch(self) -> tuple[Tensor, Tensor]:
        """A real training batch (settings.batch_size) exactly as the model receives it, on the device."""
        raise NotImplementedError

    def small_batch(self, k: int) -> object:
        """k training samples (both classes when there are two), without augmentation, in the native format."""
        raise NotImplementedError

    def training_batches(self, n: int) -> list:
        """The first n batches of the training loader, in the native format (for the training-step probes)."""
        raise NotImplementedError

    def labels(self, batch) -> Tensor:
        raise NotImplementedError

    def model_inputs(self, batch) -> tuple[Tensor, Tensor]:
        """(inputs as the model receives them, labels) of a native batch, on the device."""
        raise NotImplementedError

    def train_steps(self, module: nn.Module, batches: Sequence, plain: bool = False,
                    on_step_start: Callable[[int], None] | None = None,
                    on_step_end: Callable[[int, float], None] | None = None) -> None:
        """The real training step (optimizer built as training builds it) on each batch in turn. plain: weight
        decay, dropout and schedules off (the lecture's overfit-a-batch setting)."""
        raise NotImplementedError

    def lr(self, module: nn.Module) -> float | None:
        return None

    def train_labels(self) -> np.ndarray:
        raise NotImplementedError

    def samples(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to n training inputs, flattened to (n, features) floats, and their labels (for the baselines)."""
        raise NotImplementedError

    def norm_stats(self) -> tuple[Tensor, Tensor] | None:
        """The per-channel mean/std the inputs are standardised with, when the subject knows them."""
        return None

    def class_names(self) -> list[str]:
        return [f"y={k}" for k in range(self.num_classes)]

    def eval_inputs(self, n: int) -> Tensor:
        """n held-out inputs, normalised, on the device (for direct probes of the model in eval mode)."""
        raise NotImplementedError

    def predict(self, module: nn.Module) -> tuple[np.ndarray, list[str]]:
        """Class probabilities of the held-out inputs by the real evaluation path, and the layers that were in
        training mode while it ran."""
        raise NotImplementedError

    def score(self, probs: np.ndarray) -> np.ndarray:
        """Direct class probabilities (N, K) in the format predict() returns."""
        return probs

    def modes_note(self) -> str:
        return ""


def modes_during(net: nn.Module, fn: Callable):
    """Run fn() and record, at every forward call of net, the layers that were in training mode."""
    seen: list[list[str]] = []

    def hook(m, inputs):
        seen.append([n for n, sub in net.named_modules() if sub.training])
    h = net.register_forward_pre_hook(hook)
    try:
        out = fn()
    finally:
        h.remove()
    return out, sorted({n or "(model)" for s in seen for n in s})


def rebuild(batch, items):
    """A tuple, list or namedtuple like `batch`, holding `items`."""
    items = list(items)
    if hasattr(batch, "_fields"):
        return type(batch)(*items)
    return tuple(items) if isinstance(batch, tuple) else items


def dropout_off(module: nn.Module) -> None:
    """Every dropout layer (Dropout, Dropout1d/2d/3d, AlphaDropout...) to p=0: the overfit setting."""
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0


def pick(labels: np.ndarray, k: int, seed: int) -> list[int]:
    """k indices, seeded: one of each class first (up to k), then whatever comes; sorted."""
    order = np.random.default_rng(seed).permutation(len(labels))
    picked: list[int] = []
    for c in np.unique(labels)[:k]:
        picked += [int(i) for i in order if labels[i] == c][:1]
    picked += [int(i) for i in order if int(i) not in picked][: k - len(picked)]
    return sorted(picked[:k])


@torch.no_grad()
def eval_probs(module: nn.Module, x: Tensor, chunk: int = 256, device: torch.device | None = None) -> np.ndarray:
    """Class probabilities (N, K) of inputs x in eval mode (set directly), `chunk` inputs per forward."""
    module.train(False)
    out = [torch.softmax(module(x[i:i + chunk].to(device or x.device)).float(), 1).cpu()
           for i in range(0, len(x), chunk)]
    return torch.cat(out).numpy()


def to_device(batch, device: torch.device):
    """Tensors of a batch (a tensor, tuple, list or dict of them) moved to the device."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return rebuild(batch, (to_device(b, device) for b in batch))
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def quiet_lightning() -> None:
    """The doctor prints a report, not Lightning's banners and data-loader advice."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for msg in (".*does not have many workers.*", ".*smaller than the logging interval.*", ".*LeafSpec.*",
                ".*no `val_dataloader`.*"):
        warnings.filterwarnings("ignore", message=msg)


def run_checks(subject: Subject, checks: Sequence[str], console=None) -> list[CheckResult]:
    """The checks in the lecture's order, each as if it ran alone (reseeded). A check that crashes is a failed
    check with its traceback in the details; when the model does not even run, the rest are skipped."""
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise DoctorError(f"doctor.checks={list(checks)}: {unknown} not among {list(CHECKS)}")
    results: list[CheckResult] = []
    for name in checks:
        if results and results[0].check == "run_trace" and results[0].status == "fail" \
                and results[0].diagnosis not in ("no_gradient", "nonfinite_gradient", "dead_relu"):
            results.append(CheckResult(name, "skip", "skipped: the model does not run (see run_trace)"))
            continue
        subject.reseed()
        t0 = time.time()
        try:
            r = importlib.import_module(f"pedestrian.doctor.{name}").check(subject)
        except DoctorError as e:  # this check cannot examine what it got (e.g. too few batches to hold out)
            r = CheckResult(name, "skip", f"skipped: {e}", "cannot_examine", str(e))
        except Exception as e:  # a check that crashes is a finding, not a reason to stop the others
            r = CheckResult(name, "fail", f"the check crashed: {type(e).__name__}: {str(e)[:200]}", "crashed",
                            traceback.format_exc(), ["read the traceback in doctor.json"],
                            {"traceback": traceback.format_exc()})
        r.seconds = round(time.time() - t0, 2)
        results.append(r)
        if console is not None:
            style = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}[r.status]
            console.print(f"  [{style}]{r.status:4s}[/{style}] {name:16s} {r.seconds:6.1f}s  {r.summary}")
    return results
