"""Compare to a known result (lecture: the last sense check before making the model more complex).

In the lecture's order of usefulness, what we can check offline:
  * the same architecture on a benchmark it is known to solve: the handwritten digits that ship with
    scikit-learn (1,797 8x8 images, 10 classes), upscaled to the stage's image size; "if it's not getting 99%
    on MNIST there's probably some bug" - we ask for 97% on this smaller set after a short training;
  * super simple baselines on the same data: predicting the majority class, and a linear model on the pixels.
    "I've had examples where your model is actually doing worse than ... predicting the mean": at the very
    least this tells you the model is learning anything at all.

The model is trained by the real path (Lightning, the stage's datamodule, optimizer, augmentation, any +bug)
for a short budget and scored on the train-val set (held out, training distribution), like the baselines.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pedestrian.data.datamodule import ArrayDataModule
from pedestrian.doctor.common import CheckResult
from pedestrian.doctor.inputs import FIXES as INPUT_FIXES
from pedestrian.doctor.inputs import leak_text

FIXES = {
    "no_better_than_majority": ["the model learns nothing beyond the class frequencies: check that images and "
                                "labels are aligned (sorted file listings!) and visualise a batch with its labels",
                                "then check the data pipeline and the loss; overfit a single batch first"],
    "worse_than_linear": ["a linear model on raw pixels does better: look for a bug in the model or the training "
                          "(normalisation, learning rate, loss), or train longer before concluding"],
    "label_leak": INPUT_FIXES["label_leak"],
    "batchnorm_stats_lag": ["batch norm's running averages move slowly (torchvision's MobileNets and EfficientNets "
                            "use momentum 0.01): after a short training, evaluate after more steps, or raise the "
                            "momentum, or re-estimate the statistics on training batches before evaluating"],
    "ties_linear": ["try a bigger model or a longer training; if it still ties, the linear model is the baseline "
                    "to beat (and maybe to ship)"],
    "fails_known_benchmark": ["the same architecture and code cannot solve a benchmark it should: the bug is in "
                              "the model or the training code, not in your data",
                              "walk through the implementation line by line against a trusted one"],
}


MAX_LINEAR_FEATURES = 16384  # the linear baseline on large inputs: every k-th value, at most this many

# -- the baselines ----------------------------------------------------------------------------------------------
def majority_baseline(train_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Accuracy of always predicting the most common training class."""
    majority = np.bincount(np.asarray(train_labels, dtype=np.int64)).argmax()
    return float((np.asarray(eval_labels) == majority).mean())


