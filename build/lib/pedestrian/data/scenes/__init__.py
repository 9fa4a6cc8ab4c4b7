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
at-a-time renderer (tests/test_scenes.py pins them).

The modules, in the order a scene goes through them: label (the difficulty knobs, the label rule, the attribute
columns, ground truth), palette (colours and precomputed assets), seeding (random numbers), figures (what is
drawn), light (night light), scene (one scene drawn), camera (a batch developed), render (the entry points).
"""

from __future__ import annotations

from pedestrian.data.scenes.label import ATTRIBUTE_NAMES, INT_ATTRIBUTES, Difficulty, is_hard
from pedestrian.data.scenes.palette import AMBIENT_NIGHT, HEADLIGHT, LAMP_LIGHT
from pedestrian.data.scenes.render import render, render_many, split_id

GENERATOR_VERSION = "2"  # bump whenever the drawing changes (it is part of the cache key)

__all__ = ["AMBIENT_NIGHT", "ATTRIBUTE_NAMES", "GENERATOR_VERSION", "HEADLIGHT", "INT_ATTRIBUTES", "LAMP_LIGHT",
           "Difficulty", "is_hard", "render", "render_many", "split_id"]
