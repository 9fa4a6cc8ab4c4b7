"""Procedural street scenes: the offline stand-in for a dashcam data set of "is there a pedestrian?".

One call draws one square RGB scene with OpenCV primitives (at >= 64 px, then area-averaged down for small
sizes) and returns the ground truth behind it. The scene is a stylised side view of a street:

    sky | buildings with windows and shop windows | far pavement | road with cars | near pavement

Depth is faked with a ground plane: whatever stands lower in the frame is closer, so it is drawn later and
bigger (person height = scale * (foot_y - horizon_y)). Everything is placed in image units (0..1), so one
index gives the same scene at every size.

What makes it hard, on purpose (the lecture's slices):
  * pedestrians are articulated figures (frontal, or walking in profile with arm swing; coats, bags,
    backpacks) at many scales down to a few pixels, partly hidden by cars, bins, poles or the frame edge,
    sometimes dressed in the colours of the wall behind them;
  * pedestrian-like distractors appear in BOTH classes: poles, sign posts (a "head" on a stick), lamp posts,
    trees, bollards, fire hydrants (a head and arms), bins, and mannequins in shop windows;
  * reflections (either class): a faint mirrored figure in a shop window or a car door, or an upside-down
    one in a puddle;
  * night is its own renderer, not a darker day: albedo x light, where light = a weak coloured ambient
    (cold blue or sodium orange) + pools under street lamps + headlight cones + lit shop windows; lamps,
    lit windows and car lights glow with halos; strong sensor noise, sometimes blur. A pedestrian at night
    is visible mainly near a light.

Determinism: every image is seeded by np.random.default_rng([seed, crc32(split), index]), and only
bit-exact operations touch pixels: OpenCV integer drawing, 8-bit resizes and blur, numpy elementwise float
+ and * (no transcendental functions) and saturating float->uint8 conversion. Same bytes on any machine.

Speed: ~50 drawing calls and ~40 small array operations per image; what can be precomputed (noise, glow
sprites, window patterns, body templates) is, at import or on first use.
"""

from __future__ import annotations

import time
import zlib
from functools import cache

import cv2
import numpy as np

GENERATOR_VERSION = "1"  # bump whenever the drawing changes (it is part of the cache key)

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "label",          # 1 = a real pedestrian is in the scene
    "night",          # 1 = drawn by the night renderer
    "reflection",     # 1 = a mirrored/ghost figure in a shop window, car door or puddle (either class)
    "hard",           # 1 = a positive whose pedestrian is hard to see (small, occluded or low contrast)
    "ped_height",     # height of the most visible pedestrian, fraction of the image height (0 if none)
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

# a positive is "hard" when its most visible pedestrian is below any of these
HARD_HEIGHT, HARD_OCCLUSION, HARD_CONTRAST = 0.12, 0.6, 0.06

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


