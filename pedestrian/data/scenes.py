"""Procedural street scenes: the offline stand-in for a dashcam data set of "is there a pedestrian?".

One call draws one square RGB scene with OpenCV primitives (at >= 64 px, then area-averaged down for small
sizes) and returns the ground truth behind it. The scene is a stylised side view of a street:

    sky | buildings with windows and shop windows | far pavement | road with cars | near pavement

Depth is faked with a ground plane: whatever stands lower in the frame is closer, so it is drawn later and
bigger (person height = scale * (foot_y - horizon_y)). Everything is placed in image units (0..1), so one
index gives the same scene at every size.

What makes it hard, on purpose (the lecture's slices), within a label rule that keeps every label right:
  * pedestrians are articulated figures (frontal, or walking in profile with arm swing; coats, bags,
    backpacks) at many scales, some partly hidden by cars, bins, poles or the frame edge, some dressed in the
    colours of the wall behind them; but a positive's pedestrian is never below the floors of `Difficulty`
    (height in pixels, share hidden, contrast, light by night), and only a small share (`p_hard`) comes near
    them: the "hard-to-see" slice. A positive never rests on a figure no model could see;
  * pedestrian-like distractors appear in BOTH classes: poles, sign posts (a "head" on a stick), lamp posts,
    trees, bollards, fire hydrants (a head and arms), bins, and mannequins in shop windows;
  * reflections (either class): a faint mirrored figure in a shop window or a car door, or an upside-down
    one in a puddle;
  * night is its own renderer, not a darker day: albedo x light, where light = a weak coloured ambient
    (cold blue or sodium orange) + pools under street lamps + headlight cones + lit shop windows; lamps,
    lit windows and car lights glow with halos; strong sensor noise, sometimes blur. A pedestrian at night
    is visible mainly near a light: where no drawn lamp lights them to `min_light`, an off-frame one does,
    and the same off-frame lamps light empty streets too, so a pool of light does not give the label away.

Determinism: every image is seeded by np.random.default_rng([seed, crc32(split), index]), and only
bit-exact operations touch pixels: OpenCV integer drawing, 8-bit resizes and blur, numpy or OpenCV
elementwise float32 +, * and / (no transcendental functions, no fused or reordered sums) and saturating
float->uint8 conversion. Same bytes on any machine.

Speed: ~50 drawing calls and ~40 small array operations per image; what can be precomputed (noise, glow
sprites, window patterns and their lit night tiles, body templates) is, at import or on first use. Most
of the cost is per call (Python, numpy and OpenCV overheads), not per pixel, so the hot path saves calls:
render_many derives all its generators' states at once (numpy's SeedSequence and PCG64 seeding, vectorised
over the indices and checked against default_rng) instead of ~30 us of default_rng per image; a scene
reads its ~175 uniforms from one block through a C-level iterator; the camera (light maps, exposure, noise,
8-bit rounding) runs on batches of scenes, so its array operations are shared; hot helpers use trunc() and
conditional expressions instead of int()/max()/min(), at a third of the cost. Same bytes as the one-image-
at-a-time renderer (tests/test_scenes.py pins them). ~1.4x the images per CPU-second of that renderer.
"""

from __future__ import annotations

import time
import zlib
from bisect import bisect_left
from dataclasses import asdict, dataclass, fields
from functools import cache
from itertools import chain
from math import trunc
from operator import itemgetter

import cv2
import numpy as np

GENERATOR_VERSION = "2"  # bump whenever the drawing changes (it is part of the cache key)


@dataclass(frozen=True)
class Difficulty:
    """The knobs of the task's difficulty (conf/data/scenes.yaml `difficulty:`; their measured effects are in
    experiments/cpu/calibration/). The floors are the label rule: every positive's main pedestrian is at least
    `ped_min_px` pixels tall at the size it is rendered, at most `max_occlusion` hidden (by closer objects or the
    frame edge), at least `min_contrast` against what is behind it and, by night, lit by at least `min_light`.
    A share `p_hard` of the positives is drawn near those floors: the lecture's small "hard-to-see" tail."""

    ped_min_px: float = 12.0     # floor on the pedestrian's height, pixels of the rendered image
    ped_max: float = 0.6         # tallest pedestrian, fraction of the image height
    max_occlusion: float = 0.35  # most of its body box that may be hidden or cut by the frame
    min_contrast: float = 0.1    # floor on colour distance to the background x min(1, light)
    min_light: float = 0.6       # by night: the least light falling on the pedestrian (0 dark .. 1 day)
    p_hard: float = 0.06         # share of positives drawn near the floors (small, partly hidden, low contrast)
    max_distractors: int = 2     # street furniture per scene: 1 .. this (poles, signs, trees, hydrants, bins)
    p_reflection: float = 0.1    # scenes with a mirrored figure (either class)
    ghost_alpha: float = 0.3     # the strongest reflection's opacity (a reflection is fainter than a person)
    p_mannequin: float = 0.1     # shop windows with a mannequin (either class)
    night_ambient: float = 0.25  # mean ambient light by night (day = 1): lower is darker
    night_noise: float = 0.03    # mean sensor noise by night, fraction of full scale (day: ~0.013)

    @classmethod
    def of(cls, value: Difficulty | dict | None) -> Difficulty:
        """A Difficulty from a mapping (the config's `difficulty:`), naming any unknown or bad knob."""
        if value is None or isinstance(value, cls):
            return value or cls()
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"data.difficulty: unknown knob(s) {unknown}; known: {sorted(known)}")
        for k, v in value.items():
            if known[k] == "int" and float(v) != int(float(v)):
                raise ValueError(f"data.difficulty.{k}={v}: must be a whole number")
        d = cls(**{k: (int(float(v)) if known[k] == "int" else float(v)) for k, v in value.items()})
        for name in ("max_occlusion", "p_hard", "p_reflection", "ghost_alpha", "p_mannequin"):
            if not 0 <= getattr(d, name) <= 1:
                raise ValueError(f"data.difficulty.{name}={getattr(d, name)}: must lie in 0..1")
        if not 0 <= d.min_contrast <= 0.25:  # clear positives stand out by twice it; black or white always can
            raise ValueError(f"data.difficulty.min_contrast={d.min_contrast}: must lie in 0..0.25")
        if not 0 <= d.min_light <= 1:
            raise ValueError(f"data.difficulty.min_light={d.min_light}: must lie in 0..1 (1 = daylight)")
        if not (d.ped_min_px > 0 and 0 < d.ped_max <= 1 and d.max_distractors >= 1 and d.night_ambient > 0
                and d.night_noise >= 0):
            raise ValueError(f"data.difficulty: out of range: {d}")
        return d

    def key(self) -> dict:
        return asdict(self)

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "label",          # 1 = a real pedestrian is in the scene
    "night",          # 1 = drawn by the night renderer
    "reflection",     # 1 = a mirrored/ghost figure in a shop window, car door or puddle (either class)
    "hard",           # 1 = a positive whose pedestrian is hard to see (small, occluded or low contrast)
    "ped_height",     # height of the main pedestrian (the label rule's), fraction of the image height (0 if none)
    "occlusion",      # share of its body box hidden by closer objects or cut by the frame (0..1)
    "contrast",       # colour distance to what is behind it, times the light falling on it (0..1)
    "light",          # illumination at the pedestrian: 1 by day; night: ambient + lamps (0..2)
    "visibility",     # size x unoccluded x contrast, squashed to 0..1: one number behind "hard"
    "ped_x",          # centre x of that pedestrian (0 if none; may lie just outside 0..1)
    "ped_y",          # foot y of that pedestrian (0 if none)
    "n_pedestrians",  # real pedestrians in the scene
    "n_distractors",  # pedestrian-like: poles, signs, lamps, trees, bollards, hydrants, bins, mannequins
    "mannequin",      # 1 = at least one mannequin in a shop window
    "n_cars",
    "brightness",     # mean luminance of the final image (0..1)
    "noise",          # sensor noise standard deviation (fraction of full scale)
)
INT_ATTRIBUTES: tuple[str, ...] = ("label", "night", "reflection", "hard")  # int64 columns; the rest float32

