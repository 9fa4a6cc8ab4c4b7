"""The doctor on one of this project's stages: `python -m pedestrian.doctor +stage=NAME`.

The stage is built exactly as a training run builds it (pedestrian.core.train.build: the datamodule, the
LightningModule, any `+bug`), and every training step the checks take is the real one, through Lightning with
the stage's Trainer settings.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pedestrian.doctor.common import Subject, dropout_off, modes_during, pick, quiet_lightning, run_checks


class _Batches(L.LightningDataModule):
    """Given batches, in order, through the real datamodule's on_after_batch_transfer (normalisation)."""

    def __init__(self, dm, batches: Sequence) -> None:
        super().__init__()
        self.dm, self.batches = dm, list(batches)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.dm.on_after_batch_transfer(batch, dataloader_idx)


class _StepHooks(L.Callback):
    def __init__(self, start: Callable | None, end: Callable | None) -> None:
        self.start, self.end = start, end

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start:
            self.start(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.end and self.end(batch_idx, float(loss)):
            trainer.should_stop = True


class StageSubject(Subject):
    kind = "stage"

    def __init__(self, cfg: DictConfig, dm, module, out_dir: Path, trainer_kwargs: dict,
                 device: torch.device) -> None:
        self.cfg, self.dm, self.module, self.out_dir = cfg, dm, module, out_dir
        self.trainer_kwargs, self.device = trainer_kwargs, device
        self.name, self.settings, self.seed = str(cfg.stage.name), cfg.doctor, int(cfg.seed)
        self.num_classes = dm.num_classes
        self.split = str(cfg.doctor.modes.split)
        self.pretrained = bool(cfg.stage.get("init_from"))
        self._batch: tuple | None = None

    def reseed(self) -> None:
        L.seed_everything(self.seed, workers=True, verbose=False)  # also the training sampler's seed

    def fresh(self) -> nn.Module:
        return copy.deepcopy(self.module).to(self.device)

    def batch(self) -> tuple[Tensor, Tensor]:
        """The datamodule's train loader (augmentation included), then its on_after_batch_transfer (the one
        place inputs are normalised)."""
        if self._batch is None:
            n, xs, ys = int(self.settings.batch_size), [], []
            for x, y, idx in self.dm.train_dataloader():
                x, y, _ = self.dm.on_after_batch_transfer((x.to(self.device), y.to(self.device), idx), 0)
                xs.append(x)
                ys.append(y)
                if sum(len(t) for t in ys) >= n:
                    break
            self._batch = torch.cat(xs)[:n], torch.cat(ys)[:n]
        return self._batch

    def small_batch(self, k: int):
        from pedestrian.data.datamodule import ArrayDataset

        images, labels, _ = self.dm.train_images_labels()
        return ArrayDataset(images, labels).__getitems__(pick(labels, k, self.seed))

    def training_batches(self, n: int) -> list:
        out = []
        for b in self.dm.train_dataloader():
            out.append(b)
            if len(out) == n:
                break
        return out

    def labels(self, batch) -> Tensor:
        return batch[1]

    def model_inputs(self, batch) -> tuple[Tensor, Tensor]:
        x, y, idx = batch
        return self.dm.on_after_batch_transfer((x.to(self.device), y.to(self.device), idx), 0)[:2]

    def trainer(self, **overrides) -> L.Trainer:
        """The stage's own Trainer settings (accelerator, precision, clipping, determinism), quiet and stateless."""
        kw = {k: v for k, v in self.trainer_kwargs.items()
              if k not in ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches")}
        kw.update(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0, callbacks=[], devices=1, num_nodes=1)  # one process: not DDP
        kw.pop("strategy", None)
        kw.pop("sync_batchnorm", None)
        kw.update(overrides)
        return instantiate(kw, _convert_="all")

    def train_steps(self, module, batches, plain=False, on_step_start=None, on_step_end=None) -> None:
        if plain:
            module.optim_cfg.update(weight_decay=0.0, scheduler="none")
            dropout_off(module)
        # A caller that asked for deterministic kernels (training_step) keeps them: the Trainer would reset them.
        keep = {"deterministic": "warn"} if torch.are_deterministic_algorithms_enabled() else {}
        trainer = self.trainer(max_epochs=1, max_steps=len(batches), limit_val_batches=0, log_every_n_steps=1,
                               callbacks=[_StepHooks(on_step_start, on_step_end)], **keep)
        trainer.fit(module, datamodule=_Batches(self.dm, batches))

    def lr(self, module) -> float:
        return float(module.optim_cfg["lr"])

    def train_labels(self) -> np.ndarray:
        return self.dm.train_images_labels()[1]

    def samples(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels, _ = self.dm.train_images_labels()
        return images[:n].reshape(min(n, len(images)), -1).astype(np.float32), np.asarray(labels[:n])

    def norm_stats(self) -> tuple[Tensor, Tensor]:
        return self.dm.mean.detach().cpu().float(), self.dm.std.detach().cpu().float()

    def class_names(self) -> list[str]:
        dm = self.dm  # a folder's class map, else the project's convention (1 = pedestrian)
        names = getattr(dm, "class_names", None) or getattr(getattr(dm, "class_map", None), "classes", None)
        if names:
            return [str(n) for n in names]
        return ["no pedestrian", "pedestrian"] if self.num_classes == 2 else super().class_names()

    def eval_inputs(self, n: int) -> Tensor:
        ds = self.dm.eval_dataset(self.split)
        x = torch.stack([ds[i][0] for i in range(min(n, len(ds)))])
        return self.dm.normalize(x.to(self.device))

    def predict(self, module) -> tuple[np.ndarray, list[str]]:
        """pedestrian.core.train.predict, the evaluation every run uses: P(class 1) of each image of the split."""
        from pedestrian.core.train import predict

        return modes_during(module.model, lambda: predict(module, self.dm, self.split))

    def score(self, probs: np.ndarray) -> np.ndarray:
        return probs[:, 1]  # what predict() returns

    def modes_note(self) -> str:
        return f"predict() on {self.split}"

    # -- the known-results check: baselines on the same data, a short training by the real path -------------
    def baseline_data(self, n_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train inputs, labels, held-out inputs, labels) for the baselines: the train-val set is held out."""
        train_x, train_y, _ = self.dm.train_images_labels()
        held = self.dm.eval_dataset("train_val")
        return train_x[:n_train], train_y[:n_train], held.images, held.labels

    def held_out_score(self, module) -> dict:
        from pedestrian.doctor.known_results import held_out_score

        return held_out_score(module, self.dm)

    def short_training(self, max_epochs: int, max_samples: int | None, good) -> tuple[list[dict], nn.Module]:
        module = self.fresh()
        return self.train_until(module, self.dm, max_epochs, self.held_out_score, good, max_samples), module

    def train_until(self, module, dm, max_epochs: int, score, good, max_samples: int | None = None) -> list:
        """Fit `module` on `dm` with the stage's Trainer settings, at most max_epochs (and max_samples images per
        epoch), until good(score(module)). Returns the score after each epoch."""
        import math

        n_train = len(dm.train_images_labels()[1])
        batches = math.ceil(min(n_train, max_samples or n_train) / dm.batch_size)
        cb = _ScoreEachEpoch(score, good)
        self.trainer(max_epochs=max_epochs, limit_train_batches=batches, limit_val_batches=0,
                     callbacks=[cb]).fit(module, datamodule=dm)
        return cb.scores


class _ScoreEachEpoch(L.Callback):
    """After every epoch: score(module) on held-out data; stop as soon as good(score) (a clean stage passes in an
    epoch or two, a failing one gets the whole budget)."""

    def __init__(self, score, good) -> None:
        self.score, self.good, self.scores = score, good, []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        was_training = pl_module.training
        self.scores.append(self.score(pl_module))
        pl_module.train(was_training)
        if self.good(self.scores[-1]):
            trainer.should_stop = True


def subject_of(cfg: DictConfig) -> StageSubject:
    """Build the stage as a run does. Raises ConfigError on a config that cannot work."""
    from pedestrian.base.errors import ConfigError
    from pedestrian.core.config import validate
    from pedestrian.core.train import build
    from pedestrian.core.trainer import _trainer_cfg
    from pedestrian.doctor.common import CHECKS

    validate(cfg)
    unknown = [c for c in cfg.doctor.checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"doctor.checks={list(cfg.doctor.checks)}: {unknown} not among {list(CHECKS)}")
    quiet_lightning()
    out_dir = Path(str(cfg.doctor.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    tcfg, extras = _trainer_cfg(cfg)
    if extras.get("threads"):
        torch.set_num_threads(int(extras["threads"]))
    gpu = tcfg.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm, module = build(cfg, extras=extras)
    device = torch.device("cuda" if gpu else "cpu")
    return StageSubject(cfg, dm, module.to(device), out_dir, tcfg, device)


def diagnose_stage(cfg: DictConfig, console=None):
    """Build the stage, then run cfg.doctor.checks in the lecture's order; returns a Report."""
    from pedestrian.doctor.report import Report

    t0 = time.time()
    subject = subject_of(cfg)
    results = run_checks(subject, list(cfg.doctor.checks), console)
    return Report.of_stage(cfg, results, time.time() - t0)
