"""Loss at initialisation: before any training a classifier should be unsure, so the loss the training step
computes should be close to ln(number of classes) (cross-entropy of a uniform guess), and the outputs should not
be saturated (no softmax probability pinned at 0 or 1).

A first loss far above ln(C) means huge logits (inputs not normalised, a bad init, a last layer scaled up); below
it, or negative, means the loss is not the cross-entropy it claims to be (a flipped sign, a leak of the labels).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from pedestrian.doctor.common import CheckResult

FIXES = {
    "negative_loss": ["a loss that goes below zero is not a cross-entropy: look for a flipped sign (maximising "
                      "instead of minimising)"],
    "loss_too_high": ["normalise the inputs (once)", "use the init scheme that fits the nonlinearity "
                      "(He/Kaiming for ReLU, Glorot for tanh)", "do not scale up the last layer's output"],
    "loss_too_low": ["the model is confident before training: check the labels do not leak into the inputs, and "
                     "that the loss is the cross-entropy of logits against class indices"],
    "saturated": ["saturated outputs have vanishing gradients: normalise the inputs, check the init, make sure no "
                  "activation squashes the logits"],
}


def measure(module, x, y, num_classes: int) -> dict:
    """The training step's loss on a real batch with the untrained model, and how saturated its outputs are."""
    module.train()
    with torch.no_grad():
        logits = module(x).float()
        loss = float(module.loss_fn(logits, y))
        p = torch.softmax(logits, dim=1)
    return {"loss": loss, "expected": math.log(num_classes), "cross_entropy": float(F.cross_entropy(logits, y)),
            "logit_std": float(logits.std()), "max_prob_mean": float(p.max(dim=1).values.mean()),
            "saturated_fraction": float((p.max(dim=1).values > 0.99).float().mean())}


def check(subject) -> CheckResult:
    t0 = time.time()
    s = subject.settings.init_loss
    x, y = subject.batch()
    m = measure(subject.fresh(), x, y, subject.num_classes)
    loss, expected, sat = m["loss"], m["expected"], m["saturated_fraction"]
    summary = (f"loss {loss:.3f} vs ln({subject.num_classes}) = {expected:.3f}; mean max-probability "
               f"{m['max_prob_mean']:.2f}, {sat:.0%} of outputs saturated")
    status, diagnosis, text = "fail", None, ""
    # A model that starts from trained weights (a fine-tuning stage, pretrained=True) is sure of itself on
    # purpose: only a loss that is not finite, negative or huge is a finding there.
    pretrained = subject.pretrained
    if not math.isfinite(loss):
        diagnosis, text = "loss_too_high", f"the loss at init is {loss}: not even finite"
    elif loss < 0:
        diagnosis, text = "negative_loss", f"the loss at init is {loss:.3f}, below zero (ln C is {expected:.3f})"
    elif loss > expected * float(s.fail_factor):
        diagnosis, text = "loss_too_high", (f"the loss at init is {loss:.3f}, {loss / expected:.0f}x ln C = "
                                            f"{expected:.3f}: the untrained outputs are huge")
    elif pretrained:
        pass
    elif loss < expected * (1 - float(s.rel_tol)):
        diagnosis, text = "loss_too_low", f"the loss at init is {loss:.3f}, far below ln C = {expected:.3f}"
    elif loss > expected * (1 + float(s.rel_tol)) or sat > float(s.max_saturated):
        # Trains, but wastes its first steps undoing the init (a "hockey stick" loss curve): a warning.
        status, diagnosis = "warn", ("saturated" if sat > float(s.max_saturated) else "loss_too_high")
        text = (f"the untrained model is overconfident: loss {loss:.3f} vs ln C = {expected:.3f}, {sat:.0%} of its "
                f"outputs above 0.99 (logit std {m['logit_std']:.2f}). Typical cause: the output layer initialised "
                "like a hidden ReLU layer (He gain); give it small weights so the first loss is ln C")
    if diagnosis:
        fixes = FIXES[diagnosis] + (["initialise the last layer with small weights (e.g. std 0.01, bias 0)"]
                                    if status == "warn" else [])
        return CheckResult("init_loss", status, summary, diagnosis, text, fixes, m, seconds=time.time() - t0)
    why = ("the model starts from trained weights, so ln C does not apply; the loss is finite, non-negative and "
           "not huge" if pretrained else f"within {float(s.rel_tol):.0%} of ln C, not saturated")
    return CheckResult("init_loss", "pass", summary, None, why, details={**m, "pretrained": pretrained},
                       seconds=time.time() - t0)
