"""`python -m pedestrian.doctor +stage=NAME [overrides]`: run the lecture's checks, print the report, write
doctor.json + images, log a W&B run; exit 0 when every check passes, 1 when one fails, 2 on a config error.

Same config as `python -m pedestrian` (conf/, +stage=, profile=, data=, +bug=, any key), plus the doctor group
(conf/doctor/default.yaml, e.g. doctor.out_dir=DIR, doctor.checks=[inputs,overfit_batch]).

`python -m pedestrian.doctor --entry MODULE:FUNCTION [--out DIR] [--checks a,b] [key=value ...]` runs them on
your own model: FUNCTION() returns a dict with model, loader, loss_fn and optionally optimizer_factory,
num_classes, step, val_loader (or the tuple model, loader, loss_fn, optimizer_factory). MODULE is a module
name importable from the current folder, or a path to a .py file. key=value: doctor settings, e.g.
overfit.max_steps=500. Same exit codes.

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
    from pedestrian.doctor.report import log_wandb
    from pedestrian.doctor.stage import diagnose_stage

    console = console or Console()
    t0 = time.time()
    bug = f" with bug {cfg.bug.name} injected" if cfg.get("bug") else ""
    console.print(f"[bold]doctor[/bold]: stage {cfg.stage.name}{bug} -> {cfg.doctor.out_dir}")
    report = diagnose_stage(cfg, console)
    report.print(console)
    report.save()
    data = report.to_dict()
    data["wandb_run"] = log_wandb(report, cfg)
    console.print(f"doctor finished in {time.time() - t0:.0f}s")
    return report.exit_code, data


def load_entry(spec: str) -> dict:
    """MODULE:FUNCTION -> what FUNCTION() returns, as diagnose's keyword arguments."""
    import importlib

    module_name, _, func = spec.partition(":")
    if not module_name or not func:
        raise EntryError(f"--entry {spec!r}: expected MODULE:FUNCTION, e.g. my_model:build")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.exists():
                raise EntryError(f"--entry {spec!r}: no such file {path}")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except EntryError:
        raise
    except Exception as e:
        raise EntryError(f"--entry {spec!r}: importing {module_name} failed: {type(e).__name__}: {e}") from e
    if not callable(getattr(module, func, None)):
        raise EntryError(f"--entry {spec!r}: {module_name} has no function {func!r}")
    try:
        built = getattr(module, func)()
    except Exception as e:
        raise EntryError(f"--entry {spec!r}: {func}() raised {type(e).__name__}: {e}") from e
    keys = ("model", "loader", "loss_fn", "optimizer_factory")
    if isinstance(built, (tuple, list)) and 2 <= len(built) <= 4:
        return dict(zip(keys, built))
    allowed = {*keys, "num_classes", "step", "val_loader", "name"}
    if not isinstance(built, dict) or not {"model", "loader"} <= set(built) or set(built) - allowed:
        got = sorted(built) if isinstance(built, dict) else type(built).__name__
        raise EntryError(f"--entry {spec!r}: {func}() returned {got}; expected a dict with model and loader "
                         f"(and any of {sorted(allowed - {'model', 'loader'})}), or (model, loader, loss_fn, "
                         "optimizer_factory)")
    return built


class EntryError(ValueError):
    pass


def run_entry(argv: list[str], console: Console | None = None) -> int:
    """`--entry MODULE:FUNCTION [--out DIR] [--checks a,b] [key=value ...]`."""
    from omegaconf import OmegaConf

    from pedestrian.doctor.any_model import diagnose
    from pedestrian.doctor.common import DoctorError

    console = console or Console()
    opts, settings = {}, []
    while argv:
        a = argv.pop(0)
        if a in ("--entry", "--out", "--checks"):
            if not argv:
                print(f"{a} needs a value", file=sys.stderr)
                return 2
            opts[a] = argv.pop(0)
        elif "=" in a and not a.startswith("-"):
            settings.append(a)
        else:
            print(f"unknown argument {a!r}\n\n{USAGE}", file=sys.stderr)
            return 2
    try:
        kwargs = load_entry(opts["--entry"])
        try:
            overrides = OmegaConf.to_container(OmegaConf.from_dotlist(settings))
        except Exception as e:
            raise EntryError(f"settings {settings}: {e}") from e
        checks = opts["--checks"].split(",") if "--checks" in opts else None
        name = kwargs.pop("name", None)  # else the model's class name
        report = diagnose(**kwargs, checks=checks, settings=overrides, out_dir=opts.get("--out"), name=name,
                          console=console)
    except (EntryError, DoctorError) as e:
        print(f"doctor: {e}", file=sys.stderr)
        return 2
    report.print(console)
    report.save()
    return report.exit_code


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
    if "--entry" in argv:
        return run_entry(argv)
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
