"""Overfit a single batch (lecture: "literally a single batch, 2 to 32 data points ... driving the loss
arbitrarily close to zero"; a loss that goes down and stalls at 0.1 "doesn't count").

The real training step runs (Lightning, module.training_step, module.loss_fn, the optimizer and learning rate
configure_optimizers builds) on one fixed batch, normalised by the datamodule, with regularisation and
augmentation off. Two curves are recorded: the objective the step minimises (module.loss_fn) and the
cross-entropy of the logits (what "the loss" means to the person debugging). Both must reach `target`;
when one does not, its shape is named and the lecture's likely causes are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pedestrian.doctor import curves
from pedestrian.doctor.common import CheckResult


class _OneBatch(L.LightningDataModule):
    """The same batch, `steps` times, through the real datamodule's on_after_batch_transfer (normalisation)."""

    def __init__(self, dm, batch: tuple, steps: int) -> None:
        super().__init__()
        self.dm, self.batch, self.steps = dm, batch, steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader([self.batch] * self.steps, batch_size=None)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.dm.on_after_batch_transfer(batch, dataloader_idx)


class _Recorder(L.Callback):
    """Per step: the objective (what training_step returned) and the cross-entropy of that step's logits."""

    def __init__(self, target: float, patience: int = 5) -> None:
        self.objective: list[float] = []
        self.cross_entropy: list[float] = []
        self.error: list[float] = []
        self.target, self.patience, self._logits = target, patience, None

    def on_fit_start(self, trainer, pl_module) -> None:
        def keep(m, inputs, out):
            self._logits = out.detach().float()
        self._hook = pl_module.model.register_forward_hook(keep)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        y = batch[1]
        self.objective.append(float(loss))
        self.cross_entropy.append(float(F.cross_entropy(self._logits, y)))
        self.error.append(float((self._logits.argmax(1) != y).float().mean()))
        tail = self.cross_entropy[-self.patience:], self.objective[-self.patience:]
        if len(tail[0]) == self.patience and all(max(abs(v) for v in t) <= self.target for t in tail):
            trainer.should_stop = True  # there: no need to spend the rest of the budget

    def on_fit_end(self, trainer, pl_module) -> None:
        self._hook.remove()


def pick_batch(dm, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k training samples (seeded, both classes when there are two), untransformed: no augmentation."""
    from pedestrian.data.datamodule import ArrayDataset

    images, labels, _ = dm.train_images_labels()
    order = np.random.default_rng(seed).permutation(len(labels))
    picked: list[int] = []
    for c in np.unique(labels):  # one of each class first, then whatever comes
        picked += [int(i) for i in order if labels[i] == c][:1]
    picked += [int(i) for i in order if int(i) not in picked][: k - len(picked)]
    return ArrayDataset(images, labels).__getitems__(sorted(picked[:k]))


def overfit(ctx, k: int, steps: int, target: float) -> tuple[_Recorder, object]:
    module = ctx.fresh_module()
    module.optim_cfg.update(weight_decay=0.0, scheduler="none")  # regularisation off; a constant learning rate
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    rec = _Recorder(target)
    trainer = ctx.trainer(max_epochs=1, max_steps=steps, limit_val_batches=0, log_every_n_steps=1, callbacks=[rec])
    trainer.fit(module, datamodule=_OneBatch(ctx.dm, pick_batch(ctx.dm, k, int(ctx.cfg.seed)), steps))
    return rec, module


def plot(path: Path, rec: _Recorder, target: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    steps = np.arange(1, len(rec.objective) + 1)
    ax.plot(steps, rec.cross_entropy, label="cross-entropy of the logits", lw=1.6)
    ax.plot(steps, rec.objective, label="objective (module.loss_fn)", lw=1.0, ls="--")
    ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:g}")
    values = np.asarray(rec.cross_entropy + rec.objective, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0:
        ax.set_yscale("log")
    else:  # a flipped sign takes the objective below zero
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("step (the same batch every step)")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check(ctx) -> CheckResult:
    t0 = time.time()
    s = ctx.settings.overfit
    k, steps, target = int(s.batch_size), int(s.max_steps), float(s.target)
    rec, module = overfit(ctx, k, steps, target)
    ce_shape = curves.classify(rec.cross_entropy, target)
    obj_shape = curves.classify(np.abs(rec.objective), target)
    shape, which, curve = ce_shape, "the cross-entropy of the logits", rec.cross_entropy
    if ce_shape == "converges" and obj_shape != "converges":
        shape, which, curve = obj_shape, "the objective the step minimises (module.loss_fn)", rec.objective
    lr = module.optim_cfg["lr"]
    details = {"batch_size": k, "steps": len(rec.objective), "max_steps": steps, "target": target, "lr": lr,
               "shape": shape, "cross_entropy_shape": ce_shape, "objective_shape": obj_shape,
               "cross_entropy": rec.cross_entropy, "objective": rec.objective, "error": rec.error}
    path = ctx.out_dir / "overfit_batch_loss.png"
    plot(path, rec, target, f"{ctx.cfg.stage.name}: overfit {k} samples, lr {lr:g}: {shape.replace('_', ' ')}")
    last_ce, last_obj = rec.cross_entropy[-1], rec.objective[-1]
    summary = (f"{k} samples, {len(rec.objective)} steps at lr {lr:g}: cross-entropy {rec.cross_entropy[0]:.3g} -> "
               f"{last_ce:.3g}, objective {rec.objective[0]:.3g} -> {last_obj:.3g}, batch error {rec.error[-1]:.0%}")
    if shape == "converges":
        return CheckResult("overfit_batch", "pass", summary, None,
                           f"both curves below {target:g}: the model can memorise a batch", [], details,
                           {"loss_curve": str(path)}, time.time() - t0)
    verb = {"slow": "is still going down, too slowly"}.get(shape, shape.replace("_", " "))
    text = (f"{which} {verb} (first {curve[0]:.3g}, min {np.nanmin(curve):.3g}, "
            f"last {curve[-1]:.3g}, never below {target:g} in {len(curve)} steps)")
    if last_obj < 0:
        text += f"; the objective is negative ({last_obj:.3g}): it is not a cross-entropy any more"
    # Still going down when the steps ran out (a fine-tuning stage's low learning rate) is none of the lecture's
    # failure shapes: a warning, with the fix, not a failed check.
    status = "warn" if shape == "slow" else "fail"
    return CheckResult("overfit_batch", status, summary, shape, text, curves.CAUSES[shape], details,
                       {"loss_curve": str(path)}, time.time() - t0)
