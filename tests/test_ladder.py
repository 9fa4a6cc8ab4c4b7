"""The whole ladder through the real CLI on the tiny profile: every stage runs as its own W&B run in one group,
night_finetune starts from night_synth's best checkpoint, the report has every stage's row, a second invocation
skips everything; a stage killed with SIGKILL resumes from its last checkpoint; a missing predecessor is named."""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import wandb_offline
from conftest import ROOT, cli, compose

from pedestrian.data.augment import build_night_synth
from pedestrian.data.scenes import render_many
from pedestrian.ladder import MARKER, STAGES, checkpoint_epoch, stage_key

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models gain nothing from a second thread on a shared 2-core machine
TINY_LADDER = ("profile=tiny", "trainer.extras.threads=1")  # = the lab guide's ladder command on the tiny profile


@functools.cache
def tiny_ladder(data_root: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """Run the tiny ladder once per session in a workspace folder (also used by the lab-guide test)."""
    ws = data_root.parent / "ladder_workspace"
    ws.mkdir(exist_ok=True)
    return ws, cli(*TINY_LADDER, f"data.root={data_root}", module="pedestrian.ladder", cwd=ws, env=ONE_THREAD)


def test_ladder_end_to_end_then_report_then_skip(data_root):
    ws, r = tiny_ladder(data_root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = ws / "outputs" / "ladder" / "tiny"
    ladder = json.loads((root / "ladder.json").read_text())
    assert ladder["invocations"][0]["actions"] == {s: "ran" for s in STAGES}

    for stage in STAGES:
        d = root / stage
        res = json.loads((d / "results.json").read_text())
        marker = json.loads((d / MARKER).read_text())
        assert res["stage"] == stage and marker["status"] == "complete" and len(marker["attempts"]) == 1
        assert (d / "error_analysis.json").exists() and (d / "error_analysis.md").exists()
        [log] = wandb_offline.run_files(d)  # one W&B run per stage, all in the ladder's group
        info = wandb_offline.run_info(log)
        assert (info["name"], info["group"]) == (stage, ladder["id"])
    assert len({json.loads((root / s / MARKER).read_text())["key"] for s in STAGES}) == len(STAGES)

    # the error analysis went to W&B as a table whose rows carry thumbnails of each slice's errors
    [log] = wandb_offline.run_files(root / "night_finetune")
    [table] = [r.artifact for r in wandb_offline.records(log) if r.WhichOneof("record_type") == "artifact"
               and r.artifact.name.endswith("-error_analysis") and r.artifact.type == "run_table"]
    files = {c.path: c.local_path for c in table.manifest.contents}
    rows = json.loads(Path(files["error_analysis.table.json"]).read_text())["data"]
    assert {r[0] for r in rows} == {"day", "night", "reflection", "hard"}
    thumbs = [cell for r in rows for cell in r[-2:] if isinstance(cell, dict)]
    assert thumbs and all(t["_type"] == "image-file" and t["path"] in files for t in thumbs)

    # the hand-over: night_finetune was built from night_synth's best checkpoint, trained on the target pool
    synth = json.loads((root / "night_synth" / "results.json").read_text())
    ft = json.loads((root / "night_finetune" / "results.json").read_text())
    assert synth["best_checkpoint"] and Path(synth["best_checkpoint"]).exists()
    assert ft["config"]["stage"]["init_from"] == synth["best_checkpoint"]
    assert ft["n"]["train_total"] == ft["config"]["data"]["n_target_pool"]

    rep = cli("profile=tiny", module="pedestrian.report", cwd=ws, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (ws / "experiments" / "tiny" / "RESULTS.md").read_text()
    for stage in STAGES:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{stage}` |"))
        res = json.loads((root / stage / "results.json").read_text())
        assert f"| {res['errors']['test_val']:.1%} |" in row  # the row carries that run's own figures
    assert "## Domain adaptation" in text and "night_synth/checkpoints/best.ckpt" in text
    for png in ("learning_curves.png", "decomposition.png", "error_analysis.png"):
        assert (ws / "experiments" / "tiny" / png).stat().st_size > 10_000

    again = cli(*TINY_LADDER, f"data.root={data_root}", module="pedestrian.ladder", cwd=ws, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") >= len(STAGES) and "resuming" not in again.stdout
    ladder = json.loads((root / "ladder.json").read_text())
    assert ladder["invocations"][-1]["actions"] == {s: "skipped" for s in STAGES}
    assert all(len(json.loads((root / s / MARKER).read_text())["attempts"]) == 1 for s in STAGES)


def test_missing_predecessor_says_which_and_how(tmp_path, data_root):
    r = cli("profile=tiny", f"data.root={data_root}", "--stages", "night_finetune", "--root", str(tmp_path),
            module="pedestrian.ladder", timeout=300)
    assert r.returncode == 2
    assert "night_finetune starts from night_synth's best checkpoint" in r.stderr
    assert "python -m pedestrian.ladder profile=tiny" in r.stderr and "--stages night_synth" in r.stderr


def test_stage_key_follows_the_config_not_the_bookkeeping():
    def key(*o: str) -> str:
        return stage_key(compose("+stage=resnet", "profile=tiny", "run_dir=/a", *o))
    base = key()
    assert key("run_dir=/b", "group=other", "logger=none", "data.root=/elsewhere", "resume=true") == base
    assert key("optim.lr=0.002") != base and key("seed=1") != base and key("profile=cpu") != base
    # a fine-tuning stage also changes when the stage it starts from changes
    ft = compose("+stage=night_finetune", "profile=tiny", "run_dir=/a", "stage.init_from=x")
    assert stage_key(ft, "aaa") != stage_key(ft, "bbb")


def _epochs(path: Path) -> set[int]:
    """The epochs a CSV learning curve has rows for."""
    try:
        with path.open(newline="") as f:
            return {int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")}
    except (FileNotFoundError, KeyError, ValueError):
        return set()


def test_killed_stage_resumes_from_its_last_checkpoint(tmp_path, data_root):
    """SIGKILL the ladder a few epochs into a stage; the rerun continues from the saved epoch and completes."""
    root = tmp_path / "ladder"
    epochs = 6
    args = ["profile=tiny", f"data.root={data_root}", f"trainer.max_epochs={epochs}", "logger=csv",
            "--stages", "lenet", "--root", str(root)]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **ONE_THREAD}
    proc = subprocess.Popen([sys.executable, "-m", "pedestrian.ladder", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    stage = root / "lenet"
    last = stage / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    try:  # kill once a checkpoint exists and training has moved on past epoch 2
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and max(_epochs(stage / "csv" / "metrics.csv"), default=0) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the stage ended before it could be killed: make it slower"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    marker = json.loads((stage / MARKER).read_text())
    assert marker["status"] == "running" and not (stage / "results.json").exists()
    saved = checkpoint_epoch(last)
    assert saved is not None and 0 <= saved < epochs - 1

    r = cli(*args, module="pedestrian.ladder", timeout=300, env=ONE_THREAD)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming from" in r.stderr and f"resuming from epoch {saved}" in r.stdout  # train.run's, ours
    marker = json.loads((stage / MARKER).read_text())
    assert marker["status"] == "complete" and marker["attempts"][-1]["resumed_from_epoch"] == saved
    assert json.loads((stage / "results.json").read_text())["epochs"] == epochs
    # the second attempt trained only the epochs after the saved one; the first attempt's curve is kept
    assert _epochs(stage / "csv" / "metrics.csv") == set(range(saved + 1, epochs))
    assert 0 in _epochs(stage / "attempts" / "1" / "metrics.csv")


def test_synthetic_night_looks_like_the_renderers_night():
    """night_synth's relit day images keep the renderer's night brightness range and its bright lamps; a
    pipeline that blacks them out (an earlier one: mean 8 of 255) turns them into label noise and makes
    test-val error worse, and one without lamps teaches that a light means a pedestrian."""
    images, attrs = render_many(0, "night_check", 0, 120, 32, p_night=0.5)
    day, night = images[attrs["night"] == 0], images[attrs["night"] == 1]
    synth = build_night_synth(1.0, seed=0)
    dark = np.stack([synth(im, i) for i, im in enumerate(day)])
    assert 0.6 * night.mean() < dark.mean() < 0.8 * day.mean()  # darker than day, about as bright as night
    assert dark.std(axis=(1, 2, 3)).mean() > 0.5 * day.std(axis=(1, 2, 3)).mean()  # the scene is still there
    lamps = (night.max(-1) > 200).mean()  # glowing lamps and windows: bright spots in a dark frame
    assert 0.3 * lamps < (dark.max(-1) > 200).mean() < 3 * lamps
    again = build_night_synth(1.0, seed=0)
    assert all((again(im, i) == d).all() for i, (im, d) in enumerate(zip(day, dark)))  # seeded: the same night
    assert (build_night_synth(0.0)(day[0], 0) == day[0]).all()  # fraction 0: untouched
