"""The detection matrix: `python -m pedestrian.doctor.matrix +stage=lenet [overrides]` runs the doctor on the
clean stage and once per bug in the zoo (in this process, one after the other) and prints a Markdown table,
bug x check, with the check that should catch each bug in bold. Exit 0 when every bug is caught by its check
with the right diagnosis and the clean stage passes every check; 1 otherwise.

Options (before the overrides): --bugs a,b,c (a subset), --out DIR (matrix.md and matrix.json; default
outputs/doctor/matrix/<stage>/<time>), --zoo (print the bug zoo's table and exit). W&B is off unless you pass
logger=wandb.

`--stages lenet,deeper,...` (or `--stages all`) runs the clean doctor on each stage instead (no bugs) and prints a
stage x check table with each stage's time: the "no false alarms on any clean stage" figure. A stage that
fine-tunes another's weights (night_finetune) takes them from `--ladder ROOT` (ROOT/<stage>/checkpoints/best.ckpt).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from pedestrian.core import bugs
from pedestrian.doctor.__main__ import compose
from pedestrian.doctor.common import CHECKS
from pedestrian.doctor.stage import diagnose_stage

MARK = {"pass": "✔", "warn": "⚠", "fail": "✘", "skip": "–"}


def _doctor(cfg, out_dir: Path, label: str, console: Console):
    """One doctor run of the matrix or the stage sweep: its Report (also saved as doctor.json) and seconds."""
    cfg.doctor.out_dir = str(out_dir)
    console.print(f"[bold]{label}[/bold]")
    t0 = time.time()
    report = diagnose_stage(cfg, console)
    report.save()
    return report, round(time.time() - t0, 1)


def _row(results: list) -> dict:
    return {r.check: {"status": r.status, "diagnosis": r.diagnosis} for r in results}


def run_matrix(overrides: list[str], names: list[str] | None = None, out: Path | None = None,
               console: Console | None = None) -> dict:
    """{'rows': {'clean' | bug: {check: {status, diagnosis}}}, 'bugs': {bug: verdict}, 'false_alarms': [...]}"""
    console = console or Console()
    names = bugs.names() if names is None else names
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    rows, verdicts, seconds = {}, {}, {}
    for name in [None, *names]:
        label = name or "clean"
        cfg = compose(["logger=none", *overrides, *([f"+bug={name}"] if name else [])])
        base = out or Path("outputs/doctor/matrix") / str(cfg.stage.name) / stamp
        report, seconds[label] = _doctor(cfg, base / label, label, console)
        rows[label] = _row(report.results)
        if name:
            verdicts[name] = report.bug
    false_alarms = [c for c, r in rows["clean"].items() if r["status"] == "fail"]
    return {"stage": str(cfg.stage.name), "overrides": overrides, "rows": rows, "bugs": verdicts,
            "caught": sum(v["caught"] for v in verdicts.values()), "n_bugs": len(verdicts),
            "false_alarms": false_alarms, "seconds": seconds, "out_dir": str(base)}


def run_stages(overrides: list[str], stages: list[str], ladder: Path | None = None, out: Path | None = None,
               console: Console | None = None) -> dict:
    """The clean doctor on each stage: {'rows': {stage: {check: {status, diagnosis}}}, 'seconds': {...}, ...}."""
    console = console or Console()
    base = out or Path("outputs/doctor/stages") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    rows, seconds = {}, {}
    for stage in stages:
        cfg = compose(["logger=none", f"+stage={stage}", *overrides])
        needs = cfg.stage.get("needs_init_from")
        if needs:  # as the ladder hands over: the best checkpoint of the stage it fine-tunes
            if ladder is None:
                raise SystemExit(f"stage {stage} fine-tunes {needs}'s weights: pass --ladder ROOT (a ladder's folder)")
            cfg.stage.init_from = str(ladder / needs / "checkpoints" / "best.ckpt")
        report, seconds[stage] = _doctor(cfg, base / stage, stage, console)
        rows[stage] = _row(report.results)
    false_alarms = {s: [c for c, r in row.items() if r["status"] == "fail"] for s, row in rows.items()}
    return {"overrides": overrides, "rows": rows, "seconds": seconds, "out_dir": str(base),
            "false_alarms": {s: f for s, f in false_alarms.items() if f}}


def stages_markdown(m: dict) -> str:
    checks = [c for c in CHECKS if any(c in r for r in m["rows"].values())]
    lines = ["| stage | " + " | ".join(f"`{c}`" for c in checks) + " | time |",
             "|---|" + "---|" * len(checks) + "---|"]
    for stage, row in m["rows"].items():
        cells = [MARK[row[c]["status"]] if c in row else "" for c in checks]
        lines.append(f"| `{stage}` | " + " | ".join(cells) + f" | {m['seconds'][stage]:.0f} s |")
    n_fail = sum(len(f) for f in m["false_alarms"].values())
    lines += ["", f"{len(m['rows'])} clean stages ({' '.join(m['overrides']) or 'defaults'}): {n_fail} failed checks"
              f"{' ' + str(m['false_alarms']) if n_fail else ''}; slowest stage {max(m['seconds'].values()):.0f} s. "
              "✔ pass, ✘ fail, ⚠ warning."]
    return "\n".join(lines)


def markdown(m: dict) -> str:
    checks = [c for c in CHECKS if any(c in r for r in m["rows"].values())]
    lines = ["| bug | " + " | ".join(f"`{c}`" for c in checks) + " | caught by its check |",
             "|---|" + "---|" * len(checks) + "---|"]
    for label, row in m["rows"].items():
        v = m["bugs"].get(label)
        cells = []
        for c in checks:
            r = row.get(c)
            cell = "" if r is None else MARK[r["status"]] + (f" {r['diagnosis']}" if r["status"] == "fail" else "")
            cells.append(f"**{cell}**" if v and v["check"] == c else cell)
        verdict = "–" if v is None else ("yes" if v["caught"] else f"NO (got {v['got']})")
        lines.append(f"| {'`' + label + '`' if v else label} | " + " | ".join(cells) + f" | {verdict} |")
    lines.append("")
    lines.append(f"Stage `{m['stage']}` ({' '.join(m['overrides']) or 'defaults'}): {m['caught']} of "
                 f"{m['n_bugs']} bugs caught by their check with the right diagnosis; "
                 f"{len(m['false_alarms'])} false alarms on the clean stage"
                 + (f" ({', '.join(m['false_alarms'])})" if m["false_alarms"] else "") + ". "
                 "✔ pass, ✘ fail (diagnosis), ⚠ warning; bold: the check that should catch the bug.")
    return "\n".join(lines)


def zoo_markdown() -> str:
    """The bug zoo as a table: what each bug looks like in the wild, and what should catch it."""
    lines = ["| bug | caught by | diagnosis | what it looks like in the wild |", "|---|---|---|---|"]
    for name in bugs.names():
        b = bugs.load(name)
        lines.append(f"| `{name}` | `{b.check}` | {b.diagnosis} | {' '.join(str(b.in_the_wild).split())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names, out, stages, ladder = None, None, None, None
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--bugs":
            names = argv.pop(0).split(",")
        elif opt == "--stages":
            stages = argv.pop(0).split(",")
        elif opt == "--ladder":
            ladder = Path(argv.pop(0))
        elif opt == "--out":
            out = Path(argv.pop(0))
        elif opt == "--zoo":
            print(zoo_markdown())
            return 0
        else:
            print(__doc__)
            return 0 if opt in ("-h", "--help") else 2
    unknown = sorted(set(names or []) - set(bugs.names()))
    if unknown:
        print(f"unknown bugs {unknown}; the zoo has {bugs.names()}", file=sys.stderr)
        return 2
    t0 = time.time()
    if stages is not None:
        from pedestrian.ladder import STAGES

        stages = list(STAGES) if stages == ["all"] else stages
        bad = sorted(set(stages) - set(STAGES))
        if bad:
            print(f"unknown stages {bad}; the ladder has {list(STAGES)}", file=sys.stderr)
            return 2
        m = run_stages(argv, stages, ladder, out)
        table = stages_markdown(m)
    else:
        m = run_matrix(argv, names, out)
        table = markdown(m)
    m["wall_time_s"] = round(time.time() - t0, 1)
    print(table)
    base = Path(m["out_dir"])
    base.mkdir(parents=True, exist_ok=True)
    (base / "matrix.md").write_text(table + "\n")
    (base / "matrix.json").write_text(json.dumps(m, indent=2))
    print(f"\nmatrix: {base / 'matrix.md'} ({m['wall_time_s']:.0f}s)")
    return 0 if m.get("caught") == m.get("n_bugs") and not m["false_alarms"] else 1


if __name__ == "__main__":
    sys.exit(main())
