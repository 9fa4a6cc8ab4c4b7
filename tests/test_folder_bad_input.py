"""Bad input never gets through silently: each case is a clear error naming the file, folder or manifest line
before training starts; with data.on_bad_file=skip bad files are skipped, counted and listed; and nothing under
the data root is ever modified."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from test_folder import make_split_folder, save, texture

from pedestrian.data.folder import DataError, FolderDataModule


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path) -> Path:
    return make_split_folder(tmp_path / "photos", n=4)


def load(root: Path, tmp_path: Path, **kw) -> FolderDataModule:
    dm = FolderDataModule(root=root, cache_root=tmp_path / "cache", image_size=16, **kw)
    dm.setup()
    return dm


def write_manifest(root: Path, rows: list[list[str]]) -> None:
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *rows])


def manifest_rows(root: Path) -> list[list[str]]:
    return [[p.relative_to(root).as_posix(), p.parent.name, p.parts[-3]] for p in sorted(root.rglob("*.png"))]


BAD_FILES = {
    "corrupt": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt image"),
    "zero_bytes": (lambda p: p.write_bytes(b""), "empty file"),
    "not_an_image": (lambda p: p.write_text("this is a text file, not a PNG"), "not an image"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_named_or_skipped_and_listed(case, root, tmp_path):
    make_bad, why = BAD_FILES[case]
    bad = root / "train" / "pedestrian" / "img001.png"
    make_bad(bad)
    before = snapshot(root)
    with pytest.raises(DataError, match=why) as e:
        load(root, tmp_path)
    assert str(bad) in str(e.value) and "data.on_bad_file=skip" in str(e.value)
    dm = load(root, tmp_path, on_bad_file="skip")
    assert [s["path"] for s in dm.skipped] == ["train/pedestrian/img001.png"] and why in dm.skipped[0]["reason"]
    assert "train/pedestrian/img001.png" not in dm.paths["train"] + dm.paths["train_val"]
    assert sum(len(p) for p in dm.paths.values()) == 4 * 2 * 3 - 1  # everything else is there
    dm.write_record(tmp_path / "run")
    assert "img001.png" in (tmp_path / "run" / "skipped_files.json").read_text()
    assert snapshot(root) == before  # never modified, never deleted


def test_manifest_bad_rows(root, tmp_path):
    rows = manifest_rows(root)
    cases = {
        "unknown label": ([rows[0][0], "giraffe", rows[0][2]], "line 2: unknown label 'giraffe'"),
        "escapes": (["../outside.png", "pedestrian", "train"], "line 2: path '../outside.png' escapes the data root"),
        "absolute": (["/etc/passwd", "pedestrian", "train"], "escapes the data root"),
        "unknown split": ([rows[0][0], rows[0][1], "holdout"], "line 2: unknown split 'holdout'"),
    }
    before = snapshot(root)
    for name, (row, msg) in cases.items():
        write_manifest(root, [row, *rows[1:]])
        with pytest.raises(DataError, match=msg):
            load(root, tmp_path)
        dm = load(root, tmp_path, on_bad_file="skip")
        assert len(dm.skipped) == 1 and "line 2" in dm.skipped[0]["where"], name
    write_manifest(root, [*rows, rows[3]])
    with pytest.raises(DataError, match=f"line {len(rows) + 2}: .* listed twice"):
        load(root, tmp_path)
    write_manifest(root, [["train/pedestrian/nope.png", "pedestrian", "train"], *rows[1:]])
    with pytest.raises(DataError, match=r"line 2 \(train/pedestrian/nope.png\): file not found"):
        load(root, tmp_path)
    (root / "manifest.csv").unlink()
    assert {k: v for k, v in snapshot(root).items() if k != "manifest.csv"} == before


def test_missing_and_empty_class_folders(tmp_path):
    root = make_split_folder(tmp_path / "a", n=2)
    for p in (root / "test" / "background").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"test/background/ is an empty class folder"):
        load(root, tmp_path)
    (root / "test" / "background").rmdir()
    with pytest.raises(DataError, match=r"test/: no folder for class 'background'"):
        load(root, tmp_path)


def test_unknown_folder_names_and_layouts(tmp_path):
    root = make_split_folder(tmp_path / "a", n=2)
    save(root / "train" / "giraffe" / "x.png", texture(1))
    with pytest.raises(DataError, match=r"train/giraffe/: 'giraffe' is not a class name"):
        load(root, tmp_path)
    root = make_split_folder(tmp_path / "b", n=2)
    save(root / "holdout" / "day" / "pedestrian" / "x.png", texture(1))
    with pytest.raises(DataError, match=r"'holdout' is not a split name"):
        load(root, tmp_path)
    root = make_split_folder(tmp_path / "c", n=2)
    save(root / "train" / "x.png", texture(1))
    with pytest.raises(DataError, match=r"train/x.png: an image directly in split folder"):
        load(root, tmp_path)


def test_a_set_with_one_class_only(root, tmp_path):
    rows = [r for r in manifest_rows(root) if not (r[2] == "test" and r[1] == "background")]
    write_manifest(root, rows)
    with pytest.raises(DataError, match="split 'test.*' has only class 'pedestrian'"):
        load(root, tmp_path)


def test_mismatched_channels_under_strict_color(root, tmp_path):
    grey = root / "val" / "background" / "img002.png"
    save(grey, np.full((16, 16), 128, np.uint8))
    rgba = root / "test" / "pedestrian" / "img003.png"
    save(rgba, np.zeros((16, 16, 4), np.uint8))
    dm = load(root, tmp_path)  # default: converted to RGB, and the data knows which were converted
    assert dm.mode_names == ["L", "RGB", "RGBA"]
    with pytest.raises(DataError, match="mode L is not 8-bit RGB") as e:
        load(root, tmp_path, color="strict")
    assert str(grey) in str(e.value) and str(rgba) in str(e.value)
    assert len(load(root, tmp_path, color="strict", on_bad_file="skip").skipped) == 2


def test_target_pool_missing_for_finetuning(root, tmp_path):
    with pytest.raises(DataError, match="has no target_pool.*ROOT/target_pool/<class>/"):
        load(root, tmp_path, train_splits=["target_pool"])
    save(root / "target_pool" / "pedestrian" / "a.png", texture(5, label=1))
    save(root / "target_pool" / "background" / "a.png", texture(6))
    dm = load(root, tmp_path, train_splits=["target_pool"])
    assert len(dm.train_images_labels()[1]) == 2


def test_never_writes_under_the_data_root(root, tmp_path):
    with pytest.raises(DataError, match="never writes under your data"):
        FolderDataModule(root=root, cache_root=root / "cache")
    with pytest.raises(DataError, match="no such folder"):
        FolderDataModule(root=tmp_path / "nope")
    with pytest.raises(DataError, match="data.on_bad_file='ignore'"):
        FolderDataModule(root=root, on_bad_file="ignore")
