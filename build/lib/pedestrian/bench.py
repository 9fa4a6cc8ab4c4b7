"""`python -m pedestrian.bench`: how fast the project renders and trains, in one run.

1. The renderer: images/s on one core at 32 and 64 px, best of --render-repeats runs spread over the bench
   (target: >= 2,000/s/core at 64 px).
2. Training throughput of each stage's model (lenet, deeper = ConvNet, resnet): our real Lightning path (the
   Classifier and the Trainer exactly as train.run builds them: checkpoints, NaN guard, loggers) against a bare
   PyTorch loop with the same model, the same in-memory batches and the same optimizer, as images/s and their
   ratio (target >= 0.95 on the CPU). The two run in one process, in turn, step by step: after each step of the
   Lightning path one bare step (its own model, loader and optimizer, built from the same seed), each timed from
   the previous one's end, so a Lightning step carries everything its loop does between two steps (fetching the
   batch, hooks, logging). Run-to-run noise (allocator and cache state, a VM's neighbours) moves one path's
   speed by more than 5% between runs; paired step by step, both paths meet the same state. An epoch's first
   step, the warm-up epoch, and validation and checkpoints at an epoch's end (the bare loop has neither) are
   left out. Per round (fresh models and Trainer each, --repeats of them) each path's median step and their
   ratio; reported: the median of the rounds' ratios, each path's rate (batch size over the median of its
   rounds' median steps), every round, and the ratio of mean steps over all rounds, to show the noise.
3. On a GPU, each option of trainer=gpu / gpu_fast added in turn, both paths: fp32, bf16 autocast, channels_last,
   the training set resident on the GPU (pedestrian/data/gpu_data.py), torch.compile.

    python -m pedestrian.bench                        # CPU: profile cpu; GPU: profile full and the variants
    python -m pedestrian.bench --out experiments/bench   # also experiments/bench/bench-<machine>-<date>.json, .md
    python -m pedestrian.bench --stages lenet --epochs 1 --repeats 1 --profile tiny   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from pedestrian.base.conf import compose
from pedestrian.core.module import build_optimizer
from pedestrian.core.train import _trainer_cfg, build, build_trainer, machine
from pedestrian.data import gpu_data
from pedestrian.data.gpu_data import DeviceBatches
from pedestrian.data.scenes import render_many

console = Console()
STAGES = ("lenet", "deeper", "resnet")
# Each GPU variant adds one option to the previous one (name -> config overrides).
GPU_VARIANTS = {
    "fp32": ["trainer=gpu", "trainer.precision=32-true", "trainer.extras.channels_last=false"],
    "+bf16": ["trainer=gpu", "trainer.precision=bf16-mixed", "trainer.extras.channels_last=false"],
    "+channels_last": ["trainer=gpu", "trainer.extras.channels_last=true"],
    "+gpu_data": ["trainer=gpu", "trainer.extras.channels_last=true", "++trainer.extras.gpu_data=true"],
    "+compile": ["trainer=gpu_fast"],
}
# On the CPU the real path is trainer=cpu; the other options can be exercised with --variants (the code path).
CPU_VARIANTS = {
    "fp32": ["trainer=cpu"],
    "+channels_last": ["trainer=cpu", "trainer.extras.channels_last=true"],
    "+device_data": ["trainer=cpu", "++trainer.extras.gpu_data=true"],
    "+compile": ["trainer=cpu", "trainer.extras.compile=true"],
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 1. the renderer --------------------------------------------------------------------------------------
def renderer_throughput(size: int, n: int = 2000, p_night: float = 0.5) -> float:
    """Images per CPU-second of render_many on one core. CPU time of this process, with OpenCV held to one
    thread, so other jobs on a shared machine barely move it."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        render_many(0, "benchmark", 0, 50, size, p_night)  # warm up: sprites and window patterns get cached
        t = time.process_time()
        render_many(0, "benchmark", 0, n, size, p_night)
        return n / max(time.process_time() - t, 1e-9)
    finally:
        cv2.setNumThreads(threads)


