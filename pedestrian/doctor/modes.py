"""Train/eval mode (lecture: "forgetting to set up train mode for the net correctly ... often comes up with batch
norm"). Runs the real evaluation path, pedestrian.train.predict, and checks that

  * every layer is in eval mode while it predicts (batch norm on running statistics, dropout off);
  * its outputs are deterministic: the same weights and images give the same probabilities twice;
  * they are consistent: an image's output does not depend on which other images share its batch.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from pedestrian.doctor.common import CheckResult

FIXES = {
    "evaluated_in_train_mode": ["call model.eval() before evaluating or predicting (and model.train() before "
                                "training again); Lightning does it for its own loops, hand-written loops must",
                                "with batch norm, train-mode evaluation uses each batch's statistics and "
                                "overwrites the running averages"],
    "nondeterministic": ["dropout or another random layer is active at evaluation: call model.eval()",
                         "on a GPU, set deterministic algorithms when comparing runs"],
    "inconsistent": ["an output depends on the rest of the batch: batch norm in train mode, or a layer that mixes "
                     "samples (see the gradient-dependency check)"],
}


def _modes_during(module, fn):
    """Run fn() and record, at every forward call of the model, the layers that were in training mode."""
    seen: list[list[str]] = []

    def hook(m, inputs):
        seen.append([n for n, sub in module.model.named_modules() if sub.training])
    h = module.model.register_forward_pre_hook(hook)
    try:
        out = fn()
    finally:
        h.remove()
    return out, sorted({n or "(model)" for s in seen for n in s})


@torch.no_grad()
def _probs(module, dm, x: torch.Tensor, chunk: int) -> np.ndarray:
    """Probabilities of every class for x, in eval mode set directly, `chunk` images per forward."""
    module.train(False)
    out = [torch.softmax(module(dm.normalize(x[i:i + chunk].to(module.device))).float(), 1) for i in
           range(0, len(x), chunk)]
    return torch.cat(out).cpu().numpy()


def check(ctx) -> CheckResult:
    from pedestrian.core.train import predict

    t0 = time.time()
    module, dm, split = ctx.fresh_module(), ctx.dm, str(ctx.settings.modes.split)
    module.train()  # as after a training epoch: predict() has to switch it
    p1, training_layers = _modes_during(module, lambda: predict(module, dm, split))
    p2 = predict(module, dm, split)
    tol = float(ctx.settings.modes.tolerance)
    deterministic_gap = float(np.abs(p1 - p2).max())

    # The same images in another order and other batch sizes, in eval mode set directly, must give the same
    # outputs as predict() (P(class 1) is what predict returns).
    n = min(len(p1), int(ctx.settings.modes.n_images))
    x = torch.stack([dm.eval_dataset(split)[i][0] for i in range(n)])
    module_ref = ctx.fresh_module()
    rev = _probs(module_ref, dm, x.flip(0), chunk=7)[::-1]
    consistent_gap = float(np.abs(rev[:, 1] - p1[:n]).max()) if rev.shape[1] > 1 else 0.0
    details = {"split": split, "n": len(p1), "layers_in_train_mode": training_layers,
               "deterministic_max_diff": deterministic_gap, "batch_composition_max_diff": consistent_gap,
               "tolerance": tol}
    summary = (f"predict() on {split} ({len(p1)} images): {len(training_layers)} layers in train mode, "
               f"repeat differs by {deterministic_gap:.2g}, another batch composition by {consistent_gap:.2g}")
    diagnosis = None
    if training_layers:
        diagnosis = "evaluated_in_train_mode"
        effect = ("its outputs changed with it" if max(deterministic_gap, consistent_gap) > tol
                  else "harmless for this model only because it has no batch norm or dropout")
        text = (f"predict() ran the model in TRAIN mode ({len(training_layers)} layers, e.g. "
                f"{', '.join(training_layers[:3])}): .eval() never took effect; {effect}")
    elif deterministic_gap > tol:
        diagnosis, text = "nondeterministic", f"the same images gave outputs up to {deterministic_gap:.3g} apart"
    elif consistent_gap > tol:
        diagnosis, text = "inconsistent", (f"an image's output changes by up to {consistent_gap:.3g} with the "
                                           "other images in its batch")
    if diagnosis:
        return CheckResult("modes", "fail", summary, diagnosis, text, FIXES[diagnosis], details,
                           seconds=time.time() - t0)
    return CheckResult("modes", "pass", summary, None, "eval mode, deterministic and independent of the batch",
                       details=details, seconds=time.time() - t0)
