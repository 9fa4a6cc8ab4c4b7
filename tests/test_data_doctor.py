"""`python -m pedestrian.doctor data`: duplicates (exact, mirror, near) across sets, bad files, class balance and
the drift table, on a small folder with planted problems and on the rendered scenes (the night shift)."""

from __future__ import annotations

import json

import numpy as np
from conftest import cli
from PIL import Image
from test_folder import make_split_folder, save, texture

from pedestrian.doctor.data import effect_size, find_duplicates, ks_statistic, main, properties


def test_find_duplicates_kinds_and_no_false_alarms():
    imgs = np.stack([texture(i, size=32, label=i % 2) for i in range(200)])
    assert find_duplicates(imgs) == []  # 200 different pictures: nothing
    rng = np.random.default_rng(0)
    noisy = np.clip(imgs[3].astype(int) + rng.integers(-6, 7, imgs[3].shape), 0, 255).astype(np.uint8)
    extra = np.stack([imgs[0], imgs[1][:, ::-1], np.clip(imgs[2] * 1.25, 0, 255).astype(np.uint8), noisy,
                      imgs[4][:, ::-1] // 2 + 20])
    pairs = {(p["i"], p["j"]): p["kind"] for p in find_duplicates(np.concatenate([imgs, extra]))}
    assert pairs == {(0, 200): "exact", (1, 201): "mirror", (2, 202): "near", (3, 203): "near",
                     (4, 204): "near-mirror"}


def test_drift_statistics():
    day = np.stack([texture(i, size=16) for i in range(60)])
    night = np.stack([texture(i + 100, size=16, bright=0.3) for i in range(60)])
    p_day, p_night = properties(day), properties(night)
    assert effect_size(p_day["brightness"], p_night["brightness"]) < -2
    assert ks_statistic(p_day["brightness"], p_night["brightness"]) == 1.0
    assert ks_statistic(p_day["brightness"], p_day["brightness"]) == 0.0
    assert abs(effect_size(p_day["colourfulness"][:30], p_day["colourfulness"][30:])) < 0.8


def texture_of(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_doctor_data_on_a_folder_with_planted_problems(tmp_path):
    root = make_split_folder(tmp_path / "photos", n=10, domains=("day", "night"))
    for split in ("train", "val"):  # a day-heavy source, a night test: the lecture's shift
        for p in (root / split / "night").rglob("*.png"):
            if int(p.stem[-3:]) >= 2:
                p.unlink()
    leak = root / "train" / "day" / "pedestrian" / "img004.png"
    save(root / "test" / "day" / "pedestrian" / "copy_of_train.png", texture_of(leak))
    save(root / "val" / "day" / "pedestrian" / "mirror_of_train.png", texture_of(leak)[:, ::-1])
    (root / "test" / "night" / "background" / "broken.png").write_bytes(b"")
    out = tmp_path / "report"
    r = cli("data", "data=folder", f"data.root={root}", f"data.cache_root={tmp_path / 'cache'}", "profile=tiny",
            "--out", str(out), module="pedestrian.doctor")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out / "data_doctor.json").read_text())
    checks = {c["check"]: c for c in rep["checks"]}
    assert checks["decode"]["status"] == "fail" and "broken.png" in json.dumps(checks["decode"]["details"])
    dup = checks["duplicates"]
    assert dup["status"] == "fail"
    found = {(p["a"], p["b"], p["kind"]) for p in dup["details"]["cross_set"]}
    assert ("train/day/pedestrian/img004.png", "test/day/pedestrian/copy_of_train.png", "exact") in found or \
        ("test/day/pedestrian/copy_of_train.png", "train/day/pedestrian/img004.png", "exact") in found
    assert any(k == "mirror" and "mirror_of_train.png" in a + b for a, b, k in found)
    assert checks["drift"]["status"] == "warn" and "brightness" in checks["drift"]["summary"]
    assert checks["drift"]["details"]["brightness"]["d_test_val_vs_train_val"] < -0.5
    assert checks["balance"]["details"]["test_val"]["night"] == 1.0  # the night validation images
    assert (out / "duplicates.png").exists()


def test_doctor_data_sees_the_night_shift_in_the_scenes(tmp_path, data_root):
    """The default data (rendered scenes): the night shift shows in the data before any model is trained."""
    assert main(["profile=tiny", f"data.root={data_root}", "--out", str(tmp_path)]) in (0, 1)
    rep = json.loads((tmp_path / "data_doctor.json").read_text())
    checks = {c["check"]: c for c in rep["checks"]}
    assert checks["decode"]["status"] == "skip"
    bal = checks["balance"]["details"]
    assert bal["test_val"]["night"] > bal["train_val"]["night"] + 0.2
    assert checks["drift"]["details"]["brightness"]["d_test_val_vs_train_val"] < -0.3
