"""Calibrate the scenes: a measured ceiling and learning curves (lecture: "human-level performance" as a proxy
for the irreducible error, and "add more data" read off a learning curve).

    python -m pedestrian.calibrate profile=cpu [HYDRA_OVERRIDES...] [--out DIR] [--sizes 625,1250,...]
        [--ref-train N] [--ref-epochs E] [--ref-width W] [--skip-curves]

1. A reference model, far beyond the ladder's budget: the `resnet_lr` stage trained on twice the ladder's
   largest set (`--ref-train`) for the small stages' epochs (`--ref-epochs`): on the CPU profile 20,000 images x
   12 epochs with a cosine schedule, three times the images `more_data` sees (a wider model: `--ref-width`; on
   a GPU, go bigger). Its error on day scenes bounds the irreducible error from above (a better model can only
   do better); its error on night scenes says how much harder night is for a model that has seen little of it.
   Errors are given on day and night scenes of each evaluation set and by slice (hard-to-see, reflection,
   mannequins, distractors).
2. Learning curves: train and train-val error of LeNet (`lenet`) and the ResNet (`resnet_lr`) against the
   training-set size, at the ladder's own budget per stage.

Writes DIR/calibration.json and DIR/CALIBRATION.md (default experiments/<profile>/calibration), with the
command, the machine and the difficulty knobs (conf/data/scenes.yaml) behind every number. Every run is a
real stage run (pedestrian.core.train.run) under DIR/runs/, so each can be inspected or rerun alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from pedestrian.base.conf import compose_stage

SLICES = {  # name -> rule on the predictions' attribute columns (positives and negatives as named)
    "day": lambda a: a["night"] == 0,
    "night": lambda a: a["night"] == 1,
    "day, positives": lambda a: (a["night"] == 0) & (a["label"] == 1),
    "day, negatives": lambda a: (a["night"] == 0) & (a["label"] == 0),
    "hard-to-see (positives)": lambda a: a["hard"] == 1,
    "reflection": lambda a: a["reflection"] == 1,
    "mannequin in a window": lambda a: a["mannequin"] == 1,
    "negatives with >= 3 distractors": lambda a: (a["label"] == 0) & (a["n_distractors"] >= 3),
}


def slice_errors(npz: Path, split: str) -> dict[str, dict]:
    """Error rate (and count) of each slice of one evaluation set, from a run's predictions.npz."""
    with np.load(npz) as z:
        a = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{split}/")}
    wrong = (a["prob"] >= 0.5).astype(int) != a["label"]
    out = {"all": {"n": int(len(wrong)), "errors": int(wrong.sum()), "error": float(wrong.mean())}}
    for name, rule in SLICES.items():
        m = rule(a)
        if m.any():
            out[name] = {"n": int(m.sum()), "errors": int(wrong[m].sum()), "error": float(wrong[m].mean())}
    return out


def run_stage(stage: str, overrides: list[str], run_dir: Path) -> dict:
    """One real stage run (the ladder's composition); an earlier invocation's finished run is reused (its
    results say so: "reused": true)."""
    from pedestrian.core.train import run

    done = run_dir / "results.json"
    if done.exists():
        return {**json.loads(done.read_text()), "reused": True}
    cfg, _ = compose_stage(stage, [*overrides, f"run_dir='{run_dir}'", "print_config=false"])
    return {**run(cfg), "reused": False}