class RendererRuns:
    """Images/s of renderer_throughput in this process, pinned to one thread (so: per core): `repeats` runs of
    `n` images per size, taken one at a time by sample() and spread over the whole bench (before the training
    measurements and between them; finish() takes what is left). The headline is the best run, as timeit takes
    the fastest (interference only ever slows a run down); the report lists every run and their median. Spread,
    because on a VM the renderer's speed can switch between levels that each last for seconds: runs back to back
    sample one moment."""

    def __init__(self, sizes: tuple[int, ...], n: int, repeats: int) -> None:
        self.sizes, self.n, self.repeats = sizes, n, repeats
        self.runs: dict[int, list[float]] = {size: [] for size in sizes} if n else {}

    def sample(self) -> None:
        """One run per size, if fewer than `repeats` were taken (renderer_throughput holds OpenCV to one thread)."""
        if self.n and len(self.runs[self.sizes[0]]) < self.repeats:
            for size in self.sizes:
                self.runs[size].append(renderer_throughput(size, self.n))

    def finish(self) -> dict[int, list[float]]:
        for _ in range(self.repeats):
            self.sample()
        return self.runs


# -- 2. Lightning against a bare loop ---------------------------------------------------------------------
def _clock(device: torch.device) -> float:
    """A GPU is timed by the wall clock (after a sync); the CPU by this process's CPU time, which other jobs on
    a shared machine do not inflate (wall-clock figures are reported beside it)."""
    _sync(device)
    return time.perf_counter() if device.type == "cuda" else time.process_time()


class BareLoop:
    """The same model, batches and optimizer in a plain loop: normalise, forward, cross-entropy, step. Built from
    the same seed as the Lightning path, so both start from the same weights and see the same batch order."""

    def __init__(self, cfg: DictConfig) -> None:
        L.seed_everything(cfg.seed, workers=True)
        tcfg, extras = _trainer_cfg(cfg)
        dm, module = build(cfg, extras=extras)
        self.dm, self.extras = dm, extras
        self.device = torch.device("cuda" if tcfg["accelerator"] == "gpu" else "cpu")
        self.model = module.model.to(self.device).train()
        self.opt = build_optimizer(self.model.parameters(), cfg.optim)
        bf16 = str(tcfg.get("precision", "")).startswith("bf16")
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        if extras.get("gpu_data"):
            images, labels, _ = dm.train_images_labels()
            self.loader = DeviceBatches(images, labels, dm.batch_size, dm.train_sampler(len(labels)), self.device,
                                        augment=dm.augment is not None)
        else:
            self.loader = dm.train_dataloader()

    def steps(self, epoch: int):
        """One epoch, one optimizer step per next(); yields the step's batch size."""
        self.loader.sampler.set_epoch(epoch)
        for x, y, _ in self.loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            x = self.dm.normalize(x)
            if self.extras.get("channels_last"):
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast:
                loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            yield len(y)


