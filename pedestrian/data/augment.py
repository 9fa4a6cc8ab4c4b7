"""Data augmentation with albumentations (the lecture's third fix for overfitting).

Pipelines work on uint8 HWC numpy images, before normalisation, so the model still sees inputs normalised
exactly once (in the datamodule).
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
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


def night(seed: int = 0) -> A.Compose:
    """Synthetic low light (the night_synth stage): gamma-crushed midtones, less light, a colour cast, sensor
    noise, sometimes blur. Calibrated on the renderer's night at 32 px (mean brightness ~0.55x day, warm cast,
    noise sigma ~0.05; this gives ~0.49x day): darker and the pedestrian vanishes, so the darkened images only
    add label noise (an earlier version, mean 8/255, made the test-val error worse)."""
    return A.Compose(seed=seed, transforms=[
        A.RandomGamma(gamma_limit=(130, 200), p=1.0),
        A.MultiplicativeNoise(multiplier=(0.6, 0.9), per_channel=False, elementwise=False, p=1.0),
        A.RGBShift(r_shift_limit=(-5, 15), g_shift_limit=(-10, 5), b_shift_limit=(-15, 15), p=0.8),
        A.GaussNoise(std_range=(0.02, 0.06), p=1.0),
        A.Blur(blur_limit=(3, 3), p=0.2),
    ])


def build_night_synth(fraction: float, seed: int = 0) -> Callable[[np.ndarray, int], np.ndarray]:
    """Darken each day image with probability `fraction` (data.night_synth), drawn from a seeded stream."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"data.night_synth={fraction} must lie in [0, 1]")
    pipe, rng = night(seed), np.random.default_rng(seed)

    def apply(img: np.ndarray, index: int) -> np.ndarray:
        return pipe(image=img)["image"] if rng.random() < fraction else img
    return apply