@cache
def _window_pattern(S: int, i: int, j: int, fill: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one window pitch/size choice on a 2S x 2S patch: the window mask (uint8 0/255), a random value per
    window (0..255, which windows are lit at night) and a per-window brightness offset (3 channels)."""
    pxp, pyp = max(3, int(WINDOW_PITCH_X[i] * S)), max(3, int(WINDOW_PITCH_Y[j] * S))
    wx, wy = max(1, int(pxp * WINDOW_FILL[fill])), max(1, int(pyp * (WINDOW_FILL[fill] + 0.1)))
    p = np.arange(2 * S)
    mask = (((p % pyp) >= pyp - wy)[:, None] & ((p % pxp) >= pxp - wx)[None, :]).astype(np.uint8) * 255
    cells = np.random.default_rng([S, i, j]).integers(0, 256, (2 * S // pyp + 1, 2 * S // pxp + 1), np.uint8)
    cell = cells[(p // pyp)[:, None], (p // pxp)[None, :]]
    return mask, cell, cv2.cvtColor(cell >> 3, cv2.COLOR_GRAY2RGB)


# -- small helpers -----------------------------------------------------------------------------------------

def _stream(rng: np.random.Generator):
    """Uniform [0, 1) numbers fetched 64 at a time: the Python cost per draw stays tiny."""
    while True:
        yield from rng.random(64).tolist()


def _c8(v: float) -> int:
    return 0 if v < 0 else (255 if v > 255 else int(v))


def _jit(col, amount: float, u) -> tuple[int, int, int]:
    """A colour jittered by up to +-amount (0..255 units) in brightness and half that in warmth."""
    d, e = (2 * u() - 1) * amount, (u() - 0.5) * amount
    return _c8(col[0] + d + e), _c8(col[1] + d), _c8(col[2] + d - e)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t), int(a[2] + (b[2] - a[2]) * t)


def _dist(a, b) -> float:
    """RMS colour distance, 0..1."""
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2) ** 0.5 / (255 * 3 ** 0.5)


def _pick(seq, u):
    return seq[int(u() * len(seq))]


class _Canvas:
    """The image being drawn (albedo) and, at night, an emission mask (how strongly each pixel glows), plus
    the lights that the night camera turns into a light map and halos."""

    def __init__(self, S: int, night: bool, aa: int):
        self.S, self.k, self.aa = S, S * ONE, aa
        self.img = np.empty((S, S, 3), np.uint8)
        self.scratch = np.empty((S, S, 3), np.uint8)
        self.em = np.zeros((S, S), np.uint8) if night else None
        self.lights: list[tuple] = []  # (x, y, rx, ry, intensity, rgb): pools of light
        self.halos: list[tuple] = []   # (x, y, r, rgb): glows around bright sources

    def p(self, x: float, y: float) -> tuple[int, int]:
        return int(x * self.k), int(y * self.k)

    def px(self, v: float) -> int:
        """A line thickness in whole pixels, at least 1."""
        return max(1, int(v * self.S + 0.5))

    def box(self, x0, y0, x1, y1) -> tuple[int, int, int, int]:
        """Image-unit box -> pixel bounds clipped to the canvas."""
        S = self.S
        return (min(S, max(0, int(x0 * S))), min(S, max(0, int(y0 * S))),
                min(S, max(0, int(x1 * S + 0.999))), min(S, max(0, int(y1 * S + 0.999))))


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
    pts = ((a + q["stride"] * b + q["swing"] * cc) * (h * q["width"] * (f or 1) * k, -h * flip * k)
           + (x * k, yf * k)).astype(np.int32)
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
    head, r = (int(pts[16, 0]), int(pts[16, 1])), int(0.068 * h * k)
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
    m = np.full((by1 - by0, bx1 - bx0), 255, np.uint8)
    if ellipse:  # keep to the puddle's outline
        m[:] = 0
        cx, cy = (bx1 - bx0) * ONE // 2, (by1 - by0) * ONE // 2
        cv2.ellipse(m, (cx, cy), (cx, cy), 0, 0, 360, 255, -1, NOAA, SHIFT)
    cv2.copyTo(mixed.astype(np.uint8), m, roi)


# -- cars and street furniture ----------------------------------------------------------------------------

def _draw_car(c: _Canvas, o: dict, u) -> None:
    x0, yf, L, H, d, col = o["x0"], o["yf"], o["L"], o["H"], o["dir"], o["col"]
    k, img = c.k, c.img
    pts = ((CAR_POINTS if d > 0 else CAR_MIRRORED) * (L * k, -H * k) + (x0 * k, yf * k)).astype(np.int32)
    cv2.fillPoly(img, [pts[0:8]], col, NOAA, SHIFT)
    cv2.fillConvexPoly(img, pts[8:12], o["glass"], NOAA, SHIFT)
    rw, pl = int(0.17 * H * k), pts.tolist()
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
        c.lights.append((front + d * 0.55 * L, yf - 0.15 * H, 0.55 * L, 0.35 * H, 1.4, HEADLIGHT))
        c.lights.append((rear, ylamp, 0.15 * L, 0.3 * H, 0.5, TAIL_LIGHT))
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
_KIND_CDF = np.cumsum([v[0] for v in THINGS.values()]) / sum(v[0] for v in THINGS.values())


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
        cv2.polylines(img, [np.array([p(x, yf), p(x, top), p(hx, top)], np.int32)], False, col,
                      px(0.03 * s), NOAA, SHIFT)
        axes = (int(0.09 * s * k), int(0.035 * s * k))
        if c.em is None:
            cv2.ellipse(img, p(hx, hy), axes, 0, 0, 360, (190, 190, 180), -1, NOAA, SHIFT)
        else:  # lit: the bulb glows, a halo around it and a pool of light on the ground below
            cv2.ellipse(img, p(hx, hy), axes, 0, 0, 360, (255, 235, 190), -1, NOAA, SHIFT)
            cv2.ellipse(c.em, p(hx, hy), axes, 0, 0, 360, 255, -1, NOAA, SHIFT)
            c.halos.append((hx, hy, 0.07 * s, LAMP_HALO[o["light"]]))
            pool = (hx, hy + 0.75 * (yf - hy), 0.55 * s * o["spread"], 0.9 * s, o["power"], o["light"])
            c.lights.append(pool)
    elif kind == "sign":
        cv2.line(img, p(x, yf), p(x, top), (110, 110, 115), px(0.03 * s), NOAA, SHIFT)
        r = 0.13 * s
        if o["extra"] < 0.4:
            cv2.circle(img, p(x, top), int(r * k), col, -1, NOAA, SHIFT)
            cv2.circle(img, p(x, top), int(0.6 * r * k), (240, 240, 240), -1, NOAA, SHIFT)
        elif o["extra"] < 0.7:
            cv2.rectangle(img, p(x - r, top - r), p(x + r, top + r), col, -1, NOAA, SHIFT)
        else:
            tri = np.array([p(x - r, top + 0.7 * r), p(x + r, top + 0.7 * r), p(x, top - r)], np.int32)
            cv2.fillConvexPoly(img, tri, col, NOAA, SHIFT)
    elif kind == "tree":
        cv2.line(img, p(x, yf), p(x, top), (80, 60, 40), px(0.07 * s), NOAA, SHIFT)
        e = (o["extra"] - 0.5) * s
        cv2.ellipse(img, p(x + 0.2 * e, top - 0.35 * s), (int(0.45 * s * k), int(0.5 * s * k)), 0, 0, 360,
                    col, -1, NOAA, SHIFT)
        cv2.ellipse(img, p(x - 0.3 * e, top - 0.6 * s), (int(0.3 * s * k), int(0.35 * s * k)), 0, 0, 360,
                    o["col2"], -1, NOAA, SHIFT)
    elif kind == "bollard":
        cv2.line(img, p(x, yf), p(x, top), col, px(0.09 * s), NOAA, SHIFT)
        cv2.line(img, p(x, top + 0.04 * s), p(x, top + 0.08 * s), (235, 235, 200), px(0.09 * s), NOAA, SHIFT)
    elif kind == "hydrant":
        h = yf - top
        cv2.line(img, p(x, yf), p(x, top), col, px(0.11 * s), NOAA, SHIFT)
        arms = yf - 0.6 * h
        cv2.line(img, p(x - 0.1 * s, arms), p(x + 0.1 * s, arms), col, px(0.05 * s), NOAA, SHIFT)
        cv2.circle(img, p(x, top), int(0.065 * s * k), o["col2"], -1, NOAA, SHIFT)
    else:  # bin
        w = 0.14 * s
        cv2.rectangle(img, p(x - w, top), p(x + w, yf), col, -1, NOAA, SHIFT)
        cv2.rectangle(img, p(x - 1.15 * w, top - 0.05 * s), p(x + 1.15 * w, top), o["col2"], -1, NOAA, SHIFT)


# -- facades ------------------------------------------------------------------------------------------------

def _windows(c: _Canvas, u, x0, x1, y0, y1, glass) -> None:
    """A grid of windows on a facade without a call per window: fill a scratch buffer with the glass
    colour plus a per-window brightness, copy it through the window mask. At night the glass is warm and
    a random share of the windows glows (the emission mask): the others stay dark under the ambient light."""
    bx0, by0, bx1, by1 = c.box(x0 + 0.02, y0 + 0.02, x1 - 0.02, y1)
    h, w = by1 - by0, bx1 - bx0
    if w < 3 or h < 3:
        return
    mask, cell, shade = _window_pattern(c.S, int(u() * 4), int(u() * 4), int(u() * 2))
    oy, ox = int(u() * c.S), int(u() * c.S)  # a random window of the 2S patch: different windows lit
    mask, cell, shade = mask[oy:oy + h, ox:ox + w], cell[oy:oy + h, ox:ox + w], shade[oy:oy + h, ox:ox + w]
    region, tmp = c.img[by0:by1, bx0:bx1], c.scratch[:h, :w]
    cv2.rectangle(tmp, (0, 0), (w, h), glass, -1)
    cv2.add(tmp, shade, dst=tmp)
    cv2.copyTo(tmp, mask, region)
    if c.em is not None:
        lit = cv2.threshold(cell, int(255 * (0.1 + 0.4 * u())), 140, cv2.THRESH_BINARY_INV)[1]
        cv2.bitwise_and(lit, mask, dst=lit)
        cv2.max(c.em[by0:by1, bx0:bx1], lit, dst=c.em[by0:by1, bx0:bx1])


# -- night light -------------------------------------------------------------------------------------------

def _light_map(lights, amb: float, amb_col) -> tuple[np.ndarray, object]:
    """Night illumination on a coarse grid as uint8 (255 = light 2.0), and a point query for the truth.
    Each light is a soft elliptical pool: intensity / (1 + (dx/rx)^2 + (dy/ry)^2)^2."""
    a = np.array([(x, y, max(rx, 1e-3), max(ry, 1e-3), i, *rgb) for x, y, rx, ry, i, rgb in lights]
                 or np.zeros((0, 8)), np.float32)
    dx = (_GRID[None, :] - a[:, 0:1]) / a[:, 2:3]
    dy = (_GRID[None, :] - a[:, 1:2]) / a[:, 3:4]
    q = np.float32(1) + (dy * dy)[:, :, None] + (dx * dx)[:, None, :]
    w = a[:, 4, None, None] * np.float32(255 / 2) / (q * q)  # (lights, grid, grid), 255 = light 2.0
    Lq = cv2.merge([cv2.convertScaleAbs((w * a[:, 5 + ch, None, None]).sum(0)  # round, saturate to uint8
                                        + np.float32(amb * 255 / 2 * amb_col[ch])) for ch in range(3)])

    def light_at(px, py):  # luminance of the light falling on a point
        rgb = [amb * a for a in amb_col]
        for x, y, rx, ry, inten, col in lights:
            qq = 1 + ((px - x) / max(rx, 1e-3)) ** 2 + ((py - y) / max(ry, 1e-3)) ** 2
            rgb = [v + inten / (qq * qq) * w for v, w in zip(rgb, col)]
        return min(2.0, 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])

    return Lq, light_at


def _add_halo(f: np.ndarray, x, y, r, rgb, size: int) -> None:
    """Add a glow sprite around a light source (on the float image, before noise), clipped to the frame."""
    rp = max(1, int(r * size + 0.5))
    if r * size < 0.75:  # a sub-pixel light: dimmer rather than bigger (a few cached levels)
        rgb = tuple(v * (int(4 * r * size / 0.75) + 1) / 5 for v in rgb)
    R, cx, cy = 3 * rp, int(x * size), int(y * size)
    x0, y0, x1, y1 = max(0, cx - R), max(0, cy - R), min(size, cx + R + 1), min(size, cy + R + 1)
    if x1 > x0 and y1 > y0:
        f[y0:y1, x0:x1] += _halo(rp, rgb)[y0 - cy + R:y1 - cy + R, x0 - cx + R:x1 - cx + R]


# -- ground truth -------------------------------------------------------------------------------------------

def _covered(box, rects) -> float:
    """Share of box hidden by the union of rects or lying outside the frame (exact, by x-slabs)."""
    x0, y0, x1, y1 = box
    rs = [(max(a, x0), max(b, y0), min(c, x1), min(d, y1)) for a, b, c, d in rects
          if a < x1 and c > x0 and b < y1 and d > y0]
    frame = ((x0, y0, 0.0, y1), (1.0, y0, x1, y1), (x0, 1.0, x1, y1))  # left, right, below the image
    rs += [r for r in frame if r[0] < r[2] and r[1] < r[3]]
    if not rs:
        return 0.0
    xs = sorted({r[0] for r in rs} | {r[2] for r in rs})
    area = 0.0
    for xa, xb in zip(xs, xs[1:]):
        top, cover = -1e9, 0.0
        for a, b in sorted((r[1], r[3]) for r in rs if r[0] <= xa and r[2] >= xb):
            if b > top:
                cover += b - max(a, top)
                top = b
        area += (xb - xa) * cover
    return min(1.0, area / ((x1 - x0) * (y1 - y0)))


def _pedestrian_stats(o: dict, objects: list, background_at, light_at) -> tuple:
    """(height, occlusion, contrast, light, visibility) of one drawn pedestrian."""
    x, yf, h, q = o["x"], o["yf"], o["h"], o["q"]
    occ = _covered(o["boxes"][0], [b for p in objects if p["yf"] > yf and p is not o for b in p["boxes"]])
    light = light_at(x, yf - 0.55 * h) if light_at is not None else 1.0
    c_top = _dist(q["top"], background_at(x, yf - 0.65 * h))
    c_bot = _dist(q["bottom"], background_at(x, yf - 0.25 * h))
    contrast = min(1.0, (0.6 * c_top + 0.4 * c_bot) * min(1.0, light))
    vis = min(1.0, h / 0.25) * (1 - occ) * min(1.0, contrast / 0.2)
    return h, occ, contrast, light, vis


# -- one scene ----------------------------------------------------------------------------------------------

def _render_into(out: np.ndarray, rng: np.random.Generator, size: int, p_night: float,
                 p_pedestrian: float) -> tuple:
    """Draw one scene into out (size, size, 3) and return its attribute values in ATTRIBUTE_NAMES order."""
    u = _stream(rng).__next__
    label, night = u() < p_pedestrian, u() < p_night
    factor = -(-64 // size)  # draw at >= 64 px; smaller images are area-averaged from that (anti-aliasing)
    S = size * factor
    c = _Canvas(S, night, AA if factor == 1 else NOAA)
    img, k, p = c.img, c.k, c.p

    # layout: horizon (top of the ground plane), building base, far kerb, near kerb; depth scale
    yh = 0.22 + 0.18 * u()
    yb = yh + 0.12 + 0.12 * u()
    yr = yb + 0.06 + 0.08 * u()
    yc = yr + 0.28 + 0.2 * u()
    scale = 0.95 + 0.45 * u()

    def depth(yf):  # the height of a person standing at yf
        return scale * max(yf - yh, 0.02)

    # sky: a vertical gradient (an exact 8-bit resize of a two-pixel column)
    top, bottom = _pick(SKY_NIGHT, u) if night else _pick(SKY_DAY, u)
    ysky = int(yb * S) + 1
    img[:ysky] = cv2.resize(np.array([[_jit(top, 12, u)], [_jit(bottom, 12, u)]], np.uint8), (S, ysky),
                            interpolation=cv2.INTER_LINEAR_EXACT)
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
        glass = (235, 195, 125) if night else _mix(fcol, (30, 40, 55), 0.7)
        _windows(c, u, x, x + w, ytop, yb - 1.25 * sb, glass)
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
    dashes = [np.array([p(x + i * 0.35, ym), p(x + i * 0.35 + dash, ym)], np.int32) for i in range(4)]
    cv2.polylines(img, dashes, False, lane, c.px(0.012), NOAA, SHIFT)
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
    reflection = u() < 0.16
    where = int(u() * 3) if reflection else -1
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
            c.lights.append(((sx0 + sx1) / 2, yb + 0.02, (sx1 - sx0) * 0.7, 0.1, 0.5, WINDOW_LIGHT))
        if u() < 0.22:
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
                   (sy1 - sy0) * (0.8 + 0.3 * u()), _sample_person(u), alpha=0.3 + 0.25 * u())
        cv2.rectangle(img, p(sx0, sy0), p(sx1, sy1), (60, 55, 50), c.px(0.01), NOAA, SHIFT)

    # a puddle on the ground, maybe holding an upside-down passer-by
    if u() < 0.3 or where == 1:
        py = yr + (min(yc, 1.0) - yr) * (0.1 + 0.8 * u())
        px, pw = 0.1 + 0.8 * u(), 0.08 + 0.12 * u()
        ph = pw * (0.15 + 0.15 * u())
        cv2.ellipse(img, p(px, py), (int(pw * k), int(ph * k)), 0, 0, 360, _mix(ground_at(py), sky, 0.35), -1,
                    NOAA, SHIFT)
        if where == 1:
            _ghost(c, (px - pw, py - ph, px + pw, py + ph), px + (u() - 0.5) * pw, py - ph,
                   depth(py) * (0.6 + 0.4 * u()), _sample_person(u), alpha=0.35 + 0.25 * u(), flip=-1.0,
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
    for _ in range(_pick((1, 2, 2, 3, 3, 4, 5, 6), u)):
        add_thing(_KINDS[int(np.searchsorted(_KIND_CDF, u()))], -0.05 + 1.1 * u(), on_pavement())
    if night:  # street lamps: the main light at night, a pool under each
        for _ in range(1 + int(u() * 2.2)):
            add_thing("lamp", u(), on_pavement())

    # the pedestrians (positives only): size first, then the ground plane says where someone that size
    # stands; across the frame they gather toward the middle (the car's path), some are cut by the edge
    people = []
    for j in range((1 if u() < 0.8 else 2 + int(u() * 2)) if label else 0):
        r = u()
        h = 0.035 + 0.045 * u() if r < 0.015 else (0.08 + 0.1 * u() if r < 0.16 else 0.18 + 0.45 * u())
        if j > 0:
            h = 0.12 + 0.4 * u()
        yf = max(yh + h / scale, yb + 0.005) + 0.01 * u()
        closer = [b for o in objects if o["yf"] > yf for b in o["boxes"]]
        best = None
        for _ in range(3):  # stand where the clutter leaves them visible (hiding them is done on purpose)
            x = 0.5 + 0.45 * (u() + u() - 1) if u() < 0.95 else (0.05 * u() if u() < 0.5 else 1 - 0.05 * u())
            box = (x - 0.11 * h, yf - h, x + 0.11 * h, yf)
            occ = _covered(box, closer)
            if best is None or occ < best[0]:
                best = (occ, x, box)
            if occ < 0.2:
                break
        _, x, box = best
        q = _sample_person(u, background_at(x, yf - 0.6 * h))
        o = dict(type="person", x=x, yf=yf, h=h, q=q, boxes=[box])
        people.append(o)
        objects.append(o)
        if j == 0 and u() < 0.25:  # hidden behind something closer
            yo = yf + 0.01 + 0.06 * u()
            if u() < 0.4 and yo > yr:
                car = add_car(0.0, yo)
                dx = x - car["L"] * (0.1 + 0.95 * u())
                car["x0"] = dx
                car["boxes"] = [(b[0] + dx, b[1], b[2] + dx, b[3]) for b in car["boxes"]]
                n_cars += 1
            else:
                kind = _pick(("bin", "bollard", "hydrant", "tree", "sign", "pole"), u)
                add_thing(kind, x + (u() - 0.5) * 0.15 * h, yo)
        if night and j == 0 and u() < 0.65:  # people walk where the light is
            add_thing("lamp", x + (u() - 0.5) * 0.25, min(yf + (u() - 0.3) * 0.05, 1.0))
    if where == 2:
        cars = [o for o in objects if o["type"] == "car"]
        if not cars:
            cars = [add_car(0.1 + 0.5 * u(), yr + 0.05 + 0.3 * (min(yc, 1.0) - yr) * u())]
            n_cars += 1
        cars[0]["ghost"], cars[0]["alpha"] = _sample_person(u), 0.3 + 0.25 * u()

    objects.sort(key=lambda o: o["yf"])
    for o in objects:
        if o["type"] == "car":
            _draw_car(c, o, u)
        elif o["type"] == "thing":
            _draw_thing(c, o, u)
        else:
            _draw_person(c, o["x"], o["yf"], o["h"], o["q"])

    # -- camera: downsample, light (night), blur, sensor noise ------------------------------------------
    # (whole-image ops work on same-shape arrays only: numpy broadcasting over a last axis of 3 is slow)
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) if factor > 1 else img
    f = small.astype(np.float32)
    light_at = None
    if night:
        lmap, light_at = _light_map(c.lights, 0.07 + 0.13 * u(), _pick(AMBIENT_NIGHT, u))
        lm = cv2.resize(lmap, (size, size), interpolation=cv2.INTER_LINEAR_EXACT)
        em = c.em if factor == 1 else cv2.resize(c.em, (size, size), interpolation=cv2.INTER_AREA)
        np.maximum(lm, cv2.cvtColor(em, cv2.COLOR_GRAY2RGB), out=lm)  # glowing surfaces light themselves
        f *= lm.astype(np.float32)
        f *= np.float32(2 / 255)
        for hx, hy, r, rgb in c.halos:
            _add_halo(f, hx, hy, r, rgb, size)
        blur = (0.6 + 0.4 * u()) * size / 64
        if u() < 0.6 and blur > 0.3:  # a slightly soft night lens (8-bit blur: exact)
            f = cv2.GaussianBlur(cv2.convertScaleAbs(f), (3, 3), blur).astype(np.float32)
        sigma = 0.025 + 0.045 * u()
    else:
        sigma = 0.004 + 0.018 * u()
        f *= np.float32(0.8 + 0.35 * u())  # exposure (sun, overcast, dusk)
    n = size * size * 3
    off = int(u() * (NOISE_BANK_SIZE - 2 * n))
    noise = NOISE_BANK[off:off + n].reshape(size, size, 3) * np.float32(sigma * 255)
    if night:  # luminance noise shared by the channels, on top of per-channel (chroma) noise
        noise += cv2.cvtColor(NOISE_BANK[off + n:off + n + size * size].reshape(size, size)
                              * np.float32(sigma * 180), cv2.COLOR_GRAY2RGB)
    cv2.add(f, noise, dst=out, dtype=cv2.CV_8U)  # rounds and saturates

    # -- ground truth -----------------------------------------------------------------------------------
    sums = cv2.sumElems(out)
    brightness = (0.299 * sums[0] + 0.587 * sums[1] + 0.114 * sums[2]) / (255 * size * size)
    best = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for o in people:
        st = _pedestrian_stats(o, objects, background_at, light_at) + (o["x"], o["yf"])
        if st[4] >= best[4]:
            best = st
    h, occ, contrast, light, vis, x, yf = best
    hard = label and (h < HARD_HEIGHT or occ > HARD_OCCLUSION or contrast < HARD_CONTRAST)
    n_distractors = sum(o["type"] == "thing" for o in objects) + n_mannequins
    return (label, night, reflection, hard, h, occ, contrast, light, vis, x, yf, len(people), n_distractors,
            n_mannequins > 0, n_cars, brightness, sigma)


# -- public API ---------------------------------------------------------------------------------------------

def split_id(split: str) -> int:
    """A stable id for a split name (Python's hash() is salted per process: never use it for seeds)."""
    return zlib.crc32(split.encode())


def render(seed: int, split: str, index: int, size: int, p_night: float,
           p_pedestrian: float = 0.5) -> tuple[np.ndarray, dict[str, float]]:
    """One scene: (size, size, 3) uint8 RGB and its attributes. Same arguments -> same bytes, anywhere."""
    out = np.empty((size, size, 3), np.uint8)
    rng = np.random.default_rng([seed, split_id(split), index])
    vals = _render_into(out, rng, size, p_night, p_pedestrian)
    return out, {n: (int(v) if n in INT_ATTRIBUTES else float(v)) for n, v in zip(ATTRIBUTE_NAMES, vals)}


def render_many(seed: int, split: str, start: int, stop: int, size: int, p_night: float,
                p_pedestrian: float = 0.5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Indices start..stop-1 of a split: (N, size, size, 3) uint8 and attribute columns of length N."""
    n, sid = max(0, stop - start), split_id(split)
    images = np.empty((n, size, size, 3), np.uint8)
    table = np.empty((n, len(ATTRIBUTE_NAMES)), np.float64)
    for i in range(n):
        rng = np.random.default_rng([seed, sid, start + i])
        table[i] = _render_into(images[i], rng, size, p_night, p_pedestrian)
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
