"""Inputs (lecture: "normalize your inputs", and "visualise your data"): statistics of a batch exactly as the
model sees it, after augmentation and normalisation, and a grid image of that batch with its labels.

The lecture: subtract the mean and divide by the standard deviation (for images, scaling to [0, 1] or
[-0.5, 0.5] is fine too); never skip it, and watch for normalising twice ("I divided by 255, but that was also
happening somewhere else: all of a sudden my input values are tiny, the model learns really slowly").
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch import Tensor

from pedestrian.doctor.common import CheckResult

FIXES = {
    "not_normalized": ["normalise the inputs exactly once, just before the network: subtract the training mean "
                       "and divide by the standard deviation (or scale images to [0, 1])",
                       "check every code path (training, evaluation, inference) goes through that one place"],
    "normalized_twice": ["find the second normalisation: a transform in the dataset AND one in the model or the "
                         "loader (e.g. ToTensor() already divides by 255)", "keep exactly one place that does it"],
    "badly_scaled": ["recompute the normalisation statistics on the training set, in the same units the "
                     "network sees (after the /255 cast)"],
    "label_leak": ["the label is written into the input (a marker, a file name, a colour, an ID): a model learns "
                   "that shortcut instead of the task, and fails on data without it",
                   "look at the feature named in the details in a grid of both classes; remove it at the source"],
    "imbalanced": ["mind the majority-class baseline: accuracy is misleading; consider a balanced sampler or "
                   "class weights, and report per-class error"],
}


def channel_stats(x: Tensor) -> dict:
    """Per channel (axis 1) for images and signals; pooled over every value for flat features, where a
    constant feature (std 0) is no sign of a missing normalisation."""
    x = x.detach().float()
    if x.dim() <= 2:
        x = x.reshape(1, 1, -1)
    dims = tuple(d for d in range(x.dim()) if d != 1)
    return {"mean": x.mean(dim=dims).tolist(), "std": x.std(dim=dims).tolist(),
            "min": float(x.min()), "max": float(x.max())}


def _standardised(mean, std) -> bool:
    # Lenient: a batch's mean/std scatter around 0/1, and a night-heavy fine-tuning set is darker than the
    # day images the statistics came from.
    return all(abs(m) <= 1.0 for m in mean) and all(1 / 3 <= s <= 3 for s in std)


def verdict(stats: dict, train_mean: Tensor | None = None, train_std: Tensor | None = None) -> tuple[str | None, str]:
    """(None, why it is fine) or (diagnosis, explanation) for one batch's per-channel statistics."""
    mean, std, lo, hi = stats["mean"], stats["std"], stats["min"], stats["max"]
    desc = (f"per-channel mean {_fmt(mean)}, std {_fmt(std)}, range [{lo:.3g}, {hi:.3g}]")
    if _standardised(mean, std):
        return None, f"standardised: {desc}"
    if lo >= -1.05 and hi <= 1.05 and min(std) >= 0.05:
        return None, f"scaled to a unit range, which the lecture calls fine for images: {desc}"
    if max(std) < 0.05:
        return "normalized_twice", (f"the inputs are tiny: {desc}. Normalised twice (e.g. divided by 255 twice): "
                                    "the model will learn really slowly, if at all.")
    if train_mean is not None and train_std is not None:
        m, s = np.asarray(mean), np.asarray(std)
        once_mean = m * train_std.numpy() + train_mean.numpy()  # undo one standardisation
        once_std = s * train_std.numpy()
        if _standardised(once_mean.tolist(), once_std.tolist()):
            return "normalized_twice", (f"{desc}: not standardised, but undoing one standardisation with the "
                                        f"training mean/std gives mean {_fmt(once_mean)}, std {_fmt(once_std)}: "
                                        "the inputs were standardised twice.")
    if hi > 20 or min(std) > 5:
        return "not_normalized", (f"the network sees raw pixel values: {desc}. Inputs this large saturate "
                                  "units and make the first losses huge.")
    return "badly_scaled", f"the inputs are neither standardised nor in a unit range: {desc}"


