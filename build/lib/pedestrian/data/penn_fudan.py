"""Penn-Fudan pedestrian photos -> a folder dataset of pedestrian crops and background windows.

    python -m pedestrian.data.penn_fudan PennFudanPed/ /tmp/penn_fudan_crops
    python -m pedestrian +stage=lenet data=folder data.root=/tmp/penn_fudan_crops

The Penn-Fudan Database for Pedestrian Detection and Segmentation (Wang, Shi, Song, Shen, ACCV 2007) has 170
street and campus photos (`PNGImages/`) and one PASCAL Annotation 1.00 text file per photo (`Annotation/`) with a
bounding box per pedestrian, 1-based inclusive pixel coordinates. Its authors keep the copyright: download it from
https://www.cis.upenn.edu/~jshi/ped_html/ yourself and never commit it (or its crops) to a repository.

What comes out (deterministic: the same photos and flags give the same bytes):
  DST/pedestrian/<photo>_p<k>.png   a square window around box k with context padding (--pad on each side of its
                                    longer edge), shifted to stay inside the photo, resized to --size
  DST/background/<photo>_b<k>.png   a window of the same side as pedestrian window k (matched scale), at a random
                                    place in the same photo that overlaps no box; when none fits after many tries
                                    the side shrinks by 15% steps (tag `shrunk`), never below 40%
  DST/manifest.csv                  path,label,split,domain,group,tags: group = the source photo, so a split
                                    keeps all crops of one photo on one side; domain = penn | fudan; split empty
                                    (the folder datamodule derives a stratified group split)
  DST/windows.csv                   each crop's source photo and window (0-based, half-open pixels)
  DST/conversion.json               parameters and counts

Label noise to know about (the lecture's "noisy labels"): the annotation skips severely occluded and very small
people, so a background window can hold part of an unannotated person.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE_RE = re.compile(r"Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)")
COUNT_RE = re.compile(r"Objects with ground truth\s*:\s*(\d+)")
BOX_RE = re.compile(r'Bounding box for object (\d+) "([^"]*)" \(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*'
                    r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*-\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
MIN_SCALE, SHRINK = 0.4, 0.85


class ConversionError(ValueError):
    """The source database is not what the converter expects; the message names the file and line."""


@dataclass
class Annotation:
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]  # 0-based, half-open: x0, y0, x1, y1
    labels: list[str]


def parse_annotation(text: str, name: str = "annotation") -> Annotation:
    """A PASCAL Annotation 1.00 text file -> image size and boxes (converted to 0-based, half-open)."""
    size = count = None
    boxes, labels = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if m := SIZE_RE.search(line):
            size = int(m.group(1)), int(m.group(2))
        elif m := COUNT_RE.search(line):
            count = int(m.group(1))
        elif line.startswith("Bounding box"):
            m = BOX_RE.search(line)
            if not m:
                raise ConversionError(f"{name} line {line_no}: cannot parse the bounding box: {line.strip()!r}")
            x0, y0, x1, y1 = (int(v) for v in m.groups()[2:])
            if size is None:
                raise ConversionError(f"{name} line {line_no}: a box before the 'Image size' line")
            if not (1 <= x0 <= x1 <= size[0] and 1 <= y0 <= y1 <= size[1]):
                raise ConversionError(f"{name} line {line_no}: box ({x0}, {y0}) - ({x1}, {y1}) lies outside the "
                                      f"{size[0]} x {size[1]} image")
            boxes.append((x0 - 1, y0 - 1, x1, y1))
            labels.append(m.group(2))
    if size is None:
        raise ConversionError(f"{name}: no 'Image size (X x Y x C) : W x H x C' line")
    if count is not None and count != len(boxes):
        raise ConversionError(f"{name}: says {count} objects but has {len(boxes)} bounding boxes")
    if not boxes:
        raise ConversionError(f"{name}: no bounding boxes")
    return Annotation(size[0], size[1], boxes, labels)


def square_window(cx: float, cy: float, side: float, w: int, h: int) -> tuple[int, int, int, int]:
    """A square of `side` centred at (cx, cy), shrunk to fit and shifted to lie inside a w x h image."""
    s = int(round(min(side, w, h)))
    x0 = int(round(min(max(cx - s / 2, 0), w - s)))
    y0 = int(round(min(max(cy - s / 2, 0), h - s)))
    return x0, y0, x0 + s, y0 + s


def _intersects(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def pedestrian_windows(ann: Annotation, pad: float) -> list[tuple[int, int, int, int]]:
    """One square context window per box: side = longer box edge x (1 + 2 pad)."""
    out = []
    for x0, y0, x1, y1 in ann.boxes:
        side = max(x1 - x0, y1 - y0) * (1 + 2 * pad)
        out.append(square_window((x0 + x1) / 2, (y0 + y1) / 2, side, ann.width, ann.height))
    return out


class FreeSpace:
    """Where a square of a given side fits in one photo without touching any box or the middle of a background
    window already cut from it (an integral image of the occupied pixels)."""

    def __init__(self, ann: Annotation) -> None:
        self.occupied = np.zeros((ann.height, ann.width), np.int32)
        for x0, y0, x1, y1 in ann.boxes:
            self.occupied[y0:y1, x0:x1] = 1
        self._update()

    def _update(self) -> None:
        self.integral = np.pad(self.occupied, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        lo, hi = 0, min(self.occupied.shape)  # the largest free square, so photos without room are skipped fast
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if (self._taken(mid) == 0).any() else (lo, mid - 1)
        self.largest = lo

    def _taken(self, s: int) -> np.ndarray:
        i = self.integral
        return i[s:, s:] - i[:-s, s:] - i[s:, :-s] + i[:-s, :-s]  # occupied pixels per top-left corner (y0, x0)

    def sample(self, side: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """A uniformly drawn free square of this side, or None. Its central half is then marked occupied, so later
        windows may share its margins but not its middle (at most ~25% of the area: no near-copies)."""
        s = int(side)
        if s < 1 or s > self.largest:
            return None
        ys, xs = np.nonzero(self._taken(s) == 0)
        k = int(rng.integers(len(ys)))
        x0, y0 = int(xs[k]), int(ys[k])
        self.occupied[y0 + s // 4:y0 + s - s // 4, x0 + s // 4:x0 + s - s // 4] = 1
        self._update()
        return x0, y0, x0 + s, y0 + s


def background_window(side: int, home: str, others: list[str], space: dict[str, FreeSpace],
                      rng: np.random.Generator) -> tuple[str, tuple[int, int, int, int], float] | None:
    """A box-free square of `side`: in the home photo if it fits, else in another photo of the same domain
    (seeded order); only when no photo has room does the side shrink (15% steps, down to MIN_SCALE).
    Returns (photo, window, scale) or None."""
    scale = 1.0
    order = [home] + [others[j] for j in rng.permutation(len(others))]
    while scale >= MIN_SCALE - 1e-9:
        for stem in order:
            win = space[stem].sample(int(round(side * scale)), rng)
            if win is not None:
                return stem, win, round(scale, 3)
        scale *= SHRINK
    return None


def _crop(img: np.ndarray, win: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = win
    crop = img[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def _domain(stem: str) -> str:
    return "fudan" if stem.lower().startswith("fudan") else "penn" if stem.lower().startswith("penn") else ""


def convert(src: Path, dst: Path, size: int = 96, pad: float = 0.15, backgrounds: float = 1.0, seed: int = 0,
            limit: int | None = None, overwrite: bool = False, quiet: bool = False) -> dict:
    """Convert the database at `src` into the folder layout at `dst` (written atomically); returns the summary."""
    src, dst = Path(src), Path(dst)
    images_dir, ann_dir = src / "PNGImages", src / "Annotation"
    for d in (images_dir, ann_dir):
        if not d.is_dir():
            raise ConversionError(f"{d}: not found; SRC must be the PennFudanPed folder (PNGImages/, Annotation/)")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if dst_abs == src_abs or src_abs in dst_abs.parents or dst_abs in src_abs.parents:
        raise ConversionError(f"DST={dst} and SRC={src} overlap: write the crops somewhere else")
    if dst.exists():
        if not overwrite:
            raise ConversionError(f"{dst} exists; pass --overwrite to replace an earlier conversion")
        if not (dst / "conversion.json").exists():
            raise ConversionError(f"{dst} exists, not an earlier conversion (no conversion.json): leaving it")
    if not 0 <= pad <= 2 or size < 8 or backgrounds < 0:
        raise ConversionError(f"--pad {pad} (0..2), --size {size} (>= 8), --backgrounds {backgrounds} (>= 0)")

    photos = sorted(p for p in images_dir.iterdir() if p.suffix.lower() == ".png")
    if limit:
        photos = photos[:limit]
    if not photos:
        raise ConversionError(f"{images_dir}: no PNG photos")
    anns = {p.stem: ann_dir / f"{p.stem}.txt" for p in photos}
    missing = [str(a) for a in anns.values() if not a.exists()]
    if missing:
        raise ConversionError(f"{len(missing)} photo(s) without an annotation, e.g. {missing[0]}")

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        rows, counts = _convert_into(tmp, photos, anns, size, pad, backgrounds, seed, quiet)
        with open(tmp / "manifest.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["path", "label", "split", "domain", "group", "tags"])
            w.writerows([r[:6] for r in rows])
        with open(tmp / "windows.csv", "w", newline="") as f:  # where each crop came from (0-based, half-open)
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["path", "photo", "x0", "y0", "x1", "y1", "scale"])
            w.writerows([[r[0], r[4], *r[6:]] for r in rows])
        summary = {"source": str(src_abs), "size": size, "pad": pad, "backgrounds": backgrounds, "seed": seed,
                   "limit": limit, **counts,
                   "license": "Penn-Fudan Database (Wang, Shi, Song, Shen, ACCV 2007): copyright stays with its "
                              "authors; research use; do not redistribute or commit these crops."}
        (tmp / "conversion.json").write_text(json.dumps(summary, indent=1))
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _convert_into(out: Path, photos: list[Path], anns: dict[str, Path], size: int, pad: float, backgrounds: float,
                  seed: int, quiet: bool) -> tuple[list[list[str]], dict]:
    (out / "pedestrian").mkdir()
    (out / "background").mkdir()
    ann = {p.stem: parse_annotation(anns[p.stem].read_text(errors="replace"), str(anns[p.stem])) for p in photos}
    imgs: dict[str, np.ndarray] = {}

    def image(photo: Path) -> np.ndarray:
        if photo.stem not in imgs:
            img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if img is None:
                raise ConversionError(f"{photo}: cannot decode")
            a = ann[photo.stem]
            if img.shape[:2] != (a.height, a.width):
                raise ConversionError(f"{photo}: is {img.shape[1]} x {img.shape[0]} but {anns[photo.stem]} says "
                                      f"{a.width} x {a.height}")
            imgs[photo.stem] = img
        return imgs[photo.stem]

    by_stem = {p.stem: p for p in photos}
    space = {stem: FreeSpace(a) for stem, a in ann.items()}
    rows: list[list[str]] = []
    n_bg = {stem: 0 for stem in ann}
    counts = Counter()
    sides: dict[str, list[int]] = {"pedestrian": [], "background": []}
    for i, photo in enumerate(photos):
        stem, domain = photo.stem, _domain(photo.stem)
        ped = pedestrian_windows(ann[stem], pad)
        for k, win in enumerate(ped, start=1):
            crowd = any(j != k - 1 and _overlap_of(b, win) >= 0.5 for j, b in enumerate(ann[stem].boxes))
            path = f"pedestrian/{stem}_p{k}.png"
            cv2.imwrite(str(out / path), _crop(image(photo), win, size))
            rows.append([path, "pedestrian", "", domain, stem, "crowd" if crowd else "", *win, 1.0])
            sides["pedestrian"].append(win[2] - win[0])
            counts["pedestrian"] += 1
        # background windows of the same sides as this photo's pedestrian windows (matched scale)
        others = [s for s in ann if s != stem and _domain(s) == domain]
        for k in range(int(round(backgrounds * len(ped)))):
            rng = np.random.default_rng([seed, zlib.crc32(stem.encode()), k])
            got = background_window(ped[k % len(ped)][2] - ped[k % len(ped)][0], stem, others, space, rng)
            if got is None:
                counts["background_not_placed"] += 1
                continue
            src_stem, win, scale = got
            n_bg[src_stem] += 1
            path = f"background/{src_stem}_b{n_bg[src_stem]}.png"
            cv2.imwrite(str(out / path), _crop(image(by_stem[src_stem]), win, size))
            rows.append([path, "background", "", domain, src_stem, "shrunk" if scale < 1 else "", *win, scale])
            sides["background"].append(win[2] - win[0])
            counts["background"] += 1
            counts["background_shrunk"] += scale < 1
            counts["background_from_other_photo"] += src_stem != stem
        if not quiet and (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(photos)} photos", flush=True)
    rows.sort()
    summary = {"photos": len(photos), **{k: counts[k] for k in ("pedestrian", "background", "background_shrunk",
                                                                 "background_from_other_photo",
                                                                 "background_not_placed")},
               "window_px": {k: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                                 "p90": float(np.percentile(v, 90))} if v else None for k, v in sides.items()}}
    return rows, summary


def _overlap_of(box: tuple[int, int, int, int], win: tuple[int, int, int, int]) -> float:
    """The fraction of `box` inside `win`."""
    iw, ih = min(box[2], win[2]) - max(box[0], win[0]), min(box[3], win[3]) - max(box[1], win[1])
    return max(iw, 0) * max(ih, 0) / ((box[2] - box[0]) * (box[3] - box[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pedestrian.data.penn_fudan", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="the PennFudanPed folder (PNGImages/, Annotation/)")
    ap.add_argument("dst", type=Path, help="output folder (must not exist, or pass --overwrite)")
    ap.add_argument("--size", type=int, default=96, help="side of the square crops in pixels (default 96)")
    ap.add_argument("--pad", type=float, default=0.15, help="context around a box, fraction of its longer edge")
    ap.add_argument("--backgrounds", type=float, default=1.0, help="background windows per pedestrian (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted)")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier conversion at DST")
    args = ap.parse_args(argv)
    try:
        s = convert(args.src, args.dst, args.size, args.pad, args.backgrounds, args.seed, args.limit, args.overwrite)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{s['photos']} photos -> {s['pedestrian']} pedestrian crops, {s['background']} background windows "
          f"({s['background_from_other_photo']} from another photo of the same domain, {s['background_shrunk']} at "
          f"a smaller scale, {s['background_not_placed']} not placed) in {args.dst}")
    print(f"window side in the photo (px): {s['window_px']}")
    print(f"train on it: python -m pedestrian +stage=lenet data=folder data.root={args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
