"""The bug zoo: the bugs the lecture names, each injected on purpose into the real code path.

`python -m pedestrian +stage=lenet +bug=NAME` (a training run) and `python -m pedestrian.doctor +stage=lenet
+bug=NAME` both get the bug from `pedestrian.core.train.build`, which calls `inject` on the real datamodule and
LightningModule: the loss function the training step calls, the normalisation mode `dm.normalize` reads, the
order of the image array, the learning rate `configure_optimizers` reads, the optimizer it builds, the `.eval()`
that validation and `predict` call, `requires_grad`, the weights and biases at initialisation, the images of
every split, the evaluation sets' transform. conf/bug/NAME.yaml holds each bug's description ("what it looks like in the
wild"), the doctor check that must catch it and the diagnosis that check must give.
"""

from __future__ import annotations

import copy
import types
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from pedestrian.base.conf import CONF_DIR

BUG_DIR = Path(CONF_DIR) / "bug"


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


def optimizer_on_a_copy(self) -> torch.optim.Optimizer:
    from pedestrian.core.module import build_optimizer

    stale = copy.deepcopy(self.model)  # the model was re-created (or copied, moved, wrapped) after this line
    return build_optimizer(stale.parameters(), self.optim_cfg)


def without_zero_grad(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    class Forgetful(type(optimizer)):
        def zero_grad(self, set_to_none: bool = True) -> None:
            pass  # the line `optimizer.zero_grad()` that was never written: gradients add up step after step
    optimizer.__class__ = Forgetful
    return optimizer


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


def _wrong_init(bug, module, dm) -> None:
    for m in module.model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=float(bug.std))  # nn.init.normal_(w): "small random numbers", std 1


def _lr_too_low(bug, module, dm) -> None:
    module.optim_cfg["lr"] = float(bug.lr)


def _no_zero_grad(bug, module, dm) -> None:
    def configure(self):  # (bound to each copy of the module: the doctor trains deep copies)
        out = type(self).configure_optimizers(self)
        if isinstance(out, dict):
            out["optimizer"] = without_zero_grad(out["optimizer"])
            return out
        return without_zero_grad(out)
    module.configure_optimizers = types.MethodType(configure, module)


def _optimizer_wrong_params(bug, module, dm) -> None:
    module.configure_optimizers = types.MethodType(optimizer_on_a_copy, module)


def _dead_relu(bug, module, dm) -> None:
    layers = [m for m in module.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    for m in layers[:-1]:  # every hidden layer: a "small positive bias" whose sign was flipped, and scaled
        nn.init.constant_(m.bias, float(bug.bias))


def _label_leak(bug, module, dm) -> None:
    # A marker in the corner that says the label: a watermark on the positives' source, a burnt-in annotation.
    k = int(bug.marker_px)
    for arr in dm.splits.values():
        arr.images = arr.images.copy()
        arr.images[:, :k, :k, :] = np.where(np.asarray(arr.attrs["label"]) == 1, 255, 0)[:, None, None, None]


def _augment_at_eval(bug, module, dm) -> None:
    from pedestrian.data import augment

    aug = augment.build(str(bug.pipeline), dm.image_size, dm.seed)
    plain = dm.eval_dataset

    def eval_dataset(split: str):
        ds = plain(split)
        ds.transform = lambda img, i: aug(img)  # the training transform, handed to the evaluation sets too
        return ds
    dm.eval_dataset = eval_dataset


INJECT: dict[str, Callable] = {
    "softmax_before_loss": _softmax_before_loss, "flipped_loss_sign": _flipped_loss_sign,
    "broadcast_loss": _broadcast_loss, "no_normalize": _normalize, "double_normalize": _normalize,
    "shuffled_labels": _shuffled_labels, "eval_in_train_mode": _eval_in_train_mode,
    "lr_explodes": _lr_explodes, "frozen_weights": _frozen_weights, "wrong_init": _wrong_init,
    "lr_too_low": _lr_too_low, "no_zero_grad": _no_zero_grad, "optimizer_wrong_params": _optimizer_wrong_params,
    "dead_relu": _dead_relu, "label_leak": _label_leak, "augment_at_eval": _augment_at_eval,
}


def inject(bug: DictConfig, module, dm) -> None:
    """Put `bug` (cfg.bug) into the real LightningModule and datamodule, in place."""
    name = bug.get("name")
    if name not in INJECT:
        raise ValueError(f"bug.name={name!r}: not in the bug zoo {sorted(INJECT)}")
    INJECT[name](bug, module, dm)
