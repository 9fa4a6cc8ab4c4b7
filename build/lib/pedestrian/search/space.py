"""A search space: the hyperparameters to tune, each with its config key, range and scale.

conf/search/space/*.yaml lists them in the lecture's order of sensitivity (learning rate first):

    lr:        {key: optim.lr, scale: log, low: 1.0e-5, high: 1.0e-1}   # float, log-scaled
    width:     {key: model.width, type: int, scale: log, low: 8, high: 64}
    depth:     {key: model.blocks, type: int, low: 1, high: 3, each: true}  # every element of a list
    scheduler: {key: optim.scheduler, choices: [none, cosine, onecycle]}

A *range* is what a method samples from: (low, high) for numbers, a tuple of labels for choices. Coarse-to-fine
narrows ranges; the declared range is the outer bound and what "on the edge of its range" refers to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf

from pedestrian.base.errors import ConfigError

Range = tuple  # (low, high) for numbers, (label, ...) for choices
TYPES = ("float", "int", "choice")
SCALES = ("linear", "log")


@dataclass(frozen=True)
class Param:
    name: str                    # the trial parameter's name (in Optuna, the CSV and the plots)
    key: str                     # the config key it sets, e.g. optim.lr or optim.betas.0
    type: str = "float"          # float | int | choice
    scale: str = "linear"        # log | linear: how ranges are sampled, gridded and narrowed
    low: float | None = None
    high: float | None = None
    choices: tuple = ()          # the config values of a choice parameter
    each: bool = False           # set every element of the list at `key` (depth = blocks per stage)

    @property
    def numeric(self) -> bool:
        return self.type != "choice"

    @property
    def labels(self) -> tuple:
        """Optuna stores only str/int/float/bool/None: other choice values (lists) go in as their text."""
        return tuple(c if c is None or isinstance(c, (str, int, float, bool)) else str(c) for c in self.choices)

    @property
    def declared(self) -> Range:
        return (self.low, self.high) if self.numeric else self.labels

    # -- the scale: ranges are uniform in log10(value) for log parameters ---------------------------------
    def warp(self, v: float) -> float:
        return math.log10(v) if self.scale == "log" else float(v)

    def unwarp(self, w: float) -> float | int:
        v = 10.0**w if self.scale == "log" else w
        return int(round(v)) if self.type == "int" else float(v)

    def clip(self, v: float) -> float | int:
        v = min(max(v, self.low), self.high)
        return int(round(v)) if self.type == "int" else float(v)

    def from_unit(self, u: float, rng: Range) -> float | int:
        """u in [0, 1] -> a value of `rng`, uniform in the parameter's scale."""
        lo, hi = self.warp(rng[0]), self.warp(rng[1])
        return self.clip(self.unwarp(lo + u * (hi - lo)))

    def to_unit(self, v: float, rng: Range | None = None) -> float:
        lo, hi = (self.warp(x) for x in (rng or self.declared))
        return 0.5 if hi == lo else (self.warp(v) - lo) / (hi - lo)

    def grid(self, points: int) -> list:
        """`points` values evenly spaced in scale (ends included); every choice for a choice parameter."""
        if not self.numeric:
            return list(self.labels)
        vals = [self.from_unit(u, self.declared) for u in np.linspace(0.0, 1.0, points)]
        return list(dict.fromkeys(vals))  # ints may round together

    # -- Optuna and the config -----------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask Optuna for this parameter over its declared range (planned trials get their planned value)."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.scale == "log")
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.scale == "log")
        return trial.suggest_categorical(self.name, list(self.labels))

    def config_value(self, value: Any) -> Any:
        """A trial value (a label for choices) -> the value the config key gets."""
        if not self.numeric:
            value = self.choices[self.labels.index(value)]
            return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return value


def apply(cfg: DictConfig, params: Mapping[str, Any], space: Mapping[str, Param]) -> None:
    """Set the trial's values in a composed config, in place."""
    for name, value in params.items():
        p = space[name]
        v = p.config_value(value)
        if p.each:
            v = [v] * len(OmegaConf.select(cfg, p.key))
        OmegaConf.update(cfg, p.key, v, merge=False)


def load(node: DictConfig | Mapping) -> dict[str, Param]:
    """search.space from the config -> {name: Param}, in the file's order. Bad specs fail naming the key."""
    node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    if not node:
        raise ConfigError("search.space is empty: pick one of conf/search/space/ (search/space=lr)")
    space = {}
    for name, spec in node.items():
        where = f"search.space.{name}"
        if not isinstance(spec, Mapping) or "key" not in spec:
            raise ConfigError(f"{where}={spec!r}: needs at least a config `key` and a range or `choices`")
        unknown = set(spec) - {"key", "type", "scale", "low", "high", "choices", "each"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        kind = spec.get("type", "choice" if "choices" in spec else "float")
        if kind not in TYPES:
            raise ConfigError(f"{where}.type={kind!r}: must be one of {TYPES}")
        if kind == "choice":
            choices = tuple(spec.get("choices") or ())
            if len(choices) < 1:
                raise ConfigError(f"{where}.choices={choices!r}: list at least one value")
            space[name] = Param(name, spec["key"], "choice", choices=choices, each=bool(spec.get("each", False)))
            continue
        scale, low, high = spec.get("scale", "linear"), spec.get("low"), spec.get("high")
        if scale not in SCALES:
            raise ConfigError(f"{where}.scale={scale!r}: must be one of {SCALES}")
        if not all(isinstance(v, (int, float)) for v in (low, high)) or not low < high:
            raise ConfigError(f"{where}: low={low!r}, high={high!r}: two numbers with low < high")
        if scale == "log" and low <= 0:
            raise ConfigError(f"{where}.low={low!r}: a log-scaled range must be > 0")
        space[name] = Param(name, spec["key"], kind, scale, float(low), float(high),
                            each=bool(spec.get("each", False)))
    return space


def check_keys(cfg: DictConfig, space: Mapping[str, Param]) -> None:
    """Every key the space sets must exist in the stage's config (a typo would silently tune nothing)."""
    for p in space.values():
        if OmegaConf.select(cfg, p.key, default="__missing__") == "__missing__":
            raise ConfigError(f"search.space.{p.name}.key={p.key!r}: no such key in the stage's config")
        if p.each and not OmegaConf.is_list(OmegaConf.select(cfg, p.key)):
            raise ConfigError(f"search.space.{p.name}: each=true needs a list at {p.key!r}")
