"""Palette and assets: colours (RGB), drawing precision, what is precomputed once (noise bank, body templates,
car outlines, glow sprites, window patterns), the street furniture's kinds, and colour helpers."""

from __future__ import annotations

from functools import cache
from math import trunc

import cv2
import numpy as np

SHIFT = 4  # OpenCV draws with 4 fractional bits: small figures move smoothly instead of snapping to pixels
ONE = 1 << SHIFT
AA, NOAA = cv2.LINE_AA, cv2.LINE_8

# -- palettes (RGB) -------------------------------------------------------------------------------------
SKY_DAY = [((88, 140, 210), (175, 205, 235)), ((120, 160, 215), (205, 220, 240)),  # clear: top, horizon
           ((160, 165, 175), (205, 205, 210)), ((135, 140, 150), (180, 182, 188)),  # overcast
           ((95, 110, 160), (235, 170, 120))]                                       # dusk
SKY_NIGHT = [((5, 8, 20), (22, 28, 50)), ((8, 8, 12), (40, 30, 30)), ((10, 12, 25), (55, 45, 40))]
FACADES = [(150, 75, 60), (175, 95, 70), (200, 185, 160), (185, 180, 170), (120, 120, 125), (225, 220, 205),
           (95, 90, 85), (160, 140, 110), (110, 125, 140), (205, 170, 130)]
PAVEMENT = [(150, 148, 142), (170, 165, 155), (130, 128, 125), (160, 150, 135)]
ROAD = [(70, 70, 72), (85, 84, 82), (60, 62, 66), (95, 95, 98)]
CARS = [(230, 230, 232), (30, 30, 34), (160, 162, 168), (170, 30, 30), (35, 60, 140), (70, 72, 78),
        (230, 190, 40), (40, 100, 60), (120, 20, 30), (200, 200, 190)]
CLOTHES = [(30, 30, 35), (50, 55, 80), (20, 40, 90), (200, 40, 40), (230, 230, 230), (120, 120, 125),
           (90, 60, 40), (40, 90, 50), (220, 180, 40), (150, 60, 120), (60, 130, 190), (180, 150, 120),
           (240, 120, 40), (80, 80, 60), (200, 110, 140), (15, 15, 15)]
SKIN = [(240, 200, 170), (220, 170, 130), (180, 130, 90), (130, 90, 60), (90, 60, 40)]
HAIR = [(20, 15, 10), (60, 40, 20), (110, 80, 40), (200, 170, 110), (140, 140, 140), (90, 30, 20)]
MANNEQUIN = [(235, 230, 220), (215, 205, 190), (40, 40, 42), (190, 190, 195)]
LAMP_LIGHT = [(1.0, 0.72, 0.38), (1.0, 0.8, 0.5), (0.85, 0.92, 1.0), (0.95, 0.95, 0.9)]  # sodium .. LED
AMBIENT_NIGHT = [(0.55, 0.7, 1.0), (1.0, 0.72, 0.45), (0.8, 0.8, 0.85), (0.65, 0.62, 0.85)]  # cold .. sodium
HEADLIGHT, TAIL_LIGHT, WINDOW_LIGHT = (1.0, 0.97, 0.88), (1.0, 0.15, 0.1), (1.0, 0.85, 0.6)
# halo colours at the centre of the glow, 0..255 units
HEADLIGHT_HALO = tuple(200 * v for v in HEADLIGHT)
LAMP_HALO = {rgb: tuple(260 * v for v in rgb) for rgb in LAMP_LIGHT}

# -- precomputed once ------------------------------------------------------------------------------------
# Gaussian sensor noise: one fixed bank sliced at a random offset per image (a fresh normal draw per
# pixel would cost more than drawing the scene).
NOISE_BANK_SIZE = 1 << 20
NOISE_BANK = np.random.default_rng(20210101).standard_normal(NOISE_BANK_SIZE).astype(np.float32)
LIGHT_GRID = 16  # the night light map is computed on a coarse grid and upsampled: light is smooth
_GRID = (np.arange(LIGHT_GRID, dtype=np.float32) + np.float32(0.5)) / np.float32(LIGHT_GRID)


