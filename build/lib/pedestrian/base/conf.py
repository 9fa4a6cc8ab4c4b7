"""The one config directory and Hydra composition, outside a Hydra run (the ladder, the doctor, the bench)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose(overrides: list[str], config_name: str = "config", return_hydra_config: bool = False) -> DictConfig:
    """The config `python -m pedestrian OVERRIDES...` would run with (Hydra imported here: a plain import of
    this module stays cheap)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


def compose_stage(stage: str, overrides: list[str]) -> tuple[DictConfig, dict]:
    """One stage as `python -m pedestrian +stage=STAGE OVERRIDES...` composes it: the config (without the hydra
    node) and the group choices (which profile, model, ... were picked)."""
    cfg = compose([f"+stage={stage}", *overrides], return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices
