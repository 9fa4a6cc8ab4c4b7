"""Error analysis by slice, test-val against train-val (lecture, "Address distribution shift").

The lecture looks at the errors of both validation sets, names their causes (hard-to-see pedestrians,
reflections, night), and ranks the causes by how much error they carry and whether they appear mostly in
test-val (then they are a source of the distribution-shift gap). Here the causes are the renderer's
ground-truth attributes, so the breakdown is exact. For each slice s and each of the two sets:

  error rate    e(s) = errors in the slice / images in the slice
  share              = errors in the slice / all errors of the set           (what fraction of the errors it holds)
  contribution       = errors in the slice / all images of the set           (points of the set's error rate)

and across the sets, with E = the train-val error rate and p(s) = the slice's fraction of a set's images,

  shift(s) = p_testval(s) * (e_testval(s) - E) - p_trainval(s) * (e_trainval(s) - E)

the points of the distribution-shift term (test-val error - train-val error) the slice accounts for: its
errors beyond the train-val error rate, in test-val, less the same in train-val. Over slices that partition the
images (day + night) the shifts add up to the shift term exactly. A slice that is merely more frequent in
test-val but no harder than average (night scenes a model copes with) has a shift near zero.

Priority, the lecture's three levels made into a rule (`major` = share >= major_share, 25% by default):
  high    the shift term is clearly positive (above 2 binomial standard errors) and the slice accounts for at
          least half of it, with a major share of test-val errors: a source of the gap (the lecture's night)
  medium  a major share of the errors of either set otherwise (the lecture's reflections)
  low     rare in both (the lecture's hard-to-see pedestrians)
Rows are sorted by priority, then by shift, then by test-val contribution. Slices overlap (a night scene can
have a reflection), so shares do not add up to 100%. Folder data (real photos) has no reflection or hard
columns: those slices are skipped and named; its `tag_*` columns become slices of their own.

`python -m pedestrian.evaluate.error_analysis RUN_DIR` redoes it from RUN_DIR/predictions.npz.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pedestrian.base.files import atomic_write

SETS = ("train_val", "test_val")
# slice name -> (attribute column in predictions.npz, value): what the lecture names as error causes
SLICES: dict[str, tuple[str, int]] = {
    "day": ("night", 0),
    "night": ("night", 1),
    "reflection": ("reflection", 1),
    "hard": ("hard", 1),
}
PRIORITIES = ("high", "medium", "low")
THRESHOLD = 0.5  # P(pedestrian) >= 0.5 -> "pedestrian", as train.evaluate decides


def _errors(arrays: Mapping[str, np.ndarray], split: str) -> np.ndarray:
    for key in (f"{split}/prob", f"{split}/label"):
        if key not in arrays:
            raise KeyError(f"predictions lack {key!r}; they have {sorted(arrays)}")
    prob, label = np.asarray(arrays[f"{split}/prob"]), np.asarray(arrays[f"{split}/label"])
    if prob.shape != label.shape:
        raise ValueError(f"{split}: {prob.shape[0]} probabilities but {label.shape[0]} labels")
    return (prob >= THRESHOLD).astype(np.int64) != label


def _priority(train: dict, test: dict, shift: float, term: float, clear: bool, major_share: float
              ) -> tuple[str, str]:
    train_major, test_major = train["share"] >= major_share, test["share"] >= major_share
    if clear and test_major and shift >= 0.5 * term:
        return "high", "a major share of test-val errors and at least half of the shift term: a source of the gap"
    if test_major or train_major:
        return "medium", "a major share of errors" + ("" if clear else " (no clear shift term to blame it for)")
    return "low", "a small share of errors in both sets"


def default_slices(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """SLICES whose column both sets have, plus a slice per `tag_*` column (folder data's tags); and what is
    missing from both (real photos carry no reflection or hard flags). In one set only: malformed, an error."""
    found, missing = {}, []
    tags = sorted({k.split("/", 1)[1] for k in arrays if k.split("/", 1)[1].startswith("tag_")})
    for name, (col, value) in [*SLICES.items(), *((t.removeprefix("tag_"), (t, 1)) for t in tags)]:
        have = [f"{s}/{col}" in arrays for s in SETS]
        if all(have):
            found[name] = (col, value)
        elif any(have):
            lacking = [f"{s}/{col}" for s, h in zip(SETS, have) if not h]
            raise KeyError(f"slice {name!r} needs column {lacking[0]}; predictions have {sorted(arrays)}")
        else:
            missing.append(name)
    return found, missing


def analyze(arrays: Mapping[str, np.ndarray], slices: Mapping[str, tuple[str, int]] | None = None,
            major_share: float = 0.25) -> dict:
    """Per slice and set: n, errors, error rate, share, contribution; then shift and priority. JSON-ready."""
    wrong = {s: _errors(arrays, s) for s in SETS}
    skipped: list[str] = []
    if slices is None:
        slices, skipped = default_slices(arrays)
    totals = {}
    for s in SETS:
        label = np.asarray(arrays[f"{s}/label"])
        n, e = len(label), int(wrong[s].sum())
        totals[s] = {"n": n, "errors": e, "error_rate": e / n if n else None,
                     "false_negatives": int((wrong[s] & (label == 1)).sum()),
                     "false_positives": int((wrong[s] & (label == 0)).sum())}
    rate = {s: totals[s]["error_rate"] or 0.0 for s in SETS}
    term = rate["test_val"] - rate["train_val"]  # the distribution-shift term, and its binomial standard error
    term_se = sum(rate[s] * (1 - rate[s]) / max(totals[s]["n"], 1) for s in SETS) ** 0.5
    clear = term > 2 * term_se
    rows = []
    for name, (col, value) in slices.items():
        row: dict = {"slice": name, "column": col, "value": value}
        for s in SETS:
            if f"{s}/{col}" not in arrays:
                raise KeyError(f"slice {name!r} needs column {s}/{col}; predictions have {sorted(arrays)}")
            mask = np.asarray(arrays[f"{s}/{col}"]) == value
            n, e, tot = int(mask.sum()), int((wrong[s] & mask).sum()), totals[s]
            row[s] = {"n": n, "errors": e, "error_rate": e / n if n else None,
                      "share": e / tot["errors"] if tot["errors"] else 0.0,
                      "contribution": e / tot["n"] if tot["n"] else 0.0}
        row["shift"] = sum(sign * (row[s]["contribution"] - row[s]["n"] / totals[s]["n"] * rate["train_val"])
                           for sign, s in ((1, "test_val"), (-1, "train_val")) if totals[s]["n"])
        row["priority"], row["why"] = _priority(row["train_val"], row["test_val"], row["shift"], term, clear,
                                                major_share)
        rows.append(row)
    rows.sort(key=lambda r: (PRIORITIES.index(r["priority"]), -r["shift"], -r["test_val"]["contribution"]))
    return {"sets": list(SETS), "threshold": THRESHOLD, "major_share": major_share, "totals": totals,
            "distribution_shift": term, "distribution_shift_se": term_se, "slices": rows, "skipped_slices": skipped}


def _pct(v: float | None, signed: bool = False) -> str:
    return "-" if v is None else (f"{v:+.1%}" if signed else f"{v:.1%}")


COLUMNS = ("slice", "train-val n", "train-val error rate", "share of train-val errors", "test-val n",
           "test-val error rate", "share of test-val errors", "shift (points)", "priority")


def rows(analysis: dict) -> list[list[str]]:
    """The printed table's cells, one row per slice (shared by the console, Markdown and W&B views)."""
    out = []
    for r in analysis["slices"]:
        a, b = r["train_val"], r["test_val"]
        out.append([r["slice"], str(a["n"]), _pct(a["error_rate"]), _pct(a["share"]), str(b["n"]),
                    _pct(b["error_rate"]), _pct(b["share"]), _pct(r["shift"], signed=True), r["priority"]])
    return out


def _totals_line(analysis: dict) -> str:
    t = analysis["totals"]
    se = analysis.get("distribution_shift_se")
    return (f"train-val error {_pct(t['train_val']['error_rate'])} ({t['train_val']['errors']} of "
            f"{t['train_val']['n']}), test-val error {_pct(t['test_val']['error_rate'])} ({t['test_val']['errors']} "
            f"of {t['test_val']['n']}); distribution shift {_pct(analysis['distribution_shift'], signed=True)}"
            + (f" (± {2 * se:.1%} at 2 SE)" if se is not None else ""))


def table(analysis: dict, title: str = "Error analysis: test-val against train-val") -> Table:
    t = Table(title=title, caption=_totals_line(analysis))
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("slice", "priority") else "right")
    for cells in rows(analysis):
        t.add_row(*cells, style={"high": "bold red", "medium": "yellow"}.get(cells[-1], ""))
    return t


