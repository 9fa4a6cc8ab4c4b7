"""Hyperparameter search: every method finds a known optimum through the real study/plan/worker/report code (with
an analytic objective instead of training), workers share one SQLite study exactly, a killed worker loses only
its running trial, a real search trains through train.run with one W&B run per trial, and a Hydra multirun
survives a failing job."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import wandb_offline
from conftest import CONF, ROOT, cli, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from optuna.trial import TrialState

from pedestrian.base.errors import ConfigError
from pedestrian.search import report
from pedestrian.search import space as space_lib
from pedestrian.search.__main__ import search
from pedestrian.search.methods import coarse_to_fine, round_sizes

LR_OPT = 2.0e-3  # the analytic optimum's learning rate
FAST = ["search.objective=analytic", f"+search.analytic.optimum.lr={LR_OPT}", "search.budget.epochs=2",
        "search.poll_s=0.1", "search.heartbeat.interval=1", "search.heartbeat.grace=3"]


def compose_search(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="search",
                             overrides=["+stage=resnet", f"search.out={tmp_path / 'out'}", *FAST, *overrides])


def run_search(tmp_path: Path, *overrides: str) -> dict:
    """The search in this process, exactly as the CLI runs it after composing."""
    return search(compose_search(tmp_path, *overrides), list(overrides))


def lr_unit(lr: float) -> float:
    return space_lib.load({"lr": {"key": "optim.lr", "scale": "log", "low": 1e-5, "high": 1e-1}})["lr"].to_unit(lr)


def storage_trials(out: Path, study: str) -> list:
    st = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name=study, storage=st).get_trials()


# -- each method finds the optimum's region ---------------------------------------------------------------
def test_grid_finds_the_nearest_grid_point(tmp_path):
    s = run_search(tmp_path, "search=lr_grid", "search.method.points=9")  # 1e-5, 1e-4.5, ..., 1e-1
    assert s["counts"]["complete"] + s["counts"]["pruned"] == 9
    grid = [10.0 ** (-5 + 0.5 * i) for i in range(9)]
    nearest = min(grid, key=lambda g: abs(lr_unit(g) - lr_unit(LR_OPT)))
    assert s["best"]["params"]["lr"] == pytest.approx(nearest, rel=1e-9)
    assert (tmp_path / "out" / "params.png").stat().st_size > 0 and s["edges"] == []


def test_random_finds_the_region(tmp_path):
    s = run_search(tmp_path, "search=lr_random", "search.n_trials=16")
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert len(rows) == 16 and len({r["lr"] for r in rows}) == 16
    assert abs(lr_unit(s["best"]["params"]["lr"]) - lr_unit(LR_OPT)) < 0.1


def test_bayes_finds_the_region(tmp_path):
    s = run_search(tmp_path, "search=lr_bayes", "search.n_trials=16")
    assert abs(lr_unit(s["best"]["params"]["lr"]) - lr_unit(LR_OPT)) < 0.05


def test_coarse_to_fine_narrows_round_by_round(tmp_path):
    """lr (log) plus a choice: each round's lr range is narrower and still holds the optimum, the choices shrink
    to the right one, and the best trial lands close to the optimum."""
    s = run_search(tmp_path, "search=lr_coarse_to_fine", "search.n_trials=24",
                   "+search.space.optimizer={key:optim.name,choices:[adam,adamw,sgd]}",
                   "+search.analytic.optimum.optimizer=adamw")
    assert round_sizes(24, 3, 0.5) == [12, 6, 6]
    ranges = s["ranges"]
    widths = [lr_unit(r["lr"][1]) - lr_unit(r["lr"][0]) for r in ranges]
    assert len(ranges) == 3 and widths[0] == pytest.approx(1.0) and widths[0] > widths[1] > widths[2], widths
    assert all(r["lr"][0] <= LR_OPT <= r["lr"][1] for r in ranges)
    assert ranges[-1]["optimizer"] == ["adamw"]
    trials = storage_trials(tmp_path / "out", s["study"])
    for t in trials:  # every trial of a round sampled inside that round's range
        lo, hi = ranges[t.user_attrs["round"]]["lr"]
        assert lo <= t.params["lr"] <= hi
    assert s["best"]["params"]["optimizer"] == "adamw"
    assert abs(lr_unit(s["best"]["params"]["lr"]) - lr_unit(LR_OPT)) < 0.03
    assert (tmp_path / "out" / "rounds.png").stat().st_size > 0


def test_best_on_the_edge_is_reported(tmp_path):
    s = run_search(tmp_path, "search=lr_grid", "search.method.points=5", "search.analytic.optimum.lr=1.0e-6")
    assert s["best"]["params"]["lr"] == pytest.approx(1e-5) and "lower edge" in s["edges"][0]


def test_narrowing_stays_inside_the_declared_range():
    space = space_lib.load({"lr": {"key": "optim.lr", "scale": "log", "low": 1e-5, "high": 1e-1},
                            "width": {"key": "model.width", "type": "int", "low": 8, "high": 64}})
    best = [optuna.trial.create_trial(params={"lr": lr, "width": w}, value=v, distributions={
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "width": optuna.distributions.IntDistribution(8, 64)}) for lr, w, v in ((1e-5, 60, 0.1), (2e-5, 64, 0.2))]
    out = coarse_to_fine(space, {"lr": (1e-5, 1e-1), "width": (8, 64)}, best, margin=0.1)
    assert out["lr"][0] == pytest.approx(1e-5) and out["lr"][1] < 1e-4
    assert out["width"] == (54, 64)  # 64 + pad, clipped


def test_bad_space_fails_early_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="search.space.lr.low"):
        space_lib.load({"lr": {"key": "optim.lr", "scale": "log", "low": 0.0, "high": 1e-1}})
    with pytest.raises(ConfigError, match="optim.lrr"):
        space_lib.check_keys(compose("+stage=resnet"), space_lib.load({"lr": {"key": "optim.lrr", "low": 0,
                                                                              "high": 1}}))


def test_best_values_become_a_stage_file(tmp_path):
    """best_override.yaml's values written into a copy of conf/stage/resnet_lr.yaml: its defaults chain still
    composes, with the searched value and the provenance comment."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    delta = {"optim.lr": 0.00123}
    path = report.write_stage(conf, "resnet_lr", "resnet", delta, ["from `python -m pedestrian.search ...`"])
    text = path.read_text()
    assert text.startswith("# @package _global_") and "# search: from `python -m pedestrian.search" in text
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=["+stage=resnet_lr"])
    assert cfg.optim.lr == 0.00123 and cfg.stage.name == "resnet_lr" and cfg.model._target_.endswith("ResNet")
    report.write_stage(conf, "resnet_lr", "resnet", {"optim.lr": 0.002}, ["again"])  # older provenance replaced
    assert path.read_text().count("# search:") == 1
    path = report.write_stage(conf, "resnet_lr2", "resnet", delta, ["new"])  # a new stage chains the searched one
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=["+stage=resnet_lr2"])
    assert cfg.optim.lr == 0.00123 and cfg.stage.parent == "resnet"


