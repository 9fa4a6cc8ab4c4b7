"""The camera: exposure, light, noise, blur and 8-bit rounding, on a batch of drawn scenes."""

from __future__ import annotations

import cv2
import numpy as np

from pedestrian.data.scenes.label import Difficulty
from pedestrian.data.scenes.light import _add_halo, _light_maps
from pedestrian.data.scenes.palette import LIGHT_GRID, NOISE_BANK
from pedestrian.data.scenes.scene import _draw_scene, _Shot

# -- the camera ---------------------------------------------------------------------------------------------
# It runs on a batch of drawn scenes: most of its array operations then cover the whole batch at once (per
# image their fixed cost would dominate). Every pixel still gets the same float32 operations, in the same
# order, as when each image went through on its own.

_BATCH = 32  # scenes per camera run: enough to share its fixed costs, few enough to stay in cache


def _develop(shots: list[_Shot], albedo: np.ndarray, emission: np.ndarray, f: np.ndarray, noise: np.ndarray,
             out: np.ndarray) -> None:
    """The camera for a batch of drawn scenes: light (night: albedo x light, halos, maybe blur) or exposure
    (day), sensor noise, rounding to 8 bits into out (n, size, size, 3); fills in each shot's brightness.
    f and noise: float32 work arrays shaped like out. (uint8 operands go into float32 exactly:
    np.multiply(..., dtype=np.float32) converts and multiplies.)"""
    n, size = out.shape[:2]
    night = [i for i, s in enumerate(shots) if s.night]
    if night:
        maps = _light_maps([(shots[i].lights, *shots[i].ambient) for i in night])
        glow = cv2.cvtColor(emission[night].reshape(-1, size), cv2.COLOR_GRAY2RGB).reshape(-1, size, size, 3)
        for i, lmap, em in zip(night, maps, glow):
            lmap = cv2.transpose(lmap.reshape(3, -1)).reshape(LIGHT_GRID, LIGHT_GRID, 3)  # channels last
            lm = cv2.resize(lmap, (size, size), interpolation=cv2.INTER_LINEAR_EXACT)
            np.maximum(lm, em, out=lm)  # glowing surfaces light themselves
            np.multiply(albedo[i], lm, dtype=np.float32, out=f[i])
    for i, s in enumerate(shots):
        fi = f[i]
        if not s.night:
            np.multiply(albedo[i], s.gain, dtype=np.float32, out=fi)
            continue
        fi *= s.gain
        for hx, hy, r, rgb in s.halos:
            _add_halo(fi, hx, hy, r, rgb, size)
        if s.blur is not None:  # 8-bit blur: exact
            fi[:] = cv2.GaussianBlur(cv2.convertScaleAbs(fi), (3, 3), s.blur)
    m = size * size * 3
    for s, ns in zip(shots, noise):  # a slice of the noise bank per image, scaled by its sigma
        np.multiply(NOISE_BANK[s.offset:s.offset + m], np.float32(s.sigma * 255), out=ns.reshape(m))
        if s.night:  # luminance noise shared by the channels, on top of per-channel (chroma) noise
            lum = NOISE_BANK[s.offset + m:s.offset + m + size * size].reshape(size, size)
            ns += cv2.cvtColor(lum * np.float32(s.sigma * 180), cv2.COLOR_GRAY2RGB)
    rows = (n * size, size, 3)  # out is contiguous: this reshape is a view, written in place
    cv2.add(f.reshape(rows), noise.reshape(rows), dst=out.reshape(rows), dtype=cv2.CV_8U)  # rounds, saturates
    for s, o in zip(shots, out):
        r, g, b, _ = cv2.sumElems(o)
        s.truth[15] = (0.299 * r + 0.587 * g + 0.114 * b) / (255 * size * size)


def _work_arrays(n: int, size: int) -> tuple[np.ndarray, ...]:
    """Buffers for drawing and developing up to n scenes: albedo, emission, float image, noise (reused from
    batch to batch: fresh multi-megabyte arrays would cost page faults)."""
    return (np.empty((n, size, size, 3), np.uint8), np.empty((n, size, size), np.uint8),
            np.empty((n, size, size, 3), np.float32), np.empty((n, size, size, 3), np.float32))


def _render_batch(rngs, size: int, p_night: float, p_pedestrian: float, d: Difficulty, out: np.ndarray,
                  work: tuple[np.ndarray, ...]) -> list[list]:
    """Draw len(out) scenes, one random generator each (each used up before the next is asked for), develop
    them into out and return their attribute values. work: _work_arrays for at least len(out) scenes."""
    albedo, emission, f, noise = (w[:len(out)] for w in work)
    emission.fill(0)
    shots = [_draw_scene(next(rngs), size, p_night, p_pedestrian, d, a, e) for a, e in zip(albedo, emission)]
    _develop(shots, albedo, emission, f, noise, out)
    return [s.truth for s in shots]
