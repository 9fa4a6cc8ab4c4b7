"""A finished study's results: the trials table (CSV), plots, the best configuration as a stage override, and a
warning when a best value sits on the edge of its range (the optimum may lie outside it: widen and search again).

    <out>/trials.csv            one row per trial: state, round, objective, parameters, errors, duration
    <out>/summary.json          best trial, counts, wall time, edge warnings, coarse-to-fine ranges per round
    <out>/best_override.yaml    the best values in stage-delta format (as conf/stage/*.yaml hold them)
    <out>/objective.png         objective per trial, with the running best
    <out>/params.png            each hyperparameter against the objective, its declared range marked
    <out>/rounds.png            coarse-to-fine only: the range of every round, and its trials
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from pedestrian.base.files import atomic_write, write_json  # noqa: E402
from pedestrian.search import methods  # noqa: E402
from pedestrian.search.space import Param, apply  # noqa: E402

EDGE = 0.05          # a best value within 5% (of its range, in its scale) of an end is "on the edge"
PROVENANCE = "# search: "


def finished(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def objective_of(t: FrozenTrial) -> float | None:
    """A complete trial's value; a pruned one's last reported value."""
    if t.value is not None:
        return float(t.value)
    return float(t.intermediate_values[max(t.intermediate_values)]) if t.intermediate_values else None


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    done = methods.top_k(trials, 1)
    return done[0] if done else None


def edges(best: FrozenTrial, space: Mapping[str, Param]) -> list[str]:
    out = []
    for name, p in space.items():
        if p.numeric and name in best.params:
            u = p.to_unit(best.params[name])
            if u <= EDGE or u >= 1 - EDGE:
                side = "lower" if u <= EDGE else "upper"
                out.append(f"best {name}={best.params[name]:.4g} is on the {side} edge of its range "
                           f"[{p.low:.4g}, {p.high:.4g}]: the optimum may lie outside it; widen the range")
    return out


# -- the table ---------------------------------------------------------------------------------------------
def rows(trials: Sequence[FrozenTrial], space: Mapping[str, Param]) -> list[dict]:
    out = []
    for t in trials:
        if t.state == TrialState.WAITING:
            continue
        row = {"number": t.number, "state": t.state.name.lower(), "round": t.user_attrs.get("round", 0),
               "objective": objective_of(t), "epochs": (max(t.intermediate_values) + 1) if t.intermediate_values
               else None, "duration_s": round(t.duration.total_seconds(), 2) if t.duration else None,
               "retry_of": t.system_attrs.get("failed_trial"), "worker": t.user_attrs.get("worker")}
        row.update({name: t.params.get(name) for name in space})
        row.update({f"final_{k}_error": v for k, v in (t.user_attrs.get("errors") or {}).items()})
        row["error"] = t.user_attrs.get("error")
        out.append(row)
    return out


def write_csv(path: Path, table: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in table for k in r))
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=cols)
    w.writeheader()
    w.writerows(table)
    atomic_write(path, text.getvalue())


# -- the best configuration as a stage delta ----------------------------------------------------------------
def _container_key(key: str) -> str:
    """optim.betas.0 -> optim.betas: a stage file sets whole lists."""
    parts = key.split(".")
    while parts and parts[-1].isdigit():
        parts.pop()
    return ".".join(parts)


def _round(v):
    return float(f"{v:.3g}") if isinstance(v, float) else v


def best_delta(base: DictConfig, space: Mapping[str, Param], params: Mapping) -> dict:
    """{config key: value} for the best trial (floats to 3 significant digits: values you can read and report)."""
    cfg = copy.deepcopy(base)
    apply(cfg, {n: _round(v) for n, v in params.items()}, space)
    delta = {}
    for p in space.values():
        key = _container_key(p.key)
        value = OmegaConf.select(cfg, key)
        delta[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return delta


def _nested(delta: Mapping[str, object]) -> DictConfig:
    node = OmegaConf.create({})
    for key, value in delta.items():
        OmegaConf.update(node, key, value, merge=False)
    return node


def override_text(delta: Mapping, provenance: list[str]) -> str:
    head = ["# @package _global_", *[PROVENANCE + line for line in provenance]]
    return "\n".join(head) + "\n" + OmegaConf.to_yaml(_nested(delta))


def write_stage(conf_dir: Path, name: str, searched_stage: str, delta: Mapping, provenance: list[str]) -> Path:
    """(Re)write conf/stage/NAME.yaml with the search's values: an existing file keeps its defaults chain, its other
    keys and its leading comment (older `# search:` lines are replaced); a new one chains the searched stage."""
    path = conf_dir / "stage" / f"{name}.yaml"
    if path.exists():
        lines = path.read_text().splitlines()
        header = []
        for line in lines:
            if not line.startswith("#"):
                break
            if not line.startswith(PROVENANCE):
                header.append(line)
        node = OmegaConf.load(path)
        for key, value in delta.items():
            OmegaConf.update(node, key, value, merge=False)
    else:
        header = ["# @package _global_", f"# {searched_stage} with hyperparameters from a search."]
        node = OmegaConf.merge({"defaults": [searched_stage], "stage": {"name": name, "parent": searched_stage}},
                               _nested(delta))
    text = "\n".join(header + [PROVENANCE + line for line in provenance]) + "\n" + OmegaConf.to_yaml(node)
    atomic_write(path, text)
    return path


# -- plots -------------------------------------------------------------------------------------------------
def _colors(trials: Sequence[FrozenTrial]):
    cmap = plt.get_cmap("tab10")
    return [cmap(int(t.user_attrs.get("round", 0)) % 10) for t in trials]


def plot_objective(path: Path, trials: Sequence[FrozenTrial], title: str, ylabel: str) -> None:
    done = [t for t in finished(trials) if objective_of(t) is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    for state, marker, label in ((TrialState.COMPLETE, "o", "complete"), (TrialState.PRUNED, "x", "pruned")):
        ts = [t for t in done if t.state == state]
        if ts:
            ax.scatter([t.number for t in ts], [objective_of(t) for t in ts], c=_colors(ts), marker=marker,
                       label=label)
    complete = sorted((t for t in done if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    best, xs, ys = float("inf"), [], []
    for t in complete:
        best = min(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="k", lw=1, label="best so far")
    ax.set(xlabel="trial (colour: round)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axes(n: int, width: float = 4.0, height: float = 3.2):
    cols = min(3, n)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(width * cols, height * rows_), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_params(path: Path, trials: Sequence[FrozenTrial], space: Mapping[str, Param], best: FrozenTrial | None,
                ylabel: str) -> None:
    done = [t for t in finished(trials) if objective_of(t) is not None]
    fig, axes = _axes(len(space))
    for ax, (name, p) in zip(axes, space.items()):
        labels = list(p.labels)
        for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
            ts = [t for t in done if name in t.params and t.state == state]
            xs = [t.params[name] if p.numeric else labels.index(t.params[name]) for t in ts]
            ax.scatter(xs, [objective_of(t) for t in ts], c=_colors(ts), s=18, marker=marker)
        if p.numeric:
            for end in (p.low, p.high):  # the declared range: a best value next to a line is on its edge
                ax.axvline(end, color="grey", ls="--", lw=1)
            if p.scale == "log":
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(labels)), [str(c) for c in labels], rotation=20)
        title = f"{name} ({p.key})"
        if best is not None and name in best.params:
            x = best.params[name] if p.numeric else list(p.labels).index(best.params[name])
            ax.scatter([x], [best.value], marker="*", s=160, color="red", zorder=3)
            if edges(best, {name: p}):
                title += "\nbest on the edge of its range!"
        ax.set_title(title, fontsize=9, color="red" if "edge" in title else "black")
        ax.set_ylabel(ylabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rounds(path: Path, trials: Sequence[FrozenTrial], space: Mapping[str, Param],
                ranges: list[dict]) -> None:
    numeric = {n: p for n, p in space.items() if p.numeric}
    if not numeric:
        return
    done = [t for t in finished(trials) if objective_of(t) is not None]
    values = [objective_of(t) for t in done] or [0.0, 1.0]
    fig, axes = _axes(len(numeric), width=5.0)
    for ax, (name, p) in zip(axes, numeric.items()):
        for r, rng in enumerate(ranges):
            ax.barh(r, rng[name][1] - rng[name][0], left=rng[name][0], height=0.6, color="C0", alpha=0.25)
            for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
                ts = [t for t in done if t.user_attrs.get("round", 0) == r and name in t.params and t.state == state]
                sc = ax.scatter([t.params[name] for t in ts], [r] * len(ts), c=[objective_of(t) for t in ts],
                                cmap="viridis_r", vmin=min(values), vmax=max(values), s=22, marker=marker, zorder=3)
        if p.scale == "log":
            ax.set_xscale("log")
        ax.set(yticks=range(len(ranges)), ylabel="round", title=f"{name}: range per round (x: pruned)")
        ax.invert_yaxis()
        fig.colorbar(sc, ax=ax, label="objective")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- everything --------------------------------------------------------------------------------------------
def write(out: Path, trials: Sequence[FrozenTrial], space: Mapping[str, Param], scfg: DictConfig,
          base: DictConfig, command: str, storage_url: str, planned: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    method = OmegaConf.to_container(scfg.method, resolve=True)
    write_csv(out / "trials.csv", rows(trials, space))
    best = best_trial(trials)
    ylabel = f"{scfg.objective} error after {scfg.budget.epochs} epochs"
    ranges = None
    if method["name"] == "coarse_to_fine":
        n_rounds = len(methods.round_sizes(int(scfg.n_trials), int(method["rounds"]), float(method["first"])))
        ranges = methods.round_ranges(space, method, trials, n_rounds - 1)
    title = f"{scfg.study}: {method['name']}"
    plot_objective(out / "objective.png", trials, title, ylabel)
    plot_params(out / "params.png", trials, space, best, ylabel)
    if ranges:
        plot_rounds(out / "rounds.png", trials, space, ranges)

    done = finished(trials)
    starts = [t.datetime_start for t in done if t.datetime_start]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    summary = {
        "study": str(scfg.study), "storage": storage_url, "method": method, "objective": str(scfg.objective),
        "budget": OmegaConf.to_container(scfg.budget), "command": command,
        "planned": planned,
        "counts": {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState},
        "wall_time_s": round(wall, 1) if wall else None,
        "trials_per_minute": round(len(done) / wall * 60, 3) if wall else None,
        "best": None, "edges": [], "override": None,
        "ranges": [{n: list(r) for n, r in rr.items()} for rr in ranges] if ranges else None,
    }
    if best is not None:
        delta = best_delta(base, space, best.params)
        provenance = [f"from `{command}`",
                      f"study {scfg.study} ({method['name']}, {len(done)} trials), best trial {best.number}: "
                      f"{ylabel} {best.value:.4g} ({dt.date.today().isoformat()})"]
        (out / "best_override.yaml").write_text(override_text(delta, provenance))
        summary.update(best={"number": best.number, "value": best.value, "params": best.params,
                             "round": best.user_attrs.get("round", 0), "errors": best.user_attrs.get("errors"),
                             "run_dir": best.user_attrs.get("run_dir"), "overrides": delta,
                             "provenance": provenance},
                       edges=edges(best, space), override=str(out / "best_override.yaml"))
    write_json(out / "summary.json", summary, default=str)
    return summary
