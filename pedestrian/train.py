"""Run one stage: data, model, loggers, trainer; fit; evaluate on the four sets; decompose; log; write JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from pedestrian import fault
from pedestrian import loggers as loggers_lib
from pedestrian.config import validate
from pedestrian.data import gpu_data
from pedestrian.data.datamodule import EVAL_SPLITS, ArrayDataModule
from pedestrian.evaluate import bias_variance, error_analysis
from pedestrian.module import Classifier

console = Console()


def machine() -> str:
    """The machine a figure came from, as reports print it."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def _trainer_cfg(cfg: DictConfig) -> tuple[dict, dict]:
    """Split trainer config into Trainer kwargs and our extras; fall back to CPU when no GPU is present."""
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    extras = tcfg.pop("extras", {}) or {}
    for key in ("gradient_clip_val", "gradient_clip_algorithm"):  # applied by our training step (module.py)
        extras[key] = tcfg.pop(key, None)
    if tcfg.get("accelerator") == "gpu" and not torch.cuda.is_available():
        console.print("[yellow]trainer=gpu asked for a GPU but torch sees none: running on the CPU "
                      "(fp32, no channels_last). The code path is the same.[/yellow]")
        tcfg.update(accelerator="cpu", precision="32-true", benchmark=False)
        extras["channels_last"] = False
    return tcfg, extras


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Start from another run's weights (fine-tuning): only the model's tensors, loaded safely."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"stage.init_from={str(path)!r}: no such checkpoint")
    state = fault.load_checkpoint(path)  # verified (a truncated file is reported), weights only
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
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


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
        from pedestrian.doctor import bugs

        bugs.inject(cfg.bug, module, dm)
        console.print(f"[bold red]bug injected on purpose: {cfg.bug.name}[/bold red] (pedestrian/doctor/bugs.py)")
    return dm, module


def run(cfg: DictConfig, callbacks: list | tuple = ()) -> dict:
    """Train and evaluate one stage; returns (and writes to run_dir/results.json) the lecture's table.
    `callbacks`: extra Lightning callbacks for this run's Trainer."""
    validate(cfg)
    run_dir = fault.resolve_run_dir(cfg)  # resume=auto may continue an interrupted run's folder
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


class StepLossBar(RichProgressBar):
    """Lightning's rich progress bar, plus the training loss our module logs every log_every_n_steps."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if getattr(pl_module, "step_loss", None) is not None:
            metrics["train/loss_step"] = f"{pl_module.step_loss:.3f}"
        return metrics


class BestAndLast(ModelCheckpoint):
    """best.ckpt on the monitored error and last.ckpt after every epoch, both at the hook Lightning saves at.
    (Lightning 2.6 writes last.ckpt only when it also saved a best checkpoint in that step: a resume would redo
    every epoch since the last improvement.)"""

    @property
    def state_key(self) -> str:  # Lightning rebuilds it (a dict's repr) at each of ~10 hook calls a step
        if "_state_key" not in self.__dict__:
            self._state_key = super().state_key
        return self._state_key

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_anyway(trainer)

    def _save_last_anyway(self, trainer: L.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # (skipped when a best was saved in this step)
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def build_trainer(tcfg: dict, run_dir: Path, loggers: list, callbacks: list | tuple = (),
                  monitor: str = "train_val/error") -> tuple[L.Trainer, ModelCheckpoint]:
    """The Trainer every run uses: best/last checkpoints written atomically and verified on load, a clean stop
    on SIGTERM/Ctrl-C, the NaN guard, and a progress bar only on a terminal (never one line per step in logs)."""
    ckpt = BestAndLast(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min",
                       save_last=True, auto_insert_metric_name=False)
    tty = sys.stdout.isatty()
    callbacks = [ckpt, *fault.callbacks(), *callbacks]
    if loggers:  # (LearningRateMonitor refuses a Trainer without a logger)
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if tty:
        callbacks.append(StepLossBar())
    trainer: L.Trainer = instantiate({"enable_progress_bar": tty, **tcfg}, logger=loggers or False,
                                     callbacks=callbacks, plugins=[fault.SafeCheckpointIO()],
                                     default_root_dir=str(run_dir), _convert_="all")
    return trainer, ckpt


def _fit_and_evaluate(cfg: DictConfig, trainer: L.Trainer, module: Classifier, dm: ArrayDataModule,
                      ckpt: ModelCheckpoint, run_dir: Path, start: float) -> dict:
    resume_from = fault.resume_checkpoint(cfg, run_dir)
    fault.mark_running(run_dir)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
    finally:
        fault.mark_stopped(run_dir)

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
