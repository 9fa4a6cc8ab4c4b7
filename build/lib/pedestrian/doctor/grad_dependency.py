"""Gradient dependency: the loss of sample i must give gradient to input i only (a classic batch-mixing test).

Shape bugs that mix samples often raise no error at all (the lecture: "it's also possible for it to fail
silently ... accidental broadcasting"): a view() where a permute() was meant, a reduction over the wrong axis,
labels of shape (N, 1) against predictions of shape (N,). Two probes, each on a real batch:

  * the model: the gradient of sample i's output with respect to the whole input batch is zero except at input i
    (in eval mode, where batch norm does not mix samples by design);
  * the loss: the gradient of module.loss_fn with respect to sample i's logits must not change when the other
    samples' logits and labels change (on moderate random logits and the batch's real labels).
"""

from __future__ import annotations

import time

import torch

from pedestrian.doctor.common import CheckResult

FIXES = {
    "model_mixes_samples": ["look for view/reshape/flatten/transpose that moves the batch axis (view where a "
                            "permute was meant), and for reductions (mean, sum, softmax, norm) over dim 0"],
    "loss_mixes_samples": ["print the shapes of predictions and targets inside the loss: an (N,) against an "
                           "(N, 1) broadcasts to (N, N) without any error", "prefer the library's losses, which "
                           "check shapes, to hand-written ones"],
    "loss_ignores_sample": ["the loss does not depend on some samples: check the reduction and any indexing"],
}


def model_leak(module, x: torch.Tensor, samples: list[int]) -> float:
    """max over i of |d out_i / d x_j| (j != i), relative to |d out_i / d x_i|."""
    module.train(False)  # set directly: this probe is about batch-mixing, not about .eval()
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    worst = 0.0
    for i in samples:
        (g,) = torch.autograd.grad(out[i].sum(), x, retain_graph=True)
        own = float(g[i].abs().max())
        others = float(torch.cat([g[:i], g[i + 1:]]).abs().max())
        worst = max(worst, others / max(own, 1e-30))
    return worst


def loss_leak(loss_fn, logits: torch.Tensor, y: torch.Tensor, samples: list[int], num_classes: int,
              seed: int = 0) -> tuple[float, float]:
    """(change of d loss / d logits_i when the OTHER samples change, relative; smallest |d loss / d logits_i|)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    worst, weakest = 0.0, float("inf")
    for i in samples:
        z = logits.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(z, y), z)
        others = torch.ones(len(y), dtype=torch.bool, device=y.device)
        others[i] = False
        z2 = logits.detach().clone()
        z2[others] = torch.randn(int(others.sum()), logits.shape[1], generator=gen).to(z2) * 3
        y2 = y.clone()
        y2[others] = (y[others] + 1) % num_classes
        z2.requires_grad_(True)
        (g2,) = torch.autograd.grad(loss_fn(z2, y2), z2)
        own = float(g[i].abs().max())
        weakest = min(weakest, own)
        worst = max(worst, float((g2[i] - g[i]).abs().max()) / max(own, 1e-30))
    return worst, weakest


def check(subject) -> CheckResult:
    t0 = time.time()
    s = subject.settings.grad_dependency
    module = subject.fresh()
    x, y = subject.batch()
    n = min(len(x), int(s.batch_size))
    x, y = x[:n], y[:n]
    samples = sorted({0, n // 2, n - 1})
    m_leak = model_leak(module, x, samples)
    # The loss probe gets moderate logits (the batch's real labels): saturated outputs of a broken model would
    # give exactly zero gradients and hide what the loss function itself does.
    k = subject.num_classes
    logits = torch.randn(n, k, generator=torch.Generator().manual_seed(subject.seed)).to(x.device)
    l_leak, weakest = loss_leak(module.loss_fn, logits, y, samples, k, subject.seed)
    tol = float(s.tolerance)
    details = {"batch_size": n, "samples": samples, "model_leak": m_leak, "loss_leak": l_leak,
               "smallest_own_gradient": weakest, "tolerance": tol}
    summary = (f"samples {samples} of {n}: model cross-sample gradient {m_leak:.2g}, loss cross-sample "
               f"change {l_leak:.2g} (relative; should be 0)")
    if m_leak > tol:
        return CheckResult("grad_dependency", "fail", summary, "model_mixes_samples",
                           f"the output of sample i has gradient on other inputs ({m_leak:.3g} of its own): the "
                           "model mixes samples across the batch", FIXES["model_mixes_samples"], details,
                           seconds=time.time() - t0)
    if l_leak > tol:
        return CheckResult("grad_dependency", "fail", summary, "loss_mixes_samples",
                           f"the loss gradient for sample i's logits changes by {l_leak:.3g} (relative) when only "
                           "the OTHER samples' logits and labels change: the loss mixes samples, e.g. a silently "
                           "broadcast shape", FIXES["loss_mixes_samples"], details, seconds=time.time() - t0)
    if weakest == 0:
        return CheckResult("grad_dependency", "fail", summary, "loss_ignores_sample",
                           "a sample's logits get no gradient at all from the loss", FIXES["loss_ignores_sample"],
                           details, seconds=time.time() - t0)
    return CheckResult("grad_dependency", "pass", summary, None,
                       "each sample's loss reaches its own input only", details=details, seconds=time.time() - t0)
