"""Shared fixtures: one scene cache for the whole session, and a helper that runs the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Rendered scenes are cached here once per test session (content-keyed, so tests can share it)."""
    return tmp_path_factory.mktemp("scene_cache")


def cli(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None,
        module: str = "pedestrian") -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a real subprocess; W&B offline, no prompts."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_SERVICE")}
    # (WANDB_SERVICE: an in-process test's W&B service; a CLI run starts its own unless a test passes it)
    full_env = {**inherited, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
                "HYDRA_FULL_ERROR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def compose(*overrides: str):
    """The real Hydra composition, as `python -m pedestrian` does it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
