"""Where a run continues: resuming keeps the same run folder and W&B run; the checkpoint carries the RNG state
and the data loader's position in its epoch, so on the CPU a resumed run ends bit-identical to an uninterrupted one.

`resume`: false (fresh), true (continue run_dir's last.ckpt if there is one), auto (also look for the latest
interrupted run of the same command next to this one and continue it there).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from pedestrian.base.errors import ConfigError
from pedestrian.core.checkpoints import LAST, verify_checkpoint

console = Console(stderr=True, soft_wrap=True)  # paths in messages stay whole (tests and users grep them)
RESUME_MODES = (False, True, "auto")
RUN_DIR_ENV = "PEDESTRIAN_RUN_DIR"  # rank 0's resume=auto choice, for the DDP processes it launches


def _resume_mode(cfg: DictConfig):
    mode = cfg.get("resume", False)
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode!r}: must be one of false, true, auto")
    return mode


def _incomplete(run_dir: Path) -> bool:
    """Interrupted (preempted, killed): a last checkpoint but neither results nor a recorded failure."""
    return ((run_dir / "checkpoints" / LAST).is_file() and not (run_dir / "results.json").exists()
            and not (run_dir / "failed.json").exists())


def _held_by_live_process(run_dir: Path) -> bool:
    lock = run_dir / ".running"
    try:
        host, pid = lock.read_text().split()
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError):
        return False


def _command(run_dir: Path) -> list[str] | None:
    """The command-line overrides a Hydra run was started with, without the resume flag."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return sorted(o for o in OmegaConf.load(path) if not str(o).startswith("resume="))


def resolve_run_dir(cfg: DictConfig) -> Path:
    """The folder this run writes to. resume=auto: when cfg.run_dir holds nothing to continue, the latest
    interrupted sibling run started with the same command (its W&B id and checkpoints live there)."""
    run_dir, mode = Path(cfg.run_dir), _resume_mode(cfg)
    if not _rank_zero():  # DDP children follow rank 0's choice (Lightning's launcher passes our environment on);
        return Path(os.environ.get(RUN_DIR_ENV, run_dir))  # torchrun/SLURM ranks need hydra.run.dir given
    os.environ.pop(RUN_DIR_ENV, None)  # (a multirun's earlier job may have set it)
    if mode != "auto" or _incomplete(run_dir):
        return run_dir
    try:
        from hydra.core.hydra_config import HydraConfig

        mine = sorted(o for o in HydraConfig.get().overrides.task if not o.startswith("resume="))
    except ValueError:  # not under the Hydra CLI (an in-process run(cfg)): no command to compare
        return run_dir
    if not run_dir.parent.is_dir():
        return run_dir
    candidates = [d for d in run_dir.parent.iterdir() if d.is_dir() and d != run_dir and _incomplete(d)
                  and _command(d) == mine and not _held_by_live_process(d)]
    if not candidates:
        return run_dir
    found = max(candidates, key=lambda d: (d / "checkpoints" / LAST).stat().st_mtime)
    console.print(f"[bold]resume=auto[/bold]: continuing the interrupted run {found} (same command); "
                  f"{run_dir} keeps only Hydra's logs of this start.")
    os.environ[RUN_DIR_ENV] = str(found)
    return found


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """run_dir's last checkpoint when resuming is asked for and there is one (verified before use)."""
    if not _resume_mode(cfg):
        return None
    last = run_dir / "checkpoints" / LAST
    if not last.is_file():
        console.print(f"resume={cfg.resume}: no checkpoint in {run_dir / 'checkpoints'}, starting from scratch")
        return None
    verify_checkpoint(last)
    console.print(f"resuming from {last}")
    return last


def _rank_zero() -> bool:
    """Before the Trainer exists: rank 0 under torchrun, SLURM and Lightning's own launcher alike."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def mark_running(run_dir: Path) -> None:
    """So resume=auto never picks a run that another live process is still writing."""
    if _rank_zero():
        (run_dir / ".running").write_text(f"{socket.gethostname()} {os.getpid()}")


def mark_stopped(run_dir: Path) -> None:
    if _rank_zero():
        (run_dir / ".running").unlink(missing_ok=True)