class PairedTimer(L.Callback):
    """Times our Lightning path and the bare loop step by step, in turn, in one process: after each Lightning
    optimizer step (from the end of the previous bare step: fetch, hooks, logging, forward, backward, step) one
    bare step runs and is timed. Whatever state the process or the machine is in, both paths meet it together:
    one path's median step moves from round to round by more than the 5% the comparison is about (the report
    lists each round's medians: allocator and cache state, a VM's neighbours), the pair's ratio far less.
    Per epoch: (batch size, Lightning s, bare s) per step, on the CPU or GPU clock and on the wall clock."""

    def __init__(self, bare: BareLoop) -> None:
        self.bare, self.epochs, self.wall = bare, [], []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._steps = self.bare.steps(trainer.current_epoch)
        self.epochs.append([])
        self.wall.append([])
        self._mark = (_clock(pl_module.device), time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        t1 = (_clock(pl_module.device), time.perf_counter())
        n_bare = next(self._steps, 0)
        t2 = (_clock(pl_module.device), time.perf_counter())
        if n_bare == len(batch[1]):
            self.epochs[-1].append((n_bare, t1[0] - self._mark[0], t2[0] - t1[0]))
            self.wall[-1].append((n_bare, t1[1] - self._mark[1], t2[1] - t1[1]))
        self._mark = t2


def paired_epochs(cfg: DictConfig, epochs: int, run_dir: Path) -> PairedTimer:
    """Our training path (train.build + train.build_trainer, as train.run does) for `epochs` epochs, a bare step
    after each of its steps."""
    bare = BareLoop(cfg)
    L.seed_everything(cfg.seed, workers=True)
    tcfg, extras = _trainer_cfg(cfg)
    tcfg.update(max_epochs=epochs, limit_val_batches=1, num_sanity_val_steps=0)
    dm, module = build(cfg, extras=extras)
    gpu_data.apply(dm, extras)
    timer = PairedTimer(bare)
    trainer, _ = build_trainer(tcfg, run_dir, [], [timer])
    trainer.fit(module, datamodule=dm)
    return timer


def step_times(epochs: list[list[tuple[int, float, float]]], batch_size: int, warmup: int = 1) -> dict[str, list]:
    """Seconds of each path's full-batch steps but an epoch's first (it also pays for the epoch's start), after
    `warmup` epochs."""
    kept = [s for steps in epochs[warmup:] for s in steps[1:] if s[0] == batch_size]
    return {"lightning": [s[1] for s in kept], "bare": [s[2] for s in kept]}


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def measure(cfg: DictConfig, epochs: int, repeats: int, run_dir: Path) -> tuple[dict[str, list[float]], list[dict]]:
    """Paired step times of both paths (CPU or GPU clock, and wall clock) over `repeats` rounds (fresh models,
    loaders and Trainer each), and per round each path's median step and their ratio (bare / Lightning)."""
    bs = int(cfg.data.batch_size)
    steps: dict[str, list[float]] = {"lightning": [], "bare": [], "lightning_wall": [], "bare_wall": []}
    rounds = []
    for i in range(repeats):
        timer = paired_epochs(cfg, 1 + epochs, run_dir / str(i))
        clock, wall = step_times(timer.epochs, bs), step_times(timer.wall, bs)
        if not clock["bare"]:
            raise ValueError(f"{cfg.stage.name}: no full {bs}-image step to time after an epoch's first: raise "
                             "data.n_train or lower data.batch_size")
        for path in ("lightning", "bare"):
            steps[path] += clock[path]
            steps[f"{path}_wall"] += wall[path]
        rounds.append({"ratio": round(_median(clock["bare"]) / _median(clock["lightning"]), 4),
                       "lightning_ms": round(1000 * _median(clock["lightning"]), 3),
                       "bare_ms": round(1000 * _median(clock["bare"]), 3)})
    return steps, rounds


def bench_overhead(profile: str, repeats: int, extra: list[str], data_root: str) -> float:
    """Lightning's own cost per optimizer step, in seconds: LeNet on batches of 2 images, where the arithmetic is
    small and the loop's bookkeeping (hooks, closures, callbacks) shows: median step, Lightning minus bare."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(["+stage=lenet", f"profile={profile}", "logger=none", f"run_dir={tmp}/o",
                       f"data.root={data_root}", "trainer=cpu", *extra, "data.batch_size=2", "data.n_train=600"])
        steps, _ = measure(cfg, 1, repeats, Path(tmp))
    return _median(steps["lightning"]) - _median(steps["bare"])


def bench_training(stages, variants: dict[str, list[str]], profile: str, epochs: int, repeats: int,
                   extra: list[str], data_root: str, overhead: float | None = None,
                   between: Callable[[], None] = lambda: None) -> list[dict]:
    """One row per (stage, variant); `between` runs after each (the renderer's spread runs)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            for name, overrides in variants.items():
                cfg = compose([f"+stage={stage}", f"profile={profile}", "logger=none", f"run_dir={tmp}/{stage}",
                               f"data.root={data_root}", *overrides, *extra])
                bs = int(cfg.data.batch_size)
                steps, rounds = measure(cfg, epochs, repeats, Path(tmp) / stage / name)
                # Each path's rate from the median of its per-round medians, and the ratio as the median of the
                # rounds' ratios: rounds run at different speeds, and only within a round are the paths paired.
                rate = {k: bs / _median([r[f"{k}_ms"] / 1000 for r in rounds]) for k in ("lightning", "bare")}
                rate.update({f"{k}_wall": bs / _median(steps[f"{k}_wall"]) for k in ("lightning", "bare")})
                mean = {k: bs * len(steps[k]) / sum(steps[k]) for k in ("lightning", "bare")}
                row = {"stage": stage, "model": cfg.model._target_.rsplit(".", 1)[-1], "variant": name,
                       "image_size": int(cfg.data.image_size), "batch_size": bs, "steps_timed": len(steps["bare"]),
                       "lightning_img_s": round(rate["lightning"], 1), "bare_img_s": round(rate["bare"], 1),
                       "ratio": round(_median([r["ratio"] for r in rounds]), 3),
                       "ratio_of_means": round(mean["lightning"] / mean["bare"], 3), "per_round": rounds,
                       "lightning_wall_img_s": round(rate["lightning_wall"], 1),
                       "bare_wall_img_s": round(rate["bare_wall"], 1)}
                if overhead is not None:  # what the bare step plus Lightning's own per-step cost would give
                    bare_step = bs / rate["bare"]
                    row["ratio_from_overhead"] = round(bare_step / (bare_step + overhead), 3)
                console.print(row)
                rows.append(row)
                between()
    return rows


# -- report -----------------------------------------------------------------------------------------------
def _rounds(rounds: list[dict]) -> str:
    return ", ".join(f"{x['ratio']:.3f} ({x['lightning_ms']:.2f}/{x['bare_ms']:.2f})" for x in rounds)


def markdown(result: dict) -> str:
    lines = [f"# Benchmark: {result['machine']}", "",
             f"{result['date']}, host {result['host']}, torch {result['torch']}, {result['threads']} torch threads, "
             f"load average {result['load_before']} before / {result['load_after']} after "
             "(other processes on the machine slow both paths alike; compare ratios, not absolute figures). "
             "CPU rates are per second of this process's CPU time (robust to other jobs), GPU rates per wall "
             "second; the wall-clock CPU rates are in the JSON.", "",
             f"## Renderer (one core, {result['render_repeats']} runs of {result['render_n']} images, spread over the "
             "bench: before, between and after the training measurements)", "",
             "| size | images/s (best run) | median | every run |", "|---|---|---|---|"]
    lines += [f"| {s} px | {r:,.0f} | {_median(result['renderer_runs'][s]):,.0f} | "
              f"{', '.join(f'{x:,.0f}' for x in result['renderer_runs'][s])} |" for s, r in result["renderer"].items()]
    lines += ["", f"## Training (profile {result['profile']} {' '.join(result['overrides'])}, "
              f"{result['repeats']} rounds, {result['epochs']} timed epochs each after a warm-up, the paths "
              "stepping in turn; img/s = batch size / median step)", "",
              "| stage | model | variant | px | batch | steps timed (each path) | Lightning img/s | bare img/s | "
              "ratio | ratio of means | per round: ratio (Lightning / bare ms) | ratio from overhead |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['model']} | {r['variant']} | {r['image_size']} | {r['batch_size']} | "
              f"{r['steps_timed']} | {r['lightning_img_s']:,.0f} | {r['bare_img_s']:,.0f} | {r['ratio']:.3f} | "
              f"{r['ratio_of_means']:.3f} | {_rounds(r['per_round'])} | "
              f"{r.get('ratio_from_overhead', '-')} |" for r in result["training"]]
    if "lightning_overhead_ms_per_step" in result:
        lines += ["", f"Lightning's own cost per optimizer step: {result['lightning_overhead_ms_per_step']:.2f} ms "
                  "(LeNet on batches of 2 images, median step, Lightning minus bare). Ratio from overhead = bare "
                  "step / (bare step + that cost): the ratio the two paths would show if nothing but Lightning's "
                  "bookkeeping told them apart."]
    return "\n".join(lines) + "\n"


def table(result: dict) -> Table:
    t = Table(title=f"training throughput, {result['machine']}")
    for col in ("stage", "model", "variant", "Lightning img/s", "bare img/s", "ratio"):
        t.add_column(col, justify="right" if "/s" in col or col == "ratio" else "left")
    for r in result["training"]:
        t.add_row(r["stage"], r["model"], r["variant"], f"{r['lightning_img_s']:,.0f}", f"{r['bare_img_s']:,.0f}",
                  f"{r['ratio']:.3f}")
    return t


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m pedestrian.bench", description=__doc__.split("\n")[0])
    gpu = torch.cuda.is_available()
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated stage names")
    p.add_argument("--profile", default="full" if gpu else "cpu", help="data/model scale (conf/profile)")
    p.add_argument("--variants", default=None, help=f"comma-separated, of {list(GPU_VARIANTS if gpu else CPU_VARIANTS)}"
                   " (default: all on a GPU, fp32 on the CPU)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per round (after one warm-up epoch)")
    p.add_argument("--repeats", type=int, default=4, help="rounds (fresh models and Trainer each)")
    p.add_argument("--overhead-repeats", type=int, default=4,
                   help="CPU: rounds measuring Lightning's own cost per step on tiny batches (0: skip)")
    p.add_argument("--render-n", type=int, default=1000, help="images per renderer measurement (0: skip)")
    p.add_argument("--render-repeats", type=int, default=5,
                   help="renderer measurements per size, spread over the bench (best reported)")
    p.add_argument("--threads", type=int, default=0 if gpu else 1,
                   help="torch CPU threads; default 1 on the CPU (per-core figures, stable on a shared machine), "
                        "0 = torch's default")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", default=None,
                   help="folder for bench-<machine>-<date>.json and .md (e.g. experiments/bench)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. data.n_train=2000")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    table_of = GPU_VARIANTS if gpu else CPU_VARIANTS
    names = a.variants.split(",") if a.variants else (list(table_of) if gpu else ["fp32"])
    unknown = [n for n in names if n not in table_of]
    if unknown:
        p.error(f"--variants {unknown}: not one of {list(table_of)}")

    result = {"machine": machine(), "host": socket.gethostname(), "platform": platform.platform(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_before": [round(x, 2) for x in os.getloadavg()],
              "profile": a.profile, "epochs": a.epochs, "repeats": a.repeats, "overrides": a.overrides}
    renderer = RendererRuns((32, 64), a.render_n, max(1, a.render_repeats))
    renderer.sample()
    overhead = None
    if a.overhead_repeats and not gpu:
        overhead = bench_overhead(a.profile, a.overhead_repeats, a.overrides, a.data_root)
        result["lightning_overhead_ms_per_step"] = round(1000 * overhead, 3)
        console.print(f"Lightning's own cost per step (LeNet, batches of 2): {1000 * overhead:.2f} ms")
        renderer.sample()
    result["training"] = bench_training(a.stages.split(","), {n: table_of[n] for n in names}, a.profile, a.epochs,
                                        a.repeats, a.overrides, a.data_root, overhead, between=renderer.sample)
    runs = renderer.finish()
    result.update(render_n=a.render_n, render_repeats=max(1, a.render_repeats), renderer_runs=runs,
                  renderer={size: max(r) for size, r in runs.items()})
    for size, r in runs.items():
        console.print(f"renderer {size} px: {max(r):,.0f} images/s on one core (best of {len(r)}; median "
                      f"{_median(r):,.0f})")
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    console.print(table(result))
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "bench-" + "".join(c if c.isalnum() else "-" for c in result["machine"]).strip("-")
        stem = f"{stem}-{time.strftime('%Y%m%d-%H%M')}"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
        (out / f"{stem}.md").write_text(markdown(result))
        console.print(f"wrote {out / stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
