"""The lecture's "implement and debug" checks as a tool: `python -m pedestrian.doctor +stage=NAME`.

In the lecture's order, on the stage's real datamodule and LightningModule (pedestrian.train.build):
  1. run_trace        get it to run: one forward and backward pass, traced layer by layer
  2. inputs           the batch as the model sees it: normalised once? labels balanced? (+ a grid image)
  3. init_loss        loss at initialisation close to ln(classes), outputs not saturated
  4. overfit_batch    overfit a single batch to ~0 loss; otherwise name the curve and its likely causes
  5. modes            train/eval mode: evaluation deterministic, consistent, really in eval mode
  6. grad_dependency  the loss of sample i gives gradient to input i only
  7. known_results    beat the majority class and a linear model; solve scikit-learn's digits
The bug zoo (`+bug=NAME`, pedestrian/doctor/bugs.py) injects each bug the lecture names; `python -m
pedestrian.doctor.matrix` shows which check catches which bug.
"""

from __future__ import annotations

import importlib
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package stays light to import (curves, bugs); torch and Lightning load when it runs
    from omegaconf import DictConfig
    from rich.console import Console

    from pedestrian.doctor.common import CheckResult

CHECKS = ("run_trace", "inputs", "init_loss", "overfit_batch", "modes", "grad_dependency", "known_results")


def diagnose(cfg: DictConfig, console: Console | None = None) -> list[CheckResult]:
    """Build the stage as a run does, then run cfg.doctor.checks in the lecture's order. Raises ConfigError on a
    config that cannot work; a check that crashes is a failed check (its traceback in the details)."""
    import lightning as L
    import torch

    from pedestrian.core.config import validate
    from pedestrian.core.train import _trainer_cfg, build
    from pedestrian.doctor.common import CheckResult, Context, quiet_lightning

    validate(cfg)
    unknown = [c for c in cfg.doctor.checks if c not in CHECKS]
    if unknown:
        from pedestrian.base.errors import ConfigError

        raise ConfigError(f"doctor.checks={list(cfg.doctor.checks)}: {unknown} not among {list(CHECKS)}")
    quiet_lightning()
    out_dir = Path(str(cfg.doctor.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    tcfg, extras = _trainer_cfg(cfg)
    if extras.get("threads"):
        torch.set_num_threads(int(extras["threads"]))
    gpu = tcfg.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm, module = build(cfg, extras=extras)
    device = torch.device("cuda" if gpu else "cpu")
    ctx = Context(cfg, dm, module.to(device), out_dir, tcfg, device)

    results: list[CheckResult] = []
    for name in cfg.doctor.checks:
        if results and results[0].check == "run_trace" and results[0].status == "fail" \
                and results[0].diagnosis not in ("no_gradient", "nonfinite_gradient"):
            results.append(CheckResult(name, "skip", "skipped: the model does not run (see run_trace)"))
            continue
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)  # each check as if it ran alone
        t0 = time.time()
        try:
            r = importlib.import_module(f"pedestrian.doctor.{name}").check(ctx)
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
