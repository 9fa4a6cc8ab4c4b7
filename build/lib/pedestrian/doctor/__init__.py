"""The lecture's "implement and debug" checks as a tool, for this project's stages and for anyone's model.

    python -m pedestrian.doctor +stage=NAME                 a stage, built as a training run builds it
    python -m pedestrian.doctor --entry my_module:build     your model: build() returns model, loader, loss, ...
    from pedestrian.doctor import diagnose                   the same from Python (pedestrian/doctor/any_model.py)

The checks, in the lecture's order (one module each):
  1. run_trace        get it to run: one forward and backward pass, traced layer by layer; dead ReLUs
  2. inputs           the batch as the model sees it: normalised once? labels balanced? leaked? (+ a grid image)
  3. init_loss        loss at initialisation close to ln(classes), outputs not saturated
  4. overfit_batch    overfit a single batch to ~0 loss; otherwise name the curve and its likely causes
  5. modes            train/eval mode: evaluation deterministic, consistent, really in eval mode
  6. grad_dependency  the loss of sample i gives gradient to input i only
  7. training_step    the step itself: gradients reset, every parameter updated, a learning rate that moves
  8. known_results    beat the majority class, a linear model and any single input value; solve known digits
The bug zoo (`+bug=NAME`, pedestrian/core/bugs.py) injects each bug the lecture names; `python -m
pedestrian.doctor.matrix` shows which check catches which bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package stays light to import (curves, bugs); torch and Lightning load when it runs
    from pedestrian.doctor.any_model import diagnose
    from pedestrian.doctor.common import CHECKS, CheckResult, DoctorError
    from pedestrian.doctor.report import Report
    from pedestrian.doctor.stage import diagnose_stage

_LAZY = {"diagnose": "any_model", "CHECKS": "common", "CheckResult": "common", "DoctorError": "common",
         "Report": "report", "diagnose_stage": "stage"}
__all__ = ["CHECKS", "CheckResult", "DoctorError", "Report", "diagnose", "diagnose_stage"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pedestrian.doctor.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pedestrian.doctor' has no attribute {name!r}")
