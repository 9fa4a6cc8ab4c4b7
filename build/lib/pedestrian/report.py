"""The lecture-style report of a ladder, from the runs' own files (never from W&B's servers).

    python -m pedestrian.report profile=cpu [--root outputs/ladder/cpu] [--out experiments/cpu]

Reads every stage's results.json, error_analysis.json, CSV learning curve and ladder_stage.json under the
ladder root, and the root's ladder.json (the commands that made them, wall time, machine load). Writes
<out>/RESULTS.md (one row per stage: the four errors, the four decomposition terms, the recommendation, wall
time, machine; the lecture's trends checked; the error analysis; the fine-tuning before/after) and three PNGs:
learning_curves.png, decomposition.png, error_analysis.png. A hand-written <out>/notes.md, if present, is
included verbatim (the place to explain why a step did or did not do what the lecture says).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from pedestrian.evaluate.bias_variance import ERROR_KEYS, NEXT_STEPS, TERMS
from pedestrian.evaluate.error_analysis import SETS
from pedestrian.evaluate.error_analysis import to_markdown as error_analysis_markdown
from pedestrian.ladder import BOOKKEEPING, MARKER, STAGES, read_json

# What each step of the lecture is meant to do, checked against its predecessor: (stage, quantity, label).
TRENDS = (
    ("deeper", "train", "underfitting step lowers train error"),
    ("resnet", "train", "underfitting step lowers train error"),
    ("resnet_lr", "train", "underfitting step lowers train error"),
    ("more_data", "variance", "overfitting step narrows train-val minus train"),
    ("weight_decay", "variance", "overfitting step narrows train-val minus train"),
    ("augment", "variance", "overfitting step narrows train-val minus train"),
    ("tuned", "train_val", "tuning again lowers train-val error"),
    ("night_synth", "distribution_shift", "synthetic night shrinks the distribution-shift term"),
    ("night_finetune", "distribution_shift", "fine-tuning on the target pool shrinks the distribution-shift term"),
)
SLICE_ORDER = ("day", "night", "reflection", "hard")


# -- loading ----------------------------------------------------------------------------------------------------
def load(root: Path) -> list[dict]:
    """One dict per stage present under root, in ladder order: results, marker, error analysis, curve."""
    stages = []
    for name in STAGES:
        d = root / name
        res = read_json(d / "results.json")
        if res is None:
            continue
        stages.append({"name": name, "results": res, "marker": read_json(d / MARKER) or {},
                       "analysis": read_json(d / "error_analysis.json"), "curve": learning_curve(d)})
    return stages


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def learning_curve(run_dir: Path) -> dict[int, dict[str, float]]:
    """epoch -> {split: error} from csv/metrics.csv, merged with earlier attempts kept by the ladder."""
    files = sorted((run_dir / "attempts").glob("*/metrics.csv"), key=lambda p: int(p.parent.name))
    files += [run_dir / "csv" / "metrics.csv"]
    curve: dict[int, dict[str, float]] = {}
    for path in files:  # later attempts overwrite the epochs they repeated
        if not path.exists():
            continue
        for row in _read_csv(path):
            vals = {s: float(row[f"{s}/error"]) for s in ERROR_KEYS if row.get(f"{s}/error") not in (None, "")}
            if vals and row.get("epoch") not in (None, ""):
                curve.setdefault(int(float(row["epoch"])), {}).update(vals)
    return dict(sorted(curve.items()))


# -- the table ------------------------------------------------------------------------------------------------------
def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _short(v: object) -> str:
    if isinstance(v, str) and "." in v and v.split(".")[-1][:1].isupper():
        return v.split(".")[-1]  # a _target_: the class name
    return str(v)


def config_change(cfg: dict, parent_cfg: dict | None) -> str:
    """What a stage changes against the stage before it, from the two recorded configs."""
    if parent_cfg is None:
        return "the starting point"
    a, b = _flat(parent_cfg), _flat(cfg)
    skip = tuple(BOOKKEEPING) + ("stage.",)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.startswith(skip)]
    out = []
    if a.get("model._target_") != b.get("model._target_"):
        out.append(f"model {_short(b.get('model._target_'))}")
        keys = [k for k in keys if not k.startswith("model.")]
    for k in keys:
        out.append(f"{k} {_short(a.get(k, '-'))}→{_short(b.get(k, '-'))}")
    return ", ".join(out) or "no config change"


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1%}" if signed else f"{v:.1%}"


def _wall(stage: dict) -> str:
    """The stage's wall time (its last attempt, from results.json) and the CPU time the ladder measured."""
    s = float(stage["results"].get("wall_time_s", 0.0))
    attempts = stage["marker"].get("attempts", [])
    cpu = attempts[-1].get("cpu_s") if attempts else None
    return (f"{s / 60:.1f} min" + (f" (CPU {cpu / 60:.1f} min)" if cpu is not None else "")
            + (f", last of {len(attempts)} attempts" if len(attempts) > 1 else ""))


