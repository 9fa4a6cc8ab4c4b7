"""Overfit a single batch (lecture: "literally a single batch, 2 to 32 data points ... driving the loss
arbitrarily close to zero"; a loss that goes down and stalls at 0.1 "doesn't count").

The real training step runs (for a stage: Lightning, module.training_step, module.loss_fn, the optimizer and
learning rate configure_optimizers builds; for your model: your step and optimizer) on one fixed batch, with
regularisation and augmentation off. Two curves are recorded: the objective the step minimises (module.loss_fn) and the
cross-entropy of the logits (what "the loss" means to the person debugging). Both must reach `target`;
when one does not, its shape is named and the lecture's likely causes are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pedestrian.doctor import curves
from pedestrian.doctor.common import CheckResult


class Recorder:
    """Per step: the objective (what the step returned) and the cross-entropy and error of that step's logits
    (kept by a forward hook); says stop once both curves stay below the target."""

    def __init__(self, net: torch.nn.Module, y: torch.Tensor, target: float, patience: int = 5) -> None:
        self.objective: list[float] = []
        self.cross_entropy: list[float] = []
        self.error: list[float] = []
        self.y, self.target, self.patience, self._logits = y, target, patience, None
        self._hook = net.register_forward_hook(self._keep)

    def _keep(self, m, inputs, out) -> None:
        self._logits = out.detach().float()

    def step_end(self, i: int, loss: float) -> bool:
        y = self.y.to(self._logits.device)
        self.objective.append(loss)
        self.cross_entropy.append(float(F.cross_entropy(self._logits, y)))
        self.error.append(float((self._logits.argmax(1) != y).float().mean()))
        tail = self.cross_entropy[-self.patience:], self.objective[-self.patience:]
        return len(tail[0]) == self.patience and all(max(abs(v) for v in t) <= self.target for t in tail)

    def close(self) -> None:
        self._hook.remove()


def overfit(subject, k: int, steps: int, target: float) -> tuple[Recorder, object]:
    """The real training step, `steps` times on the same k samples, regularisation off."""
    module = subject.fresh()
    batch = subject.small_batch(k)
    rec = Recorder(module.model, subject.labels(batch), target)
    try:
        subject.train_steps(module, [batch] * steps, plain=True, on_step_end=rec.step_end)
    finally:
        rec.close()
    return rec, module


def plot(path: Path, rec: Recorder, target: float, title: str) -> None:
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


def check(subject) -> CheckResult:
    t0 = time.time()
    s = subject.settings.overfit
    k, steps, target = int(s.batch_size), int(s.max_steps), float(s.target)
    rec, module = overfit(subject, k, steps, target)
    ce_shape = curves.classify(rec.cross_entropy, target)
    obj_shape = curves.classify(np.abs(rec.objective), target)
    shape, which, curve = ce_shape, "the cross-entropy of the logits", rec.cross_entropy
    if ce_shape == "converges" and obj_shape != "converges":
        shape, which, curve = obj_shape, "the objective the step minimises (module.loss_fn)", rec.objective
    lr = subject.lr(module)
    details = {"batch_size": k, "steps": len(rec.objective), "max_steps": steps, "target": target, "lr": lr,
               "shape": shape, "cross_entropy_shape": ce_shape, "objective_shape": obj_shape,
               "cross_entropy": rec.cross_entropy, "objective": rec.objective, "error": rec.error}
    path = subject.out_dir / "overfit_batch_loss.png"
    plot(path, rec, target, f"{subject.name}: overfit {k} samples, lr {lr:g}: {shape.replace('_', ' ')}")
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
