"""Render the street scenes once, keep them on disk, load them in a blink.

Layout (one folder per generator + config, one file per fixed block of indices):

    root/scenes/<key>/meta.json                  the config behind <key>, for humans
    root/scenes/<key>/<split>/chunk_00000.npz    indices     0..2047 of <split>
    root/scenes/<key>/<split>/chunk_00001.npz    indices  2048..4095, ...

<key> hashes GENERATOR_VERSION, the bytes of the renderer's source (every module of data/scenes/), size, p_night,
p_pedestrian, the difficulty knobs, seed and the chunk size, so a changed generator or config never reuses a stale
cache. Index i of a split is the same image whatever n is asked for: the lecture's 10k training subset is the
first 10k of the 250k set, and asking for 10k after 250k (or 250k after 10k) reuses what is there. A last,
partial chunk is extended when more is asked for.

Robustness:
  * every chunk is written to a temp file in its own folder, then os.replace()d: an interrupted run never
    leaves a half-written chunk_*.npz, and a rerun renders only the missing chunks;
  * readers ignore *.tmp files; temp files older than STALE_TMP_SECONDS (a crashed writer) are deleted,
    younger ones are left alone (another process may be writing the same cache right now);
  * a chunk that cannot be read (truncated, corrupt, wrong shape) is re-rendered with a warning naming it.

Missing chunks are rendered in parallel (a spawn-context Pool over chunk ids, safe on every OS and next to
CUDA) with a rich progress bar; the workers write their chunks themselves, nothing big goes through pipes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pedestrian.base.files import atomic_write
from pedestrian.data import scenes

CHUNK_SIZE = 2048          # indices per chunk file (part of the key: chunk boundaries must never move)
STALE_TMP_SECONDS = 600.0  # a temp file untouched this long belongs to a writer that died
MIN_PARALLEL = 4096        # fewer scenes than this to render: one process (starting workers costs ~1 s)


@dataclass
class SceneArrays:
    images: np.ndarray             # (N, H, W, 3) uint8 RGB
    attrs: dict[str, np.ndarray]   # scenes.ATTRIBUTE_NAMES -> (N,)

    def __len__(self) -> int:
        return len(self.images)


def cache_key(seed: int, size: int, p_night: float, p_pedestrian: float = 0.5,
              chunk_size: int = CHUNK_SIZE, difficulty: scenes.Difficulty | dict | None = None) -> str:
    """A short content hash of everything that decides the pixels."""
    config = dict(version=scenes.GENERATOR_VERSION, source=_source_hash(), size=int(size),
                  p_night=float(p_night), p_pedestrian=float(p_pedestrian), seed=int(seed),
                  chunk_size=int(chunk_size), difficulty=scenes.Difficulty.of(difficulty).key())
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _source_hash() -> str:
    """Every module of the renderer, in name order: any change to the drawing code changes the key."""
    h = hashlib.sha256()
    for path in sorted(Path(scenes.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def split_dir(root: str | Path, seed: int, split: str, size: int, p_night: float, p_pedestrian: float = 0.5,
              chunk_size: int = CHUNK_SIZE, difficulty: scenes.Difficulty | dict | None = None) -> Path:
    """Where the chunks of one split live."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split):
        raise ValueError(f"split name {split!r}: use letters, digits, '_', '-' or '.' (it becomes a folder)")
    return Path(root) / "scenes" / cache_key(seed, size, p_night, p_pedestrian, chunk_size, difficulty) / split