def to_markdown(analysis: dict, title: str = "Error analysis: test-val against train-val") -> str:
    lines = [f"### {title}", "", _totals_line(analysis) + ".", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(analysis)]
    if analysis.get("skipped_slices"):
        lines += ["", f"Not analysed (no such column in the data): {', '.join(analysis['skipped_slices'])}."]
    lines += ["", "Shift: the points of the distribution-shift term the slice accounts for (its errors beyond the "
              "train-val error rate, in test-val less in train-val; day + night add up to the term). Priority: "
              "high = the term is above 2 standard errors and the slice accounts for at least half of it, with at "
              f"least {analysis['major_share']:.0%} of test-val errors; medium = at least "
              f"{analysis['major_share']:.0%} of the errors of either set; low = otherwise. Slices overlap.", ""]
    return "\n".join(lines)


def write(analysis: dict, run_dir: str | Path) -> tuple[Path, Path]:
    """error_analysis.json and error_analysis.md in the run folder (atomic, like results.json)."""
    run_dir = Path(run_dir)
    paths = run_dir / "error_analysis.json", run_dir / "error_analysis.md"
    for path, text in zip(paths, (json.dumps(analysis, indent=2), to_markdown(analysis))):
        atomic_write(path, text)
    return paths


def analyze_run(run_dir: str | Path, console: Console | None = None, major_share: float = 0.25) -> dict:
    """Read run_dir/predictions.npz, analyse, write the JSON and Markdown beside it, print the table."""
    path = Path(run_dir) / "predictions.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions (a finished `python -m pedestrian` run writes them)")
    with np.load(path) as npz:
        analysis = analyze({k: npz[k] for k in npz.files}, major_share=major_share)
    write(analysis, run_dir)
    (console or Console()).print(table(analysis))
    return analysis


