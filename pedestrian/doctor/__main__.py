"""`python -m pedestrian.doctor +stage=NAME [overrides]`: run the lecture's checks, print the report, write
doctor.json + images, log a W&B run; exit 0 when every check passes, 1 when one fails, 2 on a config error.

Same config as `python -m pedestrian` (conf/, +stage=, profile=, data=, +bug=, any key), plus the doctor group
(conf/doctor/default.yaml, e.g. doctor.out_dir=DIR, doctor.checks=[inputs,overfit_batch]).
`python -m pedestrian.doctor data ARGS...` runs the data checks for real data sets (pedestrian.doctor.data).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from pedestrian.base.conf import compose as compose_config

USAGE = __doc__


def compose(overrides: list[str]) -> DictConfig:
    """The same composition as `python -m pedestrian`, with the doctor group added and run_dir pointed at it."""
    return compose_config(["+doctor=default", "run_dir=${doctor.out_dir}", *overrides])


def run(cfg: DictConfig, console: Console | None = None) -> tuple[int, dict]:
    """Diagnose, report, save, log. Returns (exit code, the doctor.json payload)."""
    from pedestrian.doctor import diagnose, report

    console = console or Console()
    t0 = time.time()
    bug = f" with bug {cfg.bug.name} injected" if cfg.get("bug") else ""
    console.print(f"[bold]doctor[/bold]: stage {cfg.stage.name}{bug} -> {cfg.doctor.out_dir}")
    results = diagnose(cfg, console)
    out_dir = Path(str(cfg.doctor.out_dir))
    data = report.payload(results, cfg, time.time() - t0)
    report.render(results, cfg, console, out_dir)
    report.save(out_dir / "doctor.json", data)
    data["wandb_run"] = report.log_wandb(results, cfg, out_dir, data)
    console.print(f"doctor finished in {time.time() - t0:.0f}s")
    return data["exit_code"], data


def run_data(argv: list[str]) -> int:
    """`doctor data ...`: the data checks live in pedestrian.doctor.data (main(argv) -> exit code)."""
    if importlib.util.find_spec("pedestrian.doctor.data") is None:
        print("doctor data: pedestrian/doctor/data.py (the data checks for real data sets) is not installed",
              file=sys.stderr)
        return 2
    from pedestrian.doctor import data

    return int(data.main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "data":
        return run_data(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pedestrian.base.errors import ConfigError

    try:
        cfg = compose(argv)
        return run(cfg)[0]
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
