"""What a trial computes: a short training run of the stage (pedestrian.core.train.run) with the trial's
hyperparameters and a budget, or, for tests, an analytic function of the same parameters.

The objective is an error rate at the end of the trial's budget: `train` error (the lecture tunes the learning
rate against underfitting) or `train_val` error. It is reported to Optuna after every epoch, so the pruner can
stop hopeless trials early.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict

from pedestrian.base.errors import ConfigError
from pedestrian.search.space import Param, apply

OBJECTIVES = ("train", "train_val", "analytic")


def trial_config(base: DictConfig, scfg: DictConfig, space: Mapping[str, Param], params: Mapping[str, Any],
                 number: int, round_: int = 0) -> DictConfig:
    """The stage's composed config with the trial's values, the budget, and the trial's own run folder and W&B
    identity (group = study, job_type = trial)."""
    cfg = copy.deepcopy(base)
    apply(cfg, params, space)
    budget = scfg.budget
    with open_dict(cfg):
        cfg.trainer.max_epochs = int(budget.epochs)
        if budget.get("limit_train_batches") is not None:  # a step budget: epochs x batches
            cfg.trainer.limit_train_batches = budget.limit_train_batches
        if scfg.get("threads"):
            cfg.trainer.extras.threads = int(scfg.threads)
        cfg.run_dir = str(Path(scfg.out).resolve() / "trials" / f"{number:04d}")
        cfg.group = str(scfg.study)
        cfg.tags = [*cfg.get("tags", []), "search", str(scfg.study)]
        cfg.resume = False
        cfg.print_config = False
        if cfg.logger.get("wandb"):
            cfg.logger.wandb.name = f"{scfg.study}-{number}"
            cfg.logger.wandb.job_type = "trial"
        cfg.trial = {"study": str(scfg.study), "number": number, "round": round_, "method": str(scfg.method.name),
                     "objective": str(scfg.objective), "params": dict(params)}
    return cfg


class TrainObjective:
    """A trial = train.run on the stage's config with the trial's values (no second training loop)."""

    def __init__(self, base: DictConfig, scfg: DictConfig, space: Mapping[str, Param]) -> None:
        from pedestrian.core.train import run  # torch and Lightning load now, not inside the first trial's clock

        self.base, self.scfg, self.space, self.run = base, scfg, space, run

    def __call__(self, trial: optuna.Trial) -> float:
        from pedestrian.search.pruning import ReportToOptuna

        params = {name: p.suggest(trial) for name, p in self.space.items()}
        cfg = trial_config(self.base, self.scfg, self.space, params, trial.number,
                           int(trial.user_attrs.get("round", 0)))
        trial.set_user_attr("run_dir", cfg.run_dir)
        report = ReportToOptuna(trial, str(self.scfg.objective))
        result = self.run(cfg, callbacks=[report])
        trial.set_user_attr("errors", result["errors"])  # the best checkpoint's errors on the four sets
        trial.set_user_attr("wall_time_s", result["wall_time_s"])
        if report.last is None:
            raise RuntimeError(f"no {report.key} was logged: did the trial train at least one epoch?")
        if report.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {report.pruned_at}")
        return report.last


class AnalyticObjective:
    """A cheap stand-in with a known optimum, through the same study, plan, workers and pruner: the squared
    distance to `optimum` in each parameter's scale (0..1 over its declared range), +0.5 per wrong choice.
    It 'trains' for budget.epochs steps (sleeping sleep_s each), reporting a curve that falls to that value."""

    def __init__(self, scfg: DictConfig, space: Mapping[str, Param]) -> None:
        self.space, self.epochs = space, int(scfg.budget.epochs)
        opt = OmegaConf.to_container(scfg.analytic.optimum, resolve=True) if scfg.analytic.optimum else {}
        unknown = set(opt) - set(space)
        if not opt or unknown:
            raise ConfigError(f"search.analytic.optimum={opt}: give the optimum of some of {list(space)}")
        self.optimum, self.sleep_s = opt, float(scfg.analytic.sleep_s)

    def value(self, params: Mapping[str, Any]) -> float:
        total = 0.0
        for name, target in self.optimum.items():
            p = self.space[name]
            if p.numeric:
                total += (p.to_unit(params[name]) - p.to_unit(target)) ** 2
            else:
                total += 0.5 * (params[name] != target)
        return total

    def __call__(self, trial: optuna.Trial) -> float:
        params = {name: p.suggest(trial) for name, p in self.space.items()}
        final = self.value(params)
        for epoch in range(self.epochs):
            time.sleep(self.sleep_s)
            trial.report(final + (self.epochs - 1 - epoch) / self.epochs, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        return final