def _body_templates() -> dict:
    """Joint positions of a figure as A + stride * B + swing * C, in body heights (x right, y up from the
    feet), for (profile?, coat?). Rows: leg1 (3), leg2 (3), arm1 (3), arm2 (3), torso (4), head (1), bag (4).
    In profile leg1/arm2 swing forward, leg2/arm1 back; x is mirrored for figures facing left."""
    out = {}
    for profile in (False, True):
        for coat in (False, True):
            hem, flare = (0.3, 0.03) if coat else (0.47, 0.0)
            if profile:
                a = [(0, .5), (0, .27), (0, .02), (0, .5), (0, .27), (0, .05), (0, .79), (0, .63), (0, .48),
                     (0, .79), (0, .63), (0, .5), (-.055, .83), (.05, .83), (.045 + flare, hem),
                     (-.05 - flare, hem), (.01, .925), (-.04, .8), (-.11, .78), (-.11, .56), (-.04, .56)]
                b = [(0, 0), (.08, 0), (.17, 0), (0, 0), (-.05, 0), (-.15, 0), (0, 0), (-.05, 0), (-.11, 0),
                     (0, 0), (.05, 0), (.12, 0), (.015, 0), (.015, 0), (0, 0), (0, 0), (.015, 0)]
                b += [(0, 0)] * 4
                c = [(0, 0)] * 21
            else:
                sw, hw = 0.1, 0.065
                a = [(-.04, .5), (-.05, .27), (-.06, .02), (.04, .5), (.05, .27), (.06, .02),
                     (-sw + .01, .8), (-sw - .02, .64), (-sw - .015, .47), (sw - .01, .8), (sw + .02, .64),
                     (sw + .015, .47), (-sw, .83), (sw, .83), (hw + .01 + flare, hem),
                     (-hw - .01 - flare, hem), (0, .925), (sw, .5), (sw + .1, .5), (sw + .1, .33), (sw, .33)]
                b = [(0, 0), (-.02, 0), (-.02, 0), (0, 0), (.02, 0), (.02, 0)] + [(0, 0)] * 15
                c = [(0, 0)] * 8 + [(-.03, 0)] + [(0, 0)] * 2 + [(.03, 0)] + [(0, 0)] * 9
            out[profile, coat] = tuple(np.array(t, np.float64) for t in (a, b, c))
    return out


BODY = _body_templates()

# a car in side view: (along the car from the rear 0..1, up from the road in car heights)
CAR_BODY = np.array([(0, .14), (0, .5), (.2, .56), (.3, .92), (.63, .93), (.77, .58), (.98, .52), (1, .14)])
CAR_GLASS = np.array([(.23, .58), (.32, .87), (.61, .88), (.73, .59)])
CAR_POINTS = np.concatenate([CAR_BODY, CAR_GLASS, [(.2, .17), (.8, .17), (.955, .36), (1, .46), (0, .38),
                                                   (.035, .48)]])
CAR_MIRRORED = CAR_POINTS * (-1, 1) + (1, 0)  # facing left


@cache
def _halo(r: int, rgb: tuple[float, float, float]) -> np.ndarray:
    """A soft glow sprite of radius ~r px and colour rgb (0..255 units at the centre): (6r+1, 6r+1, 3)
    float32 with a 1/(1+d^2)^2 falloff. Light colours come from a few fixed tuples, so this caches well."""
    d = np.arange(-3 * r, 3 * r + 1, dtype=np.float32) / np.float32(r)
    q = np.float32(1) + d[:, None] * d[:, None] + d[None, :] * d[None, :]
    return (np.float32(1) / (q * q))[:, :, None] * np.array(rgb, np.float32)