def table_rows(stages: list[dict]) -> list[list[str]]:
    rows, parent_cfg = [], None
    for st in stages:
        r = st["results"]
        rec, step = r["recommendation"], r["recommendation"]["steps"][0]
        rows.append([f"`{st['name']}`", config_change(r["config"], parent_cfg),
                     *(_pct(r["errors"][k]) for k in ERROR_KEYS), *(_pct(r["terms"][t], True) for t in TERMS),
                     f"**{rec['term'].replace('_', ' ')}**: {step}", _wall(st), r.get("machine", "-")])
        parent_cfg = r["config"]
    return rows


TABLE_COLUMNS = ("stage", "change", "train", "train-val", "test-val", "test", "avoidable bias", "variance",
                 "distribution shift", "val overfitting", "largest term: next step", "wall", "machine")


def markdown_table(stages: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows(stages)]
    return "\n".join(lines)


# -- the lecture's trends -----------------------------------------------------------------------------------------
def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def _quantity(res: dict, q: str) -> tuple[float, float]:
    """A quantity of a run and its binomial standard error (terms: the errors involved are independent sets)."""
    e, n = res["errors"], res["n"]
    se = {k: _se(e[k], n[k]) for k in ERROR_KEYS}
    if q in ERROR_KEYS:
        return e[q], se[q]
    pair = {"variance": ("train_val", "train"), "distribution_shift": ("test_val", "train_val"),
            "val_overfitting": ("test", "test_val")}[q]
    return res["terms"][q], math.hypot(se[pair[0]], se[pair[1]])


def trends(stages: list[dict]) -> list[dict]:
    """Each step against its predecessor: did the quantity the lecture targets go down? With its noise."""
    by = {s["name"]: s["results"] for s in stages}
    out = []
    for name, q, label in TRENDS:
        parent = STAGES[STAGES.index(name) - 1]
        if name not in by or parent not in by:
            continue
        (before, se_b), (after, se_a) = _quantity(by[parent], q), _quantity(by[name], q)
        delta, se = after - before, math.hypot(se_a, se_b)
        out.append({"stage": name, "parent": parent, "quantity": q, "label": label, "before": before,
                    "after": after, "delta": delta, "se": se, "ok": delta < 0, "clear": abs(delta) >= 2 * se})
    return out


