"""The entry points: one scene, or a range of indices of a split."""

from __future__ import annotations

import zlib

import numpy as np

from pedestrian.data.scenes.camera import _BATCH, _render_batch, _work_arrays
from pedestrian.data.scenes.label import ATTRIBUTE_NAMES, INT_ATTRIBUTES, Difficulty
from pedestrian.data.scenes.seeding import _generators


def split_id(split: str) -> int:
    """A stable id for a split name (Python's hash() is salted per process: never use it for seeds)."""
    return zlib.crc32(split.encode())


def render(seed: int, split: str, index: int, size: int, p_night: float, p_pedestrian: float = 0.5,
           difficulty: Difficulty | dict | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """One scene: (size, size, 3) uint8 RGB and its attributes. Same arguments -> same bytes, anywhere."""
    out = np.empty((size, size, 3), np.uint8)
    rng = np.random.default_rng([seed, split_id(split), index])
    d = Difficulty.of(difficulty)
    vals = _render_batch(iter([rng]), size, p_night, p_pedestrian, d, out[None], _work_arrays(1, size))[0]
    return out, {n: (int(v) if n in INT_ATTRIBUTES else float(v)) for n, v in zip(ATTRIBUTE_NAMES, vals)}


def render_many(seed: int, split: str, start: int, stop: int, size: int, p_night: float,
                p_pedestrian: float = 0.5, difficulty: Difficulty | dict | None = None,
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Indices start..stop-1 of a split: (N, size, size, 3) uint8 and attribute columns of length N."""
    n, d = max(0, stop - start), Difficulty.of(difficulty)
    images = np.empty((n, size, size, 3), np.uint8)
    table = np.empty((n, len(ATTRIBUTE_NAMES)), np.float64)
    rngs, work = _generators(seed, split_id(split), range(start, start + n)), _work_arrays(min(n, _BATCH), size)
    for b in range(0, n, _BATCH):
        table[b:b + _BATCH] = _render_batch(rngs, size, p_night, p_pedestrian, d, images[b:b + _BATCH], work)
    return images, {name: table[:, j].astype(np.int64 if name in INT_ATTRIBUTES else np.float32)
                    for j, name in enumerate(ATTRIBUTE_NAMES)}
