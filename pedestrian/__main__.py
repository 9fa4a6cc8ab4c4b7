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
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from pedestrian.config import ConfigError
    from pedestrian.train import run

    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg, resolve=False))
    try:
        result = run(cfg)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        run_dir = Path(str(cfg.run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "failed.json").write_text(json.dumps(
            {"stage": str(cfg.stage.name), "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()},
            indent=2))
        raise
    return float(result["errors"]["train_val"])  # what a sweep minimises


if __name__ == "__main__":
    main()