# A positive is "hard" (to see) when its main pedestrian is near a floor of the label rule (Difficulty):
# under HARD_SIZE x the height floor, over HARD_OCCLUSION x the occlusion limit, or under HARD_CONTRAST x the
# contrast floor. The other positives are drawn clear of all three.
HARD_SIZE, HARD_OCCLUSION, HARD_CONTRAST = 1.35, 0.5, 2.0


def is_hard(height_px, occlusion, contrast, d: Difficulty):
    """The "hard" slice from a pedestrian's height in pixels, occlusion and contrast (scalars or arrays)."""
    return ((height_px < HARD_SIZE * d.ped_min_px) | (occlusion > HARD_OCCLUSION * d.max_occlusion)
            | (contrast < HARD_CONTRAST * d.min_contrast))

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


# -- small helpers -----------------------------------------------------------------------------------------

STREAM_BLOCK = 384  # uniforms a scene draws up front: it needs ~175, rarely over 350 (more: see _draw_scene)


def _stream(rng: np.random.Generator, block: int | None):
    """A scene's uniform [0, 1) numbers as a C-level iterator's __next__ (the Python cost per draw stays
    tiny): `block` numbers drawn at once and read through a memoryview (StopIteration after the last), or
    with block None, without end, fetched 64 at a time. The same numbers either way."""
    if block is None:
        return chain.from_iterable(iter(lambda: rng.random(64).tolist(), None)).__next__
    return iter(memoryview(rng.random(block))).__next__


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


class _Canvas:
    """The image being drawn (albedo) and, at night, an emission mask (how strongly each pixel glows), plus
    the lights that the night camera turns into a light map and halos."""

    def __init__(self, img: np.ndarray, em: np.ndarray | None, aa: int):
        S = img.shape[0]
        self.S, self.k, self.aa = S, S * ONE, aa
        self.img, self.em = img, em  # em (night only) must come zeroed
        self.lights: list[tuple] = []  # (x, y, rx, ry, intensity, r, g, b): pools of light
        self.halos: list[tuple] = []   # (x, y, r, rgb): glows around bright sources

    def p(self, x: float, y: float) -> tuple[int, int]:
        return trunc(x * self.k), trunc(y * self.k)

    def px(self, v: float) -> int:
        """A line thickness in whole pixels, at least 1."""
        v = trunc(v * self.S + 0.5)
        return v if v > 1 else 1

    def box(self, x0, y0, x1, y1) -> tuple[int, int, int, int]:
        """Image-unit box -> pixel bounds clipped to the canvas, 0..S."""
        S = self.S
        a, b, c, d = trunc(x0 * S), trunc(y0 * S), trunc(x1 * S + 0.999), trunc(y1 * S + 0.999)
        return (0 if a < 0 else a if a < S else S, 0 if b < 0 else b if b < S else S,
                0 if c < 0 else c if c < S else S, 0 if d < 0 else d if d < S else S)


# -- pedestrians -------------------------------------------------------------------------------------------

def _sample_person(u, camouflage=None) -> dict:
    """Pose and clothes of a figure (pedestrian, ghost or mannequin); position and size come separately."""
    top, bottom = _pick(CLOTHES, u), _pick(CLOTHES, u)
    if camouflage is not None and u() < 0.12:  # dressed like the wall behind them
        top, bottom = _jit(camouflage, 14, u), _jit(camouflage, 20, u)
    return dict(face=_pick((0, -1, 1, -1, 1), u), stride=u(), swing=u(), near_fwd=u() < 0.5,
                top=_jit(top, 18, u), bottom=_jit(bottom, 18, u), skin=_pick(SKIN, u), hair=_pick(HAIR, u),
                coat=u() < 0.25, bag=u() < 0.2, backpack=u() < 0.15, bag_col=_pick(CLOTHES, u),
                width=0.85 + 0.3 * u())


