"""One scene: everything random about it settled and its albedo (and night emission) drawn; the camera
develops it later, in a batch."""

from __future__ import annotations

from bisect import bisect_left
from math import trunc
from operator import itemgetter

import cv2
import numpy as np

from pedestrian.data.scenes.figures import (
    _Canvas,
    _draw_car,
    _draw_person,
    _draw_thing,
    _ghost,
    _sample_person,
    _windows,
)
from pedestrian.data.scenes.label import (
    HARD_CONTRAST,
    HARD_OCCLUSION,
    HARD_SIZE,
    Difficulty,
    _colour_contrast,
    _covered,
    _occlusion,
    _pedestrian_stats,
    is_hard,
)
from pedestrian.data.scenes.light import _light_at
from pedestrian.data.scenes.palette import (
    _KIND_CDF,
    _KINDS,
    AA,
    AMBIENT_NIGHT,
    CARS,
    CLOTHES,
    FACADES,
    LAMP_LIGHT,
    MANNEQUIN,
    NOAA,
    NOISE_BANK_SIZE,
    PAVEMENT,
    ROAD,
    SHIFT,
    SKY_DAY,
    SKY_NIGHT,
    THINGS,
    WINDOW_LIGHT,
    _dist,
    _jit,
    _mix,
    _pick,
)
from pedestrian.data.scenes.seeding import STREAM_BLOCK, _stream


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
