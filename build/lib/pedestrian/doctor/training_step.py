"""The training step itself: the silent bugs of a training loop, which no shape or loss check sees.

Two steps of the real training step (a stage's training_step through Lightning, or your `step`) on two real
batches, watched from outside:

  * every trainable parameter receives a gradient (else: `loss.backward()` is missing, or the loss was
    detached) and changes (else: the optimizer was built on other parameters, e.g. a copy of the model);
  * the gradients are reset between steps: the same two steps with the gradients cleared in between must end
    at the same weights (else: `optimizer.zero_grad()` is missing and gradients pile up);
  * the layers that behave differently in training (batch norm, dropout) are in training mode during the step
    (else: a `model.eval()` left on);
  * the learning rate is not far too low: along the first step's update, the loss on the next batch is measured
    at 1, 10, ... 10000 times the update; when 1000x or more is best, and gains over ten times what the step
    itself did and over 1% of the loss, the learning rate is far too low.
"""

from __future__ import annotations

import copy
import time
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from pedestrian.doctor.common import CheckResult

FIXES = {
    "no_backward": ["call loss.backward() before optimizer.step()",
                    "do not detach the loss: no .item(), .detach(), .numpy() or torch.no_grad() on the way to it"],
    "optimizer_wrong_params": ["build the optimizer on the parameters of the model you train, after the model is "
                               "built, moved and wrapped: torch.optim.Adam(model.parameters())",
                               "a model re-created or copied after the optimizer was built trains nothing"],
    "grads_accumulate": ["call optimizer.zero_grad() once per step, before loss.backward(): PyTorch adds new "
                         "gradients to the old ones",
                         "(accumulating over several batches on purpose? then step and zero every k batches)"],
    "trained_in_eval_mode": ["the step (or something it calls, e.g. a quick evaluation) puts layers in eval mode: "
                             "call model.train() before the forward pass that trains, and after any evaluation",
                             "batch norm and dropout behave differently in each mode"],
    "lr_too_low": ["raise the learning rate (a coarse-to-fine search: try 10x steps first)",
                   "check the learning rate the optimizer really got: a typo (1e-7 for 1e-3), a schedule or warm-up "
                   "stuck at its start"],
}
MODE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@contextmanager
def deterministic():
    """Deterministic kernels where torch has them (a GPU's cuDNN and atomics otherwise make two identical steps
    differ by noise that could pass for carried-over gradients)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
            yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def _trainable(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


def watched_steps(subject, batches: list, clear_between: bool) -> dict:
    """Run the real step on each batch of a fresh copy; return the weights before, after step 1 and at the end,
    the largest gradient each parameter received, and the mode layers found in eval mode during a forward."""
    subject.reseed()
    module = subject.fresh()
    net = module.model
    params = _trainable(net)
    grads: dict[str, float] = {}
    handles = [p.register_hook(lambda g, n=n: grads.__setitem__(n, max(grads.get(n, 0.0),
                                                                         float(g.detach().abs().max()))))
               for n, p in params.items()]
    in_eval: set[str] = set()
    handles.append(net.register_forward_pre_hook(lambda m, i: in_eval.update(
        n for n, sub in net.named_modules() if isinstance(sub, MODE_LAYERS) and not sub.training)))
    # Snapshots on the CPU: Lightning hands a stage's module back on the CPU when fit ends.
    before = {n: p.detach().to("cpu", copy=True) for n, p in params.items()}
    after_first: dict[str, torch.Tensor] = {}
    losses: list[float] = []

    def start(i: int) -> None:
        if i == 1 and clear_between:
            for p in net.parameters():
                p.grad = None

    def end(i: int, loss: float) -> bool:
        losses.append(loss)
        if i == 0:
            after_first.update({n: p.detach().to("cpu", copy=True) for n, p in params.items()})
        return False
    try:
        subject.train_steps(module, batches, on_step_start=start, on_step_end=end)
    finally:
        for h in handles:
            h.remove()
    return {"module": module, "before": before, "after_first": after_first,
            "after": {n: p.detach().to("cpu", copy=True) for n, p in params.items()}, "grads": grads,
            "in_eval": sorted(in_eval), "losses": losses,
            "mode_layers": [n for n, m in net.named_modules() if isinstance(m, MODE_LAYERS)]}


@torch.no_grad()
def line_search(subject, run: dict, batch, factors) -> dict[float, float]:
    """The loss on `batch` at before + f * (after_first - before), for each factor f (and 0)."""
    net = copy.deepcopy(run["module"].model).to(subject.device)
    loss_fn = run["module"].loss_fn
    x, y = subject.model_inputs(batch)
    params = _trainable(net)
    out = {}
    for f in (0.0, 1.0, *factors):
        for n, p in params.items():
            p.copy_((run["before"][n] + f * (run["after_first"][n] - run["before"][n])).to(p.device))
        torch.manual_seed(subject.seed)  # the same dropout masks at every point
        out[f] = float(loss_fn(net(x), y))
    return out


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).float().norm())


def check(subject) -> CheckResult:
    t0 = time.time()
    s = subject.settings.training_step
    batches = subject.training_batches(2)
    batches = (batches * 2)[:2]
    with deterministic():
        a = watched_steps(subject, batches, clear_between=False)
        b = watched_steps(subject, batches, clear_between=True)
    names = list(a["before"])
    moved = {n: _distance(a["after"][n], a["before"][n]) for n in names}
    unchanged = [n for n in names if moved[n] == 0]
    no_grad = [n for n in unchanged if n not in a["grads"]]
    # A gradient that is rounding noise (a conv bias right before batch norm has none in exact arithmetic, ~1e-10
    # on a GPU) moves nothing: "received a gradient" means at least 1e-6 of the largest one.
    floor = 1e-6 * max(a["grads"].values(), default=0.0)
    grad_but_still = [n for n in unchanged if a["grads"].get(n, 0.0) > floor]
    total_move = sum(moved.values())
    accumulate = sum(_distance(a["after"][n], b["after"][n]) for n in names) / max(total_move, 1e-30)
    factors = [float(f) for f in s.lr_factors]
    curve = line_search(subject, a, batches[1], factors) if total_move > 0 else {}
    if curve and min(curve.values()) < 0:
        curve = {}  # an objective that goes below zero is no loss (init_loss names it): a longer step says nothing
    best = min(curve, key=curve.get) if curve else 0.0
    gain = lambda f: curve[0.0] - curve[f]  # noqa: E731
    details = {"steps": len(a["losses"]), "losses": a["losses"], "trainable_tensors": len(names),
               "unchanged": unchanged, "without_gradient": no_grad, "gradient_but_unchanged": grad_but_still,
               "accumulation_gap": accumulate, "mode_layers": a["mode_layers"], "mode_layers_in_eval": a["in_eval"],
               "line_search": {str(k): v for k, v in curve.items()}, "best_factor": best}
    summary = (f"2 steps: {len(names) - len(unchanged)}/{len(names)} parameter tensors updated, gradients "
               f"{'reset' if accumulate <= float(s.tolerance) else 'carried over'} between steps, "
               f"{len(a['in_eval'])} of {len(a['mode_layers'])} mode layers in eval mode; on the next batch, "
               + (f"the first update x{best:g} lowers the loss most" if best else "no multiple of the first update "
                  "lowers the loss"))
    found = None
    if names and len(no_grad) == len(names):
        found = ("no_backward", f"none of the {len(names)} trainable parameter tensors received a gradient in two "
                                "steps, and none changed: the step never runs backward through the model")
    elif grad_but_still:
        found = ("optimizer_wrong_params",
                 f"{len(grad_but_still)} of {len(names)} parameter tensors received gradients but did not change in "
                 f"two steps (first: {', '.join(grad_but_still[:3])}): the optimizer does not hold them")
    elif accumulate > float(s.tolerance):
        found = ("grads_accumulate", f"clearing the gradients between the two steps changes where they end by "
                                     f"{accumulate:.2g} of the distance moved: the second step also used the first "
                                     "step's gradients, which were never reset")
    elif a["in_eval"]:
        found = ("trained_in_eval_mode", f"during the training step {len(a['in_eval'])} layers that behave "
                                         f"differently in training were in eval mode ({', '.join(a['in_eval'][:3])})")
    elif best >= float(s.lr_fail_factor) and gain(best) > 10 * max(gain(1.0), 0.0) \
            and gain(best) > 0.01 * abs(curve[0.0]):
        found = ("lr_too_low", f"along the first step's update, a step {best:g}x longer lowers the loss on the next "
                               f"batch from {curve[0.0]:.4g} to {curve[best]:.4g}; the step itself only to "
                               f"{curve[1.0]:.4g}: the learning rate ({subject.lr(a['module'])}) is far too low")
    if found:
        return CheckResult("training_step", "fail", summary, found[0], found[1], FIXES[found[0]], details,
                           seconds=time.time() - t0)
    note = "" if a["mode_layers"] else "; no batch norm or dropout, so the train/eval mode cannot be seen here"
    return CheckResult("training_step", "pass", summary, None,
                       f"each step computes gradients, updates every parameter and starts from fresh gradients{note}",
                       details=details, seconds=time.time() - t0)