def _draw_person(c: _Canvas, x: float, yf: float, h: float, q: dict, flip: float = 1.0,
                 img: np.ndarray | None = None) -> None:
    """An articulated figure, feet at (x, yf), h tall; flip=-1 hangs it upside down (a puddle reflection)."""
    img = c.img if img is None else img
    f, lt = q["face"], c.aa
    a, b, cc = BODY[f != 0, q["coat"]]
    k = c.k
    pts = a + q["stride"] * b
    if f == 0:  # frontal: the arms swing (in profile the swing term is zero: adding it changes nothing)
        pts = pts + q["swing"] * cc
    pts = (pts * (h * q["width"] * (f or 1) * k, -h * flip * k) + (x * k, yf * k)).astype(np.int32)
    leg, arm = c.px(0.075 * h * q["width"]), c.px(0.05 * h * q["width"])
    top, bot = q["top"], q["bottom"]
    if f == 0:  # frontal: legs apart, arms by the sides
        cv2.polylines(img, [pts[0:3], pts[3:6]], False, bot, leg, lt, SHIFT)
        cv2.fillConvexPoly(img, pts[12:16], top, lt, SHIFT)
        cv2.polylines(img, [pts[6:9], pts[9:12]], False, _mix(top, (0, 0, 0), 0.15), arm, lt, SHIFT)
        if q["bag"]:
            cv2.fillConvexPoly(img, pts[17:21], q["bag_col"], lt, SHIFT)
    else:  # profile, walking: the far limbs first and darker, arms swinging against the legs
        near_leg, far_leg = (pts[0:3], pts[3:6]) if q["near_fwd"] else (pts[3:6], pts[0:3])
        near_arm, far_arm = (pts[6:9], pts[9:12]) if q["near_fwd"] else (pts[9:12], pts[6:9])
        cv2.polylines(img, [far_arm], False, _mix(top, (0, 0, 0), 0.3), arm, lt, SHIFT)
        cv2.polylines(img, [far_leg], False, _mix(bot, (0, 0, 0), 0.3), leg, lt, SHIFT)
        if q["backpack"]:
            cv2.fillConvexPoly(img, pts[17:21], q["bag_col"], lt, SHIFT)
        cv2.fillConvexPoly(img, pts[12:16], top, lt, SHIFT)
        cv2.polylines(img, [near_leg], False, bot, leg, lt, SHIFT)
        cv2.polylines(img, [near_arm], False, _mix(top, (0, 0, 0), 0.1), arm, lt, SHIFT)
    head, r = tuple(pts[16].tolist()), trunc(0.068 * h * k)
    cv2.circle(img, head, r, q["skin"], -1, lt, SHIFT)
    if h * c.S > 7:  # hair, where it can be seen
        start = (180 if flip > 0 else 0) - 15 * f
        cv2.ellipse(img, head, (r + 2, r + 2), 0, start, start + 180, q["hair"], -1, lt, SHIFT)


def _ghost(c: _Canvas, box, x, yf, h, q, alpha: float, flip: float = 1.0, ellipse: bool = False) -> None:
    """A faint, washed-out figure (a reflection), visible only inside box: drawn on a copy, blended back."""
    bx0, by0, bx1, by1 = c.box(*box)
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return
    tmp = c.img.copy()
    q = dict(q, top=_mix(q["top"], (200, 200, 200), 0.3), bottom=_mix(q["bottom"], (200, 200, 200), 0.3))
    _draw_person(c, x, yf, h, q, flip=flip, img=tmp)
    a = int(alpha * 256)
    roi = c.img[by0:by1, bx0:bx1]
    mixed = ((roi.astype(np.uint16) * (256 - a) + tmp[by0:by1, bx0:bx1].astype(np.uint16) * a) >> 8)
    if ellipse:  # keep to the puddle's outline
        m = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        cx, cy = (bx1 - bx0) * ONE // 2, (by1 - by0) * ONE // 2
        cv2.ellipse(m, (cx, cy), (cx, cy), 0, 0, 360, 255, -1, NOAA, SHIFT)
        cv2.copyTo(mixed.astype(np.uint8), m, roi)
    else:
        roi[:] = mixed  # values are 0..255: the uint16 -> uint8 cast is exact


# -- cars and street furniture ----------------------------------------------------------------------------

def _draw_car(c: _Canvas, o: dict, u) -> None:
    x0, yf, L, H, d, col = o["x0"], o["yf"], o["L"], o["H"], o["dir"], o["col"]
    k, img = c.k, c.img
    pts = ((CAR_POINTS if d > 0 else CAR_MIRRORED) * (L * k, -H * k) + (x0 * k, yf * k)).astype(np.int32)
    cv2.fillPoly(img, [pts[0:8]], col, NOAA, SHIFT)
    cv2.fillConvexPoly(img, pts[8:12], o["glass"], NOAA, SHIFT)
    rw, pl = trunc(0.17 * H * k), pts.tolist()
    cv2.circle(img, pl[12], rw, (25, 25, 28), -1, NOAA, SHIFT)
    cv2.circle(img, pl[13], rw, (25, 25, 28), -1, NOAA, SHIFT)
    night = c.em is not None
    head, tail = ((255, 250, 225), (255, 40, 30)) if night else ((225, 225, 210), (150, 20, 20))
    hl, tl = (pl[14], pl[15]), (pl[16], pl[17])
    cv2.rectangle(img, *hl, head, -1, NOAA, SHIFT)
    cv2.rectangle(img, *tl, tail, -1, NOAA, SHIFT)
    if night:
        cv2.rectangle(c.em, *hl, 255, -1, NOAA, SHIFT)
        cv2.rectangle(c.em, *tl, 255, -1, NOAA, SHIFT)
        front, rear, ylamp = x0 + (L if d > 0 else 0), x0 + (0 if d > 0 else L), yf - 0.41 * H
        c.halos.append((front, ylamp, 0.06 * H, HEADLIGHT_HALO))
        c.lights.append((front + d * 0.55 * L, yf - 0.15 * H, 0.55 * L, 0.35 * H, 1.4, *HEADLIGHT))
        c.lights.append((rear, ylamp, 0.15 * L, 0.3 * H, 0.5, *TAIL_LIGHT))
    if o["ghost"] is not None:  # a passer-by mirrored in the doors
        _ghost(c, (x0 + 0.1 * L, yf - 0.52 * H, x0 + 0.9 * L, yf - 0.2 * H), x0 + L * (0.45 + 0.1 * u()),
               yf - 0.16 * H, 0.45 * H, o["ghost"], alpha=o["alpha"])


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


