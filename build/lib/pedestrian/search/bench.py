"""The search's two target figures, each measured on real runs of `python -m pedestrian.search`:

    python -m pedestrian.search.bench lr        # coarse-to-fine (16 trials) vs a 16-point log grid, lr of `resnet`
    python -m pedestrian.search.bench workers   # trials per minute with 1 and with 2 workers (1 thread each)
    python -m pedestrian.search.bench all       # both
    ... [--profile cpu] [--epochs N] [--trials N] [--out DIR] [-- HYDRA_OVERRIDES...]

lr: both searches cover 1e-5..1e-1 with the same budget per trial; the figure is the train error (at the budget)
of coarse-to-fine's best trial against the grid's best, relative, and the wall time of each (the grid runs without
pruning: it is the exhaustive reference). Target: within 10%.
workers: one grid of --trials learning rates, run once with one worker and once with two (fresh studies, same
settings, torch limited to one thread per worker); trials per minute from the trials' own start and end times,
and a check that every planned trial finished exactly once. Target: 2 workers >= 1.6x one worker on 2 cores.
Both figures need a quiet machine: the load average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from pedestrian.search.study import open_storage


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def prepare_data(args: argparse.Namespace) -> None:
    """Render the scene cache before any clock starts (a cold cache would be timed in the first trial)."""
    from hydra.utils import instantiate

    from pedestrian.base.conf import compose_stage

    cfg, _ = compose_stage("resnet", [f"profile={args.profile}", *args.overrides])
    instantiate(cfg.data).setup()


def run_search(args: argparse.Namespace, name: str, *overrides: str) -> tuple[dict, float]:
    """One fresh search through the real CLI; returns its summary.json and the command's wall time."""
    out = Path(args.out) / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pedestrian.search", "+stage=resnet", f"profile={args.profile}",
           f"search.study=bench-{name}", f"search.out={out}", f"search.budget.epochs={args.epochs}",
           "search.threads=1", *overrides, *args.overrides]
    print("$ " + " ".join(cmd[1:]).replace("-m pedestrian", "python -m pedestrian", 1), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.time()
    with (Path(args.out) / f"{name}.log").open("w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - start
    if rc != 0:
        raise SystemExit(f"{name}: the search failed (exit {rc}); see {Path(args.out) / f'{name}.log'}")
    return json.loads((out / "summary.json").read_text()), wall


def bench_lr(args: argparse.Namespace) -> dict:
    before = load()
    n = args.trials or 16
    grid, grid_wall = run_search(args, "lr_grid", "search=lr_grid", f"search.method.points={n}",
                                 "search.pruner.name=none")
    c2f, c2f_wall = run_search(args, "lr_coarse_to_fine", "search=lr_coarse_to_fine", f"search.n_trials={n}")
    g, c = grid["best"], c2f["best"]
    gap = (c["value"] - g["value"]) / g["value"] if g["value"] > 0 else float(c["value"] > 0)
    result = {"grid": {"lr": g["params"]["lr"], "train_error": g["value"], "wall_s": round(grid_wall, 1),
                       "counts": grid["counts"]},
              "coarse_to_fine": {"lr": c["params"]["lr"], "train_error": c["value"], "wall_s": round(c2f_wall, 1),
                                 "counts": c2f["counts"], "ranges": c2f["ranges"]},
              "trials": n, "relative_gap": round(gap, 4), "target": "<= 0.10", "passed": gap <= 0.10,
              "epochs_per_trial": args.epochs, "profile": args.profile, "load_before": before,
              "load_after": load()}
    print(f"\nlr search, {args.profile} profile, {args.epochs} epoch(s) per trial, train error at the budget:")
    print(f"  {n}-point log grid:     best lr {g['params']['lr']:.3g}, train error {g['value']:.4f}, "
          f"wall {grid_wall / 60:.1f} min ({grid['counts']})")
    print(f"  coarse-to-fine ({n}):   best lr {c['params']['lr']:.3g}, train error {c['value']:.4f}, "
          f"wall {c2f_wall / 60:.1f} min ({c2f['counts']})")
    print(f"  relative gap {gap:+.1%} (target <= +10%): {'PASS' if gap <= 0.10 else 'FAIL'}; "
          f"load average before {before}, after {result['load_after']}")
    return result


def _check(summary: dict, n: int) -> tuple[float, bool]:
    """Trials per minute from the trials' own clock, and whether every planned trial finished exactly once."""
    storage = open_storage(summary["storage"], 10, 60)
    trials = optuna.load_study(study_name=summary["study"], storage=storage).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    exact = len(trials) == n and len(done) == n and len({t.params["lr"] for t in done}) == n
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return len(done) / span * 60, exact


def bench_workers(args: argparse.Namespace) -> dict:
    before = load()
    args.trials = args.trials or 8
    common = ["search=lr_grid", f"search.method.points={args.trials}", "search.pruner.name=none",
              "search.space.lr.low=1e-4", "search.space.lr.high=1e-2"]  # no diverging trials: equal work
    one, wall1 = run_search(args, "workers_1", *common, "search.workers=1")
    two, wall2 = run_search(args, "workers_2", *common, "search.workers=2")
    rate1, exact1 = _check(one, args.trials)
    rate2, exact2 = _check(two, args.trials)
    speedup = rate2 / rate1
    result = {"trials": args.trials, "epochs_per_trial": args.epochs, "profile": args.profile,
              "one_worker": {"trials_per_min": round(rate1, 3), "wall_s": round(wall1, 1), "exact": exact1},
              "two_workers": {"trials_per_min": round(rate2, 3), "wall_s": round(wall2, 1), "exact": exact2},
              "speedup": round(speedup, 3), "target": ">= 1.6", "passed": speedup >= 1.6 and exact1 and exact2,
              "cpus": os.cpu_count(), "load_before": before, "load_after": load()}
    print(f"\nworkers, {args.trials} trials of {args.epochs} epoch(s), {args.profile} profile, 1 thread per worker:")
    print(f"  1 worker:  {rate1:.2f} trials/min (command {wall1 / 60:.1f} min), every trial exactly once: {exact1}")
    print(f"  2 workers: {rate2:.2f} trials/min (command {wall2 / 60:.1f} min), every trial exactly once: {exact2}")
    print(f"  speedup {speedup:.2f}x (target >= 1.6x on {os.cpu_count()} cores): "
          f"{'PASS' if result['passed'] else 'FAIL'}; load average before {before}, after {result['load_after']}")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m pedestrian.search.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["lr", "workers", "all"])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--epochs", type=int, default=None, help="per trial (default: lr 2, workers 1)")
    p.add_argument("--trials", type=int, default=None, help="per study (default: lr 16, workers 8 - keep it even)")
    p.add_argument("--out", default="outputs/search/bench")
    args = p.parse_args(argv)
    args.overrides = overrides
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"load average before: {load()} ({os.cpu_count()} cores)", flush=True)
    prepare_data(args)
    results = {}
    if args.which in ("lr", "all"):
        args.epochs = args.epochs or 2
        results["lr"] = bench_lr(args)
        if args.which == "all":
            args.epochs = None
    if args.which in ("workers", "all"):
        args.epochs = args.epochs or 1
        results["workers"] = bench_workers(args)
    path = Path(args.out) / f"bench_{args.which}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
