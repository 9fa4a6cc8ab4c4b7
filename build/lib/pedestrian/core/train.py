"""Run one stage: data, model, loggers, trainer; fit; evaluate on the four sets; decompose; log; write JSON."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from pedestrian.base.files import atomic_write, write_json
from pedestrian.base.logs import filter_noise
from pedestrian.core import loggers as loggers_lib
from pedestrian.core.checkpoints import load_checkpoint
from pedestrian.core.config import validate
from pedestrian.core.module import Classifier
from pedestrian.core.resume import mark_running, mark_stopped, resolve_run_dir, resume_checkpoint
from pedestrian.core.trainer import _trainer_cfg, build_trainer
from pedestrian.data import gpu_data
from pedestrian.data.datamodule import EVAL_SPLITS, ArrayDataModule
from pedestrian.evaluate import bias_variance, error_analysis

console = Console()


def machine() -> str:
    """The machine a figure came from, as reports print it."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Start from another run's weights (fine-tuning): only the model's tensors, loaded safely."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"stage.init_from={str(path)!r}: no such checkpoint")
    state = load_checkpoint(path)  # verified (a truncated file is reported), weights only
    state = state.get("state_dict", state)
    state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")} or state
    model.load_state_dict(state)


@torch.no_grad()
def predict(module: Classifier, dm: ArrayDataModule, split: str) -> np.ndarray:
    """P(pedestrian) for every image of an evaluation split, in order, in eval mode."""
    module.eval()
    out = []
    for x, _, _ in dm.eval_dataloader(split):
        x = dm.normalize(x.to(module.device))
        out.append(torch.softmax(module(x).float(), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy()


def evaluate(module: Classifier, dm: ArrayDataModule, goal: float,
             device: torch.device | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Errors on the four sets from one pass each, the decomposition, and the raw predictions. `device`: where
    to run (Lightning hands the model back on the CPU after fit; on a GPU box that made the ResNet-18 evaluation
    of the full profile take minutes)."""
    if device is not None:
        module.to(device)
    preds, errors = {}, {}
    for split in EVAL_SPLITS:
        ds = dm.eval_dataset(split)
        p = predict(module, dm, split)
        preds[split] = p
        errors[split] = float(((p >= 0.5).astype(np.int64) != ds.labels).mean())
    return bias_variance.summarize(errors, goal), preds


def save_predictions(path: Path, dm: ArrayDataModule, preds: dict[str, np.ndarray]) -> None:
    """predictions.npz: per split the probabilities, labels and every attribute (for error analysis)."""
    arrays = {}
    for split, p in preds.items():
        arr = dm.splits[split]
        arrays[f"{split}/prob"] = p
        for name, col in arr.attrs.items():
            arrays[f"{split}/{name}"] = np.asarray(col)[: len(p)]
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def log_to_wandb(wandb_logger, summary: dict, dm: ArrayDataModule, preds: dict[str, np.ndarray], n_images: int) -> None:
    """Decomposition in the run summary, misclassified validation images (with attributes) as a table."""
    import wandb

    run = wandb_logger.experiment
    flat = {f"final/{k}_error": v for k, v in summary["errors"].items()}
    flat.update({f"final/{k}": v for k, v in summary["terms"].items()})
    flat.update({"final/goal_error": summary["goal"], "final/recommendation": summary["recommendation"]["term"]})
    run.summary.update(flat)
    attrs = list(dm.splits["test_val"].attrs)
    table = wandb.Table(columns=["split", "index", "image", "p_pedestrian", *attrs])
    for split in ("train_val", "test_val"):
        arr, p = dm.splits[split], preds[split]
        wrong = np.flatnonzero((p >= 0.5).astype(np.int64) != arr.attrs["label"][: len(p)])[: n_images // 2]
        for i in wrong:
            table.add_data(split, int(i), wandb.Image(arr.images[i]), float(p[i]),
                           *[float(arr.attrs[a][i]) for a in attrs])
    run.log({"misclassified": table})
    error_analysis.log_wandb(run, dm, preds)  # the slice table, with thumbnails of each slice's errors


def build(cfg: DictConfig, dm: ArrayDataModule | None = None,
          extras: dict | None = None) -> tuple[ArrayDataModule, Classifier]:
    """The datamodule (set up) and the LightningModule of a stage, as a run (and the doctor) uses them.
    A `+bug=NAME` (the doctor's bug zoo) is injected here, so training runs get it too."""
    extras = _trainer_cfg(cfg)[1] if extras is None else extras
    if dm is None:
        dm = instantiate(cfg.data)
        dm.setup()
    model = instantiate(cfg.model, in_channels=dm.in_channels, num_classes=dm.num_classes, image_size=dm.image_size)
    if cfg.stage.get("init_from"):
        load_weights(model, cfg.stage.init_from)
    if extras.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    module = Classifier(model, cfg.optim, channels_last=bool(extras.get("channels_last")),
                        grad_clip=extras.get("gradient_clip_val"),
                        grad_clip_algorithm=extras.get("gradient_clip_algorithm"))
    if extras.get("compile"):
        module.model = torch.compile(module.model)
    if cfg.get("bug"):
        from pedestrian.core import bugs

        bugs.inject(cfg.bug, module, dm)
        console.print(f"[bold red]bug injected on purpose: {cfg.bug.name}[/bold red] (pedestrian/core/bugs.py)")
    return dm, module


def run(cfg: DictConfig, callbacks: list | tuple = ()) -> dict:
    """Train and evaluate one stage; returns (and writes to run_dir/results.json) the lecture's table.
    `callbacks`: extra Lightning callbacks for this run's Trainer."""
    validate(cfg)
    filter_noise()
    run_dir = resolve_run_dir(cfg)  # resume=auto may continue an interrupted run's folder
    if str(run_dir) != str(cfg.run_dir):
        cfg.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    L.seed_everything(cfg.seed, workers=True)
    tcfg, extras = _trainer_cfg(cfg)
    if extras.get("threads"):
        torch.set_num_threads(int(extras["threads"]))

    dm, module = build(cfg, extras=extras)
    if hasattr(dm, "write_record"):  # folder data: skipped_files.json (never silent) + data.json (file per row)
        dm.write_record(run_dir)

    gpu_data.apply(dm, extras)  # loader workers; optionally the training set resident on the GPU
    loggers = loggers_lib.build(cfg, run_dir)
    monitor = f"{OmegaConf.select(cfg, 'stage.select_on', default='train_val')}/error"
    trainer, ckpt = build_trainer(tcfg, run_dir, loggers, callbacks, monitor)

    wl = loggers_lib.wandb_logger(loggers)
    try:
        result = _fit_and_evaluate(cfg, trainer, module, dm, ckpt, run_dir, start)
        if wl is not None and trainer.is_global_zero and not tcfg.get("fast_dev_run"):
            log_to_wandb(wl, result, dm, result.pop("_preds"), int(cfg.logger.wandb.max_error_images))
        result.pop("_preds", None)
    except BaseException:
        if wl is not None:
            import wandb

            wandb.finish(exit_code=1)  # the W&B run is recorded as failed, not left open
        raise
    if wl is not None:
        import wandb

        wandb.finish()  # so multiruns and ladders stay separate runs
    return result


def _fit_and_evaluate(cfg: DictConfig, trainer: L.Trainer, module: Classifier, dm: ArrayDataModule,
                      ckpt: ModelCheckpoint, run_dir: Path, start: float) -> dict:
    resume_from = resume_checkpoint(cfg, run_dir)
    mark_running(run_dir)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
    finally:
        mark_stopped(run_dir)

    best = ckpt.best_model_path
    if best:
        load_weights(module.model, best)
    summary, preds = evaluate(module, dm, float(cfg.goal_error), trainer.strategy.root_device)
    result = {
        "stage": cfg.stage.name, **summary,
        "n": {s: len(dm.eval_dataset(s)) for s in EVAL_SPLITS} | {"train_total": len(dm.train_images_labels()[1])},
        "epochs": int(trainer.current_epoch), "best_checkpoint": best or None,
        "wall_time_s": round(time.time() - start, 2), "machine": machine(), "seed": int(cfg.seed),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        write_json(run_dir / "results.json", result)
        save_predictions(run_dir / "predictions.npz", dm, preds)
        error_analysis.analyze_run(run_dir, console)  # error_analysis.json/.md: test-val vs train-val by slice
        title = f"{cfg.stage.name}: bias-variance (goal {cfg.goal_error:.1%})"
        console.print(bias_variance.table(summary, title=title))
        console.print(f"results: {run_dir / 'results.json'}")
    return result | {"_preds": preds}