def _draw_thing(c: _Canvas, o: dict, u) -> None:
    """Pedestrian-sized street furniture: one upright silhouette each, sized by depth like a person."""
    kind, x, yf, s, col, top = o["kind"], o["x"], o["yf"], o["s"], o["col"], o["yf"] - o["top"] * o["s"]
    k, img, p, px = c.k, c.img, c.p, c.px
    if kind == "pole":
        cv2.line(img, p(x, yf), p(x, top), col, px(0.035 * s), NOAA, SHIFT)
        if o["extra"] < 0.5:  # a band or a box at chest height
            cv2.line(img, p(x, yf - 0.7 * s), p(x, yf - 0.85 * s), o["col2"], px(0.05 * s), NOAA, SHIFT)
    elif kind == "lamp":
        d = o["dir"]
        hx, hy = x + d * 0.3 * s, top + 0.03 * s
        post = np.array((*p(x, yf), *p(x, top), *p(hx, top)), np.int32).reshape(3, 2)
        cv2.polylines(img, [post], False, col, px(0.03 * s), NOAA, SHIFT)
        axes = (trunc(0.09 * s * k), trunc(0.035 * s * k))
        if c.em is None:
            cv2.ellipse(img, p(hx, hy), axes, 0, 0, 360, (190, 190, 180), -1, NOAA, SHIFT)
        else:  # lit: the bulb glows, a halo around it and a pool of light on the ground below
            cv2.ellipse(img, p(hx, hy), axes, 0, 0, 360, (255, 235, 190), -1, NOAA, SHIFT)
            cv2.ellipse(c.em, p(hx, hy), axes, 0, 0, 360, 255, -1, NOAA, SHIFT)
            c.halos.append((hx, hy, 0.07 * s, LAMP_HALO[o["light"]]))
            c.lights.append((hx, hy + 0.75 * (yf - hy), 0.55 * s * o["spread"], 0.9 * s, o["power"], *o["light"]))
    elif kind == "sign":
        cv2.line(img, p(x, yf), p(x, top), (110, 110, 115), px(0.03 * s), NOAA, SHIFT)
        r = 0.13 * s
        if o["extra"] < 0.4:
            cv2.circle(img, p(x, top), trunc(r * k), col, -1, NOAA, SHIFT)
            cv2.circle(img, p(x, top), trunc(0.6 * r * k), (240, 240, 240), -1, NOAA, SHIFT)
        elif o["extra"] < 0.7:
            cv2.rectangle(img, p(x - r, top - r), p(x + r, top + r), col, -1, NOAA, SHIFT)
        else:
            tri = np.array([p(x - r, top + 0.7 * r), p(x + r, top + 0.7 * r), p(x, top - r)], np.int32)
            cv2.fillConvexPoly(img, tri, col, NOAA, SHIFT)
    elif kind == "tree":
        cv2.line(img, p(x, yf), p(x, top), (80, 60, 40), px(0.07 * s), NOAA, SHIFT)
        e = (o["extra"] - 0.5) * s
        cv2.ellipse(img, p(x + 0.2 * e, top - 0.35 * s), (trunc(0.45 * s * k), trunc(0.5 * s * k)), 0, 0, 360,
                    col, -1, NOAA, SHIFT)
        cv2.ellipse(img, p(x - 0.3 * e, top - 0.6 * s), (trunc(0.3 * s * k), trunc(0.35 * s * k)), 0, 0, 360,
                    o["col2"], -1, NOAA, SHIFT)
    elif kind == "bollard":
        cv2.line(img, p(x, yf), p(x, top), col, px(0.09 * s), NOAA, SHIFT)
        cv2.line(img, p(x, top + 0.04 * s), p(x, top + 0.08 * s), (235, 235, 200), px(0.09 * s), NOAA, SHIFT)
    elif kind == "hydrant":
        h = yf - top
        cv2.line(img, p(x, yf), p(x, top), col, px(0.11 * s), NOAA, SHIFT)
        arms = yf - 0.6 * h
        cv2.line(img, p(x - 0.1 * s, arms), p(x + 0.1 * s, arms), col, px(0.05 * s), NOAA, SHIFT)
        cv2.circle(img, p(x, top), trunc(0.065 * s * k), o["col2"], -1, NOAA, SHIFT)
    else:  # bin
        w = 0.14 * s
        cv2.rectangle(img, p(x - w, top), p(x + w, yf), col, -1, NOAA, SHIFT)
        cv2.rectangle(img, p(x - 1.15 * w, top - 0.05 * s), p(x + 1.15 * w, top), o["col2"], -1, NOAA, SHIFT)


# -- facades ------------------------------------------------------------------------------------------------

def _windows(c: _Canvas, u, x0, x1, y0, y1, glass) -> None:
    """A grid of windows on a facade without a call per window: the glass colour plus a per-window
    brightness, copied into the image through the window mask. At night (glass None) the glass is warm,
    NIGHT_GLASS (that tile comes precomputed), and a random share of the windows glows (the emission mask):
    the others stay dark under the ambient light."""
    bx0, by0, bx1, by1 = c.box(x0 + 0.02, y0 + 0.02, x1 - 0.02, y1)
    h, w = by1 - by0, bx1 - bx0
    if w < 3 or h < 3:
        return
    mask, cell, shade, lit_glass = _window_pattern(c.S, trunc(u() * 4), trunc(u() * 4), trunc(u() * 2))
    oy, ox = trunc(u() * c.S), trunc(u() * c.S)  # a random window of the 2S patch: different windows lit
    ys, xs = slice(oy, oy + h), slice(ox, ox + w)
    tile = lit_glass[ys, xs] if glass is None else cv2.add(shade[ys, xs], glass)  # saturating
    cv2.copyTo(tile, mask[ys, xs], c.img[by0:by1, bx0:bx1])
    if c.em is not None:  # lit: the cells at or below a threshold (between windows the cells are 255)
        lit = cv2.threshold(cell[ys, xs], trunc(255 * (0.1 + 0.4 * u())), 140, cv2.THRESH_BINARY_INV)[1]
        em = c.em[by0:by1, bx0:bx1]
        cv2.max(em, lit, dst=em)


# -- night light -------------------------------------------------------------------------------------------

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


# -- ground truth -------------------------------------------------------------------------------------------

def _covered(box, rects) -> float:
    """Share of box hidden by the union of rects or lying outside the frame (exact, by x-slabs)."""
    x0, y0, x1, y1 = box
    rs = [(x0 if x0 > a else a, y0 if y0 > b else b, x1 if x1 < c else c, y1 if y1 < d else d)
          for a, b, c, d in rects if a < x1 and c > x0 and b < y1 and d > y0]  # clipped (max/min, inline)
    frame = ((x0, y0, 0.0, y1), (1.0, y0, x1, y1), (x0, 1.0, x1, y1))  # left, right, below the image
    rs += [r for r in frame if r[0] < r[2] and r[1] < r[3]]
    if not rs:
        return 0.0
    xs = sorted({r[0] for r in rs} | {r[2] for r in rs})
    spans = sorted((b, d, a, c) for a, b, c, d in rs)  # by (y0, y1), once: each slab keeps this order
    area = 0.0
    for xa, xb in zip(xs, xs[1:]):
        top, cover = -1e9, 0.0
        for lo, hi, left, right in spans:
            if left <= xa and right >= xb and hi > top:
                cover += hi - (top if top > lo else lo)
                top = hi
        area += (xb - xa) * cover
    return min(1.0, area / ((x1 - x0) * (y1 - y0)))


def _occlusion(o: dict, objects: list) -> float:
    """Share of a figure's body box hidden by closer objects or cut by the frame."""
    return _covered(o["boxes"][0], [b for p in objects if p["yf"] > o["yf"] and p is not o for b in p["boxes"]])


