"""Folder and manifest datasets: layouts, class and split names, image kinds, the group split, the decoded cache,
and the ladder's early stages on a folder through the real CLI. Bad input: tests/test_folder_bad_input.py."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import cli, compose
from PIL import Image

from pedestrian.data.folder import (
    DataError,
    FolderDataModule,
    assign_sets,
    decode,
    list_folder,
    stratified_group_split,
)


def texture(seed: int, size: int = 24, bright: float = 1.0, label: int = 0) -> np.ndarray:
    """A random RGB picture; class 1 gets a tall dark bar (something to learn), night ones are darker."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(40, 255, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    if label:
        img[size // 5: -size // 6, size // 2 - 2: size // 2 + 2] = 20
    return np.clip(img * bright, 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def make_split_folder(root: Path, splits=("train", "val", "test"), names=("background", "pedestrian"), n: int = 8,
                      domains: tuple[str, ...] = ()) -> Path:
    for s_i, split in enumerate(splits):
        for dom in domains or ("",):
            for label, name in enumerate(names):
                for k in range(n):
                    seed = zlib.crc32(f"{s_i}/{dom}/{label}/{k}".encode())
                    d = root / split / dom / name if dom else root / split / name
                    save(d / f"img{k:03d}.png", texture(seed, bright=0.3 if dom == "night" else 1.0, label=label))
    return root


def dm_for(root: Path, tmp_path: Path, **kw) -> FolderDataModule:
    dm = FolderDataModule(root=root, cache_root=tmp_path / "cache", image_size=16, **kw)
    dm.setup()
    return dm


def test_split_class_layout_with_aliases_and_deterministic_order(tmp_path):
    root = make_split_folder(tmp_path / "photos", names=("neg", "person"))
    a = dm_for(root, tmp_path)
    b = dm_for(root, tmp_path / "other")
    assert set(a.splits) == {"train", "train_val", "test_val", "test"}  # val -> train_val; test_val carved from test
    assert a.paths == b.paths  # the same folder, the same order and split (from a fresh decode, too)
    assert all(p.startswith("val/") for p in a.paths["train_val"])
    assert {p.split("/")[0] for p in a.paths["test_val"]} == {"test"}
    assert any("carved" in n and "test_val" in n for n in a.notes)
    for split, arr in a.splits.items():
        assert arr.images.dtype == np.uint8 and arr.images.shape[1:] == (16, 16, 3)
        labels = [1 if "/person/" in p else 0 for p in a.paths[split]]
        assert arr.attrs["label"].tolist() == labels  # labels follow the files, whatever the order
        assert set(arr.attrs) >= {"label", "night", "group", "domain"}
    assert not (set(a.paths["test_val"]) & set(a.paths["test"]))


def test_domain_level_night_validation_becomes_test_val(tmp_path):
    root = make_split_folder(tmp_path / "photos", domains=("day", "night"), n=4)
    dm = dm_for(root, tmp_path)
    assert all("/night/" in p for p in dm.paths["test_val"])
    assert all("/day/" in p for p in dm.paths["train_val"])
    assert dm.splits["test_val"].attrs["night"].all() and not dm.splits["train_val"].attrs["night"].any()
    assert dm.splits["train"].attrs["night"].mean() == pytest.approx(0.5)
    assert dm.domain_names == ["day", "night"]


def test_flat_layout_gets_a_group_split(tmp_path):
    root = tmp_path / "photos"
    for label, name in enumerate(("background", "pedestrian")):
        for photo in range(20):
            for crop in range(3):  # three crops of each "photo": they must stay together
                save(root / name / f"photo{photo:02d}_{crop}.png", texture(photo * 10 + crop + 1000 * label,
                                                                               label=label))
    dm = dm_for(root, tmp_path, group_pattern=r"^(photo\d+)_\d+$")
    where = {}
    for split, paths in dm.paths.items():
        for p in paths:
            where.setdefault((p.split("/")[0], p.split("/")[1].split("_")[0]), set()).add(split)
    assert all(len(v) == 1 for v in where.values())  # no photo on both sides
    assert sum(len(p) for p in dm.paths.values()) == 120
    again = dm_for(root, tmp_path, group_pattern=r"^(photo\d+)_\d+$")
    other_seed = dm_for(root, tmp_path, group_pattern=r"^(photo\d+)_\d+$", seed=1)
    assert again.paths == dm.paths and other_seed.paths != dm.paths


def test_stratified_group_split_keeps_groups_and_proportions():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 2000)
    labels = (rng.random(2000) < 0.3).astype(int)
    fr = {"train": 0.6, "train_val": 0.1, "test_val": 0.15, "test": 0.15}
    sets = stratified_group_split(labels, groups, fr, seed=3)
    for g in np.unique(groups):
        assert len(set(sets[groups == g])) == 1
    for name, f in fr.items():
        m = sets == name
        assert m.mean() == pytest.approx(f, abs=0.03)
        assert labels[m].mean() == pytest.approx(0.3, abs=0.05)  # stratified: every set keeps the class mix
    assert (stratified_group_split(labels, groups, fr, seed=3) == sets).all()
    assert (stratified_group_split(labels, groups, fr, seed=4) != sets).any()


def test_missing_test_set_is_a_clear_error(tmp_path):
    root = make_split_folder(tmp_path / "photos", splits=("train", "val"), n=3)
    items, _ = list_folder(root, FolderDataModule(root, cache_root=tmp_path / "c").class_map,
                           FolderDataModule(root, cache_root=tmp_path / "c").split_map)
    with pytest.raises(DataError, match="no test set"):
        assign_sets(items, {"train": 1.0}, {"train_val": 0.2, "test_val": 0.5}, [], 0)


def test_image_kinds_are_converted_explicitly(tmp_path):
    """Greyscale, 16-bit, palette, RGBA, odd sizes, EXIF-rotated JPEG: each ends as size x size x 3 uint8."""
    d = tmp_path / "kinds"
    d.mkdir()
    cv2.imwrite(str(d / "g16.png"), np.full((20, 30), 0x8000, np.uint16))
    rgb16 = np.zeros((10, 10, 3), np.uint16)
    rgb16[..., 2] = 65535  # red in BGR order
    cv2.imwrite(str(d / "rgb16.png"), rgb16)
    save(d / "grey.png", np.full((9, 9), 200, np.uint8))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 255  # green, half of it transparent
    rgba[:, :4, 3] = 255
    save(d / "rgba.png", rgba)
    Image.fromarray(np.full((6, 6, 3), (0, 0, 255), np.uint8)).convert("P").save(d / "palette.png")
    save(d / "thin.png", np.full((1, 50, 3), 90, np.uint8))
    tall = np.zeros((40, 10, 3), np.uint8)
    tall[:20] = 255
    save(d / "tall.png", tall)
    img = Image.fromarray(np.tile(np.arange(0, 240, 8, dtype=np.uint8)[None, :, None], (12, 1, 3)))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(d / "rotated.jpg", exif=exif.tobytes())

    def dec(name, resize="pad"):
        return decode((d / name).read_bytes(), 16, resize)

    a, info = dec("g16.png")
    assert info["mode"].startswith("I") and a.shape == (16, 16, 3) and (a == 128).all()  # scaled, not clipped
    a, info = dec("rgb16.png")
    assert (a == (255, 0, 0)).all()
    a, info = dec("grey.png")
    assert info["mode"] == "L" and (a == 200).all()
    a, info = dec("rgba.png")
    assert info["mode"] == "RGBA" and (a[:, :6] == (0, 255, 0)).all() and (a[:, -6:] == 0).all()  # over black
    a, info = dec("palette.png")
    assert info["mode"] == "P" and (a == (0, 0, 255)).all()
    a, info = dec("thin.png")
    assert a.shape == (16, 16, 3) and (a == 90).all()
    a, _ = dec("tall.png", "stretch")
    assert (a[:7] == 255).all() and (a[-7:] == 0).all()
    a, _ = dec("tall.png", "crop")  # the centre square straddles the edge between white and black
    assert (a[:4] == 255).all() and (a[-4:] == 0).all()
    a, _ = dec("tall.png", "pad")  # aspect kept: white top half, black bottom half, edges repeated sideways
    assert (a[:7] == 255).all() and (a[-7:] == 0).all()
    a, info = dec("rotated.jpg")
    assert (info["width"], info["height"]) == (12, 30)  # the EXIF rotation is applied
    assert a[:, :, 0].std(axis=1).mean() < a[:, :, 0].std(axis=0).mean()  # the gradient now runs top to bottom


def test_manifest_with_groups_tags_and_domains(tmp_path):
    root = tmp_path / "photos"
    rows = []
    for i in range(40):
        label = i % 2
        path = f"img/{i:03d}.png"
        save(root / path, texture(i, label=label))
        split = "test" if i >= 30 else ""
        rows.append([path, "pedestrian" if label else "background", split, "night" if i % 4 < 2 else "day",
                     f"photo{i // 4}", "small" if i % 3 == 0 else ""])
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split", "domain", "group", "tags"], *rows])
    dm = dm_for(root, tmp_path)
    assert sorted(p for ps in dm.paths.values() for p in ps) == sorted(r[0] for r in rows)
    assert set(dm.paths["test"]) | set(dm.paths["test_val"]) == {r[0] for r in rows[30:]}
    arr = dm.splits["train"]
    assert "tag_small" in arr.attrs
    for k, p in enumerate(dm.paths["train"]):
        i = int(Path(p).stem)
        assert arr.attrs["tag_small"][k] == (i % 3 == 0) and arr.attrs["night"][k] == (i % 4 < 2)


def test_second_pass_reads_no_image_file(tmp_path, monkeypatch):
    root = make_split_folder(tmp_path / "photos", n=6)
    first = dm_for(root, tmp_path)
    assert not first.load_stats["from_cache"]

    def no_reading(*a, **k):
        raise AssertionError("an image file was decoded on the second pass")

    monkeypatch.setattr(Image, "open", no_reading)
    second = dm_for(root, tmp_path)
    assert second.load_stats["from_cache"] and second.paths == first.paths
    for s in first.splits:
        assert np.array_equal(first.splits[s].images, second.splits[s].images)
    monkeypatch.undo()
    # a changed file changes the key: decoded again, never a stale picture
    victim = root / "train" / "pedestrian" / "img000.png"
    save(victim, texture(999, label=1))
    third = dm_for(root, tmp_path)
    assert not third.load_stats["from_cache"]


def test_early_stages_run_on_a_folder_via_the_cli(tmp_path):
    """The ladder's first three stages, unchanged but for data=folder, in one multirun; a bad file is skipped and
    listed in each run's skipped_files.json; the run records which file is which row."""
    root = make_split_folder(tmp_path / "photos", n=12)
    (root / "train" / "pedestrian" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    sweep = tmp_path / "sweep"
    r = cli("-m", "+stage=lenet,deeper,resnet", "profile=tiny", "data=folder", f"data.root={root}",
            f"data.cache_root={tmp_path / 'cache'}", "data.on_bad_file=skip", "debug=fast_dev_run", "logger=none",
            f"hydra.sweep.dir={sweep}", "print_config=false")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "broken.png" in r.stdout  # listed in the run's output, not dropped silently
    for i, stage in enumerate(("lenet", "deeper", "resnet")):
        run = sweep / f"{i}_{stage}"
        res = json.loads((run / "results.json").read_text())
        assert res["stage"] == stage and set(res["errors"]) == {"train", "train_val", "test_val", "test"}
        skipped = json.loads((run / "skipped_files.json").read_text())
        assert skipped["count"] == 1 and skipped["files"][0]["path"] == "train/pedestrian/broken.png"
        data = json.loads((run / "data.json").read_text())
        assert len(data["files"]["train"]) == res["n"]["train_total"]


def test_config_defaults_match_the_code():
    """conf/data/folder.yaml spells out the class aliases and split names the code falls back to."""
    from omegaconf import OmegaConf

    from pedestrian.data.folder import ALIASES, SPLIT_NAMES

    cfg = compose("+stage=lenet", "data=folder", "data.root=/nowhere")
    assert OmegaConf.to_container(cfg.data.aliases) == ALIASES
    assert OmegaConf.to_container(cfg.data.splits) == SPLIT_NAMES
    assert cfg.data.n_train == cfg.profile.n_train_small  # the stage's delta applies to folder data unchanged
