"""`python -m pedestrian.doctor data [overrides] [--out DIR] [--max-distance N]`: look at the data before training.

Lecture, dataset construction: too little data, class imbalance, noisy labels, and train and test drawn from
different distributions. The same config as `python -m pedestrian` (data=folder data.root=PATH, profile=...),
loaded by the same datamodule, so the doctor sees exactly what training would see. Bad files are listed, not
fatal (data.on_bad_file=skip is forced). Checks:

  decode      files that fail to decode (corrupt, empty, not an image)
  balance     class balance per set (and night share); one-class sets; the positive rate drifting between sets
  duplicates  exact, mirrored and near-duplicate images across sets (a leak: the same photo in train and test),
              and the same image with two labels (noisy labels)
  groups      a group (e.g. one source photo) on both sides of a split
  drift       brightness, contrast, colourfulness and sharpness per set; the effect size test_val vs train_val is
              the distribution shift (the night shift) seen before any model is trained
  class_cues  a property that alone separates the classes in train (e.g. all pedestrians blurrier): a shortcut

Writes data_doctor.json (+ duplicates.png) to --out; exit 0 when nothing fails, 1 when a check fails, 2 on a
config or data error.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from pedestrian.base.conf import compose
from pedestrian.base.files import write_json
from pedestrian.doctor.common import CheckResult

PROPERTIES = ("brightness", "contrast", "colourfulness", "sharpness")
SETS = ("train", "train_val", "test_val", "test", "target_pool")
STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "skip": "dim"}


# -- image properties and hashes (vectorised over uint8 NHWC arrays) -------------------------------------------
def properties(images: np.ndarray, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Per image: brightness and contrast (mean, std of luminance), colourfulness (Hasler & Suesstrunk 2003) and
    sharpness (variance of the Laplacian), all on a 0..1 pixel scale."""
    out = {p: [] for p in PROPERTIES}
    for s in range(0, len(images), chunk):
        x = images[s:s + chunk].astype(np.float32) / 255.0
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        rg, yb = r - g, 0.5 * (r + g) - b
        lap = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:] - 4 * y[:, 1:-1, 1:-1]
        out["brightness"].append(y.mean((1, 2)))
        out["contrast"].append(y.std((1, 2)))
        out["colourfulness"].append(np.sqrt(rg.std((1, 2)) ** 2 + yb.std((1, 2)) ** 2)
                                    + 0.3 * np.sqrt(rg.mean((1, 2)) ** 2 + yb.mean((1, 2)) ** 2))
        out["sharpness"].append(lap.var((1, 2)))
    return {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in out.items()}


def _grey(images: np.ndarray) -> np.ndarray:
    return (images[..., 0] * 0.299 + images[..., 1] * 0.587 + images[..., 2] * 0.114).astype(np.float32)