def _colour_contrast(q: dict, x: float, yf: float, h: float, background_at) -> float:
    """Colour distance of a figure's clothes to what is behind them (0..1), before light."""
    return min(1.0, 0.6 * _dist(q["top"], background_at(x, yf - 0.65 * h))
               + 0.4 * _dist(q["bottom"], background_at(x, yf - 0.25 * h)))


def _pedestrian_stats(o: dict, objects: list, background_at, light_at) -> tuple:
    """(height, occlusion, contrast, light, visibility) of one drawn pedestrian."""
    x, yf, h = o["x"], o["yf"], o["h"]
    occ = _occlusion(o, objects)
    light = light_at(x, yf - 0.55 * h) if light_at is not None else 1.0
    contrast = _colour_contrast(o["q"], x, yf, h, background_at) * min(1.0, light)
    vis = min(1.0, h / 0.25) * (1 - occ) * min(1.0, contrast / 0.2)
    return h, occ, contrast, light, vis


# -- one scene ----------------------------------------------------------------------------------------------

class _Shot:
    """A drawn scene waiting for the camera (_develop): its camera settings, drawn from its random stream
    in the order the camera uses them, and its attribute values (brightness filled in by the camera)."""

    __slots__ = ("night", "lights", "ambient", "halos", "blur", "gain", "sigma", "offset", "truth")


def _draw_scene(rng: np.random.Generator, size: int, p_night: float, p_pedestrian: float, d: Difficulty,
                albedo: np.ndarray, emission: np.ndarray) -> _Shot:
    """Draw one scene's albedo (size, size, 3) and, at night, its emission mask (size, size, zeroed) into
    the given buffers, and settle everything random about it; the camera runs later, on a batch of scenes."""
    try:
        return _draw(_stream(rng, STREAM_BLOCK), size, p_night, p_pedestrian, d, albedo, emission)
    except StopIteration:  # the block ran out: rewind the generator and draw it all again, unbounded
        rng.bit_generator.advance(-STREAM_BLOCK % (1 << 128))
        emission.fill(0)
        return _draw(_stream(rng, None), size, p_night, p_pedestrian, d, albedo, emission)


