"""The whole ladder in one command: every stage of the lecture's running example, in its order.

    python -m pedestrian.ladder profile=cpu [HYDRA_OVERRIDES...] [--stages a,b] [--root DIR] [--force]

Each stage is composed from conf/ exactly as `python -m pedestrian +stage=NAME` would compose it (plus the
overrides given here, applied to every stage) and run by `pedestrian.core.train.run`, as its own W&B run in one
group (the ladder id). All stages of a ladder live under one root, `outputs/ladder/<profile>/<stage>/`.

- Hand-over: a stage that builds on an earlier stage's *weights* says so in its config, `stage.needs_init_from`
  (night_finetune: domain adaptation starts from night_synth's model), and gets `stage.init_from` = that stage's
  best checkpoint. The other stages build on their predecessor's *config* only (conf/stage chains the deltas)
  and train from scratch, as in the lecture.
- Skipping: each stage folder holds `ladder_stage.json` with a key, the hash of the stage's resolved config
  without bookkeeping (paths, W&B group, logging); the predecessor's key stands in for `init_from`. A stage that
  is complete under the same key is skipped; under another key its folder moves to `<root>/_superseded/` and it
  runs afresh. The renderer's version is part of the key (a changed renderer draws other pictures); other
  code changes are not: use --force after changing the model or training code.
- Resuming: a stage that was interrupted (killed, crashed) runs again with `resume=true` in the same folder and
  continues from `checkpoints/last.ckpt` (its earlier learning curve is kept under `attempts/`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from pedestrian.base.conf import compose_stage
from pedestrian.base.files import write_json

# The lecture's order: start simple, underfitting (3 steps), overfitting (3 steps), tune, distribution shift.
STAGES = ("lenet", "deeper", "resnet", "resnet_lr", "more_data", "weight_decay", "augment", "tuned",
          "night_synth", "night_finetune")
# Keys that say where and how a run is recorded, not what it computes: left out of the stage key.
BOOKKEEPING = ("run_dir", "group", "resume", "print_config", "tags", "logger", "stage.init_from", "data.root",
               "data.render_workers")
SET_BY_LADDER = ("run_dir", "resume", "stage.init_from", "+stage", "stage")
MARKER = "ladder_stage.json"

console = Console()


class LadderError(RuntimeError):
    """A ladder that cannot go on (a missing predecessor, a bad override); the message says what to run."""


def data_fingerprint(cfg: DictConfig) -> str | None:
    """Rendered scenes: the scene cache's key (renderer version and source, size, seed), so a changed renderer
    reruns the ladder rather than reusing results made from other pictures. Other data sources: None."""
    if not str(cfg.data.get("_target_", "")).endswith("SceneDataModule"):
        return None
    from pedestrian.data.cache import cache_key

    d = cfg.data
    knobs = OmegaConf.to_container(d.difficulty, resolve=True) if d.get("difficulty") is not None else None
    return cache_key(int(d.seed), int(d.image_size), float(d.p_night_source), float(d.p_pedestrian),
                     difficulty=knobs)


def stage_key(cfg: DictConfig, parent_key: str | None = None) -> str:
    """A short hash of what the stage computes: its resolved config minus bookkeeping, the data's fingerprint,
    and (for a stage that starts from its parent's weights) the parent's key."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for dotted in BOOKKEEPING:
        *path, last = dotted.split(".")
        node = tree
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    blob = json.dumps({"config": tree, "data": data_fingerprint(cfg), "parent": parent_key}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_state(run_dir: Path, key: str) -> str:
    """'complete' | 'partial' (same key, interrupted or failed) | 'stale' (another key) | 'new'."""
    marker = read_json(run_dir / MARKER)
    if marker is None:
        return "stale" if run_dir.exists() and any(run_dir.iterdir()) else "new"
    if marker.get("key") != key:
        return "stale"
    if marker.get("status") == "complete" and (run_dir / "results.json").exists():
        return "complete"
    return "partial"


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a Lightning checkpoint was saved at (to say where a resumed stage starts); None if unreadable."""
    from pedestrian.core.checkpoints import CheckpointError, load_checkpoint

    try:
        return int(load_checkpoint(path)["epoch"])
    except (CheckpointError, KeyError, OSError):
        return None


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (render workers): next to wall time,
    it shows how much of a slow run was the machine being shared."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _check_overrides(overrides: list[str]) -> None:
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("~")
        if "=" not in o:
            raise LadderError(f"{o!r} is not an override (KEY=VALUE); ladder options start with --")
        if key in SET_BY_LADDER or key.removeprefix("+") in SET_BY_LADDER:
            raise LadderError(f"{o!r}: the ladder sets {key.lstrip('+')} itself (use --root and --stages)")


def _ladder_id(root: Path, profile: str, overrides: list[str]) -> str:
    """One W&B group per ladder root: made once, reused by every later invocation (skips, resumes)."""
    given = next((o.split("=", 1)[1] for o in overrides if o.startswith("group=")), None)
    info = read_json(root / "ladder.json") or {}
    if given:
        return given
    return info.get("id") or f"ladder-{profile}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def run_ladder(overrides: list[str], root: str | Path | None = None, stages: list[str] | None = None,
               force: bool = False, argv: list[str] | None = None) -> dict:
    """Run (or skip, or resume) the selected stages in ladder order. Returns {stage: action}."""
    _check_overrides(overrides)
    selected = list(STAGES) if not stages else stages
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise LadderError(f"--stages: unknown {unknown}; the ladder is {', '.join(STAGES)}")
    _, choices = compose_stage(STAGES[0], overrides)
    profile = str(choices.get("profile"))
    default_root = Path("outputs") / "ladder" / profile
    root = Path(root) if root else default_root
    root.mkdir(parents=True, exist_ok=True)
    ladder_id = _ladder_id(root, profile, overrides)
    start, cpu_start, load_start = time.time(), cpu_seconds(), os.getloadavg()
    command = " ".join(["python -m pedestrian.ladder", *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    console.rule(f"[bold]ladder {ladder_id}[/bold]  root {root}  stages {len(selected)}/{len(STAGES)}")

    actions: dict[str, str] = {}
    keys: dict[str, str] = {}
    for name in STAGES:
        run_dir = root / name
        extra = [f"run_dir='{run_dir}'"]
        if not any(o.startswith("group=") for o in overrides):
            extra.append(f"group={ladder_id}")
        cfg, _ = compose_stage(name, [*overrides, *extra])
        parent = cfg.stage.get("needs_init_from")  # the stage whose best weights this one starts from, if any
        if parent is not None and parent not in keys:
            raise LadderError(f"conf/stage/{name}.yaml: stage.needs_init_from={parent!r} is not a stage before it "
                              f"in the ladder ({', '.join(STAGES)})")
        init_from = None
        if parent is not None:
            done = stage_state(root / parent, keys[parent]) == "complete"
            init_from = (read_json(root / parent / "results.json") or {}).get("best_checkpoint") if done else None
            cfg.stage.init_from = init_from or f"MISSING-{parent}"
        keys[name] = key = stage_key(cfg, keys[parent] if parent else None)
        if name not in selected:
            continue

        state = stage_state(run_dir, key)
        if state == "complete" and not force:
            actions[name] = "skipped"
            console.print(f"[green]{name}[/green]: complete for this config (key {key}), skipped")
            continue
        if parent is not None and not (init_from and Path(init_from).exists()):
            how = " ".join(["python -m pedestrian.ladder", *map(shlex.quote, overrides), "--stages", parent,
                            *(["--root", shlex.quote(str(root))] if root != default_root else [])])
            raise LadderError(f"{name} starts from {parent}'s best checkpoint, but {parent} has not completed for "
                              f"this config under {root / parent}. Run it first:\n  {how}")
        if state == "stale" or (force and run_dir.exists()):
            old = read_json(run_dir / MARKER) or {}
            dest = root / "_superseded" / f"{name}-{old.get('key', 'unkeyed')}-{dt.datetime.now():%Y%m%d-%H%M%S}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run_dir), dest)
            console.print(f"[yellow]{name}[/yellow]: {'--force' if force else 'config changed'} "
                          f"(key {old.get('key')} -> {key}); the old run moved to {dest}")
            state = "new"

        from pedestrian.core.train import run  # here, not at the top: skipping or refusing needs no Lightning import

        if state == "partial":
            cfg.resume = True  # continue from run_dir/checkpoints/last.ckpt
        actions[name] = _run_stage(cfg, name, key, run_dir, state, run)
    wall = time.time() - start
    _record_invocation(root, ladder_id, profile, command, actions, wall, cpu_seconds() - cpu_start, load_start)
    console.print(_actions_table(root, actions, keys, wall))
    console.print(f"report: python -m pedestrian.report profile={profile}"
                  + (f" --root {shlex.quote(str(root))}" if root != default_root else ""))
    return actions


def _run_stage(cfg: DictConfig, name: str, key: str, run_dir: Path, state: str, run) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = read_json(run_dir / MARKER) or {"stage": name, "key": key, "attempts": []}
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed_from = checkpoint_epoch(last) if state == "partial" and last.exists() else None
    if state == "partial":
        # CSVLogger starts metrics.csv afresh on resume: keep this attempt's curve for the report.
        csv = run_dir / "csv" / "metrics.csv"
        if csv.exists():
            keep = run_dir / "attempts" / str(len(marker["attempts"]))  # the number of the attempt cut short
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy2(csv, keep / "metrics.csv")
        console.print(f"[yellow]{name}[/yellow]: interrupted earlier; "
                      + (f"resuming from epoch {resumed_from} ({last})" if last.exists() else
                         "no checkpoint was saved, starting again"))
    console.rule(f"[bold]{name}[/bold] (key {key})")
    marker.update(status="running", key=key, init_from=cfg.stage.get("init_from"))
    marker["attempts"].append({"started": dt.datetime.now().isoformat(timespec="seconds"),
                               "resumed_from_epoch": resumed_from, "load_avg": os.getloadavg()})
    write_json(run_dir / MARKER, marker)
    t0, c0 = time.time(), cpu_seconds()
    try:
        result = run(cfg)
    except BaseException as e:  # a crash, or a clean stop on SIGTERM/Ctrl-C: the next invocation resumes
        marker["status"] = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed"
        marker["attempts"][-1].update(wall_s=round(time.time() - t0, 2), cpu_s=round(cpu_seconds() - c0, 2),
                                      error=f"{type(e).__name__}: {e}")
        write_json(run_dir / MARKER, marker)
        raise
    marker["status"] = "complete"
    marker["attempts"][-1].update(wall_s=round(time.time() - t0, 2), cpu_s=round(cpu_seconds() - c0, 2),
                                  epochs=result["epochs"])
    write_json(run_dir / MARKER, marker)
    return "resumed" if resumed_from is not None else "ran"


def _record_invocation(root: Path, ladder_id: str, profile: str, command: str, actions: dict, wall: float,
                       cpu: float, load_start: tuple) -> None:
    """root/ladder.json: the ladder id and every invocation (command, wall time, load) for the report."""
    train = sys.modules.get("pedestrian.core.train")  # imported only when a stage ran
    machine = train.machine() if train else None
    info = read_json(root / "ladder.json") or {"id": ladder_id, "profile": profile, "invocations": []}
    info["invocations"].append({
        "command": command, "finished": dt.datetime.now().isoformat(timespec="seconds"), "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_avg_start": [round(x, 2) for x in load_start], "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "machine": machine, "cpu_count": os.cpu_count(), "nice": os.nice(0), "actions": actions})
    write_json(root / "ladder.json", info)


def _actions_table(root: Path, actions: dict, keys: dict, wall: float) -> Table:
    t = Table(title=f"ladder: {len(actions)} stage(s) in {wall:.0f} s")
    for c in ("stage", "action", "key", "train", "train-val", "test-val", "test", "largest term", "stage wall s"):
        t.add_column(c)
    for name, action in actions.items():
        res = read_json(root / name / "results.json") or {}
        err = res.get("errors", {})
        cells = [f"{err[k]:.1%}" if k in err else "-" for k in ("train", "train_val", "test_val", "test")]
        t.add_row(name, action, keys[name], *cells, str(res.get("recommendation", {}).get("term", "-")),
                  str(res.get("wall_time_s", "-")))
    return t


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m pedestrian.ladder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every stage, e.g. profile=cpu")
    p.add_argument("--stages", default=None, help=f"comma-separated subset, run in ladder order ({','.join(STAGES)})")
    p.add_argument("--root", default=None, help="folder for the stage runs (default outputs/ladder/<profile>)")
    p.add_argument("--force", action="store_true", help="rerun the selected stages even when complete")
    args = p.parse_intermixed_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    if stages:
        stages = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    try:
        run_ladder(args.overrides, root=args.root, stages=stages, force=args.force, argv=argv)
    except LadderError as e:
        print(f"ladder: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
