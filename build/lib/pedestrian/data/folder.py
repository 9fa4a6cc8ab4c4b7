"""Your own photos: a folder or CSV-manifest dataset, checked, split into the lecture's four sets, decoded once.

Lecture, "dataset construction": too little data, class imbalance, noisy labels, and train and test drawn from
different distributions. This module only reads your data; it never writes under `data.root`.

Layouts (`data.root=ROOT`; listings are sorted, so the same folder always gives the same order and split):

    ROOT/<split>/<class>/*.png              e.g. train/pedestrian, val/background, test/person
    ROOT/<split>/<domain>/<class>/*.png     a domain level, e.g. test/night/pos; domain in night_domains -> night=1
    ROOT/<class>/*.png, ROOT/<domain>/<class>/*.png    no split: a stratified group split by seed is derived
    ROOT/manifest.csv                       columns path,label[,split,domain,group,tags] (used when present)

Class folder names and manifest labels map through `data.classes` + `data.aliases` (pedestrian/person/pos/1,
background/neg/0...), split names through `data.splits` (val -> train_val...). Groups ("all crops of one source
photo"; manifest column `group`, or `data.group_pattern` on file names) never straddle a derived split.

How the lecture's four sets arise (each rule that fired is printed and kept in the run's data.json):
  * every item with a split gets it (train, train_val, test_val, test, target_pool);
  * items with no split are split by `data.fractions`, stratified by class x domain, groups kept together
    (when other items do name their sets, the unnamed ones are training data: they go to train / train_val);
  * no train_val: carved from train (`data.carve.train_val`); a user's single "val" set maps to train_val,
    the held-out set from the TRAINING distribution (variance = train_val - train);
  * no test_val: when the data's own validation set has a domain level with target-domain images (night), those are
    the held-out images of the TEST distribution and become test_val; otherwise test_val is carved from test
    (`data.carve.test_val`), so distribution shift = test_val - train_val compares like with like;
  * no test where the data names its sets: an error (test-val and test need test-distribution data);
  * no target_pool: the four sets work, but `train_splits: [target_pool]` (night_finetune) fails, saying how to
    add one (ROOT/target_pool/<class>/: a small labelled set from the test distribution).

Bad input never gets through silently: corrupt, empty, non-image and missing files, unknown labels or splits,
paths escaping the root, empty or missing class folders, one-class splits and (with `data.color=strict`) images
that are not 8-bit RGB each raise DataError naming the file, folder or manifest line before training starts.
With `data.on_bad_file=skip` bad files and rows are skipped, counted, printed and listed in the run folder
(skipped_files.json); layout errors still stop the run.

Decoding (PIL, EXIF orientation applied; greyscale, palette, RGBA, 16-bit -> 8-bit RGB, each conversion counted;
aspect ratio by `data.resize`: pad | crop | stretch) happens once: the uint8 array is cached under
`cache_root/folder/<key>/`, keyed by every file's path, size and mtime plus the image size and preprocessing,
written atomically. A second run reads no image file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console

from pedestrian.base.errors import DataError
from pedestrian.base.files import write_json
from pedestrian.data.cache import SceneArrays
from pedestrian.data.datamodule import ALL_SPLITS, ArrayDataModule

console = Console()

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
RESIZE_MODES = ("pad", "crop", "stretch")
COLOR_MODES = ("convert", "strict")
BAD_FILE_POLICIES = ("error", "skip")
CACHE_VERSION = "1"  # bump when decoding or resizing changes (part of the cache key)
MANIFEST_COLUMNS = ("path", "label", "split", "domain", "group", "tags")
# The defaults of conf/data/folder.yaml (tests check they agree): other names for the two classes, and
# split names -> the lecture's sets. A single "val" is the training distribution's held-out set.
ALIASES = {"background": ["bg", "neg", "negative", "no", "none", "nonpedestrian", "non_pedestrian", "other", "0",
                          "false"],
           "pedestrian": ["pedestrians", "person", "persons", "people", "ped", "pos", "positive", "yes", "1", "true"]}
SPLIT_NAMES = {"train": "train", "training": "train", "train_val": "train_val", "trainval": "train_val",
               "val": "train_val", "valid": "train_val", "validation": "train_val", "dev": "train_val",
               "test_val": "test_val", "testval": "test_val", "test": "test", "testing": "test",
               "target_pool": "target_pool", "target": "target_pool"}


@dataclass
class Item:
    """One image as listed, before decoding."""

    path: str                   # relative to the root, POSIX style
    label: int
    split: str | None           # one of ALL_SPLITS, None = not given (derived)
    domain: str = ""            # "" = unknown
    group: str = ""             # items sharing a group always land in the same set
    tags: tuple[str, ...] = ()
    where: str = ""             # for messages: the file, or "manifest.csv line 7"


@dataclass
class ClassMap:
    """Folder names / manifest labels -> class index (case-insensitive)."""

    classes: list[str]
    names: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, classes: Sequence[str], aliases: Mapping[str, Sequence[str]] | None) -> ClassMap:
        classes = [str(c) for c in classes]
        if len(classes) != 2:
            raise DataError(f"data.classes={classes}: the classifier is binary, name two classes "
                            "(the negative first, e.g. [background, pedestrian])")
        names = {c.lower(): i for i, c in enumerate(classes)}
        for cls_name, alts in (aliases or {}).items():
            if str(cls_name) not in classes:
                raise DataError(f"data.aliases.{cls_name}: not one of data.classes={classes}")
            for a in alts:
                a = str(a).lower()
                if names.get(a, classes.index(str(cls_name))) != classes.index(str(cls_name)):
                    raise DataError(f"data.aliases: {a!r} names both classes")
                names[a] = classes.index(str(cls_name))
        return cls(classes, names)

    def get(self, name: str) -> int | None:
        return self.names.get(str(name).strip().lower())

    def accepted(self) -> str:
        return ", ".join(sorted(self.names))


def _lower_map(m: Mapping[str, str]) -> dict[str, str]:
    out = {str(k).lower(): str(v) for k, v in m.items()}
    for k, v in out.items():
        if v not in ALL_SPLITS:
            raise DataError(f"data.splits.{k}={v!r}: must be one of {ALL_SPLITS}")
    return out


# -- listing -------------------------------------------------------------------------------------------------
def list_folder(root: Path, classes: ClassMap, splits: Mapping[str, str],
                group_pattern: str | None = None) -> tuple[list[Item], list[str]]:
    """Walk ROOT in sorted order; returns the items and the ignored (non-image or hidden) files."""
    items, ignored, class_dirs = [], [], {}
    pattern = re.compile(group_pattern) if group_pattern else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        parts = [p for p in rel_dir.parts if p != "."]
        if parts and classes.get(parts[-1]) is not None:
            class_dirs.setdefault(str(rel_dir), 0)
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix() if parts else name
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTS):
                ignored.append(rel)
                continue
            items.append(_parse_path(root, rel, parts, classes, splits, pattern))
            class_dirs[str(rel_dir)] = class_dirs.get(str(rel_dir), 0) + 1
    for d, n in sorted(class_dirs.items()):
        if n == 0:
            raise DataError(f"{root / d}/ is an empty class folder (no image files)")
    if not items:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTS)}) found; layouts: ROOT/<split>/<class>/, "
                        "ROOT/<split>/<domain>/<class>/, ROOT/<class>/ or a manifest.csv")
    has_split = {it.split is not None for it in items}
    if len(has_split) > 1:
        tops = [sorted({it.path.split("/")[0] for it in items if bool(it.split) == b}) for b in (True, False)]
        raise DataError(f"{root} mixes split folders {tops[0]} with folders outside a split {tops[1]}; "
                        "use one layout")
    _check_class_folders(root, items, classes)
    return items, ignored


def _parse_path(root: Path, rel: str, parts: list[str], classes: ClassMap, splits: Mapping[str, str],
                pattern: re.Pattern | None) -> Item:
    where = str(root / rel)
    if len(parts) == 0:
        raise DataError(f"{where}: an image directly in the root; put it in a class folder (ROOT/<class>/)")
    if len(parts) == 1 and parts[0].lower() in splits and classes.get(parts[0]) is None:
        raise DataError(f"{where}: an image directly in split folder {parts[0]}/; put it in a class folder")
    if len(parts) > 3:
        raise DataError(f"{where}: too deep; layouts are ROOT/<split>/<class>/, ROOT/<split>/<domain>/<class>/ "
                        "and ROOT/<class>/")
    split = domain = None
    if len(parts) == 3:
        split, domain = parts[0], parts[1]
    elif len(parts) == 2:
        split, domain = (parts[0], None) if parts[0].lower() in splits else (None, parts[0])
    if split is not None and split.lower() not in splits:
        raise DataError(f"{root / split}/: {split!r} is not a split name; data.splits accepts "
                        f"{', '.join(sorted(splits))}")
    label = classes.get(parts[-1])
    if label is None:
        raise DataError(f"{root / '/'.join(parts)}/: {parts[-1]!r} is not a class name; data.classes and "
                        f"data.aliases accept {classes.accepted()}")
    stem = PurePosixPath(rel).stem
    group = rel
    if pattern is not None:
        m = pattern.search(stem)
        group = (m.group(1) if m.groups() else m.group(0)) if m else rel
    return Item(rel, label, splits[split.lower()] if split else None, (domain or "").lower(), group, (), where)


def _check_class_folders(root: Path, items: list[Item], classes: ClassMap) -> None:
    """Every split folder (or the root, with no split) needs a folder for every class."""
    by_top: dict[str, set[int]] = {}
    for it in items:
        top = it.path.split("/")[0] if it.split else ""
        by_top.setdefault(top, set()).add(it.label)
    for top, labels in sorted(by_top.items()):
        for i, name in enumerate(classes.classes):
            if i not in labels:
                alts = sorted(n for n, j in classes.names.items() if j == i)
                raise DataError(f"{root / top}/: no folder for class {name!r} (any of: {', '.join(alts)}); "
                                "every split needs both classes")


def read_manifest(root: Path, manifest: Path, classes: ClassMap, splits: Mapping[str, str],
                  on_bad: str) -> tuple[list[Item], list[dict]]:
    """Rows of a CSV manifest -> items. Bad rows raise (or, on_bad='skip', come back in the second list)."""
    if not manifest.is_file():
        raise DataError(f"data.manifest: {manifest} does not exist")
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in cols]
        if missing:
            raise DataError(f"{manifest}: missing column(s) {missing}; columns are {', '.join(MANIFEST_COLUMNS)} "
                            "(path and label required)")
        extra = [c for c in cols if c not in MANIFEST_COLUMNS]
        if extra:
            console.print(f"[yellow]{manifest.name}: ignoring column(s) {extra}[/yellow]")
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    if not rows:
        raise DataError(f"{manifest}: no rows")
    root_abs = os.path.normpath(os.path.abspath(root))
    items, bad, seen = [], [], {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest.name} line {line}"
        try:
            path = row.get("path", "")
            if not path:
                raise DataError(f"{where}: empty path")
            full = os.path.normpath(os.path.join(root_abs, path))
            if os.path.commonpath([root_abs, full]) != root_abs:
                raise DataError(f"{where}: path {path!r} escapes the data root {root}")
            rel = Path(os.path.relpath(full, root_abs)).as_posix()
            if rel in seen:
                raise DataError(f"{where}: {rel} is listed twice (first at line {seen[rel]})")
            seen[rel] = line
            label = classes.get(row.get("label", ""))
            if label is None:
                raise DataError(f"{where}: unknown label {row.get('label', '')!r} for {path}; data.classes and "
                                f"data.aliases accept {classes.accepted()}")
            split = row.get("split", "")
            if split and split.lower() not in splits:
                raise DataError(f"{where}: unknown split {split!r}; data.splits accepts {', '.join(sorted(splits))}")
            tags = tuple(sorted({t for t in re.split(r"[;,\s|]+", row.get("tags", "")) if t}))
            items.append(Item(rel, label, splits[split.lower()] if split else None, row.get("domain", "").lower(),
                              row.get("group", "") or rel, tags, f"{where} ({rel})"))
        except DataError as e:
            if on_bad == "error":
                raise
            bad.append({"path": row.get("path", ""), "where": where, "reason": str(e)})
    return items, bad


# -- decoding --------------------------------------------------------------------------------------------------
def to_rgb(img: Image.Image, alpha_background: int = 0) -> tuple[np.ndarray, str]:
    """Any PIL image -> 8-bit RGB array; returns (array, the original mode). Explicit per mode: 16-bit and
    32-bit greyscale are scaled (PIL's convert would clip), alpha is composited over a flat background."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.int64)
        a = np.clip(a >> 8 if a.max() > 255 or mode.startswith("I;16") else a, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2), mode
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.max() <= 1.0 else a
        return np.repeat(np.clip(a, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2), mode
    if mode in ("P", "PA"):  # palette: expand, keeping a transparent colour as alpha
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        bg = Image.new("RGBA", img.size, (alpha_background,) * 3 + (255,))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"), dtype=np.uint8), mode


def fit(a: np.ndarray, size: int, resize: str) -> np.ndarray:
    """HxWx3 -> size x size x 3. pad: keep the aspect, fill the short side by repeating the edge pixels;
    crop: keep the aspect, cut the centre square; stretch: ignore the aspect."""
    h, w = a.shape[:2]
    if resize == "crop":
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    elif resize == "pad" and h != w:
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        a = cv2.copyMakeBorder(a, top, s - h - top, left, s - w - left, cv2.BORDER_REPLICATE)
    h, w = a.shape[:2]
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(a), (size, size), interpolation=interp)


def decode(data: bytes, size: int, resize: str) -> tuple[np.ndarray, dict]:
    """File bytes -> (size x size x 3 uint8, info). Raises DataError saying what is wrong with the file."""
    if len(data) == 0:
        raise DataError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        fmt, (w, h) = img.format, img.size
        orientation = img.getexif().get(0x0112, 1)  # EXIF: how the camera was held
        if fmt == "JPEG" and img.mode in ("RGB", "L"):
            img.draft(img.mode, (2 * size, 2 * size))  # decode a large JPEG at a reduced scale (much faster)
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
            w, h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        rgb, mode = to_rgb(img)
    except UnidentifiedImageError:
        raise DataError("not an image (no known image format in its bytes)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"corrupt image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise DataError(f"cannot convert mode {mode} (shape {rgb.shape}) to RGB")
    return fit(rgb, size, resize), {"mode": mode, "format": fmt, "width": w, "height": h}


def _stat(root: Path, rel: str) -> tuple[int, int]:
    try:
        st = (root / rel).stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def cache_key(root: Path, items: Sequence[Item], size: int, resize: str) -> str:
    """What makes the decoded array: every file (path, size, mtime), the size and the preprocessing."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{root.resolve()}|{size}|{resize}".encode())
    for it in items:
        h.update(f"|{it.path}:{_stat(root, it.path)}".encode())
    return h.hexdigest()[:16]


def _decode_one(args: tuple[Path, str, int, str]) -> tuple[np.ndarray | None, dict]:
    root, rel, size, resize = args
    try:
        data = (root / rel).read_bytes()
    except FileNotFoundError:
        return None, {"error": "file not found"}
    except OSError as e:
        return None, {"error": f"cannot read ({e})"}
    try:
        a, info = decode(data, size, resize)
    except DataError as e:
        return None, {"error": str(e)}
    info["sha1"] = hashlib.sha1(data).hexdigest()
    return a, info


def decode_all(root: Path, items: Sequence[Item], size: int, resize: str, cache_root: Path,
               workers: int = 0) -> tuple[np.ndarray, list[dict], dict]:
    """Decode every item once (cached); returns (images for all items, zeros where bad; info per item; stats).
    info[i] has 'error' for a bad file, else mode/format/width/height/sha1."""
    key = cache_key(root, items, size, resize)
    cdir = cache_root / "folder" / key
    t0 = time.perf_counter()
    if (cdir / "meta.json").exists():
        infos = json.loads((cdir / "meta.json").read_text())["info"]
        images = np.load(cdir / "images.npy")
        return images, infos, _stats(len(items), t0, True, cdir)
    images = np.zeros((len(items), size, size, 3), np.uint8)
    infos: list[dict] = []
    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:  # PIL releases the GIL while decoding
        for i, (a, info) in enumerate(pool.map(_decode_one, [(root, it.path, size, resize) for it in items])):
            if a is not None:
                images[i] = a
            infos.append(info)
    _write_cache(cdir, images, {"version": CACHE_VERSION, "root": str(root.resolve()), "size": size,
                                "resize": resize, "paths": [it.path for it in items], "info": infos})
    return images, infos, _stats(len(items), t0, False, cdir)


def _stats(n: int, t0: float, cached: bool, cdir: Path) -> dict:
    s = time.perf_counter() - t0
    return {"images": n, "seconds": round(s, 3), "images_per_s": round(n / max(s, 1e-9), 1), "from_cache": cached,
            "cache": str(cdir)}


def _write_cache(cdir: Path, images: np.ndarray, meta: dict) -> None:
    """Atomic: written into a temporary folder, then renamed into place (a concurrent writer's copy wins)."""
    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cdir.name}.", dir=cdir.parent))
    try:
        np.save(tmp / "images.npy", images)
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, cdir)
    except OSError:
        if not (cdir / "meta.json").exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# -- splitting -----------------------------------------------------------------------------------------------
def stratified_group_split(strata: Sequence, groups: Sequence, fractions: Mapping[str, float],
                           seed: int) -> np.ndarray:
    """Assign each item a set name: every group whole to one set, each stratum (class, or class x domain) in
    the given proportions as nearly as groups allow. Deterministic in (items, fractions, seed).

    Greedy: groups in a seeded order, largest first; each goes to the set that still misses the largest share of
    its target for the strata the group holds."""
    names = list(fractions)
    frac = np.array([float(fractions[n]) for n in names])
    if len(names) == 0 or (frac < 0).any() or frac.sum() <= 0:
        raise DataError(f"split fractions {dict(fractions)} must be >= 0 and not all 0")
    frac = frac / frac.sum()
    s_ids, s_inv = np.unique(np.asarray([str(s) for s in strata]), return_inverse=True)
    g_ids, g_inv = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    counts = np.zeros((len(g_ids), len(s_ids)))
    np.add.at(counts, (g_inv, s_inv), 1)
    target = frac[:, None] * counts.sum(0)[None, :]
    current = np.zeros_like(target)
    order = np.random.default_rng(seed).permutation(len(g_ids))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    assign = np.empty(len(g_ids), dtype=np.int64)
    for g in order:
        need = (target - current) / np.maximum(target, 1e-9)
        overall = (target.sum(1) - current.sum(1)) / np.maximum(target.sum(1), 1e-9)  # breaks ties: emptiest set
        k = int(np.argmax((need * counts[g]).sum(1) + 1e-3 * overall))
        assign[g] = k
        current[k] += counts[g]
    return np.asarray(names, dtype=object)[assign[g_inv]]


def assign_sets(items: Sequence[Item], fractions: Mapping[str, float], carve: Mapping[str, float],
                target_domains: Sequence[str], seed: int) -> tuple[np.ndarray, list[str]]:
    """The lecture's four sets (and target_pool when named) for every item; the notes say which rule fired."""
    sets = np.asarray([it.split or "" for it in items], dtype=object)
    labels = np.asarray([it.label for it in items])
    domains = np.asarray([it.domain for it in items], dtype=object)
    groups = np.asarray([it.group for it in items], dtype=object)
    strata = np.asarray([f"{lab}|{d}" for lab, d in zip(labels, domains)], dtype=object)
    notes = []
    free = sets == ""
    named = set(sets[~free])
    if free.any():
        if named:  # the others named their sets: these are training data for the source sets not named yet
            keep = [s for s in ("train", "train_val") if s not in named] or ["train"]
            fractions = {s: fractions.get(s, 0.0) or 1.0 for s in keep}
        sets[free] = stratified_group_split(strata[free], groups[free], fractions, seed)
        notes.append(f"{int(free.sum())} items had no split: stratified (class x domain) group split by seed {seed} "
                     f"with fractions {dict(fractions)}")
    if not (sets == "train").any():
        raise DataError("the data has no training images: name a split train (ROOT/train/<class>/ or the "
                        "manifest's split column), or leave every split empty to derive one")

    def carve_from(src: str, dst: str, f: float) -> None:
        m = sets == src
        sets[m] = stratified_group_split(strata[m], groups[m], {src: 1 - f, dst: f}, seed + 1)
        notes.append(f"no {dst}: carved {int((sets == dst).sum())} items ({f:.0%}, stratified, groups kept "
                     f"together) from {src}")

    if not (sets == "train_val").any():
        carve_from("train", "train_val", float(carve["train_val"]))
    if named and not (sets == "test").any():
        raise DataError("the data has no test set: add ROOT/test/<class>/ (images from the distribution you deploy "
                        "on) or give manifest rows split=test; the lecture's test-val and test sets come from it")
    if not (sets == "test_val").any():
        tgt = {d.lower() for d in target_domains}
        given_val = "train_val" in named and bool(tgt)  # the data's own validation set, with a domain level
        m = (sets == "train_val") & np.isin(domains, list(tgt)) if given_val else np.zeros(len(sets), bool)
        if m.any() and (~m & (sets == "train_val")).any():
            sets[m] = "test_val"
            notes.append(f"no test_val: the {int(m.sum())} validation items of target domain(s) {sorted(tgt)} are "
                         "the held-out test-distribution set (test_val); the rest stay train_val")
        else:
            carve_from("test", "test_val", float(carve["test_val"]))
    for name in ("train", "train_val", "test_val", "test"):
        if not (sets == name).any():
            raise DataError(f"no {name} images after splitting {len(items)} items into {len(set(groups))} groups: "
                            "too little data (or too few groups) for the lecture's four sets")
    return sets, notes


# -- the datamodule ------------------------------------------------------------------------------------------
class FolderDataModule(ArrayDataModule):
    """Photos from a folder or manifest, presented exactly as SceneDataModule presents rendered scenes."""

    def __init__(self, root: str | Path, manifest: str | None = "auto", cache_root: str | Path = "data",
                 classes: Sequence[str] = ("background", "pedestrian"),
                 aliases: Mapping[str, Sequence[str]] | None = None, splits: Mapping[str, str] | None = None,
                 night_domains: Sequence[str] = ("night",), target_domains: Sequence[str] | None = None,
                 fractions: Mapping[str, float] | None = None, carve: Mapping[str, float] | None = None,
                 group_pattern: str | None = None, n_train: int | None = None, resize: str = "pad",
                 color: str = "convert", on_bad_file: str = "error", decode_workers: int = 0,
                 image_size: int = 32, seed: int = 0, **kwargs) -> None:
        super().__init__(image_size=image_size, seed=seed, **kwargs)
        for key, val, allowed in (("data.resize", resize, RESIZE_MODES), ("data.color", color, COLOR_MODES),
                                  ("data.on_bad_file", on_bad_file, BAD_FILE_POLICIES)):
            if val not in allowed:
                raise DataError(f"{key}={val!r}: must be one of {allowed}")
        if root in (None, "", "???"):
            raise DataError("data.root must be set: data=folder data.root=PATH/TO/PHOTOS")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root={str(root)!r}: no such folder")
        self.cache_root = Path(cache_root)
        root_abs, cache_abs = self.root.resolve(), self.cache_root.resolve()
        if cache_abs == root_abs or root_abs in cache_abs.parents:
            raise DataError(f"data.cache_root={str(cache_root)!r} lies inside data.root={str(root)!r}: the pipeline "
                            "never writes under your data; point data.cache_root elsewhere")
        self.manifest = manifest
        self.class_map = ClassMap.build(classes, ALIASES if aliases is None else aliases)
        self.split_map = _lower_map(SPLIT_NAMES if splits is None else splits)
        self.night_domains = [d.lower() for d in night_domains]
        self.target_domains = [d.lower() for d in (self.night_domains if target_domains is None else target_domains)]
        self.fractions = dict(fractions or {"train": 0.6, "train_val": 0.1, "test_val": 0.15, "test": 0.15})
        self.carve = {"train_val": 0.15, "test_val": 0.5} | dict(carve or {})
        for key in self.fractions:
            if key not in ALL_SPLITS:
                raise DataError(f"data.fractions.{key}: not one of {ALL_SPLITS}")
        for key, v in self.carve.items():
            if not 0 < float(v) < 1:
                raise DataError(f"data.carve.{key}={v}: a fraction in (0, 1)")
        self.group_pattern, self.n_train, self.resize = group_pattern, n_train, resize
        self.color, self.on_bad_file, self.decode_workers = color, on_bad_file, decode_workers
        self.num_classes = 2
        # filled by load_splits: what was read, skipped, and which file is which row
        self.skipped: list[dict] = []
        self.ignored: list[str] = []
        self.notes: list[str] = []
        self.paths: dict[str, list[str]] = {}
        self.domain_names: list[str] = []
        self.mode_names: list[str] = []
        self.load_stats: dict = {}

    # -- listing, checking, decoding, splitting ---------------------------------------------------------
    def _manifest_path(self) -> Path | None:
        if self.manifest in (None, "", "none", "null"):
            return None
        if self.manifest == "auto":
            p = self.root / "manifest.csv"
            return p if p.is_file() else None
        p = Path(self.manifest)
        return p if p.is_absolute() else self.root / p

    def list_items(self) -> list[Item]:
        manifest = self._manifest_path()
        if manifest is not None:
            items, bad = read_manifest(self.root, manifest, self.class_map, self.split_map, self.on_bad_file)
            self.skipped.extend(bad)
            self.notes.append(f"read {len(items)} rows of {manifest}")
        else:
            items, self.ignored = list_folder(self.root, self.class_map, self.split_map, self.group_pattern)
            self.notes.append(f"listed {len(items)} images under {self.root}")
        return items

    def _bad(self, items: Sequence[Item], bad: list[tuple[int, str]]) -> None:
        """The bad-file policy: error names every bad file; skip records them (printed and written later)."""
        if not bad:
            return
        lines = [f"  {items[i].where}: {why}" for i, why in bad]
        if self.on_bad_file == "error":
            more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
            raise DataError(f"{len(bad)} bad file(s) under {self.root}:\n" + "\n".join(lines[:20]) + more +
                            "\nfix or remove them, or set data.on_bad_file=skip to skip and list them")
        self.skipped.extend({"path": items[i].path, "where": items[i].where, "reason": why} for i, why in bad)

    def load_splits(self) -> dict[str, SceneArrays]:
        self.skipped, self.notes, self.paths = [], [], {}
        items = self.list_items()
        derived_pool = all(it.split is None for it in items) and self.fractions.get("target_pool", 0) > 0
        if "target_pool" in self.train_splits and not derived_pool \
                and not any(it.split == "target_pool" for it in items):
            raise DataError(f"data.train_splits={self.train_splits}: this data ({self.root}) has no target_pool. "
                            "night_finetune trains on a small labelled set from the test distribution: add "
                            "ROOT/target_pool/<class>/ (or manifest rows with split=target_pool)")
        images, infos, self.load_stats = decode_all(self.root, items, self.image_size, self.resize,
                                                    self.cache_root, self.decode_workers)
        bad = [(i, info["error"]) for i, info in enumerate(infos) if "error" in info]
        if self.color == "strict":
            bad += [(i, f"mode {info['mode']} is not 8-bit RGB (data.color=strict; data.color=convert converts it)")
                    for i, info in enumerate(infos) if "error" not in info and info["mode"] != "RGB"]
        self._bad(items, sorted(bad))
        keep = np.asarray(sorted(set(range(len(items))) - {i for i, _ in bad}), dtype=np.int64)
        items, images, infos = [items[i] for i in keep], images[keep], [infos[i] for i in keep]
        if not items:
            raise DataError(f"{self.root}: every file was bad ({len(self.skipped)} skipped)")

        sets, notes = assign_sets(items, self.fractions, self.carve, self.target_domains, self.seed)
        self.notes += notes
        self.domain_names = sorted({it.domain for it in items if it.domain})
        self.mode_names = sorted({info["mode"] for info in infos})
        tags = sorted({t for it in items for t in it.tags if re.fullmatch(r"[A-Za-z0-9_]+", t)})
        groups = sorted({it.group for it in items})
        g_index = {g: i for i, g in enumerate(groups)}
        rng = np.random.default_rng(self.seed)
        out: dict[str, SceneArrays] = {}
        for split in ALL_SPLITS:
            idx = np.flatnonzero(sets == split)
            if len(idx) == 0:
                continue
            idx = idx[rng.permutation(len(idx))]  # sorted listing, then a seeded shuffle: same folder, same order
            if split == "train" and self.n_train is not None and len(idx) > self.n_train:
                self.notes.append(f"train capped at data.n_train={self.n_train} of {len(idx)} images")
                idx = idx[: self.n_train]
            sel = [items[i] for i in idx]
            attrs = {
                "label": np.asarray([it.label for it in sel], np.int64),
                "night": np.asarray([int(it.domain in self.night_domains) for it in sel], np.int64),
                "group": np.asarray([g_index[it.group] for it in sel], np.int64),
                "domain": np.asarray([self.domain_names.index(it.domain) if it.domain else -1 for it in sel],
                                     np.int64),
                "mode": np.asarray([self.mode_names.index(infos[i]["mode"]) for i in idx], np.int64),
                "width": np.asarray([infos[i]["width"] for i in idx], np.float32),
                "height": np.asarray([infos[i]["height"] for i in idx], np.float32),
            }
            for t in tags:
                attrs[f"tag_{t}"] = np.asarray([int(t in it.tags) for it in sel], np.int64)
            out[split] = SceneArrays(images=images[idx], attrs=attrs)
            self.paths[split] = [it.path for it in sel]
        self._check_classes(out)
        self._print_summary(out)
        return out

    def _check_classes(self, out: dict[str, SceneArrays]) -> None:
        for split, arr in out.items():
            present = set(np.unique(arr.attrs["label"]).tolist())
            if len(present) < 2:
                only = self.class_map.classes[present.pop()]
                raise DataError(f"split {split!r} has only class {only!r} ({len(arr.attrs['label'])} images): error "
                                "rates need both classes in every set; add images of the other class to it")

    def _print_summary(self, out: dict[str, SceneArrays]) -> None:
        st = self.load_stats
        how = "from the decoded cache" if st["from_cache"] else "decoded"
        console.print(f"folder data {self.root}: {st['images']} files {how} in {st['seconds']:.2f} s "
                      f"({st['images_per_s']:.0f} images/s)")
        for note in self.notes:
            console.print(f"  {note}")
        for split, arr in out.items():
            lab = arr.attrs["label"]
            console.print(f"  {split:11s} {len(lab):6d} images, {lab.mean():.1%} {self.class_map.classes[1]}, "
                          f"{arr.attrs['night'].mean():.1%} night")
        modes = Counter(self.mode_names[m] for a in out.values() for m in a.attrs["mode"].tolist())
        converted = {m: n for m, n in sorted(modes.items()) if m != "RGB"}
        if converted:
            console.print(f"  converted to 8-bit RGB: {converted} (by original PIL mode)")
        if self.ignored:
            console.print(f"  ignored {len(self.ignored)} non-image file(s), e.g. {self.ignored[:3]}")
        if self.skipped:
            console.print(f"[yellow]  skipped {len(self.skipped)} bad file(s)/row(s) (data.on_bad_file=skip):[/yellow]")
            for s in self.skipped[:20]:
                console.print(f"[yellow]    {s['where']}: {s['reason']}[/yellow]")
            if len(self.skipped) > 20:
                console.print(f"[yellow]    ... {len(self.skipped) - 20} more, all in skipped_files.json[/yellow]")

    def write_record(self, run_dir: str | Path) -> None:
        """The run's own record of its data: skipped_files.json (never silent) and data.json (which file is
        which row of each split, the split rules that fired, decoding speed)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "skipped_files.json", {"root": str(self.root), "count": len(self.skipped),
                                                    "files": self.skipped}, indent=1)
        write_json(run_dir / "data.json", {
            "root": str(self.root.resolve()), "manifest": str(self._manifest_path() or ""), "notes": self.notes,
            "load": self.load_stats, "classes": self.class_map.classes, "domains": self.domain_names,
            "modes": self.mode_names, "ignored": self.ignored,
            "counts": {s: dict(Counter(self.class_map.classes[i] for i in a.attrs["label"].tolist()))
                       for s, a in self.splits.items()},
            "files": self.paths}, indent=1)