def _draw(u, size: int, p_night: float, p_pedestrian: float, d: Difficulty, albedo: np.ndarray,
          emission: np.ndarray) -> _Shot:
    """_draw_scene with u() handing out the scene's random numbers."""
    label, night = u() < p_pedestrian, u() < p_night
    factor = -(-64 // size)  # draw at >= 64 px; smaller images are area-averaged from that (anti-aliasing)
    S = size * factor
    if factor == 1:  # draw straight into the batch buffers (emission comes zeroed)
        img, em = albedo, emission if night else None
    else:
        img, em = np.empty((S, S, 3), np.uint8), np.zeros((S, S), np.uint8) if night else None
    c = _Canvas(img, em, AA if factor == 1 else NOAA)
    k, p = c.k, c.p

    # layout: horizon (top of the ground plane), building base, far kerb, near kerb; depth scale
    yh = 0.22 + 0.18 * u()
    yb = yh + 0.12 + 0.12 * u()
    yr = yb + 0.06 + 0.08 * u()
    yc = yr + 0.28 + 0.2 * u()
    scale = 0.95 + 0.45 * u()

    def depth(yf):  # the height of a person standing at yf
        d = yf - yh
        return scale * (0.02 if 0.02 > d else d)

    # sky: a vertical gradient (an exact 8-bit resize of a two-pixel column)
    top, bottom = _pick(SKY_NIGHT, u) if night else _pick(SKY_DAY, u)
    ysky = trunc(yb * S) + 1
    ends = np.array((*_jit(top, 12, u), *_jit(bottom, 12, u)), np.uint8).reshape(2, 1, 3)
    cv2.resize(ends, (S, ysky), dst=img[:ysky], interpolation=cv2.INTER_LINEAR_EXACT)
    sky = bottom

    # buildings, left to right: their facades are what most pedestrians stand against
    sb = depth(yb)
    buildings, shops = [], []
    x = -0.05 - 0.2 * u()
    while x < 1.0:
        w = 0.22 + 0.35 * u()
        if u() < 0.1:  # a gap: a side street
            x += 0.5 * w
            continue
        fcol, ytop = _jit(_pick(FACADES, u), 18, u), yh - 0.05 - 0.45 * u()
        cv2.rectangle(img, p(x, ytop), p(x + w, yb), fcol, -1, NOAA, SHIFT)
        buildings.append((x, x + w, ytop, fcol))
        _windows(c, u, x, x + w, ytop, yb - 1.25 * sb, None if night else _mix(fcol, (30, 40, 55), 0.7))
        if u() < 0.55:  # a shop window at street level
            sx0 = x + 0.03 + 0.1 * u() * w
            shops.append((sx0, yb - 1.15 * sb, min(x + w - 0.03, sx0 + 0.15 + 0.3 * u()), yb - 0.1 * sb))
        x += w
    cv2.rectangle(img, p(-0.1, yb - 0.012), p(1.1, yb), (60, 55, 50), -1, NOAA, SHIFT)

    # ground: far pavement, kerb, road with lane marks, near pavement
    pave, road = _jit(_pick(PAVEMENT, u), 10, u), _jit(_pick(ROAD, u), 8, u)
    kerb = _mix(pave, (255, 255, 255), 0.3)
    cv2.rectangle(img, p(-0.1, yb), p(1.1, yr), pave, -1, NOAA, SHIFT)
    cv2.rectangle(img, p(-0.1, yr), p(1.1, yc), road, -1, NOAA, SHIFT)
    cv2.line(img, p(-0.1, yr), p(1.1, yr), kerb, c.px(0.01), NOAA, SHIFT)
    ym, dash, x = (yr + yc) / 2, 0.05 + 0.1 * u(), -0.1 + 0.3 * u()
    lane = (225, 225, 215) if u() < 0.7 else (230, 190, 50)
    dashes = np.array([(p(x + i * 0.35, ym), p(x + i * 0.35 + dash, ym)) for i in range(4)], np.int32)
    cv2.polylines(img, list(dashes), False, lane, c.px(0.012), NOAA, SHIFT)
    if yc < 1:
        cv2.rectangle(img, p(-0.1, yc), p(1.1, 1.1), pave, -1, NOAA, SHIFT)
        cv2.line(img, p(-0.1, yc), p(1.1, yc), kerb, c.px(0.01), NOAA, SHIFT)

    def ground_at(y):
        return pave if y < yr or y >= yc else road

    def background_at(x, y):
        """The albedo behind a point: what a pedestrian there must stand out from."""
        if y >= yb:
            return ground_at(y)
        for sx0, sy0, sx1, sy1 in shops:
            if sx0 <= x < sx1 and sy0 <= y < sy1:
                return (45, 55, 70)
        for bx0, bx1, ytop, fcol in buildings:
            if bx0 <= x < bx1 and y >= ytop:
                return fcol
        return sky

    # a reflection somewhere? (either class) 0: in a shop window, 1: in a puddle, 2: in a car door
    reflection = u() < d.p_reflection
    where = trunc(u() * 3) if reflection else -1
    if where == 0 and not shops:
        where = 1

    # shop windows: glass, maybe a mannequin (seen through the tint) or a passer-by's reflection
    n_mannequins = 0
    for i, (sx0, sy0, sx1, sy1) in enumerate(shops):
        lit = night and u() < 0.6
        glass = _jit((225, 200, 150) if lit else _mix((45, 55, 70), sky, 0.25), 15, u)
        cv2.rectangle(img, p(sx0, sy0), p(sx1, sy1), glass, -1, NOAA, SHIFT)
        if lit:
            cv2.rectangle(c.em, p(sx0, sy0), p(sx1, sy1), 150, -1, NOAA, SHIFT)
            c.lights.append(((sx0 + sx1) / 2, yb + 0.02, (sx1 - sx0) * 0.7, 0.1, 0.5, *WINDOW_LIGHT))
        if u() < d.p_mannequin:
            n_mannequins += 1
            q, mc = _sample_person(u), _pick(MANNEQUIN, u)
            if u() < 0.5:  # undressed: one colour head to toe
                q.update(top=mc, bottom=mc, hair=mc)
            q.update(skin=mc, face=0, stride=0.0, bag=False)
            for part in ("top", "bottom", "hair", "skin"):
                q[part] = _mix(q[part], glass, 0.3)
            mx = sx0 + (sx1 - sx0) * (0.25 + 0.5 * u())
            _draw_person(c, mx, sy1 - 0.03 * sb, (sy1 - sy0) * (0.75 + 0.2 * u()), q)
            cv2.line(img, p(mx, sy1 - 0.03 * sb), p(mx, sy1), (90, 90, 90), c.px(0.01), NOAA, SHIFT)
        if where == 0 and i == 0:
            _ghost(c, (sx0, sy0, sx1, sy1), sx0 + (sx1 - sx0) * (0.2 + 0.6 * u()), sy1 + 0.05 * sb,
                   (sy1 - sy0) * (0.8 + 0.3 * u()), _sample_person(u), alpha=d.ghost_alpha * (0.55 + 0.45 * u()))
        cv2.rectangle(img, p(sx0, sy0), p(sx1, sy1), (60, 55, 50), c.px(0.01), NOAA, SHIFT)

    # a puddle on the ground, maybe holding an upside-down passer-by
    if u() < 0.3 or where == 1:
        py = yr + (min(yc, 1.0) - yr) * (0.1 + 0.8 * u())
        px, pw = 0.1 + 0.8 * u(), 0.08 + 0.12 * u()
        ph = pw * (0.15 + 0.15 * u())
        cv2.ellipse(img, p(px, py), (trunc(pw * k), trunc(ph * k)), 0, 0, 360, _mix(ground_at(py), sky, 0.35), -1,
                    NOAA, SHIFT)
        if where == 1:
            _ghost(c, (px - pw, py - ph, px + pw, py + ph), px + (u() - 0.5) * pw, py - ph,
                   depth(py) * (0.6 + 0.4 * u()), _sample_person(u), alpha=d.ghost_alpha * (0.6 + 0.4 * u()), flip=-1.0,
                   ellipse=True)

    # things standing on the ground: cars, street furniture, lamps, pedestrians. Drawn far to near.
    objects = []
    near_pave = yc < 0.98

    def on_pavement():
        if near_pave and u() < 0.3:
            return yc + 0.01 + (1.08 - yc - 0.01) * u()
        return yb + 0.005 + (yr - yb - 0.01) * u()

    def add_car(x0, yf):
        s = depth(yf)
        L, H = (1.8 + 0.4 * u()) * s, (0.68 + 0.12 * u()) * s  # stylised: a bit small
        o = dict(type="car", x0=x0, yf=yf, L=L, H=H, dir=1 if u() < 0.5 else -1,
                 col=_jit(_pick(CARS, u), 12, u), glass=_jit((40, 50, 65), 15, u), ghost=None)
        o["boxes"] = [(x0, yf - 0.52 * H, x0 + L, yf),  # opaque parts: body, cabin
                      (x0 + 0.22 * L, yf - 0.9 * H, x0 + 0.78 * L, yf - 0.52 * H)]
        objects.append(o)
        return o

    def add_thing(kind, x, yf):
        s = depth(yf)
        _, (lo, hi), hw, pal = THINGS[kind]
        col = _jit(_pick(pal, u), 15, u)
        o = dict(type="thing", kind=kind, x=x, yf=yf, s=s, top=lo + (hi - lo) * u(), col=col, extra=u(),
                 dir=1 if u() < 0.5 else -1)
        if kind in ("pole", "tree", "hydrant", "bin"):  # a second colour: band, canopy, cap, lid
            o["col2"] = _jit(_mix(col, (0, 0, 0), 0.3) if kind != "pole" else _pick(pal, u), 25, u)
        o["boxes"] = [(x - hw * s, yf - o["top"] * s, x + hw * s, yf)]
        if kind == "sign":  # a thin post and the plate on top
            o["boxes"] = [(x - 0.02 * s, yf - o["top"] * s, x + 0.02 * s, yf),
                          (x - hw * s, yf - (o["top"] + hw) * s, x + hw * s, yf - (o["top"] - hw) * s)]
        if kind == "tree":
            o["boxes"].append((x - 0.45 * s, yf - (o["top"] + 0.85) * s, x + 0.45 * s, yf - o["top"] * s))
        if kind == "lamp":
            o.update(light=_pick(LAMP_LIGHT, u), spread=0.8 + 0.6 * u(), power=0.6 + 0.8 * u())
        objects.append(o)
        return o

    n_cars = _pick((0, 0, 1, 1, 1, 2, 2, 3), u)
    for _ in range(n_cars):  # mostly in the far lane, some close
        add_car(-0.3 + 1.2 * u(), yr + 0.03 + (min(yc, 1.05) - yr) * (0.5 * u() if u() < 0.7 else u()))
    for _ in range(1 + trunc(u() * d.max_distractors)):
        add_thing(_KINDS[bisect_left(_KIND_CDF, u())], -0.05 + 1.1 * u(), on_pavement())
    if night:  # street lamps: the main light at night, a pool under each
        for _ in range(1 + trunc(u() * 2.2)):
            add_thing("lamp", u(), on_pavement())

    # the pedestrians (positives only): size first, then the ground plane says where someone that size
    # stands; across the frame they gather toward the middle (the car's path). The first one obeys the label
    # rule (Difficulty's floors): clear of all of them, or, in the hard tail, near one of them.
    people = []
    hmin = d.ped_min_px / size
    hard_kind = trunc(u() * 3) if label and u() < d.p_hard else -1  # 0: small, 1: occluded, 2: low contrast
    occ_limit = d.max_occlusion * (1.0 if hard_kind == 1 else HARD_OCCLUSION)
    for j in range((1 if u() < 0.8 else 2 + trunc(u() * 2)) if label else 0):
        if j > 0:  # company: any size, anywhere
            h = max(hmin, 0.12 + 0.4 * u())
        elif hard_kind == 0:
            h = hmin * (1 + (HARD_SIZE - 1) * u())
        else:
            lo = min(HARD_SIZE * hmin, d.ped_max)
            h = lo + (max(lo, d.ped_max) - lo) * u()
        yf = min(max(yh + h / scale, yb + 0.005) + 0.01 * u(), 1 + 0.5 * occ_limit * h)
        closer = [b for o in objects if o["yf"] > yf for b in o["boxes"]]
        best = None
        for _ in range(6):  # stand where the clutter and the frame leave them visible
            x = 0.5 + 0.45 * (u() + u() - 1) if u() < 0.95 else (0.05 * u() if u() < 0.5 else 1 - 0.05 * u())
            box = (x - 0.11 * h, yf - h, x + 0.11 * h, yf)
            occ = _covered(box, closer)
            if best is None or occ < best[0]:
                best = (occ, x, box)
            if occ < 0.5 * occ_limit:
                break
        _, x, box = best
        if _covered(box, []) > occ_limit:  # cut by the frame edge: step inside
            x = 0.11 * h if x < 0.5 else 1 - 0.11 * h
            box = (x - 0.11 * h, yf - h, x + 0.11 * h, yf)
        camo, target = background_at(x, yf - 0.6 * h), (1.0 if hard_kind == 2 else HARD_CONTRAST) * d.min_contrast
        q, qc = None, -1.0
        for _ in range(6 if j == 0 else 1):  # clothes that stand out enough from what is behind them
            cand = _sample_person(u, camo if hard_kind == 2 else None)
            cc = _colour_contrast(cand, x, yf, h, background_at)
            if cc > qc:
                q, qc = cand, cc
            if cc >= target:
                break
        if j == 0 and qc < target:  # no luck: the clothes farthest from the background
            far = max(CLOTHES, key=lambda col: _dist(col, camo))
            q.update(top=far, bottom=far)
            if _colour_contrast(q, x, yf, h, background_at) < d.min_contrast:  # still not: black or white,
                q.update({part: max(((0, 0, 0), (255, 255, 255)),  # whichever stands out more (>= 0.5 by design)
                                    key=lambda col: _dist(col, background_at(x, y)))
                          for part, y in (("top", yf - 0.65 * h), ("bottom", yf - 0.25 * h))})
        o = dict(type="person", x=x, yf=yf, h=h, q=q, boxes=[box])
        people.append(o)
        objects.append(o)
        if j == 0 and (hard_kind == 1 or u() < 0.1):  # hidden in part behind something closer
            yo = yf + 0.01 + 0.06 * u()
            if u() < 0.4 and yo > yr:
                occluder = add_car(0.0, yo)
                dx = x - occluder["L"] * (0.1 + 0.95 * u())
                occluder["x0"] = dx
                occluder["boxes"] = [(b[0] + dx, b[1], b[2] + dx, b[3]) for b in occluder["boxes"]]
            else:
                kind = _pick(("bin", "bollard", "hydrant", "tree", "sign", "pole"), u)
                occluder = add_thing(kind, x + (u() - 0.5) * 0.15 * h, yo)
            if _occlusion(o, objects) > occ_limit:
                objects.remove(occluder)
        if night and j == 0 and u() < 0.65:  # people walk where the light is
            add_thing("lamp", x + (u() - 0.5) * 0.25, min(yf + (u() - 0.3) * 0.05, 1.0))
    if where == 2:
        cars = [o for o in objects if o["type"] == "car"]
        if not cars:
            cars = [add_car(0.1 + 0.5 * u(), yr + 0.05 + 0.3 * (min(yc, 1.0) - yr) * u())]
        cars[0]["ghost"], cars[0]["alpha"] = _sample_person(u), d.ghost_alpha * (0.55 + 0.45 * u())
    if people:  # the label rule: nothing closer may hide more of the pedestrian than the limit allows
        main = people[0]
        while _occlusion(main, objects) > occ_limit:
            x0, y0, x1, y1 = main["boxes"][0]
            over = [(sum(max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))
                         for b in o["boxes"]), i) for i, o in enumerate(objects) if o["yf"] > main["yf"]]
            area, i = max(over, default=(0.0, -1))
            if area <= 0:
                break  # the frame alone (kept under the limit where it was placed)
            gone = objects.pop(i)
            if gone in people:
                people.remove(gone)
        if where == 2 and not any(o["type"] == "car" and o["ghost"] is not None for o in objects):
            reflection = False

    objects.sort(key=itemgetter("yf"))
    for o in objects:
        if o["type"] == "car":
            _draw_car(c, o, u)
        elif o["type"] == "thing":
            _draw_thing(c, o, u)
        else:
            _draw_person(c, o["x"], o["yf"], o["h"], o["q"])

    # -- camera settings, in the order the camera used to draw them ---------------------------------------
    if factor > 1:
        cv2.resize(img, (size, size), dst=albedo, interpolation=cv2.INTER_AREA)
        if night:
            cv2.resize(em, (size, size), dst=emission, interpolation=cv2.INTER_AREA)
    shot = _Shot()
    shot.night, light_at = night, None
    if night:
        shot.ambient = (d.night_ambient * (0.5 + u()), _pick(AMBIENT_NIGHT, u))
        shot.lights, shot.halos = c.lights, c.halos
        light_at = _light_at(c.lights, *shot.ambient)
        col = _pick(LAMP_LIGHT, u)
        if not people and u() < 0.7:  # the same off-frame lamps light empty streets: light is no label
            c.lights.append((0.1 + 0.8 * u(), yb + (1 - yb) * u(), 0.15, 0.2, 0.4 + 0.6 * u(), *col))
        if people:  # the label rule by night: enough light on the pedestrian to see them by (a lamp off-frame)
            o = people[0]
            px_, py_ = o["x"], o["yf"] - 0.55 * o["h"]
            base = _colour_contrast(o["q"], o["x"], o["yf"], o["h"], background_at)
            dim = hard_kind == 2  # the low-contrast tail: dimly lit, just above the floors
            need = max(d.min_light if dim else (1 + d.min_light) / 2,
                       (1.0 if dim else HARD_CONTRAST) * d.min_contrast / max(base, 1e-3))
            have = light_at(px_, py_)
            if have < min(need, 1.0):
                lum = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2]
                c.lights.append((px_, py_, max(0.15, 0.5 * o["h"]), max(0.15, 0.7 * o["h"]),
                                 (min(need, 1.0) - have) / lum + 0.02, *col))
        blur = (0.6 + 0.4 * u()) * size / 64
        shot.blur = blur if u() < 0.6 and blur > 0.3 else None  # a slightly soft night lens
        sigma = d.night_noise * (0.5 + u())
        shot.gain = np.float32(2 / 255)
    else:
        sigma = 0.004 + 0.018 * u()
        shot.blur, shot.gain = None, np.float32(0.8 + 0.35 * u())  # exposure (sun, overcast, dusk)
    shot.sigma, shot.offset = sigma, trunc(u() * (NOISE_BANK_SIZE - 2 * size * size * 3))

    # -- ground truth -----------------------------------------------------------------------------------
    h = occ = contrast = light = vis = x = yf = 0.0
    if people:  # the main pedestrian, the one the label rule holds for
        o = people[0]
        h, occ, contrast, light, vis = _pedestrian_stats(o, objects, background_at, light_at)
        x, yf = o["x"], o["yf"]
    hard = label and bool(is_hard(h * size, occ, contrast, d))
    n_distractors = sum(o["type"] == "thing" for o in objects) + n_mannequins
    n_cars = sum(o["type"] == "car" for o in objects)
    shot.truth = [label, night, reflection, hard, h, occ, contrast, light, vis, x, yf, len(people),
                  n_distractors, n_mannequins > 0, n_cars, None, sigma]  # None: brightness, from the camera
    return shot


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


