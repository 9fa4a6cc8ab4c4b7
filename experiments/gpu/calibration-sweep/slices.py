"""Error rates by slice of one evaluation set, from a run's predictions.npz (round 1's reference probes).

    python experiments/gpu/calibration-sweep/slices.py RUN_DIR/predictions.npz [train_val]
"""

import sys

import numpy as np


def main(path: str, split: str = "train_val", size: int = 32) -> None:
    z = np.load(path)

    def col(k):
        return z[f"{split}/{k}"]

    y = col("label")
    err = (col("prob") > 0.5).astype(int) != y
    pos, neg = y == 1, y == 0
    print(split, "err", err.mean().round(3), "n", len(y))
    print(" FN rate", err[pos].mean().round(3), " FP rate", err[neg].mean().round(3))
    hp = col("ped_height") * size
    for lo, hi in [(9, 12), (12, 15), (15, 19), (19, 25)]:
        m = pos & (hp >= lo) & (hp < hi)
        print(f"  pos h {lo}-{hi}px n={m.sum()} err={err[m].mean():.3f}")
    for k in ["night", "reflection", "hard", "mannequin"]:
        for c, m0 in (("pos", pos), ("neg", neg)):
            m = m0 & (col(k) == 1)
            print(f"  {k} {c} n={m.sum()} err={err[m].mean():.3f}")
    for nd in range(1, 9):
        m = neg & (col("n_distractors") == nd)
        if m.sum():
            print(f"  neg distractors {nd} n={m.sum()} err={err[m].mean():.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
