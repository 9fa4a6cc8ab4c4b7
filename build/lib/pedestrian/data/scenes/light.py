"""Night light: light maps from the scene's pools of light, the light at a point, glow halos."""

from __future__ import annotations

from itertools import chain
from math import trunc

import cv2
import numpy as np

from pedestrian.data.scenes.palette import _GRID, LIGHT_GRID, _halo


def _light_maps(scenes: list[tuple[list, float, tuple]]) -> np.ndarray:
    """Night illumination of a batch of scenes (lights, ambient, ambient colour) on the coarse grid as
    uint8, 255 = light 2.0: (n, 3, grid, grid), channels first. Each light is a soft elliptical pool,
    intensity / (1 + (dx/rx)^2 + (dy/ry)^2)^2, summed light by light in float32 on top of the ambient.
    The lights of all scenes go through one set of array ops (each costs microseconds however small the
    array: per scene they would dominate), channels first (numpy is slow on a short last axis); only the
    sums are per scene. Every grid point sees the float32 operations of its scene alone, in the same order."""
    n = len(scenes)
    a = np.fromiter(chain.from_iterable(chain.from_iterable(lights for lights, _, _ in scenes)), np.float32)
    a = a.reshape(-1, 8)  # x, y, rx, ry, intensity, r, g, b
    np.maximum(a[:, 2:4], np.float32(1e-3), out=a[:, 2:4])  # = max(r, 1e-3) before rounding to float32
    d = (_GRID - a[:, 0:2, None]) / a[:, 2:4, None]  # (light, dx|dy, grid)
    d *= d
    q = np.float32(1) + d[:, 1, :, None] + d[:, 0, None, :]  # (light, grid, grid)
    w = a[:, 4, None, None] * np.float32(255 / 2) / (q * q)  # 255 = light 2.0
    wc = w[:, None] * a[:, 5:8, None, None]  # (light, channel, grid, grid)
    total = np.empty((n, 3, LIGHT_GRID, LIGHT_GRID), np.float32)
    start = 0
    for t, (lights, _, _) in zip(total, scenes):  # reduce adds light by light
        np.add.reduce(wc[start:start + len(lights)], 0, out=t)
        start += len(lights)
    total += np.fromiter((amb * 255 / 2 * v for _, amb, col in scenes for v in col), np.float32, 3 * n).reshape(
        n, 3, 1, 1)
    return cv2.convertScaleAbs(total.reshape(-1, LIGHT_GRID)).reshape(n, 3, LIGHT_GRID, LIGHT_GRID)  # round


def _light_at(lights, amb: float, amb_col):
    """A point query of the night light (same formula, in double precision) for the ground truth."""
    def light_at(px, py):  # luminance of the light falling on a point
        rgb = [amb * a for a in amb_col]
        for x, y, rx, ry, inten, *col in lights:
            rx, ry = 1e-3 if 1e-3 > rx else rx, 1e-3 if 1e-3 > ry else ry  # max(r, 1e-3), inline
            qq = 1 + ((px - x) / rx) ** 2 + ((py - y) / ry) ** 2
            rgb = [v + inten / (qq * qq) * w for v, w in zip(rgb, col)]
        return min(2.0, 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])

    return light_at


def _add_halo(f: np.ndarray, x, y, r, rgb, size: int) -> None:
    """Add a glow sprite around a light source (on the float image, before noise), clipped to the frame."""
    rp = trunc(r * size + 0.5)
    rp = rp if rp > 1 else 1
    if r * size < 0.75:  # a sub-pixel light: dimmer rather than bigger (a few cached levels)
        rgb = tuple(v * (trunc(4 * r * size / 0.75) + 1) / 5 for v in rgb)
    R, cx, cy = 3 * rp, trunc(x * size), trunc(y * size)
    x0, y0, x1, y1 = cx - R, cy - R, cx + R + 1, cy + R + 1
    x0, y0, x1, y1 = x0 if x0 > 0 else 0, y0 if y0 > 0 else 0, x1 if x1 < size else size, y1 if y1 < size else size
    if x1 > x0 and y1 > y0:
        roi = f[y0:y1, x0:x1]
        cv2.add(roi, _halo(rp, rgb)[y0 - cy + R:y1 - cy + R, x0 - cx + R:x1 - cx + R], dst=roi)  # float32 +