# -- seeding ------------------------------------------------------------------------------------------------
# np.random.default_rng([seed, sid, index]) costs ~30 us, as much as drawing a car. A batch needs the same
# generators, so render_many derives their PCG64 states at once: numpy's SeedSequence hash (uint32 words,
# vectorised over the indices) and PCG64's seeding, then sets them into one reused generator. Same state,
# so the same numbers; checked against default_rng on every call (any mismatch: back to default_rng).

_M32, _M128 = 0xFFFFFFFF, (1 << 128) - 1
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED  # SeedSequence
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG64's 128-bit LCG multiplier


def _words(n: int) -> list[int]:
    """An entropy integer as SeedSequence reads it: uint32 words, lowest first."""
    out = [n & _M32]
    while n >> 32:
        n >>= 32
        out.append(n & _M32)
    return out


def _pcg64_states(seed: int, sid: int, indices: range) -> list[tuple[int, int]]:
    """PCG64 (state, inc) of default_rng([seed, sid, i]) for each i (0 <= i < 2**32), as Python ints."""
    n = len(indices)
    entropy = [np.full(n, w, np.uint32) for w in _words(seed) + _words(sid)]
    entropy.append(np.arange(indices.start, indices.stop, dtype=np.uint32))
    hc = _INIT_A  # SeedSequence's running hash constant: the same for every index

    def hashmix(v):
        nonlocal hc
        v = v ^ np.uint32(hc)
        hc = hc * _MULT_A & _M32
        v = v * np.uint32(hc)  # uint32 arrays wrap, as in the C code
        return v ^ (v >> np.uint32(16))

    def mix(x, y):
        r = x * np.uint32(_MIX_L) - y * np.uint32(_MIX_R)
        return r ^ (r >> np.uint32(16))

    pool = [hashmix(entropy[i] if i < len(entropy) else np.zeros(n, np.uint32)) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(4, len(entropy)):
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(entropy[src]))
    hc, words = _INIT_B, []  # generate_state(4, uint64): 8 words cycling over the pool
    for i in range(8):
        v = pool[i % 4] ^ np.uint32(hc)
        hc = hc * _MULT_B & _M32
        v = v * np.uint32(hc)
        words.append((v ^ (v >> np.uint32(16))).astype(np.uint64))
    s_hi, s_lo, i_hi, i_lo = ((words[2 * j] | (words[2 * j + 1] << np.uint64(32))).tolist() for j in range(4))
    out = []
    for a, b, c, d in zip(s_hi, s_lo, i_hi, i_lo):  # pcg64_set_seed: two LCG steps around adding the seed
        inc = (((c << 64) | d) << 1 | 1) & _M128
        out.append((((inc + ((a << 64) | b)) * _PCG_MULT + inc) & _M128, inc))
    return out