def dhash(images: np.ndarray, mirror: bool = False) -> np.ndarray:
    """64-bit difference hash per image (grey, 9x8, left-right gradient signs); mirror=True hashes the flipped
    image, so a mirrored copy has the same hash as the original."""
    grey = _grey(images[:, :, ::-1] if mirror else images)
    small = np.stack([cv2.resize(g, (9, 8), interpolation=cv2.INTER_AREA) for g in grey]) if len(grey) else \
        np.zeros((0, 8, 9), np.float32)
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(grey), 64)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def thumbs(images: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnails, zero-mean unit-norm: their dot product is a brightness-invariant correlation."""
    grey = _grey(images)
    t = np.stack([cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA) for g in grey]).reshape(len(grey), -1)
    t = t - t.mean(1, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)


def find_duplicates(images: np.ndarray, max_distance: int = 4, min_corr: float = 0.9,
                    block: int = 1024) -> list[dict]:
    """Pairs (i < j) of exact, mirrored and near-duplicate images. Near: dHash Hamming distance <= max_distance
    (straight or mirrored) confirmed by a thumbnail correlation >= min_corr. Near-blank images are left out of
    the near search (their hashes are noise). Brute force in blocks: fine to ~10^5 images."""
    n = len(images)
    pairs: dict[tuple[int, int], dict] = {}
    digest = [hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images]
    mirror_digest = [hashlib.blake2b(np.ascontiguousarray(im[:, ::-1]).tobytes(), digest_size=16).digest()
                     for im in images]
    first: dict[bytes, int] = {}
    for i, d in enumerate(digest):
        if d in first:
            pairs[(first[d], i)] = {"kind": "exact", "distance": 0}
        else:
            first[d] = i
    for j, d in enumerate(mirror_digest):
        i = first.get(d)
        if i is not None and i != j and digest[i] != digest[j]:
            pairs.setdefault((min(i, j), max(i, j)), {"kind": "mirror", "distance": 0})
    if n < 2:
        return []
    usable = np.flatnonzero(_grey(images).std((1, 2)) >= 2.0)  # grey levels; below that, a flat image
    h, hm = dhash(images[usable]), dhash(images[usable], mirror=True)
    th = thumbs(images[usable])
    th_m = thumbs(np.ascontiguousarray(images[usable][:, :, ::-1]))
    for s in range(0, len(usable), block):
        rows = slice(s, s + block)
        for kind, other, other_th in (("near", h, th), ("near-mirror", hm, th_m)):
            dist = np.bitwise_count(h[rows, None] ^ other[None, :])
            a, b = np.nonzero(dist <= max_distance)
            a = a + s
            keep = a < b if kind == "near" else a != b
            for i, j in zip(a[keep], b[keep]):
                corr = float(th[i] @ other_th[j])
                key = (int(min(usable[i], usable[j])), int(max(usable[i], usable[j])))
                if corr >= min_corr and key not in pairs:
                    pairs[key] = {"kind": kind, "distance": int(dist[i - s, j]), "corr": round(corr, 3)}
    return [{"i": i, "j": j, **v} for (i, j), v in sorted(pairs.items())]


def effect_size(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of b against a: the difference of means in pooled standard deviations."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((b.mean() - a.mean()) / sd) if sd > 0 else 0.0


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """The asymptotic two-sample KS p-value (conservative enough here; n = independent units, e.g. photos)."""
    if not n1 or not n2 or np.isnan(d):
        return float("nan")
    return float(min(1.0, 2 * np.exp(-2 * d * d * n1 * n2 / (n1 + n2))))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical CDFs (0..1)."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    ca = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(ca - cb).max())


# -- the checks ----------------------------------------------------------------------------------------------
class DataReport:
    """The checks on one set-up datamodule's splits (uint8 images + attrs per set)."""

    def __init__(self, dm, max_distance: int = 4, min_corr: float = 0.9) -> None:
        self.dm = dm
        self.sets = [s for s in SETS if s in dm.splits]
        self.classes = list(getattr(getattr(dm, "class_map", None), "classes", ["background", "pedestrian"]))
        self.max_distance, self.min_corr = max_distance, min_corr
        self.props = {s: properties(dm.splits[s].images) for s in self.sets}
        self.tables: dict[str, list[list]] = {}

    def name(self, split: str, i: int) -> str:
        paths = getattr(self.dm, "paths", {}).get(split)
        return paths[i] if paths else f"{split}[{i}]"

    def run(self) -> list[CheckResult]:
        out = []
        for check in (self.decode, self.balance, self.duplicates, self.groups, self.drift, self.class_cues):
            t0 = time.perf_counter()
            r = check()
            r.seconds = round(time.perf_counter() - t0, 2)
            out.append(r)
        return out

    def decode(self) -> CheckResult:
        skipped = list(getattr(self.dm, "skipped", []) or [])
        if not hasattr(self.dm, "skipped"):
            return CheckResult("decode", "skip", "not a file data set (nothing to decode)")
        n = sum(len(self.dm.splits[s].images) for s in self.sets)
        if not skipped:
            return CheckResult("decode", "pass", f"all {n} files decoded", details={"decoded": n})
        return CheckResult("decode", "fail", f"{len(skipped)} bad file(s) or row(s) ({n} decoded)",
                           diagnosis="bad_files",
                           explanation="; ".join(f"{s['where']}: {s['reason']}" for s in skipped[:5]),
                           fixes=["fix or remove them", "data.on_bad_file=skip trains without them (listed in "
                                                        "skipped_files.json)"],
                           details={"decoded": n, "bad": skipped})

    def balance(self) -> CheckResult:
        rows, details, problems, status = [], {}, [], "pass"
        rates = {}
        for s in self.sets:
            attrs = self.dm.splits[s].attrs
            lab = np.asarray(attrs["label"])
            counts = np.bincount(lab, minlength=2)
            night = float(np.mean(attrs["night"])) if "night" in attrs else float("nan")
            rates[s] = counts[1] / max(len(lab), 1)
            details[s] = {"n": int(len(lab)), **{self.classes[k]: int(counts[k]) for k in range(2)},
                          "positive_rate": round(float(rates[s]), 4), "night": round(night, 4)}
            rows.append([s, len(lab), int(counts[0]), int(counts[1]), f"{rates[s]:.1%}", f"{night:.1%}"])
            if counts.min() == 0:
                status = "fail"
                problems.append(f"{s} has one class only")
            elif counts.min() / len(lab) < 0.25:
                status = "warn" if status == "pass" else status
                problems.append(f"{s}: class imbalance, minority {counts.min() / len(lab):.0%}")
        spread = max(rates.values()) - min(rates.values())
        if spread > 0.10:
            status = "warn" if status == "pass" else status
            problems.append(f"the positive rate differs by {spread:.0%} between sets (label shift)")
        self.tables["balance"] = [["set", "n", self.classes[0], self.classes[1], f"% {self.classes[1]}", "% night"],
                                  *rows]
        summary = "; ".join(problems) if problems else f"both classes in every set, positive rate within {spread:.0%}"
        return CheckResult("balance", status, summary, diagnosis="imbalance" if problems else None,
                           fixes=["collect more of the minority class", "reweight the loss or resample"] if problems
                           else [], details=details)

    def duplicates(self) -> CheckResult:
        offsets, owner = {}, []
        for s in self.sets:
            offsets[s] = len(owner)
            owner += [(s, i) for i in range(len(self.dm.splits[s].images))]
        images = np.concatenate([self.dm.splits[s].images for s in self.sets])
        labels = np.concatenate([np.asarray(self.dm.splits[s].attrs["label"]) for s in self.sets])
        pairs = find_duplicates(images, self.max_distance, self.min_corr)
        cross, within, conflicts = [], 0, []
        for p in pairs:
            (sa, ia), (sb, ib) = owner[p["i"]], owner[p["j"]]
            rec = {**p, "a": self.name(sa, ia), "b": self.name(sb, ib), "set_a": sa, "set_b": sb,
                   "label_a": int(labels[p["i"]]), "label_b": int(labels[p["j"]])}
            if labels[p["i"]] != labels[p["j"]] and p["kind"] in ("exact", "mirror"):
                conflicts.append(rec)
            if sa != sb:
                cross.append(rec)
            else:
                within += 1
        self.dup_pairs = (images, cross)
        kinds = {k: sum(p["kind"] == k for p in cross) for k in ("exact", "mirror", "near", "near-mirror")}
        details = {"cross_set": cross, "within_set_pairs": within, "label_conflicts": conflicts, "kinds": kinds,
                   "max_distance": self.max_distance, "min_corr": self.min_corr}
        if conflicts or kinds["exact"] or kinds["mirror"]:
            status = "fail"
        elif cross:
            status = "warn"
        else:
            return CheckResult("duplicates", "pass", f"no duplicates across sets ({within} within a set)",
                               details=details)
        summary = (f"{len(cross)} pair(s) across sets: " + ", ".join(f"{v} {k}" for k, v in kinds.items() if v)
                   + (f"; {len(conflicts)} identical image(s) with two labels" if conflicts else ""))
        ex = "; ".join(f"{p['a']} ({p['set_a']}) ~ {p['b']} ({p['set_b']}): {p['kind']}" for p in cross[:5])
        return CheckResult("duplicates", status, summary, diagnosis="leak" if cross else "noisy_labels",
                           explanation="the same picture on both sides of a split makes held-out error optimistic: "
                                       + ex,
                           fixes=["remove one of each pair", "give crops of one photo the same group (manifest "
                                                             "column group, or data.group_pattern)"],
                           details=details)

    def groups(self) -> CheckResult:
        if not all("group" in self.dm.splits[s].attrs for s in self.sets):
            return CheckResult("groups", "skip", "no group ids in this data")
        where: dict[int, set[str]] = {}
        for s in self.sets:
            for g in np.unique(self.dm.splits[s].attrs["group"]).tolist():
                where.setdefault(g, set()).add(s)
        split_groups = {g: sorted(v) for g, v in where.items() if len(v) > 1}
        if not split_groups:
            return CheckResult("groups", "pass", f"{len(where)} groups, none on both sides of a split")
        return CheckResult("groups", "fail", f"{len(split_groups)} of {len(where)} groups appear in several sets",
                           diagnosis="group_leak", fixes=["leave the split column empty to derive a group split"],
                           details={"groups": {str(k): v for k, v in list(split_groups.items())[:50]}})

    def units(self, split: str) -> int:
        """Independent units of a set: its groups (crops of one photo are not independent), else its images."""
        attrs = self.dm.splits[split].attrs
        return int(len(np.unique(attrs["group"]))) if "group" in attrs else len(self.dm.splits[split].images)

    def drift(self) -> CheckResult:
        """Flag a property when test_val vs train_val differs by |d| >= 0.5 AND the KS test, counting groups as
        the units, finds it unlikely from splitting alone (p < 0.01): a small grouped data set is noisy."""
        rows, details, shifted = [], {}, []
        both = {"train_val", "test_val"} <= set(self.sets)
        n_units = (self.units("train_val"), self.units("test_val")) if both else (0, 0)
        for p in PROPERTIES:
            means = {s: float(self.props[s][p].mean()) for s in self.sets}
            sds = {s: float(self.props[s][p].std()) for s in self.sets}
            d_shift = effect_size(self.props["train_val"][p], self.props["test_val"][p]) \
                if {"train_val", "test_val"} <= set(self.sets) else float("nan")
            d_var = effect_size(self.props["train"][p], self.props["train_val"][p]) \
                if {"train", "train_val"} <= set(self.sets) else float("nan")
            ks = ks_statistic(self.props["train_val"][p], self.props["test_val"][p]) \
                if {"train_val", "test_val"} <= set(self.sets) else float("nan")
            pval = ks_pvalue(ks, *n_units)
            details[p] = {"mean": means, "sd": sds, "d_test_val_vs_train_val": d_shift,
                          "ks_test_val_vs_train_val": ks, "ks_p": pval, "units": n_units,
                          "d_train_val_vs_train": d_var}
            rows.append([p, *[f"{means[s]:.3f}" for s in self.sets], f"{d_shift:+.2f}",
                         "<0.001" if pval < 0.001 else f"{pval:.3f}",
                         f"{d_var:+.2f}"])
            if abs(d_shift) >= 0.5 and pval < 0.01:
                shifted.append(f"{p} {d_shift:+.2f} sd")
        self.tables["drift"] = [["property", *self.sets, "shift d", "KS p", "var d"], *rows]
        if not shifted:
            return CheckResult("drift", "pass", "test_val looks like train_val in every property (no |d| >= 0.5 "
                               "with KS p < 0.01)", details=details)
        return CheckResult("drift", "warn", "test_val differs from train_val: " + ", ".join(shifted),
                           diagnosis="distribution_shift",
                           explanation="train and test come from different distributions: expect a distribution-"
                                       "shift term (test_val - train_val) in the bias-variance table",
                           fixes=["collect or synthesise training data like the test data (night_synth)",
                                  "domain adaptation (night_finetune)"], details=details)

    def class_cues(self) -> CheckResult:
        if "train" not in self.sets:
            return CheckResult("class_cues", "skip", "no train set")
        arr = self.dm.splits["train"]
        lab = np.asarray(arr.attrs["label"])
        values = dict(self.props["train"])
        if "width" in arr.attrs and "height" in arr.attrs:
            values["aspect (w/h)"] = np.asarray(arr.attrs["width"]) / np.maximum(np.asarray(arr.attrs["height"]), 1)
        modes = getattr(self.dm, "mode_names", [])
        if "mode" in arr.attrs and modes and "RGB" in modes:
            values["not RGB originally"] = (np.asarray(arr.attrs["mode"]) != modes.index("RGB")).astype(np.float32)
        rows, details, cues = [], {}, []
        for name, v in values.items():
            a, b = v[lab == 0], v[lab == 1]
            d = effect_size(a, b)
            details[name] = {"mean_" + self.classes[0]: float(a.mean()) if len(a) else None,
                             "mean_" + self.classes[1]: float(b.mean()) if len(b) else None, "d": d}
            rows.append([name, f"{a.mean():.3f}" if len(a) else "-", f"{b.mean():.3f}" if len(b) else "-", f"{d:+.2f}"])
            if abs(d) >= 0.8:
                cues.append(f"{name} {d:+.2f} sd")
        self.tables["class_cues"] = [["property (train)", self.classes[0], self.classes[1], "d"], *rows]
        if not cues:
            return CheckResult("class_cues", "pass", "no single image property separates the classes (|d| < 0.8)",
                               details=details)
        return CheckResult("class_cues", "warn", "properties that differ strongly by class: " + ", ".join(cues),
                           diagnosis="shortcut",
                           explanation="a model can learn the property instead of the pedestrian, and fail where "
                                       "it does not hold (check how each class was collected or cropped)",
                           fixes=["collect both classes the same way", "augment the property away"],
                           details=details)


# -- output --------------------------------------------------------------------------------------------------
def _table(rows: list[list], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for h in rows[0]:
        t.add_column(str(h), justify="left" if h == rows[0][0] else "right")
    for r in rows[1:]:
        t.add_row(*[str(x) for x in r])
    return t


def render(report: DataReport, results: list[CheckResult], console: Console) -> None:
    if "balance" in report.tables:
        console.print(_table(report.tables["balance"], "class balance per set"))
    if "drift" in report.tables:
        console.print(_table(report.tables["drift"], "drift: mean image properties per set; shift d = test_val vs "
                                                     "train_val in pooled sd (KS p over groups); var d = train_val vs "
                                                     "train"))
    if "class_cues" in report.tables:
        console.print(_table(report.tables["class_cues"], "class cues in train (d = pedestrian vs background)"))
    t = Table(title="data checks", title_justify="left")
    for col in ("check", "status", "summary"):
        t.add_column(col)
    for r in results:
        t.add_row(r.check, f"[{STYLE[r.status]}]{r.status}[/{STYLE[r.status]}]", r.summary)
    console.print(t)
    for r in results:
        if r.status in ("warn", "fail") and (r.explanation or r.fixes):
            console.print(f"[{STYLE[r.status]}]{r.check}[/{STYLE[r.status]}]: {r.explanation}")
            for f in r.fixes:
                console.print(f"  - {f}")


def save_pairs_image(path: Path, images: np.ndarray, pairs: list[dict], n: int = 12) -> None:
    """Side-by-side pairs (a | b) of the first duplicates across sets, for a human to confirm."""
    if not pairs:
        return
    rows = [np.concatenate([images[p["i"]], np.full((images.shape[1], 2, 3), 255, np.uint8), images[p["j"]]], 1)
            for p in pairs[:n]]
    sep = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, sep)], 0)
    cv2.imwrite(str(path), cv2.resize(grid[..., ::-1], None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pedestrian.doctor data", description=__doc__.split("\n\n")[0],
                                 epilog="Other arguments are config overrides, e.g. data=folder data.root=PATH")
    ap.add_argument("--out", type=Path, default=None, help="folder for data_doctor.json (default outputs/doctor/data/"
                                                           "<time>)")
    ap.add_argument("--max-distance", type=int, default=4, help="dHash bits for a near duplicate (default 4)")
    ap.add_argument("--min-corr", type=float, default=0.9, help="thumbnail correlation that confirms one")
    args, overrides = ap.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        ap.error(f"unknown option(s) {bad}")
    console = Console() if sys.stdout.isatty() else Console(width=120)  # (tables stay readable in logs)

    from hydra.errors import HydraException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from pedestrian.base.errors import ConfigError
    from pedestrian.core.config import validate
    from pedestrian.data.folder import DataError

    out = args.out or Path("outputs/doctor/data") / time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        cfg = compose([f"run_dir={out}", *overrides])  # (no Hydra run here to set it)
        validate(cfg)
        if "on_bad_file" in cfg.data:
            with open_dict(cfg):
                cfg.data.on_bad_file = "skip"  # list every bad file instead of stopping at them
        dm = instantiate(cfg.data)
        dm.setup()
    except DataError as e:  # the layout itself is wrong (bad files are listed instead: on_bad_file=skip)
        print(f"data error: {e}", file=sys.stderr)
        return 2
    except (ConfigError, HydraException, OmegaConfBaseException, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = DataReport(dm, args.max_distance, args.min_corr)
    results = report.run()
    render(report, results, console)
    out.mkdir(parents=True, exist_ok=True)
    images, cross = getattr(report, "dup_pairs", (None, []))
    if cross:
        save_pairs_image(out / "duplicates.png", images, cross)
    code = 1 if any(r.status == "fail" for r in results) else 0
    payload = {"exit_code": code, "data": OmegaConf.to_container(cfg.data, resolve=True),
               "seconds": round(time.perf_counter() - t0, 2), "tables": report.tables,
               "checks": [r.to_dict() for r in results]}
    write_json(out / "data_doctor.json", payload, indent=1, default=float)
    console.print(f"data doctor: {out / 'data_doctor.json'} (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
