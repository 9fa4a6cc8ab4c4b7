"""Data augmentation with albumentations (the lecture's third fix for overfitting).

Pipelines work on uint8 HWC numpy images, before normalisation, so the model still sees inputs normalised
exactly once (in the datamodule).
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

PIPELINES = ("basic",)


def basic(size: int, seed: int = 0) -> A.Compose:
    """Mild, label-preserving changes: a pedestrian mirrored, shifted or recoloured is still a pedestrian."""
    return A.Compose(seed=seed, transforms=[
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.08, 0.08), scale=(0.9, 1.1), rotate=(-5, 5), border_mode=0, p=0.7),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    ])


def build(name: str | None, size: int, seed: int = 0) -> Callable[[np.ndarray], np.ndarray] | None:
    """A callable image -> image for the named pipeline, or None. Seeded: same seed, same augmentations."""
    if name is None:
        return None
    if name not in PIPELINES:
        raise ValueError(f"data.augment={name!r} is not one of {PIPELINES} (or null)")
    pipe = {"basic": basic}[name](size, seed)
    return lambda img: pipe(image=img)["image"]


class NightLights(A.ImageOnlyTransform):
    """Relight a day image as a street at night: a dim, coloured ambient light, 1-4 pools of lamp light that
    fall off smoothly, and a glowing halo at some of the lamps. The lights land anywhere, on images with and
    without a pedestrian alike, so a bright spot is no cue for the label: darkening alone (an earlier version)
    taught the model that light means pedestrian, and its night false positives rose from 43% to 74%."""

    class InitSchema(A.core.transforms_interface.BaseTransformInitSchema):
        ambient: tuple[float, float]
        lights: tuple[int, int]
        halo: float

    def __init__(self, ambient: tuple[float, float] = (0.2, 0.45), lights: tuple[int, int] = (1, 4),
                 halo: float = 0.8, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.ambient, self.lights, self.halo = ambient, lights, halo

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        from pedestrian.data.scenes import AMBIENT_NIGHT, HEADLIGHT, LAMP_LIGHT  # the renderer's night colours

        h, w = params["shape"][:2]
        r = self.py_random
        grid = (np.arange(16, dtype=np.float32) + 0.5) / 16  # light is smooth: a coarse grid, upsampled
        light = np.empty((16, 16, 3), np.float32)
        light[:] = np.float32(r.uniform(*self.ambient)) * np.asarray(r.choice(AMBIENT_NIGHT), np.float32)
        glow = np.zeros((h, w, 3), np.float32)
        yy, xx = np.ogrid[:h, :w]
        for _ in range(r.randint(*self.lights)):
            x, y = r.uniform(0, 1), r.uniform(0.35, 1.0)  # where the pool falls (the ground, mostly)
            rx, ry, power = r.uniform(0.1, 0.35), r.uniform(0.15, 0.45), r.uniform(0.5, 1.4)
            q = 1 + ((grid[None, :] - x) / rx) ** 2 + ((grid[:, None] - y) / ry) ** 2
            rgb = np.asarray(r.choice([*LAMP_LIGHT, HEADLIGHT]), np.float32)
            light += (power / (q * q))[..., None] * rgb
            if r.random() < self.halo:  # the lamp itself, above its pool
                cx, cy, rad = x * w, (y - r.uniform(0.15, 0.4)) * h, max(1.0, r.uniform(0.03, 0.08) * w)
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad * rad)).astype(np.float32)
                glow += blob[..., None] * (230 * rgb)
        return {"light": cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR), "glow": glow}

    def apply(self, img: np.ndarray, light: np.ndarray, glow: np.ndarray, **params) -> np.ndarray:
        return np.clip(img * light + glow, 0, 255).astype(np.uint8)


def night(seed: int = 0) -> A.Compose:
    """Synthetic night (the night_synth stage), imitating what the error analysis blames: dark streets lit
    in pools, with lamps that glow (NightLights), crushed midtones, a colour cast, strong sensor noise and
    sometimes a soft lens."""
    return A.Compose(seed=seed, transforms=[
        NightLights(p=1.0),
        A.RandomGamma(gamma_limit=(100, 140), p=0.5),
        A.RGBShift(r_shift_limit=(-5, 10), g_shift_limit=(-8, 5), b_shift_limit=(-10, 10), p=0.5),
        A.GaussNoise(std_range=(0.025, 0.07), p=1.0),
        A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.6), p=0.5),
    ])


def build_night_synth(fraction: float, seed: int = 0) -> Callable[[np.ndarray, int], np.ndarray]:
    """Darken each day image with probability `fraction` (data.night_synth), drawn from a seeded stream."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"data.night_synth={fraction} must lie in [0, 1]")
    pipe, rng = night(seed), np.random.default_rng(seed)

    def apply(img: np.ndarray, index: int) -> np.ndarray:
        return pipe(image=img)["image"] if rng.random() < fraction else img
    return apply
