"""The lecture's search methods: how each one picks the trials' hyperparameters.

- grid:           every combination of `points` values per number (evenly spaced in its scale) and every choice.
- random:         n points drawn at random from the declared ranges (log-uniform for log-scaled parameters).
- coarse_to_fine: the lecture's recommendation. Round 0 is a wide random round over the declared (log-scaled)
                  ranges; each later round samples ranges narrowed around the top-k trials so far. Rounds are
                  barriers: round r starts once every trial of the rounds before it has finished.
- bayes:          Optuna's TPE (a probabilistic model of hyperparameters -> objective, sampled for expected
                  improvement), asked for each trial when it starts.

A study's *plan* is a list of tickets, one per trial, made when the study is created. Grid and random tickets
carry their parameters; coarse-to-fine's later rounds and bayes get theirs when the trial starts. Everything is a
function of (seed, round, position) and finished results, so every worker computes the same points and no two
trials share one.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from pedestrian.base.errors import ConfigError
from pedestrian.search.space import Param, Range

METHODS = ("grid", "random", "coarse_to_fine", "bayes")


@dataclass(frozen=True)
class Ticket:
    round: int
    index: int                 # position within its round
    params: dict | None        # None: chosen when the trial starts


def plan(method: Mapping, space: Mapping[str, Param], n_trials: int, seed: int) -> list[Ticket]:
    name = method["name"]
    if name == "grid":
        return [Ticket(0, i, pt) for i, pt in enumerate(grid(space, int(method["points"])))]
    if name == "random":
        pts = sample(space, declared(space), n_trials, seed, 0, bool(method.get("stratified", False)))
        return [Ticket(0, i, pt) for i, pt in enumerate(pts)]
    if name == "coarse_to_fine":
        sizes = round_sizes(n_trials, int(method["rounds"]), float(method.get("first", 0.5)))
        first = sample(space, declared(space), sizes[0], seed, 0, bool(method.get("stratified", True)))
        return [Ticket(0, i, pt) for i, pt in enumerate(first)] + \
               [Ticket(r, i, None) for r, n in enumerate(sizes) if r > 0 for i in range(n)]
    if name == "bayes":
        return [Ticket(0, i, None) for i in range(n_trials)]
    raise ConfigError(f"search.method.name={name!r}: must be one of {METHODS}")


def declared(space: Mapping[str, Param]) -> dict[str, Range]:
    return {n: p.declared for n, p in space.items()}


# -- grid ------------------------------------------------------------------------------------------------
def grid(space: Mapping[str, Param], points: int) -> list[dict]:
    if points < 1:
        raise ConfigError(f"search.method.points={points}: at least 1 value per parameter")
    axes = [p.grid(points) for p in space.values()]
    return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


# -- random ----------------------------------------------------------------------------------------------
def sample(space: Mapping[str, Param], ranges: Mapping[str, Range], n: int, seed: int, round_: int,
           stratified: bool) -> list[dict]:
    """n random points from `ranges`, uniform in each parameter's scale. Seeded by (seed, round), so every worker
    draws the same points. stratified: a Latin hypercube, each point in its own 1/n slice of every range (still
    random, but n points cannot crowd into one corner)."""
    rng = np.random.default_rng([seed, round_])
    columns = {}
    for name, p in space.items():
        slots = rng.permutation(n) if stratified else None
        if p.numeric:
            u = (slots + rng.random(n)) / n if stratified else rng.random(n)
            columns[name] = [p.from_unit(float(x), ranges[name]) for x in u]
        else:
            labels = list(ranges[name])
            picks = slots % len(labels) if stratified else rng.integers(len(labels), size=n)
            columns[name] = [labels[int(i)] for i in picks]
    return [{name: columns[name][i] for name in space} for i in range(n)]


# -- coarse-to-fine ----------------------------------------------------------------------------------------
def round_sizes(n_trials: int, rounds: int, first: float) -> list[int]:
    """A wide first round holding `first` of the budget, the rest split evenly over the narrowed rounds."""
    if rounds < 1 or n_trials < rounds:
        raise ConfigError(f"search.method.rounds={rounds}: need 1 <= rounds <= n_trials ({n_trials})")
    if rounds == 1:
        return [n_trials]
    n0 = min(max(1, round(n_trials * first)), n_trials - (rounds - 1))
    rest, extra = divmod(n_trials - n0, rounds - 1)
    return [n0] + [rest + (1 if r < extra else 0) for r in range(rounds - 1)]


def top_k(trials: Sequence[FrozenTrial], k: int) -> list[FrozenTrial]:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (t.value, t.number))[:k]


def coarse_to_fine(space: Mapping[str, Param], ranges: Mapping[str, Range], best: Sequence[FrozenTrial],
                   margin: float) -> dict[str, Range]:
    """Narrow each range around the best trials: their span (in the parameter's scale) padded by `margin` of the
    current width on each side, never beyond the declared range; choices shrink to those the best trials used."""
    if not best:
        return dict(ranges)
    out = {}
    for name, p in space.items():
        vals = [t.params[name] for t in best if name in t.params]
        if not vals:
            out[name] = ranges[name]
        elif p.numeric:
            lo, hi = p.warp(ranges[name][0]), p.warp(ranges[name][1])
            pad = margin * (hi - lo)
            w = [p.warp(v) for v in vals]
            new_lo, new_hi = p.clip(p.unwarp(min(w) - pad)), p.clip(p.unwarp(max(w) + pad))
            if p.type == "int" and new_lo == new_hi:  # keep an integer range open
                new_lo, new_hi = p.clip(new_lo - 1), p.clip(new_hi + 1)
            out[name] = (new_lo, new_hi)
        else:
            out[name] = tuple(c for c in ranges[name] if c in vals)
    return out


def round_ranges(space: Mapping[str, Param], method: Mapping, trials: Sequence[FrozenTrial],
                 up_to: int) -> list[dict[str, Range]]:
    """The ranges of rounds 0..up_to: round r narrows round r-1's ranges around the top-k of rounds < r."""
    ranges = [declared(space)]
    for r in range(1, up_to + 1):
        earlier = [t for t in trials if t.user_attrs.get("round", 0) < r]
        ranges.append(coarse_to_fine(space, ranges[-1], top_k(earlier, int(method["top_k"])),
                                     float(method["margin"])))
    return ranges


def planned_params(space: Mapping[str, Param], method: Mapping, n_trials: int, seed: int,
                   trials: Sequence[FrozenTrial], round_: int, index: int) -> dict | None:
    """The parameters of a ticket without them, when it starts: a point of a narrowed coarse-to-fine round
    (None for bayes: its sampler picks them)."""
    if method["name"] != "coarse_to_fine":
        return None
    sizes = round_sizes(n_trials, int(method["rounds"]), float(method.get("first", 0.5)))
    ranges = round_ranges(space, method, trials, round_)[round_]
    return sample(space, ranges, sizes[round_], seed, round_, bool(method.get("stratified", True)))[index]


# -- bayes -----------------------------------------------------------------------------------------------
def sampler(method: Mapping, seed: int, number: int) -> optuna.samplers.BaseSampler:
    """The sampler a trial uses. Only bayes asks one (the others' parameters are planned). Seeded per trial:
    workers with one shared seed would otherwise draw the same 'random' startup points."""
    trial_seed = seed * 100_003 + number
    if method["name"] != "bayes":
        return optuna.samplers.RandomSampler(seed=trial_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=int(method["n_startup_trials"]),
                                          multivariate=bool(method.get("multivariate", True)),
                                          constant_liar=bool(method.get("constant_liar", True)))
