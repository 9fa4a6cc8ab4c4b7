"""The bug zoo: the bugs the lecture names, each injected on purpose into the real code path.

`python -m pedestrian +stage=lenet +bug=NAME` (a training run) and `python -m pedestrian.doctor +stage=lenet
+bug=NAME` both get the bug from `pedestrian.train.build`, which calls `inject` on the real datamodule and
LightningModule: the loss function the training step calls, the normalisation mode `dm.normalize` reads, the
order of the image array, the learning rate `configure_optimizers` reads, the `.eval()` that validation and
`predict` call, `requires_grad`. conf/bug/NAME.yaml holds each bug's description ("what it looks like in the
wild"), the doctor check that must catch it and the diagnosis that check must give.
"""

from __future__ import annotations

import types
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

BUG_DIR = Path(__file__).resolve().parents[2] / "conf" / "bug"


def names() -> list[str]:
    """Every bug in the zoo (one file per bug in conf/bug/)."""
    return sorted(p.stem for p in BUG_DIR.glob("*.yaml"))


def load(name: str) -> DictConfig:
    """A bug's config as `+bug=NAME` composes it: name, check, diagnosis, in_the_wild and its parameters."""
    path = BUG_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"bug={name!r}: no such bug; the zoo has {names()}")
    return OmegaConf.load(path)


# -- the bugs, as someone would write them by accident -------------------------------------------------------
def softmax_then_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(torch.softmax(logits, dim=1), y)  # cross_entropy wants logits: it log-softmaxes again


def negative_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return -F.cross_entropy(logits, y)  # "maximise the log-likelihood", handed to an optimiser that minimises


def broadcast_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    logp = F.log_softmax(logits, dim=1)
    y = y.float().unsqueeze(1)  # (N, 1) against (N,) below: broadcasting makes an (N, N) matrix, no error
    return -(y * logp[:, 1] + (1 - y) * logp[:, 0]).mean()


def eval_that_forgets(self: nn.Module) -> nn.Module:
    return self  # model.eval() never happens: batch norm and dropout stay in training mode


def listing_order(n: int, split: str) -> np.ndarray:
    """The order an unsorted directory listing returns files split/000000.png... in: by a hash of the name
    (as ext4's hashed directories do), not by name."""
    return np.array(sorted(range(n), key=lambda i: zlib.crc32(f"{split}/{i:06d}.png".encode())))


# -- injection ------------------------------------------------------------------------------------------------
def _softmax_before_loss(bug, module, dm) -> None:
    module.loss_fn = softmax_then_cross_entropy


def _flipped_loss_sign(bug, module, dm) -> None:
    module.loss_fn = negative_cross_entropy


def _broadcast_loss(bug, module, dm) -> None:
    module.loss_fn = broadcast_cross_entropy


def _normalize(bug, module, dm) -> None:
    dm.normalize_mode = str(bug.normalize)  # the mode ArrayDataModule.normalize reads on every batch


def _shuffled_labels(bug, module, dm) -> None:
    # Images come in listing order, labels (and every attribute) from a sorted table: pair k is misaligned.
    for split, arr in dm.splits.items():
        arr.images = arr.images[listing_order(len(arr.images), split)]


def _eval_in_train_mode(bug, module, dm) -> None:
    module.eval = types.MethodType(eval_that_forgets, module)  # Lightning's validation and predict() call it


def _lr_explodes(bug, module, dm) -> None:
    module.optim_cfg["lr"] = float(bug.lr)  # what configure_optimizers (and the doctor) read


def _frozen_weights(bug, module, dm) -> None:
    last = [m for m in module.model.modules() if isinstance(m, nn.Linear)][-1]
    keep = {id(p) for p in last.parameters()}
    for p in module.model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)  # the "backbone" frozen for fine-tuning and never unfrozen


INJECT: dict[str, Callable] = {
    "softmax_before_loss": _softmax_before_loss, "flipped_loss_sign": _flipped_loss_sign,
    "broadcast_loss": _broadcast_loss, "no_normalize": _normalize, "double_normalize": _normalize,
    "shuffled_labels": _shuffled_labels, "eval_in_train_mode": _eval_in_train_mode,
    "lr_explodes": _lr_explodes, "frozen_weights": _frozen_weights,
}


def inject(bug: DictConfig, module, dm) -> None:
    """Put `bug` (cfg.bug) into the real LightningModule and datamodule, in place."""
    name = bug.get("name")
    if name not in INJECT:
        raise ValueError(f"bug.name={name!r}: not in the bug zoo {sorted(INJECT)}")
    INJECT[name](bug, module, dm)