def calibrate(overrides: list[str], out: Path, sizes: list[int] | None, ref_train: int | None,
              ref_epochs: int | None, ref_width: int | None, curves: bool = True) -> dict:
    cfg, choices = compose_stage("resnet_lr", overrides)
    profile = cfg.profile
    ref_train = ref_train or 2 * int(profile.n_train_large)
    ref_epochs = ref_epochs or int(profile.max_epochs)
    ref_width = ref_width or int(profile.resnet_width)
    t0 = time.time()
    ref_over = [*overrides, f"data.n_train={ref_train}", f"trainer.max_epochs={ref_epochs}", f"model.width={ref_width}",
                "optim.scheduler=cosine"]  # a reference is trained well, not only long: anneal to the end
    ref = run_stage("resnet_lr", ref_over, out / "runs" / "reference")
    npz = out / "runs" / "reference" / "predictions.npz"
    reference = {"overrides": ref_over[len(overrides):], "errors": ref["errors"], "wall_time_s": ref["wall_time_s"],
                 "machine": ref["machine"], "reused": ref["reused"],
                 "slices": {s: slice_errors(npz, s) for s in ("train_val", "test_val", "test")}}

    curve = {}
    if curves:
        sizes = sizes or [int(profile.n_train_small) // 4 * k for k in (1, 2, 4, 8, 16)]
        for stage in ("lenet", "resnet_lr"):
            curve[stage] = []
            for n in sizes:
                r = run_stage(stage, [*overrides, f"data.n_train={n}"], out / "runs" / f"{stage}-{n}")
                curve[stage].append({"n_train": n, "epochs": r["epochs"], "wall_time_s": r["wall_time_s"],
                                     "reused": r["reused"],
                                     **{k: r["errors"][k] for k in ("train", "train_val", "test_val")}})
    result = {
        "command": "python -m pedestrian.calibrate " + " ".join(map(shlex.quote, sys.argv[1:])),
        "finished": dt.datetime.now().isoformat(timespec="seconds"), "wall_s": round(time.time() - t0, 1),
        "profile": choices.get("profile"), "image_size": int(cfg.data.image_size),
        "difficulty": OmegaConf.to_container(cfg.data.difficulty, resolve=True),
        "reference": reference, "learning_curves": curve}
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    (out / "CALIBRATION.md").write_text(to_markdown(result))
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def to_markdown(r: dict) -> str:
    ref = r["reference"]
    runs = [ref, *(p for pts in r["learning_curves"].values() for p in pts)]
    reused = sum(bool(p.get("reused")) for p in runs)
    lines = [f"# Calibration of the scenes, profile `{r['profile']}` ({r['image_size']} px)", "",
             f"Made by `{r['command']}` on {ref['machine']}, finished {r['finished']}: {len(runs)} runs, "
             f"{sum(p['wall_time_s'] for p in runs) / 60:.1f} min of run time"
             + (f" ({reused} of them finished by an earlier invocation of the same command and reused)." if reused
                else "."),
             "", "Difficulty knobs (`data.difficulty`, conf/data/scenes.yaml):", "",
             "| knob | value |", "|---|---|", *[f"| `{k}` | {v} |" for k, v in r["difficulty"].items()], "",
             "## The reference model (the ceiling)", "",
             f"`resnet_lr` with {' '.join(f'`{o}`' for o in ref['overrides'])}: train {_pct(ref['errors']['train'])}, "
             f"train-val {_pct(ref['errors']['train_val'])}, test-val {_pct(ref['errors']['test_val'])}, "
             f"test {_pct(ref['errors']['test'])}; {ref['wall_time_s'] / 60:.1f} min.", "",
             "Its day error bounds the irreducible error from above; night is the distribution shift.", "",
             "| slice | " + " | ".join(ref["slices"]) + " |", "|---|" + "---|" * len(ref["slices"])]
    names = list(dict.fromkeys(n for s in ref["slices"].values() for n in s))
    for name in names:
        cells = []
        for s in ref["slices"].values():
            c = s.get(name)
            cells.append(f"{_pct(c['error'])} ({c['errors']}/{c['n']})" if c else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if r["learning_curves"]:
        lines += ["", "## Learning curves (error against training-set size, the ladder's budget per stage)", "",
                  "| model | training images | epochs | train | train-val | test-val | wall |",
                  "|---|---|---|---|---|---|---|"]
        for stage, pts in r["learning_curves"].items():
            lines += [f"| `{stage}` | {p['n_train']} | {p['epochs']} | {_pct(p['train'])} | {_pct(p['train_val'])} | "
                      f"{_pct(p['test_val'])} | {p['wall_time_s'] / 60:.1f} min |" for p in pts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m pedestrian.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. profile=cpu")
    p.add_argument("--out", default=None, help="output folder (default experiments/<profile>/calibration)")
    p.add_argument("--sizes", default=None, help="training-set sizes of the learning curves, comma-separated")
    p.add_argument("--ref-train", type=int, default=None, help="reference model's training images (2x n_train_large)")
    p.add_argument("--ref-epochs", type=int, default=None, help="reference model's epochs (max_epochs)")
    p.add_argument("--ref-width", type=int, default=None, help="reference ResNet's width (resnet_width)")
    p.add_argument("--skip-curves", action="store_true", help="the reference model only")
    args = p.parse_intermixed_args(argv)
    _, choices = compose_stage("resnet_lr", args.overrides)
    out = Path(args.out or Path("experiments") / str(choices.get("profile")) / "calibration")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    r = calibrate(args.overrides, out, sizes, args.ref_train, args.ref_epochs, args.ref_width, not args.skip_curves)
    print(to_markdown(r))
    print(f"wrote {out / 'calibration.json'} and {out / 'CALIBRATION.md'}")


if __name__ == "__main__":
    main()
