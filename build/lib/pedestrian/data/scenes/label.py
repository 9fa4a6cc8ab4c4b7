"""The label rule: the difficulty knobs, whose floors no positive goes below, the attribute columns each
scene comes with, the "hard" slice, and the ground truth measured on the drawn scene (occlusion, contrast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pedestrian.data.scenes.palette import _dist


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