def _generators(seed: int, sid: int, indices: range):
    """Yield a generator in the state of np.random.default_rng([seed, sid, i]) for each i in indices (the
    same object each time: use it up before asking for the next)."""
    if not indices:
        return
    fast = isinstance(seed, (int, np.integer)) and 0 <= seed and 0 <= indices.start and indices.stop <= 1 << 32
    if fast:
        states = _pcg64_states(int(seed), sid, indices)
        ref = np.random.default_rng([seed, sid, indices.start]).bit_generator.state["state"]
        fast = ref == {"state": states[0][0], "inc": states[0][1]}
    if not fast:  # negative numbers raise here, as they would in default_rng
        yield from (np.random.default_rng([seed, sid, i]) for i in indices)
        return
    bits = np.random.PCG64(0)
    gen = np.random.Generator(bits)
    for state, inc in states:
        bits.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0,
                      "uinteger": 0}
        yield gen


# -- public API ---------------------------------------------------------------------------------------------

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


def renderer_throughput(size: int, n: int = 2000, p_night: float = 0.5) -> float:
    """Images per CPU-second of render_many on one core (the project's renderer benchmark). CPU time of
    this process, with OpenCV held to one thread, so other jobs on a shared machine barely move it."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        render_many(0, "benchmark", 0, 50, size, p_night)  # warm up: sprites and window patterns get cached
        t = time.process_time()
        render_many(0, "benchmark", 0, n, size, p_night)
        return n / max(time.process_time() - t, 1e-9)
    finally:
        cv2.setNumThreads(threads)
