"""What a scene is drawn with: the canvas, pedestrians (and their ghosts), cars, street furniture, facades."""

from __future__ import annotations

from math import trunc

import cv2
import numpy as np

from pedestrian.data.scenes.palette import (
    BODY,
    CAR_MIRRORED,
    CAR_POINTS,
    CLOTHES,
    HAIR,
    HEADLIGHT,
    HEADLIGHT_HALO,
    LAMP_HALO,
    NOAA,
    ONE,
    SHIFT,
    SKIN,
    TAIL_LIGHT,
    _jit,
    _mix,
    _pick,
    _window_pattern,
)


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
