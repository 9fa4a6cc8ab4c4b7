"""Name the shape of a loss curve that does not reach zero, as the lecture does, with its likely causes.

Lecture ("overfit a single batch"): instead of going to zero the error can
  * go up          -> most often a flipped sign (you minimise the negative of the loss);
  * explode        -> goes down for a while, then shoots up: a numerical issue, or a learning rate too high;
  * oscillate      -> down, up, down, up: corrupted data or labels (e.g. shuffled), or a learning rate too high;
  * plateau        -> goes down to 0.1 or so and stays: learning rate too low, regularisation left on, or a bug
                      in the loss function or the data pipeline.
We add `slow` (still going down when the step budget ran out) so a slow but healthy curve is not called a bug,
and `converges` for the curve that does what it should.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHAPES = ("converges", "goes_up", "explodes", "oscillates", "plateaus", "slow")

CAUSES: dict[str, list[str]] = {
    "goes_up": ["a flipped sign somewhere: the optimiser minimises the negative of the loss",
                "a learning rate far too high can also push the loss up from the first step"],
    "explodes": ["a numerical issue: exp/log/division of large values, a softmax or norm written by hand",
                 "a learning rate too high: lower it (by 10x) and try again"],
    "oscillates": ["corrupted data or labels, e.g. images and labels misaligned or shuffled",
                   "a learning rate too high"],
    "plateaus": ["a learning rate too low: turn it up a little",
                 "regularisation left on (weight decay, dropout, augmentation): remove it",
                 "the loss function itself: e.g. softmax fed to a loss that wants logits, a silently broadcast shape",
                 "the data pipeline: inputs or labels that carry no signal"],
    "slow": ["still going down when the step budget ran out: give it more steps, or a higher learning rate"],
    "converges": [],
}


def classify(losses: Sequence[float], target: float, explode_factor: float = 10.0) -> str:
    """One of SHAPES for a loss curve (one value per step) that should reach `target` (close to zero)."""
    v = np.asarray(losses, dtype=np.float64)
    if len(v) < 2:
        raise ValueError(f"a loss curve needs at least 2 points, got {len(v)}")
    if not np.isfinite(v).all():
        return "explodes"
    n = len(v)
    tail = v[-max(3, n // 10):]
    if np.median(tail) <= target or (v[-3:] <= target).all():
        return "converges"
    start, end = v[0], float(np.median(tail))
    level = max(abs(start), 1e-8)

    # Explodes: far above where it started, reached in a few steps (a jump, not a steady climb).
    peak_t = int(np.argmax(v))
    low_t = int(np.argmin(v[:peak_t + 1]))
    if v[peak_t] > explode_factor * level and peak_t - low_t <= max(3, n // 20):
        return "explodes"

    # Oscillates: it turns from down to up (and back) again and again, each swing a real fraction of the range.
    if swings(v, max(0.2 * float(v.max() - v.min()), 0.05 * level)) >= 4:
        return "oscillates"

    if end > start + 0.1 * level:
        return "goes_up"

    # Plateaus: the second half barely improved; slow: it is still clearly going down.
    mid = float(np.median(v[n // 2 - max(1, n // 20): n // 2 + 1]))
    if mid - end < 0.1 * mid:
        return "plateaus"
    return "slow"


def swings(v: np.ndarray, threshold: float) -> int:
    """Reversals of direction that each move more than `threshold` (a zigzag count, blind to small noise)."""
    count, direction, extreme = 0, 0, v[0]
    for x in v[1:]:
        if direction == 0:
            if abs(x - extreme) > threshold:
                direction, extreme = (1 if x > extreme else -1), x
        elif (x - extreme) * direction > 0:
            extreme = x  # the current move goes on
        elif abs(x - extreme) > threshold:
            count, direction, extreme = count + 1, -direction, x
    return count
