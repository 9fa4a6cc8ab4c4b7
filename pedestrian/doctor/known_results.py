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
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pedestrian.data.datamodule import ArrayDataModule
from pedestrian.doctor.common import CheckResult

FIXES = {
    "no_better_than_majority": ["the model learns nothing beyond the class frequencies: check that images and "
                                "labels are aligned (sorted file listings!) and visualise a batch with its labels",
                                "then check the data pipeline and the loss; overfit a single batch first"],
    "worse_than_linear": ["a linear model on raw pixels does better: look for a bug in the model or the training "
                          "(normalisation, learning rate, loss), or train longer before concluding"],
    "fails_known_benchmark": ["the same architecture and code cannot solve a benchmark it should: the bug is in "
                              "the model or the training code, not in your data",
                              "walk through the implementation line by line against a trusted one"],
}


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

    flat = lambda a: np.asarray(a, dtype=np.float32).reshape(len(a), -1) / 255.0  # noqa: E731
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300, random_state=seed))
    model.fit(flat(train_x), np.asarray(train_y))
    x, y = flat(eval_x), np.asarray(eval_y)
    out = {"accuracy": float(model.score(x, y)), "auc": None}
    if len(model.classes_) == 2:
        out["auc"] = auc_z(model.predict_proba(x)[:, 1], y)[0]
    return out


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
    """The predicted class of every image of an evaluation split: pedestrian.train.predict's steps (.eval(),
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


class _ScoreEachEpoch(L.Callback):
    """After every epoch: score(module) on held-out data; stop as soon as good(score) (a clean stage passes in an
    epoch or two, a failing one gets the whole budget)."""

    def __init__(self, score, good) -> None:
        self.score, self.good, self.scores = score, good, []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        was_training = pl_module.training
        self.scores.append(self.score(pl_module))
        pl_module.train(was_training)
        if self.good(self.scores[-1]):
            trainer.should_stop = True


def train_until(ctx, module, dm, max_epochs: int, score, good, max_samples: int | None = None) -> list[dict]:
    """Fit `module` on `dm` with the stage's Trainer settings, at most max_epochs (and max_samples images per
    epoch), until good(score(module)). Returns the score after each epoch."""
    n_train = len(dm.train_images_labels()[1])
    batches = math.ceil(min(n_train, max_samples or n_train) / dm.batch_size)
    cb = _ScoreEachEpoch(score, good)
    ctx.trainer(max_epochs=max_epochs, limit_train_batches=batches, limit_val_batches=0,
                callbacks=[cb]).fit(module, datamodule=dm)
    return cb.scores


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
    """Accuracy and the evidence that the model learned anything (AUC z for two classes, else association z)."""
    from pedestrian.core.train import predict

    y = dm.eval_dataset(split).labels
    if dm.num_classes == 2:
        p = predict(module, dm, split)  # the real evaluation path: P(class 1)
        auc, z = auc_z(p, y)
        return {"accuracy": float(((p >= 0.5) == y).mean()), "auc": auc, "z": z}
    pred = predict_classes(module, dm, split)
    return {"accuracy": float((pred == y).mean()), "auc": None, "z": association_z(pred, y)}


def check(ctx) -> CheckResult:
    from pedestrian.core.train import build

    t0 = time.time()
    s = ctx.settings.known
    dm = ctx.dm
    train_x, train_y, _ = dm.train_images_labels()
    held = dm.eval_dataset("train_val")
    majority = majority_baseline(train_y, held.labels)
    n_lin = int(s.linear_n_train)
    linear = linear_baseline(train_x[:n_lin], train_y[:n_lin], held.images, held.labels, float(s.linear_c),
                             int(ctx.cfg.seed))
    z_min = float(s.z_min)
    # Two classes: compared by AUC, which needs no threshold (every constant predictor, the majority class
    # included, has AUC 0.5); more classes: by accuracy.
    binary = dm.num_classes == 2
    metric = "auc" if binary else "accuracy"

    def beats(m: dict) -> tuple[bool, bool]:
        over_majority = m["z"] >= z_min and (binary or m["accuracy"] > majority)
        return over_majority, m[metric] > linear[metric]

    history = train_until(ctx, ctx.fresh_module(), dm, int(s.epochs), lambda mod: held_out_score(mod, dm),
                          lambda m: all(beats(m)), s.get("max_train_samples"))
    m, epochs = history[-1], len(history)
    over_majority, over_linear = beats(m)

    ddm = DigitsDataModule(image_size=dm.image_size, batch_size=int(s.digits_batch_size), seed=int(ctx.cfg.seed),
                           normalize=str(OmegaConf.select(ctx.cfg, "data.normalize", default="once")))
    ddm.setup()
    _, digits_module = build(digits_cfg(ctx.cfg), dm=ddm)  # the same construction, the same +bug
    target = float(s.digits_target)
    digits_history = train_until(ctx, digits_module.to(ctx.device), ddm, int(s.digits_epochs),
                                 lambda mod: held_out_score(mod, ddm), lambda d: d["accuracy"] >= target)
    digits, digits_epochs = digits_history[-1]["accuracy"], len(digits_history)

    details = {"n_eval": len(held), "compared_by": metric, "majority_accuracy": majority, "linear": linear,
               "model": m, "z_min": z_min, "epochs": epochs, "max_epochs": int(s.epochs), "digits_accuracy": digits,
               "digits_target": target, "digits_epochs": digits_epochs, "digits_max_epochs": int(s.digits_epochs),
               "linear_n_train": min(n_lin, len(train_y)), "history": history,
               "digits_history": [d["accuracy"] for d in digits_history]}
    auc = lambda d: f", AUC {d['auc']:.3f}" if d.get("auc") is not None else ""  # noqa: E731
    summary = (f"train-val: model {m['accuracy']:.1%}{auc(m)} after {epochs} ep (z={m['z']:.1f}); majority class "
               f"{majority:.1%}; linear on pixels {linear['accuracy']:.1%}{auc(linear)}. Digits, same architecture: "
               f"{digits:.1%} ({digits_epochs} ep)")
    failures = []
    if not over_majority:
        failures.append(("no_better_than_majority",
                         f"after {epochs} epochs the model is no better than always predicting the majority class "
                         f"({majority:.1%}): its outputs ({m['accuracy']:.1%}{auc(m)}) are only {m['z']:.1f} "
                         f"standard errors better than outputs unrelated to the labels (need {z_min:g}). It learns "
                         "nothing"))
    if not over_linear:
        failures.append(("worse_than_linear", f"the model ({metric} {m[metric]:.3f}) does not beat a linear model "
                                              f"on the raw pixels ({metric} {linear[metric]:.3f})"))
    if digits < target:
        failures.append(("fails_known_benchmark",
                         f"the same architecture and code reach {digits:.1%} on scikit-learn's digits after "
                         f"{digits_epochs} epochs; a working one gets >= {target:.0%}"))
    if failures:
        details["failures"] = [f for f, _ in failures]
        return CheckResult("known_results", "fail", summary, failures[0][0], "; ".join(t for _, t in failures),
                           [fix for f, _ in failures for fix in FIXES[f]], details, seconds=time.time() - t0)
    return CheckResult("known_results", "pass", summary, None,
                       f"beats the majority class (z >= {z_min:g}) and the linear model ({metric}) on the same data; "
                       f"solves the digits", details=details, seconds=time.time() - t0)