def _montage(images: np.ndarray, scale: int) -> np.ndarray:
    """Up to a few uint8 HWC images side by side, enlarged (nearest) so 16-32 px scenes are visible."""
    big = [np.repeat(np.repeat(im, scale, axis=0), scale, axis=1) for im in images]
    gap = np.full((big[0].shape[0], 2, big[0].shape[2]), 255, dtype=np.uint8)
    return np.concatenate([x for im in big for x in (im, gap)][:-1], axis=1)


def wandb_table(analysis: dict, arrays: Mapping[str, np.ndarray], images: Mapping[str, np.ndarray],
                per_slice: int = 8):
    """The analysis as a W&B table, each row with thumbnails of that slice's errors in both sets."""
    import wandb

    t = wandb.Table(columns=[*COLUMNS, "train-val errors", "test-val errors"])
    for cells, r in zip(rows(analysis), analysis["slices"]):
        col, value = r["column"], r["value"]
        thumbs = []
        for s in SETS:
            idx = np.flatnonzero(_errors(arrays, s) & (np.asarray(arrays[f"{s}/{col}"]) == value))[:per_slice]
            if len(idx) == 0:
                thumbs.append(None)
                continue
            scale = max(1, 64 // images[s].shape[1])
            thumbs.append(wandb.Image(_montage(images[s][idx], scale), caption=f"{r['slice']}: {len(idx)} errors"))
        t.add_data(*cells, *thumbs)
    return t


def log_wandb(run, dm, preds: Mapping[str, np.ndarray]) -> dict:
    """Called by train.run at the end of a run: analyse the in-memory predictions, log the table to W&B."""
    arrays, images = {}, {}
    for s in SETS:
        arrays[f"{s}/prob"] = preds[s]
        arrays.update({f"{s}/{a}": np.asarray(c)[: len(preds[s])] for a, c in dm.splits[s].attrs.items()})
        images[s] = dm.splits[s].images[: len(preds[s])]
    analysis = analyze(arrays)
    run.log({"error_analysis": wandb_table(analysis, arrays, images)})
    return analysis


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pedestrian.evaluate.error_analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run folder holding predictions.npz (e.g. outputs/ladder/cpu/tuned)")
    p.add_argument("--major-share", type=float, default=0.25, help="share of errors that makes a slice major")
    args = p.parse_args(argv)
    analysis = analyze_run(args.run_dir, major_share=args.major_share)
    print(f"wrote {Path(args.run_dir) / 'error_analysis.json'} and error_analysis.md "
          f"({len(analysis['slices'])} slices)")


if __name__ == "__main__":
    main()
