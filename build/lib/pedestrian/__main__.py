"""`python -m pedestrian +stage=NAME [overrides]`: compose the config, validate it, run the stage.

Under `-m` (a Hydra multirun) a failing job is recorded as failed (failed.json in its folder, its W&B run
marked failed) and the sweep goes on; Hydra exits non-zero at the end.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pedestrian.base.conf import CONF_DIR
from pedestrian.base.errors import ConfigError


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from pedestrian.core.train import run  # here: --help and a bad override need no Lightning import

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun and not any(o.split("=")[0].lstrip("+~") == "group" for o in hc.overrides.task):
        cfg.group = Path(hc.sweep.dir).name  # one W&B group per sweep (${now:...} would differ from job to job)
    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg, resolve=False))
    try:
        result = run(cfg)
    except Exception as e:
        if isinstance(e, ConfigError) and not multirun:
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        run_dir = Path(str(cfg.run_dir))  # a sweep's bad value fails its own job only, recorded like a crash
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "failed.json").write_text(json.dumps(
            {"stage": str(cfg.stage.name), "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()},
            indent=2))
        raise
    return float(result["errors"]["train_val"])  # what a sweep minimises


if __name__ == "__main__":
    main()