def _fmt(v) -> str:
    return "[" + ", ".join(f"{float(a):.2f}" for a in v) + "]"


def label_balance(labels: np.ndarray, num_classes: int) -> list[float]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return (counts / max(1, counts.sum())).round(4).tolist()


def save_grid(path: Path, x: Tensor, y: Tensor, names: list[str], mean: Tensor | None, std: Tensor | None,
              title: str) -> None:
    """The batch just before the net. Shown by undoing ONE standardisation: a correct pipeline looks like the
    photos; raw pixels come out white, a double normalisation dark and flat. Without known statistics each
    image is stretched to its own range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = x.detach().float().cpu()
    if mean is not None and std is not None:
        img = (img * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)).clamp(0, 1)
    else:
        lo = img.amin(dim=(1, 2, 3), keepdim=True)
        img = (img - lo) / (img.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp(min=1e-8)
    img = img.permute(0, 2, 3, 1).numpy()
    n, cols = len(img), 8
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45 + 0.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(img[k].squeeze(), cmap="gray" if img.shape[-1] == 1 else None, interpolation="nearest")
            ax.set_title(names[int(y[k])], fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check(subject) -> CheckResult:
    from pedestrian.doctor.known_results import leak_baseline  # (known_results imports this module)

    t0 = time.time()
    x, y = subject.batch()
    stats = channel_stats(x)
    norm = subject.norm_stats()
    diagnosis, text = verdict(stats, *(norm or (None, None)))
    k = subject.num_classes
    balance = {"batch": label_balance(y.cpu().numpy(), k), "train": label_balance(subject.train_labels(), k)}
    names = subject.class_names()
    files = {}
    if x.dim() == 4 and x.shape[1] in (1, 3):  # images: show them
        grid = subject.out_dir / "inputs_batch.png"
        n = min(len(x), int(subject.settings.grid_images))
        shown = "x*std+mean" if norm else "each image stretched to its range"
        save_grid(grid, x[:n], y[:n], names, *(norm or (None, None)),
                  f"{subject.name}: the batch as the model sees it ({x.shape[2]}x{x.shape[3]}, "
                  f"{str(x.dtype).removeprefix('torch.')}); shown as {shown}")
        files["batch_grid"] = str(grid)
    leak = leak_baseline(*subject.samples(int(subject.settings.known.leak_samples)), k,
                         float(subject.settings.known.leak_accuracy))
    details = {"shape": list(x.shape), "dtype": str(x.dtype), **stats, "label_balance": balance,
               "class_names": names, "normalize_mode": getattr(getattr(subject, "dm", None), "normalize_mode", None),
               "single_input_value": leak}
    summary = (f"mean {_fmt(stats['mean'])}, std {_fmt(stats['std'])}, range [{stats['min']:.3g}, "
               f"{stats['max']:.3g}]; train labels {balance['train']}")
    if diagnosis:
        return CheckResult("inputs", "fail", summary, diagnosis, text, FIXES[diagnosis], details, files,
                           time.time() - t0)
    if leak["leak"]:
        return CheckResult("inputs", "fail", summary, "label_leak", leak_text(leak), FIXES["label_leak"], details,
                           files, time.time() - t0)
    if max(balance["train"]) > 0.9:
        return CheckResult("inputs", "warn", summary, "imbalanced",
                           f"{text}. But {max(balance['train']):.0%} of the training labels are one class.",
                           FIXES["imbalanced"], details, files, time.time() - t0)
    return CheckResult("inputs", "pass", summary, None, text, [], details, files, time.time() - t0)


def leak_text(leak: dict) -> str:
    return (f"one input value alone, feature {leak['feature']} of the flattened input, predicts the label of "
            f"{leak['accuracy']:.1%} of held-out samples (the majority class: {leak['majority']:.1%}): too good to be "
            "true for a task that needs a network. The label leaks into the input")