def linear_baseline(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                    c: float = 0.01, seed: int = 0) -> dict:
    """A logistic regression on standardised raw pixels (scikit-learn), trained on train_x: its accuracy on the
    eval set, and for two classes its AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    stride = max(1, -(-int(np.prod(np.shape(train_x)[1:])) // MAX_LINEAR_FEATURES))  # every k-th input value
    flat = lambda a: np.asarray(a, dtype=np.float32).reshape(len(a), -1)[:, ::stride] / 255.0  # noqa: E731
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300, random_state=seed))
    model.fit(flat(train_x), np.asarray(train_y))
    x, y = flat(eval_x), np.asarray(eval_y)
    out = {"accuracy": float(model.score(x, y)), "auc": None}
    if len(model.classes_) == 2:
        out["auc"] = auc_z(model.predict_proba(x)[:, 1], y)[0]
    return out


def leak_baseline(x: np.ndarray, y: np.ndarray, num_classes: int, threshold: float = 0.99, bins: int = 16,
                  min_eval: int = 200) -> dict:
    """The best held-out accuracy of predicting the label from ONE input value (each feature cut into `bins`
    equal-width bins, the majority label of each bin; fit on the first half of the samples, scored on the
    second). A leak: some feature reaches `threshold` and makes at most a fifth of the majority class's errors."""
    x, y = np.asarray(x, dtype=np.float32).reshape(len(y), -1), np.asarray(y, dtype=np.int64)
    half = len(y) // 2
    majority = float(np.bincount(y[half:], minlength=num_classes).max() / max(1, len(y) - half))
    out = {"leak": False, "accuracy": None, "feature": None, "majority": majority, "n": int(len(y))}
    if len(y) - half < min_eval:
        return {**out, "note": f"{len(y)} samples: too few to tell"}
    fit, ev = x[:half], x[half:]
    acc = np.empty(x.shape[1])
    step = max(1, 2**22 // (bins * num_classes + half))  # features at a time: bounded memory for large inputs
    for s in range(0, x.shape[1], step):
        f, e = fit[:, s:s + step], ev[:, s:s + step]
        lo, width = f.min(0), (f.max(0) - f.min(0)) / bins
        width[width == 0] = 1.0
        cols = np.arange(f.shape[1])
        b_fit = np.clip(((f - lo) / width).astype(np.int64), 0, bins - 1)
        b_ev = np.clip(((e - lo) / width).astype(np.int64), 0, bins - 1)
        counts = np.bincount(((cols[None, :] * bins + b_fit) * num_classes + y[:half, None]).ravel(),
                             minlength=len(cols) * bins * num_classes).reshape(len(cols), bins, num_classes)
        acc[s:s + step] = (counts.argmax(2)[cols[None, :], b_ev] == y[half:, None]).mean(0)
    best = int(acc.argmax())
    leak = bool(acc[best] >= threshold and (1 - acc[best]) <= 0.2 * (1 - majority))
    return {**out, "leak": leak, "accuracy": float(acc[best]), "feature": best}


# -- a known benchmark ------------------------------------------------------------------------------------------
class DigitsDataModule(ArrayDataModule):
    """scikit-learn's handwritten digits as an ArrayDataModule (same loaders, same normalisation), each 8x8
    image upscaled to the stage's size and repeated over 3 channels, so the model is built exactly as for the
    stage, with 10 classes. A seeded hold-out of `n_holdout` images is every evaluation split. With binary=True
    it is a two-class data source for any stage (`data._target_=pedestrian.doctor.known_results.DigitsDataModule`):
    data where every check's answer is known, for fast tests."""

    def __init__(self, image_size: int = 32, batch_size: int = 32, n_holdout: int = 500, seed: int = 0,
                 normalize: str = "once", binary: bool = False, **kwargs) -> None:
        super().__init__(image_size=image_size, batch_size=batch_size, eval_train_max=n_holdout, seed=seed,
                         normalize=normalize, **kwargs)
        self.n_holdout, self.binary, self.in_channels = n_holdout, binary, 3
        self.num_classes = 2 if binary else 10  # binary: "is it a 5 or more?", a two-class task known to be easy
        self.class_names = ["0-4", "5-9"] if binary else [str(d) for d in range(10)]

    def load_splits(self) -> dict:
        from sklearn.datasets import load_digits

        from pedestrian.data.cache import SceneArrays

        d = load_digits()
        small = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
        big = np.stack([cv2.resize(im, (self.image_size, self.image_size), interpolation=cv2.INTER_LINEAR)
                        for im in small])
        images = np.repeat(big[..., None], 3, axis=3)
        labels = (d.target >= 5 if self.binary else d.target).astype(np.int64)
        order = np.random.default_rng(self.seed).permutation(len(labels))
        hold, train = order[: self.n_holdout], order[self.n_holdout:]
        split = lambda idx: SceneArrays(images=images[idx], attrs={"label": labels[idx]})  # noqa: E731
        return {"train": split(train), **{s: split(hold) for s in ("train_val", "test_val", "test")}}


# -- training by the real path ----------------------------------------------------------------------------------
@torch.no_grad()
def predict_classes(module, dm, split: str) -> np.ndarray:
    """The predicted class of every image of an evaluation split: pedestrian.core.train.predict's steps (.eval(),
    the datamodule's normalize), argmax instead of P(class 1) so it also serves the 10 digits."""
    module.eval()
    out = [module(dm.normalize(x.to(module.device))).argmax(1).cpu() for x, _, _ in dm.eval_dataloader(split)]
    return torch.cat(out).numpy()


def association_z(pred: np.ndarray, labels: np.ndarray) -> float:
    """Standard errors by which the accuracy exceeds that of predictions independent of the labels (with the
    same class frequencies): ~N(0, 1) for a model that learned nothing, whatever its favourite class."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    k = int(max(labels.max(), pred.max())) + 1
    e0 = float(np.sum(np.bincount(labels, minlength=k) * np.bincount(pred, minlength=k))) / len(labels) ** 2
    se = math.sqrt(max(e0 * (1 - e0), 1e-12) / len(labels))
    return (float((pred == labels).mean()) - e0) / se


def auc_z(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(AUC, z): how well P(class 1) ranks positives above negatives, and by how many standard errors that beats
    0.5 (Mann-Whitney). Uses the whole score, not just which side of 0.5 it falls: more power than accuracy
    to tell a weak model from one that learned nothing."""
    from scipy.stats import rankdata

    labels = np.asarray(labels)
    n1, n0 = int((labels == 1).sum()), int((labels == 0).sum())
    if n1 == 0 or n0 == 0:
        return 0.5, 0.0
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    auc = (ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(auc), float((auc - 0.5) / math.sqrt((n1 + n0 + 1) / (12 * n1 * n0)))


def digits_cfg(cfg: DictConfig) -> DictConfig:
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if out.stage.get("init_from"):
        # A fine-tuning stage's low learning rate is meant for weights that have already learned; the digits
        # model starts from scratch, so it gets the learning rate of training from scratch.
        out.optim.lr = max(float(out.optim.lr), float(OmegaConf.select(cfg, "doctor.known.from_scratch_lr",
                                                                         default=3e-4)))
    out.stage.init_from = None  # a checkpoint of the 2-class model does not fit a 10-class head
    if out.get("bug") and not out.bug.get("in_benchmark", True):
        out.bug = None  # a bug of the stage's data source (its file listing): the digits do not go through it
    return out


def held_out_score(module, dm, split: str = "train_val") -> dict:
    """score_of the real evaluation path's outputs (P(class 1) for two classes, else the argmax)."""
    from pedestrian.core.train import predict

    y = dm.eval_dataset(split).labels
    if dm.num_classes == 2:
        return score_of(predict(module, dm, split), y)
    pred = predict_classes(module, dm, split)
    return {"accuracy": float((pred == y).mean()), "auc": None, "z": association_z(pred, y)}


def standard_error(p: float, n: int) -> float:
    """Of an accuracy (or, roughly, an AUC) p measured on n samples; times sqrt(2) for a difference of two."""
    return math.sqrt(2 * max(p * (1 - p), 1e-6) / max(n, 1))


@torch.no_grad()
def recalibrate_batchnorm(subject, module, n_batches: int) -> bool:
    """Re-estimate every batch-norm layer's running mean/variance as a plain average over n training batches
    (forward passes in training mode, no weight update). False when the model has no batch norm."""
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns:
        return False
    module.to(subject.device)  # (Lightning hands a stage's module back on the CPU after fit)
    momentum = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    module.train()
    for batch in subject.training_batches(n_batches):
        module(subject.model_inputs(batch)[0])
    for m, mo in zip(bns, momentum):
        m.momentum = mo
    return True


def score_of(probs: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and the evidence that the model learned anything (AUC z for two classes, else association z)."""
    y = np.asarray(y)
    if probs.ndim == 1 or probs.shape[1] == 2:
        p = probs if probs.ndim == 1 else probs[:, 1]
        auc, z = auc_z(p, y)
        return {"accuracy": float(((p >= 0.5) == y).mean()), "auc": auc, "z": z}
    pred = probs.argmax(1)
    return {"accuracy": float((pred == y).mean()), "auc": None, "z": association_z(pred, y)}


def digits(subject) -> tuple[float, int, list]:
    """The stage's own construction (model, optimizer, any +bug) on scikit-learn's digits, trained until it
    reaches the target. Returns (accuracy, epochs, history)."""
    from pedestrian.core.train import build

    s, cfg = subject.settings.known, subject.cfg
    ddm = DigitsDataModule(image_size=subject.dm.image_size, batch_size=int(s.digits_batch_size), seed=subject.seed,
                           normalize=str(OmegaConf.select(cfg, "data.normalize", default="once")))
    ddm.setup()
    _, module = build(digits_cfg(cfg), dm=ddm)
    target = float(s.digits_target)
    history = subject.train_until(module.to(subject.device), ddm, int(s.digits_epochs),
                                  lambda mod: held_out_score(mod, ddm), lambda d: d["accuracy"] >= target)
    return history[-1]["accuracy"], len(history), [d["accuracy"] for d in history]


def check(subject) -> CheckResult:
    t0 = time.time()
    s = subject.settings.known
    train_x, train_y, eval_x, eval_y = subject.baseline_data(int(s.linear_n_train))
    majority = majority_baseline(train_y, eval_y)
    linear = linear_baseline(train_x, train_y, eval_x, eval_y, float(s.linear_c), subject.seed)
    leak = leak_baseline(np.concatenate([train_x.reshape(len(train_x), -1), eval_x.reshape(len(eval_x), -1)]),
                         np.concatenate([train_y, eval_y]), subject.num_classes, float(s.leak_accuracy))
    z_min = float(s.z_min)
    # Two classes: compared by AUC, which needs no threshold (every constant predictor, the majority class
    # included, has AUC 0.5); more classes: by accuracy.
    binary = subject.num_classes == 2
    metric = "auc" if binary else "accuracy"

    def beats(m: dict) -> tuple[bool, bool]:
        over_majority = m["z"] >= z_min and (binary or m["accuracy"] > majority)
        return over_majority, m[metric] > linear[metric]

    history, module = subject.short_training(int(s.epochs), s.get("max_train_samples"), lambda m: all(beats(m)))
    m, epochs = history[-1], len(history)
    over_majority, over_linear = beats(m)
    bn_lag = None
    if not (over_majority and over_linear) and recalibrate_batchnorm(subject, module, int(s.bn_batches)):
        rescored = subject.held_out_score(module)  # the same weights, batch-norm statistics re-estimated
        if all(beats(rescored)):
            bn_lag, m = m, rescored
            over_majority, over_linear = beats(m)
    tie = not over_linear and m[metric] >= linear[metric] - 2 * standard_error(linear[metric], len(eval_y))
    target = float(s.digits_target)
    digits_acc, digits_epochs, digits_history = digits(subject) if subject.kind == "stage" else (None, 0, [])

    details = {"n_eval": len(eval_y), "compared_by": metric, "majority_accuracy": majority, "linear": linear,
               "single_input_value": leak, "model": m, "z_min": z_min, "epochs": epochs, "max_epochs": int(s.epochs),
               "digits_accuracy": digits_acc, "digits_target": target, "digits_epochs": digits_epochs,
               "digits_max_epochs": int(s.digits_epochs), "linear_n_train": len(train_y), "history": history,
               "digits_history": digits_history, "before_batchnorm_recalibration": bn_lag}
    auc = lambda d: f", AUC {d['auc']:.3f}" if d.get("auc") is not None else ""  # noqa: E731
    summary = (f"held out: model {m['accuracy']:.1%}{auc(m)} after {epochs} ep (z={m['z']:.1f}); majority class "
               f"{majority:.1%}; linear on the inputs {linear['accuracy']:.1%}{auc(linear)}; best single input value "
               + (f"{leak['accuracy']:.1%}" if leak["accuracy"] is not None else "n/a")
               + (f". Digits, same architecture: {digits_acc:.1%} ({digits_epochs} ep)" if digits_acc is not None
                  else ". Digits: not run (needs the stage's model construction)"))
    failures = []
    if leak["leak"]:
        failures.append(("label_leak", leak_text(leak)))
    if not over_majority:
        failures.append(("no_better_than_majority",
                         f"after {epochs} epochs the model is no better than always predicting the majority class "
                         f"({majority:.1%}): its outputs ({m['accuracy']:.1%}{auc(m)}) are only {m['z']:.1f} "
                         f"standard errors better than outputs unrelated to the labels (need {z_min:g}). It learns "
                         "nothing"))
    if not over_linear and not tie:
        failures.append(("worse_than_linear", f"the model ({metric} {m[metric]:.3f}) does not beat a linear model "
                                              f"on the raw inputs ({metric} {linear[metric]:.3f})"))
    if digits_acc is not None and digits_acc < target:
        failures.append(("fails_known_benchmark",
                         f"the same architecture and code reach {digits_acc:.1%} on scikit-learn's digits after "
                         f"{digits_epochs} epochs; a working one gets >= {target:.0%}"))
    if failures:
        details["failures"] = [f for f, _ in failures]
        return CheckResult("known_results", "fail", summary, failures[0][0], "; ".join(t for _, t in failures),
                           [fix for f, _ in failures for fix in FIXES[f]], details, seconds=time.time() - t0)
    warning = None
    if bn_lag is not None:
        warning = ("batchnorm_stats_lag", f"in eval mode the trained model scored {bn_lag['accuracy']:.1%} (z="
                   f"{bn_lag['z']:.1f}), no better than the baselines; with its batch-norm running statistics "
                   f"re-estimated on {int(s.bn_batches)} training batches, {m['accuracy']:.1%}: the weights learned, "
                   "the running averages lag behind them")
    elif tie:
        warning = ("ties_linear", f"the model ({metric} {m[metric]:.3f}) does not beat a linear model on the raw "
                                  f"inputs ({metric} {linear[metric]:.3f}) beyond noise: on this data a linear model "
                                  "may be all you need, or the network is not yet trained enough")
    if warning:
        return CheckResult("known_results", "warn", summary, warning[0], warning[1], FIXES[warning[0]], details,
                           seconds=time.time() - t0)
    return CheckResult("known_results", "pass", summary, None,
                       f"beats the majority class (z >= {z_min:g}) and the linear model ({metric}) on the same data"
                       + ("; solves the digits" if digits_acc is not None else ""), details=details,
                       seconds=time.time() - t0)