WINDOW_PITCH_X, WINDOW_PITCH_Y, WINDOW_FILL = (0.05, 0.065, 0.08, 0.1), (0.06, 0.08, 0.1, 0.12), (0.45, 0.65)
NIGHT_GLASS = (235, 195, 125)  # warm window glass at night


@cache
def _window_pattern(S: int, i: int, j: int, fill: int) -> tuple[np.ndarray, ...]:
    """For one window pitch/size choice on a 2S x 2S patch: the window mask (uint8 0/255), a random value per
    window (0..255, which windows are lit at night; 255 between windows, so never lit), a per-window
    brightness offset (3 channels) and the night glass plus that offset (saturated)."""
    pxp, pyp = max(3, int(WINDOW_PITCH_X[i] * S)), max(3, int(WINDOW_PITCH_Y[j] * S))
    wx, wy = max(1, int(pxp * WINDOW_FILL[fill])), max(1, int(pyp * (WINDOW_FILL[fill] + 0.1)))
    p = np.arange(2 * S)
    mask = (((p % pyp) >= pyp - wy)[:, None] & ((p % pxp) >= pxp - wx)[None, :]).astype(np.uint8) * 255
    cells = np.random.default_rng([S, i, j]).integers(0, 256, (2 * S // pyp + 1, 2 * S // pxp + 1), np.uint8)
    cell = cells[(p // pyp)[:, None], (p // pxp)[None, :]]
    shade = cv2.cvtColor(cell >> 3, cv2.COLOR_GRAY2RGB)
    return mask, np.where(mask > 0, cell, np.uint8(255)), shade, cv2.add(shade, NIGHT_GLASS)


# -- colour helpers -------------------------------------------------------------------------------------

def _jit(col, amount: float, u) -> tuple[int, int, int]:
    """A colour jittered by up to +-amount (0..255 units) in brightness and half that in warmth."""
    d, e = (2 * u() - 1) * amount, (u() - 0.5) * amount
    r, g, b = col[0] + d + e, col[1] + d, col[2] + d - e  # clipped to 0..255 inline: called ~20x a scene
    return (0 if r < 0 else 255 if r > 255 else trunc(r), 0 if g < 0 else 255 if g > 255 else trunc(g),
            0 if b < 0 else 255 if b > 255 else trunc(b))


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return trunc(a[0] + (b[0] - a[0]) * t), trunc(a[1] + (b[1] - a[1]) * t), trunc(a[2] + (b[2] - a[2]) * t)


def _dist(a, b) -> float:
    """RMS colour distance, 0..1."""
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2) ** 0.5 / (255 * 3 ** 0.5)


def _pick(seq, u):
    return seq[trunc(u() * len(seq))]


# kind: (weight, height range in person heights, half-width for occlusion, palette)
THINGS = {
    "pole": (0.14, (1.4, 2.6), 0.03, [(60, 60, 62), (40, 70, 50), (130, 130, 135), (30, 30, 30)]),
    "lamp": (0.12, (2.0, 2.6), 0.03, [(55, 58, 60), (30, 35, 40), (90, 90, 95)]),
    "sign": (0.18, (1.0, 1.5), 0.13, [(200, 30, 30), (30, 70, 170), (240, 240, 240), (240, 200, 30),
                                      (30, 130, 70)]),
    "tree": (0.12, (1.2, 1.5), 0.05, [(50, 110, 40), (70, 130, 50), (40, 90, 45)]),
    "bollard": (0.16, (0.35, 0.55), 0.05, [(40, 40, 40), (200, 170, 30), (120, 120, 120), (30, 50, 40)]),
    "hydrant": (0.12, (0.3, 0.4), 0.1, [(200, 30, 30), (230, 190, 40), (60, 90, 160)]),
    "bin": (0.16, (0.4, 0.6), 0.16, [(40, 80, 50), (60, 60, 62), (20, 20, 22), (150, 110, 40)]),
}
_KINDS = list(THINGS)
_KIND_CDF = (np.cumsum([v[0] for v in THINGS.values()]) / sum(v[0] for v in THINGS.values())).tolist()
