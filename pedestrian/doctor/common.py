"""What every doctor check shares: the result it returns and the context it runs in (the real config,
datamodule and LightningModule, built exactly as a training run builds them)."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class CheckResult:
    check: str
    status: str                      # pass | warn | fail | skip
    summary: str                     # one line: what was measured
    diagnosis: str | None = None     # a short code when it is not a pass, e.g. "goes_up", "not_normalized"
    explanation: str = ""            # what was seen and why it matters
    fixes: list[str] = field(default_factory=list)   # the lecture's suggested fixes, most likely first
    details: dict = field(default_factory=dict)      # the numbers behind it (JSON-able)
    files: dict[str, str] = field(default_factory=dict)  # images it wrote
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """One stage's real objects. Checks that train or change state work on `fresh_module()` copies."""

    cfg: DictConfig
    dm: object                       # an ArrayDataModule, set up
    module: object                   # the Classifier, with any `+bug` injected by train.build
    out_dir: Path
    trainer_kwargs: dict
    device: torch.device
    _batch: tuple | None = None

    @property
    def settings(self) -> DictConfig:
        return self.cfg.doctor

    def fresh_module(self):
        return copy.deepcopy(self.module).to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A real training batch exactly as the training step receives it: the datamodule's train loader
        (augmentation included), then its on_after_batch_transfer (the one place inputs are normalised)."""
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


def quiet_lightning() -> None:
    """The doctor prints a report, not Lightning's banners and data-loader advice."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for msg in (".*does not have many workers.*", ".*smaller than the logging interval.*", ".*LeafSpec.*",
                ".*no `val_dataloader`.*"):
        warnings.filterwarnings("ignore", message=msg)