# -- workers -------------------------------------------------------------------------------------------------
def worker_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pedestrian.search", "+stage=resnet", "search=lr_random", f"search.out={out}",
            *FAST, "search.pruner.name=none", *extra]


def test_two_workers_share_one_study_exactly(tmp_path):
    out = tmp_path / "out"
    r = cli("+stage=resnet", "search=lr_random", f"search.out={out}", *FAST, "search.pruner.name=none",
            "search.n_trials=12", "search.analytic.sleep_s=0.1", "--workers", "2", module="pedestrian.search")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trials = storage_trials(out, "resnet-lr_random")
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["lr"] for t in trials}) == 12  # no point twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert sorted(p.name for p in (out / "workers").iterdir()) == ["worker-0.log", "worker-1.log"]


def test_killed_worker_loses_only_its_trial(tmp_path):
    """kill -9 one of two workers mid-trial: its trial turns FAIL once its heartbeat is stale, the same point is
    queued again, a restarted worker joins, and the study ends with exactly the planned trials complete."""
    out = tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = worker_cmd(out, "search.n_trials=8", "search.analytic.sleep_s=0.5")
    procs = {}
    for _ in range(2):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs[f"{socket.gethostname()}:{p.pid}"] = p
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline:  # the first worker seen running a trial gets killed
        time.sleep(0.2)
        try:
            running = [t for t in storage_trials(out, "resnet-lr_random") if t.state == TrialState.RUNNING]
        except Exception:  # the study is still being created
            continue
        victim = next((t for t in running if t.user_attrs.get("worker") in procs), None)
    assert victim is not None, "no worker started a trial"
    killed = procs.pop(victim.user_attrs["worker"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    [survivor] = procs.values()
    restarted = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, _ = survivor.communicate(timeout=300)
    assert restarted.wait(timeout=300) == 0 and survivor.returncode == 0, log[-3000:]

    trials = storage_trials(out, "resnet-lr_random")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [t.number for t in failed] == [victim.number]
    assert len(done) == 8 and len({t.params["lr"] for t in done}) == 8
    [retry] = [t for t in done if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.system_attrs["fixed_params"] == victim.system_attrs["fixed_params"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["complete"] == 8 and summary["counts"]["fail"] == 1


def test_joining_with_other_settings_is_refused(tmp_path):
    run_search(tmp_path, "search=lr_random", "search.n_trials=3")
    with pytest.raises(ConfigError, match="n_trials"):
        run_search(tmp_path, "search=lr_random", "search.n_trials=4")


# -- real training -------------------------------------------------------------------------------------------
def test_real_search_trains_each_trial_as_a_wandb_run(tmp_path, data_root):
    """Two lr trials of the real stage on tiny data: train.run per trial, per-epoch reports, a W&B run per trial
    in the study's group, and the best value as a stage override that composes."""
    out = tmp_path / "out"
    r = cli("+stage=resnet", "search=lr_grid", "search.method.points=2", "search.budget.epochs=2", "profile=tiny",
            f"data.root={data_root}", f"search.out={out}", "search.poll_s=0.2", module="pedestrian.search")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["complete"] == 2 and summary["study"] == "resnet-lr_grid"
    rows = {int(row["number"]): row for row in csv.DictReader((out / "trials.csv").open())}
    for n, row in rows.items():
        assert row["epochs"] == "2"  # one report per epoch
        [log] = wandb_offline.run_files(out / "trials" / f"{n:04d}")
        info = wandb_offline.run_info(log)
        assert info["group"] == "resnet-lr_grid" and info["job_type"] == "trial"
        s = wandb_offline.summary(log)
        assert s["trial/objective"] == pytest.approx(float(row["objective"])) and s["trial/state"] == "complete"
        res = json.loads((out / "trials" / f"{n:04d}" / "results.json").read_text())
        assert res["config"]["optim"]["lr"] == pytest.approx(float(row["lr"]))
        assert res["config"]["trainer"]["max_epochs"] == 2 and res["config"]["trial"]["number"] == n
    for png in ("objective.png", "params.png"):
        assert (out / png).stat().st_size > 0
    best = (out / "best_override.yaml").read_text()
    assert best.startswith("# @package _global_") and "optim:" in best
    assert summary["edges"]  # two grid points: the best is on an edge of the range, and the search says so


def test_hydra_multirun_survives_a_failing_job(tmp_path, data_root):
    """Job 0 crashes in training (an even kernel breaks the residual shapes), job 1 still runs; both are W&B runs
    in one group, the first marked failed; Hydra exits non-zero at the end."""
    sweep = tmp_path / "sweep"
    r = cli("-m", "+stage=resnet", "profile=tiny", "model.kernel_size=4,3", "trainer.max_epochs=1",
            f"data.root={data_root}", f"hydra.sweep.dir={sweep}", "print_config=false")
    assert r.returncode != 0
    failed = json.loads((sweep / "0_resnet" / "failed.json").read_text())
    assert "RuntimeError" in failed["error"] and not (sweep / "0_resnet" / "results.json").exists()
    assert json.loads((sweep / "1_resnet" / "results.json").read_text())["config"]["model"]["kernel_size"] == 3
    runs = [wandb_offline.run_files(sweep / d)[0] for d in ("0_resnet", "1_resnet")]
    groups = {wandb_offline.run_info(f)["group"] for f in runs}
    assert groups == {"sweep"}  # one group for the sweep
    exits = [[rec.exit.exit_code for rec in wandb_offline.records(f) if rec.WhichOneof("record_type") == "exit"]
             for f in runs]
    assert exits == [[1], [0]]
