"""The Penn-Fudan converter: the annotation parser, crops and background windows on a small fake database
(deterministic, no window touches a box, groups = source photos), its refusals, and the real database when
../shared/data/PennFudanPed is present (skipped otherwise: it is never part of this repository)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, cli

from pedestrian.data.folder import FolderDataModule
from pedestrian.data.penn_fudan import ConversionError, convert, parse_annotation

REAL = ROOT.parent / "shared" / "data" / "PennFudanPed"


def annotation(name: str, w: int, h: int, boxes: list[tuple[int, int, int, int]]) -> str:
    """A file in the database's PASCAL Annotation 1.00 text format (1-based, inclusive boxes)."""
    lines = ["# Compatible with PASCAL Annotation Version 1.00",
             f'Image filename : "PennFudanPed/PNGImages/{name}.png"', f"Image size (X x Y x C) : {w} x {h} x 3",
             'Database : "The Penn-Fudan-Pedestrian Database"',
             f"Objects with ground truth : {len(boxes)} {{ " + " ".join(['"PASpersonWalking"'] * len(boxes)) + " }"]
    for k, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        lines += [f'# Details for pedestrian {k} ("PASpersonWalking")',
                  f'Original label for object {k} "PASpersonWalking" : "PennFudanPed"',
                  f'Bounding box for object {k} "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : '
                  f"({x0}, {y0}) - ({x1}, {y1})",
                  f'Pixel mask for object {k} "PASpersonWalking" : "PennFudanPed/PedMasks/{name}_mask.png"', ""]
    return "\r\n".join(lines)


def fake_database(root: Path, n: int = 6) -> dict[str, list[tuple[int, int, int, int]]]:
    """n photos of a noisy street, each with 1-2 red 'pedestrians' (boxes in 1-based inclusive coordinates)."""
    (root / "PNGImages").mkdir(parents=True)
    (root / "Annotation").mkdir()
    boxes = {}
    for i in range(n):
        name = f"{'FudanPed' if i % 2 else 'PennPed'}{i:05d}"
        rng = np.random.default_rng(i)
        w, h = 300 + 20 * i, 200
        img = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
        b = [(11 + 10 * i, 21, 50 + 10 * i, 120)] + ([(201, 61, 240, 160)] if i % 3 == 0 else [])
        for x0, y0, x1, y1 in b:
            img[y0 - 1:y1, x0 - 1:x1] = (0, 0, 255)
        cv2.imwrite(str(root / "PNGImages" / f"{name}.png"), img)
        (root / "Annotation" / f"{name}.txt").write_text(annotation(name, w, h, b))
        boxes[name] = b
    return boxes


def test_parse_annotation_converts_to_zero_based_half_open():
    ann = parse_annotation(annotation("PennPed00001", 400, 300, [(1, 1, 10, 20), (100, 50, 400, 300)]))
    assert (ann.width, ann.height) == (400, 300)
    assert ann.boxes == [(0, 0, 10, 20), (99, 49, 400, 300)]
    with pytest.raises(ConversionError, match=r"x.txt line 8: box \(1, 1\) - \(101, 50\) lies outside"):
        parse_annotation(annotation("a", 100, 100, [(1, 1, 101, 50)]), "x.txt")
    with pytest.raises(ConversionError, match="says 2 objects but has 1"):
        parse_annotation(annotation("a", 100, 100, [(1, 1, 10, 10)]).replace("truth : 1", "truth : 2"))


def test_convert_fake_database(tmp_path):
    src = tmp_path / "PennFudanPed"
    boxes = fake_database(src)
    a, b = tmp_path / "a", tmp_path / "b"
    summary = convert(src, a, size=32, quiet=True)
    convert(src, b, size=32, quiet=True)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for f in files:  # deterministic, byte for byte
        if f != "conversion.json":
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert summary["pedestrian"] == sum(len(v) for v in boxes.values())
    rows = list(csv.DictReader(open(a / "manifest.csv")))
    assert {r["group"] for r in rows} <= set(boxes)
    assert {r["domain"] for r in rows} == {"penn", "fudan"}
    for w in csv.DictReader(open(a / "windows.csv")):
        win = tuple(int(w[k]) for k in ("x0", "y0", "x1", "y1"))
        assert win[2] - win[0] == win[3] - win[1]  # square
        if w["path"].startswith("background/"):
            for x0, y0, x1, y1 in boxes[w["photo"]]:  # 1-based inclusive -> 0-based half-open
                assert min(win[2], x1) <= max(win[0], x0 - 1) or min(win[3], y1) <= max(win[1], y0 - 1), w
            crop = cv2.imread(str(a / w["path"]))
            assert not ((crop[..., 2] > 250) & (crop[..., 0] < 5)).any()  # no red "pedestrian" inside
        else:
            crop = cv2.imread(str(a / w["path"]))
            assert ((crop[..., 2] > 250) & (crop[..., 0] < 5)).mean() > 0.15  # the red "pedestrian" is in it
    assert summary["background"] > 0

    dm = FolderDataModule(root=a, cache_root=tmp_path / "cache", image_size=16)  # the manifest is picked up
    dm.setup()
    photo_of = {r["path"]: r["group"] for r in rows}
    sides = {}
    for split, paths in dm.paths.items():
        for p in paths:
            sides.setdefault(photo_of[p], set()).add(split)
    assert all(len(v) == 1 for v in sides.values())  # all crops of one photo on one side


def test_convert_refuses_to_touch_what_it_does_not_own(tmp_path):
    src = tmp_path / "PennFudanPed"
    fake_database(src, n=2)
    with pytest.raises(ConversionError, match="overlap"):
        convert(src, src / "crops")
    with pytest.raises(ConversionError, match="PNGImages.*not found"):
        convert(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(ConversionError, match="exists"):
        convert(src, tmp_path / "mine")
    with pytest.raises(ConversionError, match="not an earlier conversion"):
        convert(src, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"
    (src / "Annotation" / "PennPed00000.txt").unlink()
    with pytest.raises(ConversionError, match="without an annotation"):
        convert(src, tmp_path / "out")


@pytest.mark.skipif(not REAL.is_dir(), reason="the Penn-Fudan database is not at ../shared/data/PennFudanPed")
def test_real_database_cli(tmp_path):
    out = tmp_path / "pf"
    r = cli(str(REAL), str(out), "--limit", "12", "--size", "48", module="pedestrian.data.penn_fudan")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "conversion.json").read_text())
    n_boxes = sum(len(parse_annotation(p.read_text()).boxes)
                  for p in sorted((REAL / "Annotation").glob("*.txt"))[:12])
    assert s["photos"] == 12 and s["pedestrian"] == n_boxes
    assert s["background"] + s["background_not_placed"] == n_boxes
    assert cv2.imread(str(next((out / "pedestrian").glob("*.png")))).shape == (48, 48, 3)
    r = cli(str(REAL), str(out), module="pedestrian.data.penn_fudan")
    assert r.returncode == 2 and "--overwrite" in r.stderr