def trends_markdown(items: list[dict]) -> str:
    lines = ["| step | what the lecture expects | quantity | before | after | change | ± 2 SE | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for t in items:
        verdict = ("yes" if t["ok"] else "**no**") + ("" if t["clear"] else " (within noise)")
        lines.append(f"| `{t['parent']}` → `{t['stage']}` | {t['label']} | {t['quantity'].replace('_', ' ')} | "
                     f"{_pct(t['before'])} | {_pct(t['after'])} | {_pct(t['delta'], True)} | {2 * t['se']:.1%} | "
                     f"{verdict} |")
    missed = [t for t in items if not t["ok"]]
    lines.append("")
    lines.append(f"{len(items) - len(missed)} of {len(items)} steps move the way the lecture says."
                 + ("" if not missed else " Not: " + ", ".join(f"`{t['stage']}`" for t in missed)
                    + " (see the notes below for why)."))
    lines.append("SE: binomial standard error of the change from the evaluation set sizes; a change smaller than "
                 "2 SE is within noise.")
    return "\n".join(lines)


# -- domain adaptation before/after -------------------------------------------------------------------------------
def _slice(analysis: dict | None, name: str, split: str) -> float | None:
    for r in (analysis or {}).get("slices", []):
        if r["slice"] == name:
            return r[split]["error_rate"]
    return None


def finetune_markdown(stages: list[dict]) -> str | None:
    by = {s["name"]: s for s in stages}
    if "night_finetune" not in by or "night_synth" not in by:
        return None
    b, a = by["night_synth"], by["night_finetune"]
    rows = [("distribution shift (test-val − train-val)", b["results"]["terms"]["distribution_shift"],
             a["results"]["terms"]["distribution_shift"])]
    rows += [(f"{k.replace('_', '-')} error", b["results"]["errors"][k], a["results"]["errors"][k])
             for k in ERROR_KEYS]
    for sl, split in (("day", "train_val"), ("day", "test_val"), ("night", "train_val"), ("night", "test_val")):
        rows.append((f"{sl} error on {split.replace('_', '-')}", _slice(b["analysis"], sl, split),
                     _slice(a["analysis"], sl, split)))
    lines = ["| quantity | before (`night_synth`) | after (`night_finetune`) | change |", "|---|---|---|---|"]
    for label, x, y in rows:
        lines.append(f"| {label} | {_pct(x)} | {_pct(y)} | {_pct(None if x is None or y is None else y - x, True)} |")
    day_b, day_a = _slice(b["analysis"], "day", "train_val"), _slice(a["analysis"], "day", "train_val")
    if day_b is not None and day_a is not None:
        n = next((r["train_val"]["n"] for r in a["analysis"]["slices"] if r["slice"] == "day"), 1)
        se = math.hypot(_se(day_a, n), _se(day_b, n))
        d = day_a - day_b
        verdict = (f"**forgetting**: day error on train-val rose by {d:.1%} (more than 2 SE = {2 * se:.1%})"
                   if d > 2 * se else f"no forgetting beyond noise: day error on train-val changed by {d:+.1%} "
                   f"(2 SE = {2 * se:.1%})")
        lines += ["", verdict + "."]
    init = a["marker"].get("init_from") or a["results"]["config"]["stage"].get("init_from")
    if init and Path(init).is_absolute() and Path(init).is_relative_to(Path.cwd()):
        init = str(Path(init).relative_to(Path.cwd()))  # the committed report names no machine's folders
    lines += ["", f"`night_finetune` started from `{init}`."]
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------------------------------
def _grid(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return plt, fig, list(axes.flat[:n])


COLORS = {"train": "tab:blue", "train_val": "tab:orange", "test_val": "tab:red", "test": "tab:purple"}


def plot_learning_curves(stages: list[dict], path: Path, goal: float) -> None:
    plt, fig, axes = _grid(len(stages))
    from matplotlib.ticker import MaxNLocator
    for ax, st in zip(axes, stages):
        epochs = list(st["curve"])
        for s in ERROR_KEYS:
            ys = [st["curve"][e].get(s, math.nan) for e in epochs]
            ax.plot(epochs, ys, marker=".", color=COLORS[s], label=s.replace("_", "-"))
        ax.axhline(goal, color="grey", ls=":", lw=1)
        ax.set_title(st["name"], fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("error", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle("Learning curves: error per epoch on the four sets (dotted: goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TERM_COLORS = {"avoidable_bias": "tab:blue", "variance": "tab:orange", "distribution_shift": "tab:red",
               "val_overfitting": "tab:purple"}


def plot_decomposition(stages: list[dict], path: Path) -> None:
    """Stacked bars: goal + the four terms = test error; negative terms hang below zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(stages)), 4.2))
    x = list(range(len(stages)))
    goal = [st["results"]["goal"] for st in stages]
    ax.bar(x, goal, color="lightgrey", label="goal (irreducible)")
    up, down = goal[:], [0.0] * len(stages)
    for t in TERMS:
        vals = [st["results"]["terms"][t] for st in stages]
        bottoms = [u if v >= 0 else d for v, u, d in zip(vals, up, down)]
        ax.bar(x, vals, bottom=bottoms, color=TERM_COLORS[t], label=t.replace("_", " "))
        up = [u + max(v, 0) for u, v in zip(up, vals)]
        down = [d + min(v, 0) for d, v in zip(down, vals)]
    ax.scatter(x, [st["results"]["errors"]["test"] for st in stages], color="black", marker="_", s=300,
               zorder=3, label="test error")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [st["name"] for st in stages], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("error")
    ax.set_title("Bias-variance decomposition per stage (goal + terms = test error)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_error_analysis(stages: list[dict], path: Path) -> None:
    """Per stage: each slice's contribution to train-val and test-val error (points), priority above."""
    with_analysis = [st for st in stages if st["analysis"]]
    if not with_analysis:
        return
    plt, fig, axes = _grid(len(with_analysis))
    for ax, st in zip(axes, with_analysis):
        rows = {r["slice"]: r for r in st["analysis"]["slices"]}
        names = [s for s in SLICE_ORDER if s in rows] + [s for s in rows if s not in SLICE_ORDER]
        xs = list(range(len(names)))
        for j, (s, color) in enumerate(zip(SETS, ("tab:orange", "tab:red"))):
            vals = [rows[n][s]["contribution"] for n in names]
            ax.bar([x + (j - 0.5) * 0.4 for x in xs], vals, width=0.4, color=color, label=s.replace("_", "-"))
        top = max([rows[n][s]["contribution"] for n in names for s in SETS] + [1e-3])
        for x, n in zip(xs, names):
            ax.text(x, top * 1.05, rows[n]["priority"][0].upper(), ha="center", fontsize=8,
                    color={"high": "red", "medium": "darkorange"}.get(rows[n]["priority"], "grey"))
        ax.set_ylim(0, top * 1.2)
        ax.set_xticks(xs, names, fontsize=7)
        ax.set_title(st["name"], fontsize=10)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("contribution to error", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle("Error analysis: each slice's errors as points of the set's error rate (H/M/L: priority)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- RESULTS.md -----------------------------------------------------------------------------------------------------
def provenance(root: Path) -> list[str]:
    info = read_json(root / "ladder.json") or {}
    lines = [f"Ladder id (W&B group): `{info.get('id', '-')}`. Runs under `{root}`.", ""]
    invs = info.get("invocations", [])
    if invs:
        lines += ["| command | finished | wall | CPU (user+sys) | load avg (1/5/15 min) start → end | nice | stages |",
                  "|---|---|---|---|---|---|---|"]
        for inv in invs:
            acts = inv.get("actions", {})
            summary = ", ".join(f"{v} {sum(1 for a in acts.values() if a == v)}"
                                for v in ("ran", "resumed", "skipped") if v in acts.values()) or "none"
            load = lambda v: "/".join(f"{x:.2f}" for x in v)  # noqa: E731
            cpu = f"{inv['cpu_s'] / 60:.1f} min" if "cpu_s" in inv else "-"
            lines.append(f"| `{inv['command']}` | {inv['finished']} | {inv['wall_s'] / 60:.1f} min | {cpu} | "
                         f"{load(inv['load_avg_start'])} → {load(inv['load_avg_end'])} | {inv.get('nice', '-')} | "
                         f"{summary} |")
    return lines


def results_markdown(root: Path, stages: list[dict], profile: str, notes: str | None, command: str) -> str:
    goal = stages[0]["results"]["goal"]
    total = sum(float(st["results"].get("wall_time_s", 0)) for st in stages)
    last = stages[-1]["results"]
    parts = [
        f"# The ladder on profile `{profile}`", "",
        f"Made by the ladder command(s) below, then `{command}`. This file and the PNGs beside it are generated "
        "from the runs' JSON and CSV files: edit `notes.md`, not this file.", "",
        f"Machine: {stages[0]['results'].get('machine', '-')}. Goal (irreducible) error: {goal:.1%}. "
        f"Sum of stage wall times: {total / 60:.1f} min.", "",
        *provenance(root), "",
        "## The lecture's table", "",
        "Errors on the four sets, then the decomposition: avoidable bias = train − goal, variance = train-val − "
        "train, distribution shift = test-val − train-val, validation overfitting = test − test-val. The largest "
        "term picks the next step from the lecture's list. `change` is the config diff against the stage above.",
        "", markdown_table(stages), "",
        "![decomposition per stage](decomposition.png)", "",
        "## The lecture's trends, checked", "", trends_markdown(trends(stages)), "",
        "## Learning curves", "", "![learning curves](learning_curves.png)", "",
        "## Error analysis: test-val against train-val, by slice", "",
        "Definitions: `pedestrian/evaluate/error_analysis.py`. Per slice: error rate, share of the set's errors, "
        "shift = the points of the distribution-shift term the slice accounts for (its errors beyond the train-val "
        "error rate, in test-val less in train-val), priority. The bars show each slice's errors as points of the "
        "set's error rate.", "",
        "![error analysis per stage](error_analysis.png)", "",
    ]
    for st in stages:  # the stages where a slice is a clear source of the shift, and the shift stages' inputs
        high = any(r["priority"] == "high" for r in (st["analysis"] or {}).get("slices", []))
        if st["analysis"] and (high or st["name"] in ("tuned", "night_synth", "night_finetune")):
            parts += [error_analysis_markdown(st["analysis"], title=f"`{st['name']}`"), ""]
    ft = finetune_markdown(stages)
    if ft:
        parts += ["## Domain adaptation: before and after fine-tuning", "", ft, ""]
    term = last["recommendation"]["term"]
    parts += ["## Where the ladder ends", "",
              f"Last stage `{stages[-1]['name']}`: largest term **{term.replace('_', ' ')}**; the lecture's "
              "next steps for it: " + "; ".join(NEXT_STEPS.get(last["recommendation"]["term"],
                                                               last["recommendation"]["steps"])) + ".", ""]
    if notes:
        parts += ["## Notes (written by hand, from `notes.md`)", "", notes.strip(), ""]
    return "\n".join(parts)


def write_report(root: str | Path, out: str | Path, profile: str, notes_path: str | Path | None = None,
                 command: str | None = None) -> Path:
    root, out = Path(root), Path(out)
    stages = load(root)
    if not stages:
        raise FileNotFoundError(f"no stage results under {root} (run: python -m pedestrian.ladder "
                                f"profile={profile})")
    out.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(stages, out / "learning_curves.png", stages[0]["results"]["goal"])
    plot_decomposition(stages, out / "decomposition.png")
    plot_error_analysis(stages, out / "error_analysis.png")
    notes_path = Path(notes_path) if notes_path else out / "notes.md"
    notes = notes_path.read_text() if notes_path.exists() else None
    text = results_markdown(root, stages, profile, notes, command or f"python -m pedestrian.report profile={profile}")
    (out / "RESULTS.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results_json(stages), indent=2) + "\n")
    return out / "RESULTS.md"


def results_json(stages: list[dict]) -> list[dict]:
    """One object per stage, keys named as in the table (errors and terms as fractions), for scripts."""
    names = dict(zip((*ERROR_KEYS, *TERMS), TABLE_COLUMNS[2:10]))
    out = []
    for st in stages:
        r = st["results"]
        out.append({"stage": st["name"], **{names[k]: r["errors"][k] for k in ERROR_KEYS},
                    **{names[t]: r["terms"][t] for t in TERMS}, "largest term": names[r["recommendation"]["term"]],
                    "goal": r["goal"], "n": r["n"], "epochs": r["epochs"], "wall_time_s": r.get("wall_time_s"),
                    "machine": r.get("machine")})
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m pedestrian.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", help="profile=NAME (as given to the ladder)")
    p.add_argument("--root", default=None, help="ladder root (default outputs/ladder/<profile>)")
    p.add_argument("--out", default=None, help="output folder (default experiments/<profile>)")
    p.add_argument("--notes", default=None, help="hand-written notes to include (default <out>/notes.md)")
    args = p.parse_args(argv)
    if not args.profile.startswith("profile="):
        p.error(f"expected profile=NAME, got {args.profile!r}")
    profile = args.profile.split("=", 1)[1]
    root = args.root or Path("outputs") / "ladder" / profile
    out = args.out or Path("experiments") / profile
    try:
        path = write_report(root, out, profile, args.notes, "python -m pedestrian.report " + " ".join(argv))
    except FileNotFoundError as e:
        print(f"report: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {path} and {len(list(Path(out).glob('*.png')))} plots in {out}")


if __name__ == "__main__":
    main()
