"""`python -m pedestrian.search +stage=NAME search=NAME [overrides] [--workers N] [--write-stage NAME]`

Tune a stage's hyperparameters on an Optuna study (conf/search.yaml, conf/search/):

    python -m pedestrian.search +stage=resnet search=lr_coarse_to_fine            # the lecture's recommendation
    python -m pedestrian.search +stage=resnet search=lr_grid                       # 16-point log grid
    python -m pedestrian.search +stage=augment search=tuned_bayes --write-stage tuned
    python -m pedestrian.search +stage=resnet search=lr_random --workers 2         # 2 processes, one study

The same command started again (or in another terminal, or on another machine with a shared
`search.storage=postgresql://...`) joins the study and runs what is left; on a finished study it only rewrites
the report. `--workers N` is short for `search.workers=N`, `--write-stage NAME` for `search.write_stage=NAME`.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf, open_dict

from pedestrian.base.conf import CONF_DIR
from pedestrian.base.errors import ConfigError
from pedestrian.search import methods, report
from pedestrian.search import space as space_lib
from pedestrian.search import study as study_lib
from pedestrian.search.objective import OBJECTIVES, AnalyticObjective, TrainObjective, trial_config

SUGAR = {"--workers": "search.workers", "--write-stage": "search.write_stage"}
SET_BY_PARENT = ("search.workers", "search.report", "search.write_stage")


def _sugar(argv: list[str]) -> list[str]:
    """--workers N / --write-stage NAME -> Hydra overrides."""
    out, i = [], 0
    while i < len(argv):
        flag, _, value = argv[i].partition("=")
        if flag in SUGAR:
            if not value:
                if i + 1 >= len(argv):
                    raise SystemExit(f"{flag} needs a value")
                value, i = argv[i + 1], i + 1
            out.append(f"{SUGAR[flag]}={value}")
        else:
            out.append(argv[i])
        i += 1
    return out


def make_pruner(node: DictConfig) -> optuna.pruners.BasePruner:
    if node.name == "none":
        return optuna.pruners.NopPruner()
    if node.name == "median":  # stop a trial whose curve is worse than the median of finished trials so far
        return optuna.pruners.MedianPruner(n_startup_trials=int(node.n_startup_trials),
                                           n_warmup_steps=int(node.n_warmup_steps))
    raise ConfigError(f"search.pruner.name={node.name!r}: must be one of ('median', 'none')")


def _command(overrides: list[str]) -> str:
    keep = [o for o in overrides if o.split("=")[0].lstrip("+~") not in SET_BY_PARENT]
    return " ".join(["python -m pedestrian.search", *keep])


def _spawn(n: int, overrides: list[str], out: Path, threads: int, study: optuna.Study) -> None:
    """N worker processes of this same command; they share the study through its storage."""
    keep = [o for o in overrides if o.split("=")[0].lstrip("+~") not in SET_BY_PARENT]
    cmd = [sys.executable, "-m", "pedestrian.search", *keep, "search.workers=1", "search.report=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1), "MKL_NUM_THREADS": str(threads or 1)}
    (out / "workers").mkdir(exist_ok=True)
    procs = []
    for i in range(n):
        log = (out / "workers" / f"worker-{i}.log").open("a")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL), log))
    print(f"{n} workers started; logs in {out / 'workers'}", flush=True)
    last = ""
    while any(p.poll() is None for p, _ in procs):
        time.sleep(2)
        line = ", ".join(f"{k} {v}" for k, v in sorted(study_lib.counts(study.get_trials(deepcopy=False)).items()))
        if line != last:
            print(f"  trials: {line}", flush=True)
            last = line
    for _, log in procs:
        log.close()
    bad = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
    if bad:
        raise RuntimeError(f"worker(s) {bad} exited with an error: see {out / 'workers'}")


def search(cfg: DictConfig, overrides: list[str]) -> dict | None:
    scfg = cfg.search
    space = space_lib.load(scfg.space)
    method = OmegaConf.to_container(scfg.method, resolve=True)
    if scfg.objective not in OBJECTIVES:
        raise ConfigError(f"search.objective={scfg.objective!r}: must be one of {OBJECTIVES}")
    analytic = AnalyticObjective(scfg, space) if scfg.objective == "analytic" else None  # checked before any work
    n_trials = len(methods.grid(space, int(method["points"]))) if method["name"] == "grid" else int(scfg.n_trials)
    tickets = methods.plan(method, space, n_trials, int(scfg.seed))
    base = copy.deepcopy(cfg)
    with open_dict(base):
        del base["search"]
    if scfg.objective != "analytic":  # a typo in a key or a bad value fails now, not in every trial
        space_lib.check_keys(base, space)
        from pedestrian.core.config import validate

        probe = {n: p.from_unit(0.5, p.declared) if p.numeric else p.labels[0] for n, p in space.items()}
        validate(trial_config(base, scfg, space, probe, 0))
    out = Path(scfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    url = scfg.storage or f"sqlite:///{out / 'study.db'}"
    spec = json.loads(json.dumps({
        "stage": cfg.stage.name, "method": method, "space": OmegaConf.to_container(scfg.space, resolve=True),
        "n_trials": n_trials, "objective": scfg.objective, "seed": int(scfg.seed),
        "budget": OmegaConf.to_container(scfg.budget, resolve=True),
        "analytic": OmegaConf.to_container(scfg.analytic, resolve=True) if scfg.objective == "analytic" else None}))
    storage = study_lib.open_storage(url, int(scfg.heartbeat.interval), int(scfg.heartbeat.grace))
    study, created = study_lib.open_study(str(scfg.study), storage, spec, tickets, make_pruner(scfg.pruner))
    print(f"study {scfg.study} ({'created' if created else 'joined'}, {url}): {method['name']}, {n_trials} trials, "
          f"objective {scfg.objective} error after {scfg.budget.epochs} epochs", flush=True)

    if int(scfg.workers) > 1:
        if scfg.objective != "analytic":  # render the data cache once, before the workers need it
            hydra.utils.instantiate(base.data).setup()
        _spawn(int(scfg.workers), overrides, out, int(scfg.threads or 0), study)
    else:
        objective = analytic or TrainObjective(base, scfg, space)

        def params_for(ticket, trials):
            return methods.planned_params(space, method, n_trials, int(scfg.seed), trials,
                                          study_lib.round_of(ticket), int(ticket.user_attrs["index"]))

        pid = os.getpid()
        ran = study_lib.work(study, storage, objective, params_for,
                             lambda number: methods.sampler(method, int(scfg.seed), number),
                             log=lambda msg: print(f"[worker {pid}] {msg}", flush=True),
                             poll_s=float(scfg.poll_s))
        print(f"[worker {pid}] done: ran {ran} trial(s)", flush=True)

    if not scfg.report:
        return None
    trials = study.get_trials()
    command = _command(overrides)
    summary = report.write(out, trials, space, scfg, base, command, url, len(tickets))
    print(f"trials: {summary['counts']}; wall time {summary['wall_time_s']} s; results in {out}")
    if summary["best"]:
        b = summary["best"]
        print(f"best trial {b['number']}: {scfg.objective} error {b['value']:.4g} with {b['params']}")
        print(f"stage override: {summary['override']}")
    for warning in summary["edges"]:
        print(f"WARNING: {warning}")
    if scfg.write_stage and summary["best"]:
        path = report.write_stage(Path(CONF_DIR), str(scfg.write_stage), str(cfg.stage.name),
                                  summary["best"]["overrides"], summary["best"]["provenance"])
        print(f"wrote {path}")
    return summary


@hydra.main(config_path=CONF_DIR, config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        search(cfg, list(HydraConfig.get().overrides.task))
    except Exception as e:
        if not isinstance(e, ConfigError):
            raise
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_sugar(sys.argv[1:])]
    main()
