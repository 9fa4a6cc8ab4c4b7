"""The doctor's report: a table in the terminal, doctor.json beside the images, and a W&B run (job_type
doctor, offline unless a key is set) with the same table and images."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from pedestrian.base.files import write_json
from pedestrian.doctor.common import CheckResult

STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "skip": "dim"}


def exit_code(results: list[CheckResult]) -> int:
    """0 when every check passes (warnings allowed), 1 when one fails: CI can gate on it."""
    return 1 if any(r.status == "fail" for r in results) else 0


def bug_verdict(cfg: DictConfig, results: list[CheckResult]) -> dict | None:
    """For a `+bug=NAME` run: did the check that should catch it catch it, with the right diagnosis?"""
    bug = cfg.get("bug")
    if not bug:
        return None
    by_check = {r.check: r for r in results}
    r = by_check.get(str(bug.check))
    caught = bool(r and r.status == "fail" and r.diagnosis == str(bug.diagnosis))
    return {"name": str(bug.name), "check": str(bug.check), "diagnosis": str(bug.diagnosis), "caught": caught,
            "got": (r.diagnosis if r and r.status == "fail" else r.status if r else "not run"),
            "also_failed": [x.check for x in results if x.status == "fail" and x.check != str(bug.check)],
            "in_the_wild": str(bug.get("in_the_wild", ""))}


def trace_table(result: CheckResult) -> Table | None:
    layers = result.details.get("layers") or []
    if not layers:
        return None
    t = Table(title="get it to run: one forward + backward pass, layer by layer", title_justify="left",
              show_lines=False, pad_edge=False)
    for col in ("layer", "type", "input", "output", "dtype", "params", "grad"):
        t.add_column(col, justify="right" if col == "params" else "left")
    grads = {}
    for g in result.details.get("gradients", []):
        grads.setdefault(g["param"].rpartition(".")[0], []).append(g)
    for row in layers:
        gs = grads.get(row["layer"], [])
        if any(g["state"] != "ok" for g in gs):
            grad = "[red]" + "; ".join(sorted({g["state"] for g in gs if g["state"] != "ok"})) + "[/red]"
        else:
            grad = f"{max(g['grad_norm'] for g in gs):.2g}" if gs else ""
        t.add_row(row["layer"], row["type"], row["input"], row["output"], row["dtype"], f"{row['params']:,}", grad)
    return t


@dataclass
class Report:
    """What diagnose returns: every check's result, with the lecture's advice for each failure and warning."""

    title: str                       # "doctor: lenet (bug injected: ...)", "doctor: ResNet"
    results: list[CheckResult]
    seconds: float
    out_dir: Path
    meta: dict = field(default_factory=dict)   # stage or model, config, machine: saved with the results
    bug: dict | None = None          # a `+bug` run's verdict
    print_trace: bool = True

    @property
    def passed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "pass"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "warn"]

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def exit_code(self) -> int:
        return exit_code(self.results)

    def __getitem__(self, check: str) -> CheckResult:
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(f"{check!r} was not run; the report has {[r.check for r in self.results]}")

    @classmethod
    def of_stage(cls, cfg: DictConfig, results: list[CheckResult], seconds: float) -> Report:
        title = f"doctor: {cfg.stage.name}" + (f"  (bug injected: {cfg.bug.name})" if cfg.get("bug") else "")
        meta = {"stage": str(cfg.stage.name), "config": OmegaConf.to_container(cfg, resolve=True)}
        return cls(title, results, seconds, Path(str(cfg.doctor.out_dir)), meta, bug_verdict(cfg, results),
                   bool(cfg.doctor.get("print_trace", True)))

    @classmethod
    def of_model(cls, name: str, results: list[CheckResult], seconds: float, settings: DictConfig, out_dir: Path,
                 user_step: bool) -> Report:
        meta = {"model": name, "step": "yours" if user_step else "the textbook step (no step given)",
                "settings": OmegaConf.to_container(settings, resolve=True)}
        return cls(f"doctor: {name}", results, seconds, out_dir, meta, None, bool(settings.get("print_trace", True)))

    def print(self, console: Console | None = None) -> None:
        console = console or Console()
        if self.print_trace:
            for r in self.results:
                if r.check == "run_trace" and (t := trace_table(r)) is not None:
                    console.print(t)
        table = Table(title=self.title, title_justify="left")
        for col, kw in (("#", {"justify": "right"}), ("check", {}), ("status", {}), ("measured", {}),
                        ("diagnosis", {})):
            table.add_column(col, **kw)
        for i, r in enumerate(self.results, 1):
            table.add_row(str(i), r.check, f"[{STYLE[r.status]}]{r.status.upper()}[/]", r.summary,
                          (r.diagnosis or "").replace("_", " "))
        console.print(table)
        for r in self.warnings + self.failures:
            body = r.explanation
            if r.fixes:
                body += "\n\nLikely causes / what to try (lecture):\n" + "\n".join(f"  - {f}" for f in r.fixes)
            if r.files:
                body += "\n\n" + "\n".join(f"{k}: {v}" for k, v in r.files.items())
            console.print(Panel(body, title=f"{r.check}: {(r.diagnosis or r.status).replace('_', ' ')}",
                                border_style="red" if r.status == "fail" else "yellow", title_align="left"))
        if self.bug:
            v = self.bug
            ok = "[green]caught[/green]" if v["caught"] else "[red]NOT caught[/red]"
            console.print(f"bug {v['name']}: {ok} by {v['check']} (expected {v['diagnosis']}, got {v['got']}). "
                          f"In the wild: {v['in_the_wild']}")
        skipped = [r.check for r in self.results if r.status == "skip"]
        console.print(f"{len(self.passed) + len(self.warnings)}/{len(self.results)} checks without failure"
                      + (f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else "")
                      + f"; report: {self.out_dir / 'doctor.json'}")

    def to_dict(self) -> dict:
        from pedestrian.core.train import machine

        return {**{k: v for k, v in self.meta.items() if k != "config"}, "bug": self.bug,
                "exit_code": self.exit_code, "checks": [r.to_dict() for r in self.results],
                "wall_time_s": round(self.seconds, 2), "machine": machine(),
                "torch_threads": __import__("torch").get_num_threads(),
                **({"config": self.meta["config"]} if "config" in self.meta else {})}

    def save(self, path: str | Path | None = None) -> Path:
        """doctor.json (default: in the report's folder), written atomically."""
        path = Path(path) if path is not None else self.out_dir / "doctor.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict(), default=str)
        return path


def log_wandb(report: Report, cfg: DictConfig) -> str | None:
    """One W&B run per doctor run (offline unless WANDB_API_KEY or logger.wandb.mode=online)."""
    wcfg = OmegaConf.select(cfg, "logger.wandb")
    if not wcfg:
        return None
    from pedestrian.core.loggers import wandb_mode

    mode = wandb_mode(str(wcfg.mode))
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    stage = str(cfg.stage.name)
    tags = ["doctor", stage] + ([f"bug:{cfg.bug.name}"] if cfg.get("bug") else [])
    run = wandb.init(project=str(wcfg.project), entity=wcfg.get("entity"), name=f"doctor-{stage}", job_type="doctor",
                     group=str(cfg.group), tags=tags, dir=str(report.out_dir.resolve()), mode=mode, reinit="create_new",
                     config=report.meta.get("config"))
    results = report.results
    table = wandb.Table(columns=["check", "status", "diagnosis", "measured", "explanation", "fixes"])
    for r in results:
        table.add_data(r.check, r.status, r.diagnosis or "", r.summary, r.explanation, "\n".join(r.fixes))
    images = {f"doctor/{k}": wandb.Image(v, caption=f"{r.check}: {k}") for r in results for k, v in r.files.items()
              if Path(v).exists()}
    run.log({"doctor/report": table, **images})
    run.summary.update({f"doctor/{r.check}": r.status for r in results})
    run.summary.update({"doctor/exit_code": report.exit_code, "doctor/failed": [r.check for r in results
                                                                                   if r.status == "fail"]})
    if report.bug:
        run.summary.update({"doctor/bug": report.bug["name"], "doctor/bug_caught": report.bug["caught"]})
    run.finish()
    return run.id
