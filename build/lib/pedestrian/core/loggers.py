"""Experiment loggers: W&B (offline by default, never prompts) and a CSV file beside every run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf


def wandb_mode(mode: str) -> str:
    """'auto' -> online only when the user has a key; anything else is taken as given."""
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_run_id(run_dir: Path) -> str:
    """One W&B run id per run folder, kept on disk so a resumed run continues the same W&B run."""
    path = run_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]
    path.write_text(run_id)
    return run_id


def build(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    lcfg = cfg.logger
    if lcfg.get("csv"):
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    wcfg = lcfg.get("wandb")
    if wcfg and wandb_mode(wcfg.mode) != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        loggers.append(WandbLogger(
            project=wcfg.project, entity=wcfg.get("entity"), name=wcfg.get("name") or cfg.stage.name,
            job_type=wcfg.get("job_type") or cfg.stage.name,  # a search's trials: its own name, job_type=trial
            # An absolute save_dir: a W&B service inherited from a parent process (WANDB_SERVICE) has its own
            # working directory and would put a relative path's files somewhere else.
            group=str(cfg.group), tags=[cfg.stage.name, *cfg.get("tags", [])], save_dir=str(run_dir.resolve()),
            mode=wandb_mode(wcfg.mode), id=wandb_run_id(run_dir), resume="allow",
            log_model=bool(wcfg.log_model), config=OmegaConf.to_container(cfg, resolve=True),
        ))
    return loggers


def wandb_logger(loggers: list[Logger]) -> WandbLogger | None:
    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)