def load_or_render(root: str | Path, seed: int, split: str, n: int, size: int, p_night: float,
                   p_pedestrian: float = 0.5, workers: int = 0, progress: bool = True,
                   chunk_size: int = CHUNK_SIZE, difficulty: scenes.Difficulty | dict | None = None) -> SceneArrays:
    """Indices 0..n-1 of a split, from the disk cache; whatever is missing is rendered first.
    workers=0 means os.cpu_count(); with one worker, one chunk or under MIN_PARALLEL scenes to render, it
    renders in this process."""
    if n < 0:
        raise ValueError(f"n={n}: cannot load a negative number of scenes")
    knobs = scenes.Difficulty.of(difficulty).key()  # a plain dict: it is pickled to the workers
    d = split_dir(root, seed, split, size, p_night, p_pedestrian, chunk_size, knobs)
    d.mkdir(parents=True, exist_ok=True)
    meta = d.parent / "meta.json"
    if not meta.exists():
        atomic_write(meta, json.dumps(
            dict(generator_version=scenes.GENERATOR_VERSION, scenes_sha256=_source_hash(), seed=seed,
                 size=size, p_night=p_night, p_pedestrian=p_pedestrian, chunk_size=chunk_size, difficulty=knobs),
            indent=2), fsync=True)
    _remove_stale_tmp(d)

    images = np.empty((n, size, size, 3), np.uint8)
    attrs = {name: np.empty(n, np.int64 if name in scenes.INT_ATTRIBUTES else np.float32)
             for name in scenes.ATTRIBUTE_NAMES}
    todo = []  # (chunk id, indices already on disk, indices needed)
    for c in range(-(-n // chunk_size)):
        need = min(chunk_size, n - c * chunk_size)
        have = _read_chunk(_chunk_path(d, c), size, images, attrs, c * chunk_size, need)
        if have < need:
            todo.append((c, have, need))
    if todo:
        _render_chunks(d, todo, seed, split, size, p_night, p_pedestrian, knobs, chunk_size, workers, progress)
        for c, _, need in todo:
            if _read_chunk(_chunk_path(d, c), size, images, attrs, c * chunk_size, need) < need:
                raise RuntimeError(f"scene cache: {_chunk_path(d, c)} is still incomplete after rendering it")
    return SceneArrays(images, attrs)


# -- chunks -------------------------------------------------------------------------------------------------

def _chunk_path(d: Path, c: int) -> Path:
    return d / f"chunk_{c:05d}.npz"


def _load_chunk(path: Path, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(images, attrs) of a chunk file; None if it does not exist; a warning and None if it is unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            images = z["images"]
            attrs = {name: z[name] for name in scenes.ATTRIBUTE_NAMES}
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3) or any(
                len(v) != len(images) for v in attrs.values()):
            raise ValueError(f"unexpected contents: images {images.dtype} {images.shape}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"scene cache: {path} is unreadable ({type(e).__name__}: {e}); rendering it again",
                      stacklevel=3)
        return None
    return images, attrs


def _read_chunk(path: Path, size: int, images: np.ndarray, attrs: dict, start: int, need: int) -> int:
    """Copy up to `need` scenes of a chunk into images/attrs at `start`; returns how many it had (0..need)."""
    chunk = _load_chunk(path, size)
    if chunk is None:
        return 0
    have = min(need, len(chunk[0]))
    if have == need:
        images[start:start + need] = chunk[0][:need]
        for name, v in chunk[1].items():
            attrs[name][start:start + need] = v[:need]
    return have


def _remove_stale_tmp(d: Path) -> None:
    now = time.time()
    for tmp in d.glob("*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                tmp.unlink()
        except FileNotFoundError:  # its writer just finished (or another cleaner was faster)
            pass


def _render_chunk(job: tuple) -> int:
    """Render (the rest of) one chunk and write it. Top level and picklable: runs in spawn workers too."""
    d, c, have, need, seed, split, size, p_night, p_pedestrian, knobs, chunk_size = job
    path, start = _chunk_path(d, c), c * chunk_size
    images, attrs = scenes.render_many(seed, split, start + have, start + need, size, p_night, p_pedestrian, knobs)
    if have:  # extend a shorter chunk: identical first part, by determinism
        old = _load_chunk(path, size)
        if old is None or len(old[0]) < have:
            images, attrs = scenes.render_many(seed, split, start, start + need, size, p_night, p_pedestrian, knobs)
        else:
            images = np.concatenate([old[0][:have], images])
            attrs = {k: np.concatenate([old[1][k][:have], v]) for k, v in attrs.items()}
    atomic_write(path, lambda fh: np.savez(fh, images=images, **attrs), fsync=True)
    return need - have


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _render_chunks(d: Path, todo: list, seed: int, split: str, size: int, p_night: float, p_pedestrian: float,
                   knobs: dict, chunk_size: int, workers: int, progress: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    jobs = [(d, c, have, need, seed, split, size, p_night, p_pedestrian, knobs, chunk_size)
            for c, have, need in todo]
    total = sum(need - have for _, have, need in todo)
    workers = min(workers if workers > 0 else os.cpu_count() or 1, len(jobs))
    if total < MIN_PARALLEL:
        workers = 1
    columns = (TextColumn("rendering {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("scenes"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"{split} ({size}px, {d.parent.name}, {workers} proc)", total=total)
        if workers <= 1:
            for job in jobs:
                bar.advance(task, _render_chunk(job))
        else:
            with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
                for done in pool.imap_unordered(_render_chunk, jobs):
                    bar.advance(task, done)
