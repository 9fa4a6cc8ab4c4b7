"""The scene renderer (determinism, attributes that match the pixels) and its disk cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from pedestrian.data import cache, scenes
from pedestrian.data.cache import load_or_render

SIZE = 32


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def batch():
    """400 scenes, half at night: enough for the statistics below, fast enough to share."""
    return scenes.render_many(0, "stats", 0, 400, SIZE, p_night=0.5)


# -- determinism ------------------------------------------------------------------------------------------

# Update together with GENERATOR_VERSION: any change to the drawing changes these bytes (so would a numpy or
# OpenCV release that changed random streams or rasterisation; the CPU model must not).
GOLDEN = {  # (seed, split, start, stop, size, p_night) -> sha256 of the images
    (0, "golden", 0, 8, 32, 0.5): "304982ed8260dc288cf3523b4e64727971a30aa0dc74c099b2f127f43290656e",
    (0, "golden", 0, 4, 64, 0.5): "e6c34719ae5195336925d84089212148dc0f664f3e62794ddd641eb9fdeb4399",
}


@pytest.mark.parametrize("key", list(GOLDEN))
def test_golden_digest(key):
    images, _ = scenes.render_many(*key)
    assert digest(images) == GOLDEN[key], "the drawing changed: bump GENERATOR_VERSION and update GOLDEN"


def test_same_bytes_in_another_process():
    code = ("import hashlib; from pedestrian.data import scenes; "
            "im, _ = scenes.render_many(3, 'train', 100, 116, 32, 0.5); "
            "print(hashlib.sha256(im.tobytes()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # a different str hash salt must not matter
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    images, _ = scenes.render_many(3, "train", 100, 116, 32, 0.5)
    assert out.stdout.strip() == digest(images)


def test_render_equals_render_many():
    images, attrs = scenes.render_many(1, "train", 10, 16, SIZE, 0.5, 0.6)
    for i in range(6):
        img, a = scenes.render(1, "train", 10 + i, SIZE, 0.5, 0.6)
        assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE, 3)
        assert np.array_equal(img, images[i])
        assert set(a) == set(scenes.ATTRIBUTE_NAMES)
        for name in scenes.ATTRIBUTE_NAMES:
            assert a[name] == pytest.approx(float(attrs[name][i]), rel=1e-6, abs=1e-6)
    assert all(attrs[n].dtype == np.int64 for n in scenes.INT_ATTRIBUTES)
    assert all(attrs[n].dtype == np.float32 for n in scenes.ATTRIBUTE_NAMES if n not in scenes.INT_ATTRIBUTES)


@pytest.mark.parametrize("size", [16, 24, 48, 64, 128])
def test_all_sizes(size):
    images, attrs = scenes.render_many(0, "sizes", 0, 3, size, 0.5)
    assert images.shape == (3, size, size, 3) and images.dtype == np.uint8
    assert images.std() > 5  # not blank


def test_splits_and_seeds_differ():
    a, _ = scenes.render_many(0, "train", 0, 4, SIZE, 0.5)
    b, _ = scenes.render_many(0, "test", 0, 4, SIZE, 0.5)
    c, _ = scenes.render_many(1, "train", 0, 4, SIZE, 0.5)
    for i in range(4):
        assert not np.array_equal(a[i], b[i]) and not np.array_equal(a[i], c[i])


def test_splits_never_overlap():
    seen = {}
    for split in ("train", "train_val", "test_val", "test"):
        images, _ = scenes.render_many(0, split, 0, 100, 16, 0.3)
        for i, im in enumerate(images):
            h = hashlib.sha256(im.tobytes()).hexdigest()
            assert h not in seen, f"{split}[{i}] == {seen.get(h)}"
            seen[h] = (split, i)


# -- attributes agree with the drawing -------------------------------------------------------------------

def test_label_and_night_rates(batch):
    _, a = batch
    assert abs(a["label"].mean() - 0.5) < 0.08
    assert abs(a["night"].mean() - 0.5) < 0.08
    _, b = scenes.render_many(0, "rates", 0, 200, 16, p_night=0.1, p_pedestrian=0.8)
    assert abs(b["label"].mean() - 0.8) < 0.08 and b["night"].mean() < 0.2
    _, z = scenes.render_many(0, "rates", 0, 50, 16, p_night=0.0, p_pedestrian=0.0)
    assert z["label"].sum() == 0 and z["night"].sum() == 0


def test_night_is_darker(batch):
    images, a = batch
    night, day = a["night"] == 1, a["night"] == 0
    assert images[night].mean() < 0.75 * images[day].mean()
    assert a["brightness"][night].mean() < 0.75 * a["brightness"][day].mean()
    luma = (images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean(axis=(1, 2)) / 255
    assert np.allclose(luma, a["brightness"], atol=1e-4)
    assert a["noise"][night].mean() > 2 * a["noise"][day].mean()  # night sensors are noisier


def test_pedestrian_attributes_consistent(batch):
    _, a = batch
    pos, neg = a["label"] == 1, a["label"] == 0
    assert ((a["ped_height"] > 0) == pos).all()
    assert ((a["n_pedestrians"] > 0) == pos).all()
    assert (a["hard"][neg] == 0).all() and 0.01 < a["hard"][pos].mean() < 0.2  # a small tail
    for name in ("occlusion", "contrast", "visibility"):
        assert (a[name][neg] == 0).all() and (a[name] >= 0).all() and (a[name] <= 1).all()
    hard = pos & scenes.is_hard(a["ped_height"] * SIZE, a["occlusion"], a["contrast"], scenes.Difficulty())
    assert np.array_equal(a["hard"] == 1, hard)
    assert (a["light"][pos & (a["night"] == 0)] == 1).all()  # daylight
    assert a["light"][pos & (a["night"] == 1)].mean() < 1.5
    for flag in ("reflection", "mannequin"):  # slices present in both classes
        assert a[flag][pos].mean() > 0.02 and a[flag][neg].mean() > 0.02
    assert a["n_distractors"][pos].mean() >= 1 and a["n_distractors"][neg].mean() >= 1


# -- the label rule and the difficulty knobs ------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("p_night", [0.0, 1.0], ids=["day", "night"])
def test_no_positive_below_the_floors(size, p_night):
    """Every positive's pedestrian is tall, unhidden, contrasted and (by night) lit enough to be seen, on many
    seeds, by the day and the night renderer, at the default knobs and at stricter ones."""
    for d in (scenes.Difficulty(), scenes.Difficulty(ped_min_px=15, max_occlusion=0.2, min_contrast=0.2,
                                                       min_light=0.8, p_hard=0.3)):
        for seed in range(3):
            _, a = scenes.render_many(seed, "floors", 0, 150, size, p_night, difficulty=d)
            pos = a["label"] == 1
            assert pos.sum() > 40
            assert (a["ped_height"][pos] * size >= d.ped_min_px - 1e-4).all()
            assert (a["occlusion"][pos] <= d.max_occlusion + 1e-6).all()
            assert (a["contrast"][pos] >= d.min_contrast - 1e-6).all()
            if p_night:
                assert (a["light"][pos] >= d.min_light - 1e-6).all()
            assert (a["hard"][pos] == scenes.is_hard(a["ped_height"][pos] * size, a["occlusion"][pos],
                                                     a["contrast"][pos], d)).all()


KNOBS = [  # knob, (low, high), the attribute it moves (a function of the attribute columns), upward
    ("ped_min_px", (10, 16), lambda a: a["ped_height"][a["label"] == 1].min()),
    ("ped_max", (0.45, 0.8), lambda a: a["ped_height"][a["label"] == 1].mean()),
    ("p_hard", (0.0, 0.4), lambda a: a["hard"][a["label"] == 1].mean()),
    ("max_occlusion", (0.1, 0.6), lambda a: a["occlusion"][a["label"] == 1].max()),
    ("min_contrast", (0.05, 0.2), lambda a: a["contrast"][a["label"] == 1].min()),
    ("max_distractors", (1, 5), lambda a: a["n_distractors"].mean()),
    ("p_reflection", (0.05, 0.4), lambda a: a["reflection"].mean()),
    ("p_mannequin", (0.02, 0.5), lambda a: a["mannequin"].mean()),
    ("night_ambient", (0.1, 0.4), lambda a: a["brightness"][a["night"] == 1].mean()),
    ("night_noise", (0.02, 0.08), lambda a: a["noise"][a["night"] == 1].mean()),
    ("min_light", (0.3, 0.9), lambda a: a["light"][(a["label"] == 1) & (a["night"] == 1)].min()),
]


@pytest.mark.parametrize("knob, values, measure", KNOBS, ids=[k[0] for k in KNOBS])
def test_each_knob_moves_what_it_claims(knob, values, measure):
    lo, hi = (scenes.render_many(0, "knobs", 0, 300, 32, 0.5, difficulty={knob: v})[1] for v in values)
    assert measure(hi) > measure(lo), f"{knob}: {values[0]} -> {values[1]} did not raise it"


def test_ghost_alpha_fades_the_reflections():
    """Same scenes, fainter reflections: only reflection scenes change, and less with a lower alpha."""
    base = scenes.Difficulty(p_reflection=1.0, ghost_alpha=0.0)
    ims = {g: scenes.render_many(0, "ghost", 0, 60, 32, 0.0, difficulty=dict(base.key(), ghost_alpha=g))[0]
           .astype(float) for g in (0.0, 0.2, 0.6)}
    assert 0 < np.abs(ims[0.2] - ims[0.0]).mean() < np.abs(ims[0.6] - ims[0.0]).mean()


def test_bad_knobs_are_named():
    with pytest.raises(ValueError, match="unknown knob.*'ped_size'"):
        scenes.Difficulty.of({"ped_size": 3})
    with pytest.raises(ValueError, match="p_hard=1.5"):
        scenes.Difficulty.of({"p_hard": 1.5})
    with pytest.raises(ValueError, match="max_distractors=2.5: must be a whole number"):
        scenes.Difficulty.of({"max_distractors": 2.5})
    assert scenes.Difficulty.of({"ped_min_px": 10}) == scenes.Difficulty(ped_min_px=10.0)
    assert scenes.Difficulty.of(None) == scenes.Difficulty()


def test_pedestrian_changes_the_pixels():
    """Same scene with and without the figure: a visible positive differs where the pedestrian stands."""
    found = 0
    for i in range(40):
        img, a = scenes.render(0, "pair", i, 64, 0.0, 1.0)
        if a["visibility"] < 0.5 or a["n_pedestrians"] != 1:
            continue
        x, yf, h = a["ped_x"], a["ped_y"], a["ped_height"]
        x0, x1 = max(0, int((x - 0.15 * h) * 64)), int((x + 0.15 * h) * 64) + 1
        box = img[int((yf - h) * 64):int(yf * 64), x0:x1]
        assert box.size and box.astype(float).std() > 8  # something drawn there, not flat background
        found += 1
    assert found >= 5


# -- cache ------------------------------------------------------------------------------------------------

def no_rendering(*args, **kwargs):
    raise AssertionError("rendered although everything was cached")


def test_cache_roundtrip_and_reuse(tmp_path, monkeypatch):
    first = load_or_render(tmp_path, 0, "train", 40, 16, 0.3, progress=False, chunk_size=16, workers=1)
    assert len(first) == 40 and first.images.shape == (40, 16, 16, 3)
    ref_images, ref_attrs = scenes.render_many(0, "train", 0, 40, 16, 0.3)
    assert np.array_equal(first.images, ref_images)
    for name in scenes.ATTRIBUTE_NAMES:
        assert np.array_equal(first.attrs[name], ref_attrs[name])
        assert first.attrs[name].dtype == ref_attrs[name].dtype
    d = cache.split_dir(tmp_path, 0, "train", 16, 0.3, chunk_size=16)
    assert sorted(p.name for p in d.iterdir()) == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz"]
    assert (d.parent / "meta.json").exists()

    monkeypatch.setattr(scenes, "render_many", no_rendering)
    again = load_or_render(tmp_path, 0, "train", 40, 16, 0.3, progress=False, chunk_size=16)
    assert np.array_equal(again.images, first.images)
    sub = load_or_render(tmp_path, 0, "train", 20, 16, 0.3, progress=False, chunk_size=16)  # the first 20
    assert np.array_equal(sub.images, first.images[:20])
    assert np.array_equal(sub.attrs["label"], first.attrs["label"][:20])
    assert not list(d.glob("*.tmp"))


def test_cache_extends_partial_chunk(tmp_path, monkeypatch):
    load_or_render(tmp_path, 0, "train", 20, 16, 0.3, progress=False, chunk_size=16)  # chunk 1 holds 4
    calls = []
    real = scenes.render_many
    monkeypatch.setattr(scenes, "render_many", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    more = load_or_render(tmp_path, 0, "train", 30, 16, 0.3, progress=False, chunk_size=16)
    assert calls == [(20, 30)]  # only the missing tail of chunk 1
    assert np.array_equal(more.images, real(0, "train", 0, 30, 16, 0.3)[0])


def test_cache_key_changes_with_config(tmp_path):
    base = cache.cache_key(0, 32, 0.1)
    variants = [cache.cache_key(1, 32, 0.1), cache.cache_key(0, 64, 0.1), cache.cache_key(0, 32, 0.5),
                cache.cache_key(0, 32, 0.1, 0.6), cache.cache_key(0, 32, 0.1, chunk_size=512),
                cache.cache_key(0, 32, 0.1, difficulty={"max_distractors": 4})]
    assert len({base, *variants}) == 7 and base == cache.cache_key(0, 32, 0.1)
    assert base == cache.cache_key(0, 32, 0.1, difficulty=scenes.Difficulty().key())  # the defaults spelt out
    load_or_render(tmp_path, 0, "x", 3, 16, 0.1, progress=False)
    load_or_render(tmp_path, 0, "x", 3, 16, 0.5, progress=False)
    assert len(list((tmp_path / "scenes").iterdir())) == 2


def test_cache_key_follows_generator_source(monkeypatch, tmp_path):
    before = cache.cache_key(0, 32, 0.1)
    copy = shutil.copytree(Path(scenes.__file__).parent, tmp_path / "scenes")
    monkeypatch.setattr(scenes, "__file__", str(copy / "__init__.py"))
    assert cache.cache_key(0, 32, 0.1) == before  # the same source, wherever it lies
    with open(copy / "figures.py", "ab") as f:  # any module of the renderer, not only the package's front
        f.write(b"\n# a changed generator\n")
    assert cache.cache_key(0, 32, 0.1) != before
    monkeypatch.setattr(scenes, "GENERATOR_VERSION", "changed")
    assert cache.cache_key(0, 32, 0.1) != before


def test_cache_temp_files(tmp_path):
    d = cache.split_dir(tmp_path, 0, "t", 16, 0.2, chunk_size=16)
    d.mkdir(parents=True)
    stale, fresh = d / "chunk_00000.npz.1.dead.tmp", d / "chunk_00001.npz.2.busy.tmp"
    stale.write_bytes(b"half a chunk")
    fresh.write_bytes(b"another writer, still busy")
    old = time.time() - 2 * cache.STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    got = load_or_render(tmp_path, 0, "t", 20, 16, 0.2, progress=False, chunk_size=16)
    assert np.array_equal(got.images, scenes.render_many(0, "t", 0, 20, 16, 0.2)[0])
    assert not stale.exists() and fresh.exists()  # stale removed, a live writer's file left alone
    fresh.unlink()
    load_or_render(tmp_path, 0, "t", 20, 16, 0.2, progress=False, chunk_size=16)
    assert not list(d.glob("*.tmp"))


def test_cache_corrupt_chunk_is_rerendered(tmp_path):
    first = load_or_render(tmp_path, 0, "c", 20, 16, 0.2, progress=False, chunk_size=16)
    path = cache.split_dir(tmp_path, 0, "c", 16, 0.2, chunk_size=16) / "chunk_00000.npz"
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.warns(UserWarning, match="chunk_00000.npz"):
        again = load_or_render(tmp_path, 0, "c", 20, 16, 0.2, progress=False, chunk_size=16)
    assert np.array_equal(again.images, first.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: loads silently now
        load_or_render(tmp_path, 0, "c", 20, 16, 0.2, progress=False, chunk_size=16)


def test_cache_parallel_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MIN_PARALLEL", 0)  # a pool even for this small job
    par = load_or_render(tmp_path / "p", 0, "train", 48, 16, 0.5, workers=2, progress=True, chunk_size=16)
    ser = load_or_render(tmp_path / "s", 0, "train", 48, 16, 0.5, workers=1, progress=False, chunk_size=16)
    assert np.array_equal(par.images, ser.images)
    assert all(np.array_equal(par.attrs[k], ser.attrs[k]) for k in scenes.ATTRIBUTE_NAMES)


def test_cache_empty_and_bad_split(tmp_path):
    assert len(load_or_render(tmp_path, 0, "e", 0, 16, 0.2, progress=False)) == 0
    with pytest.raises(ValueError):
        load_or_render(tmp_path, 0, "../escape", 1, 16, 0.2, progress=False)
