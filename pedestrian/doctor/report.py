"""The doctor's report: a table in the terminal, doctor.json beside the images, and a W&B run (job_type
doctor, offline unless a key is set) with the same table and images."""

from __future__ import annotations

import os
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


def render(results: list[CheckResult], cfg: DictConfig, console: Console, out_dir: Path) -> None:
    if cfg.doctor.get("print_trace", True):
        for r in results:
            if r.check == "run_trace" and (t := trace_table(r)) is not None:
                console.print(t)
    table = Table(title=f"doctor: {cfg.stage.name}" + (f"  (bug injected: {cfg.bug.name})" if cfg.get("bug") else ""),
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("check")
    table.add_column("status")
    table.add_column("measured")
    table.add_column("diagnosis")
    for i, r in enumerate(results, 1):
        table.add_row(str(i), r.check, f"[{STYLE[r.status]}]{r.status.upper()}[/]", r.summary,
                      (r.diagnosis or "").replace("_", " "))
    console.print(table)
    for r in results:
        if r.status in ("fail", "warn"):
            body = r.explanation
            if r.fixes:
                body += "\n\nLikely causes / what to try (lecture):\n" + "\n".join(f"  - {f}" for f in r.fixes)
            if r.files:
                body += "\n\n" + "\n".join(f"{k}: {v}" for k, v in r.files.items())
            console.print(Panel(body, title=f"{r.check}: {(r.diagnosis or r.status).replace('_', ' ')}",
                                border_style="red" if r.status == "fail" else "yellow", title_align="left"))
    verdict = bug_verdict(cfg, results)
    if verdict:
        ok = "[green]caught[/green]" if verdict["caught"] else "[red]NOT caught[/red]"
        console.print(f"bug {verdict['name']}: {ok} by {verdict['check']} (expected {verdict['diagnosis']}, got "
                      f"{verdict['got']}). In the wild: {verdict['in_the_wild']}")
    n_fail = sum(r.status == "fail" for r in results)
    console.print(f"{len(results) - n_fail}/{len(results)} checks without failure; report: {out_dir / 'doctor.json'}")


def payload(results: list[CheckResult], cfg: DictConfig, seconds: float) -> dict:
    from pedestrian.core.train import machine

    return {"stage": str(cfg.stage.name), "bug": bug_verdict(cfg, results), "exit_code": exit_code(results),
            "checks": [r.to_dict() for r in results], "wall_time_s": round(seconds, 2), "machine": machine(),
            "torch_threads": __import__("torch").get_num_threads(),
            "config": OmegaConf.to_container(cfg, resolve=True)}


def save(path: Path, data: dict) -> None:
    write_json(path, data, default=str)


def log_wandb(results: list[CheckResult], cfg: DictConfig, out_dir: Path, data: dict) -> str | None:
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
                     group=str(cfg.group), tags=tags, dir=str(Path(out_dir).resolve()), mode=mode, reinit="create_new",
                     config=data["config"])
    table = wandb.Table(columns=["check", "status", "diagnosis", "measured", "explanation", "fixes"])
    for r in results:
        table.add_data(r.check, r.status, r.diagnosis or "", r.summary, r.explanation, "\n".join(r.fixes))
    images = {f"doctor/{k}": wandb.Image(v, caption=f"{r.check}: {k}") for r in results for k, v in r.files.items()
              if Path(v).exists()}
    run.log({"doctor/report": table, **images})
    run.summary.update({f"doctor/{r.check}": r.status for r in results})
    run.summary.update({"doctor/exit_code": data["exit_code"], "doctor/failed": [r.check for r in results
                                                                                   if r.status == "fail"]})
    if data.get("bug"):
        run.summary.update({"doctor/bug": data["bug"]["name"], "doctor/bug_caught": data["bug"]["caught"]})
    run.finish()
    return run.id
