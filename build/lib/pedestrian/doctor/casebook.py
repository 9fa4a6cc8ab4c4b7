"""The doctor's casebook: bug-free models on data that ships offline (the false-alarm set), and the same kind
of models with the bugs that live in a user's own training step or model (the detection set), all through the
public `diagnose` API, as a user would call it.

    python -m pedestrian.doctor.casebook [--out experiments/doctor] [--cases a,b] [--threads 2] [--device cuda]

Writes casebook.md (the false-alarm table and the detection matrix, bugs x checks) and casebook.json.
Exit 0 when every healthy case has no failed check and every bug is caught by its check; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


# -- data that ships offline --------------------------------------------------------------------------------
def _loaders(x: np.ndarray, y: np.ndarray, batch_size: int = 64, seed: int = 0, n_val: int = 0):
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    if n_val:
        val = DataLoader(TensorDataset(x[:n_val], y[:n_val]), batch_size=256)
        x, y = x[n_val:], y[n_val:]
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=gen)
    return (train, val) if n_val else train


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)


def digits(flat: bool):
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x = d.images[order].astype(np.float32) / 16.0
    x = _standardise(x.reshape(len(x), -1)) if flat else (x[:, None] - 0.3) / 0.4
    return x, d.target[order]


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(d.target))
    return _standardise(d.data[order]).astype(np.float32), d.target[order]


def moons(n: int = 3000):
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=0.15, random_state=0)
    return _standardise(x).astype(np.float32), y


def stripes(n: int = 3000, size: int = 32, classes: int = 4, seed: int = 0):
    """Images of noisy stripes, one orientation per class, at a random phase and frequency: a spatial pattern,
    so no single pixel tells the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = y * np.pi / classes
    freq = rng.uniform(3, 6, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    u = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    img = np.sin(2 * np.pi * freq[:, None, None] * u + phase[:, None, None])
    img = img[:, None].repeat(3, 1) * rng.uniform(0.5, 1, (n, 3, 1, 1)) + rng.normal(0, 1.0, (n, 3, size, size))
    return img.astype(np.float32), y


def signals(n: int = 3000, length: int = 128, seed: int = 0):
    """1-D signals: a burst of one of three frequencies at a random place, in noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(length, dtype=np.float32)
    start = rng.integers(0, length // 2, n)
    env = np.exp(-0.5 * ((t[None] - start[:, None] - 20) / 10) ** 2)
    wave = np.sin(2 * np.pi * (0.05 + 0.07 * y)[:, None] * t[None] + rng.uniform(0, 6.3, (n, 1)))
    x = env * wave + rng.normal(0, 0.5, (n, length))
    return x[:, None].astype(np.float32), y


# -- models ---------------------------------------------------------------------------------------------------
def mlp(d_in: int, classes: int, hidden: int = 128, dropout: float = 0.1) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, classes))


class SmallCNN(nn.Module):
    def __init__(self, c_in: int = 1, classes: int = 10, eval_dropout_bug: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, classes)
        self.eval_dropout_bug = eval_dropout_bug

    def forward(self, x):
        h = self.body(x)
        if self.eval_dropout_bug:
            h = F.dropout(h, 0.3)  # the bug: F.dropout's training defaults to True, also in eval mode
        return self.head(h)


class SignalCNN(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
                                 nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, classes))

    def forward(self, x):
        return self.net(x)


def adam(lr: float = 1e-3, wd: float = 0.0) -> Callable:
    return lambda params: torch.optim.Adam(params, lr=lr, weight_decay=wd)


def sgd(lr: float = 0.05) -> Callable:
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


# -- the bugs that live in a user's step -----------------------------------------------------------------------
def step_without_zero_grad(model, batch, optimizer):
    loss = F.cross_entropy(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss


def step_without_backward(model, batch, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(batch[0]), batch[1])
    optimizer.step()
    return loss


def step_left_in_eval(model, batch, optimizer):
    model.eval()  # e.g. a "quick accuracy check" on the batch, and no model.train() after it
    optimizer.zero_grad()
    loss = F.cross_entropy(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss


_STALE: dict[str, nn.Module] = {}


def optimizer_on_another_model(params):
    """Built on the parameters of a model that is not the one being trained (created before it was re-created)."""
    return torch.optim.Adam(_STALE["model"].parameters(), lr=1e-3)


# -- the cases ------------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    what: str
    build: Callable[[], dict]          # diagnose's keyword arguments
    check: str | None = None           # a bug: the check that must catch it ...
    diagnosis: str | None = None       # ... with this diagnosis


def _digits_cnn(**kw) -> dict:
    x, y = digits(flat=False)
    train, val = _loaders(x, y, n_val=400)
    return {"model": SmallCNN(1, 10, kw.pop("eval_dropout_bug", False)), "loader": train, "val_loader": val,
            "loss_fn": nn.CrossEntropyLoss(), "optimizer_factory": sgd(0.05), **kw}


def _wrong_params() -> dict:
    case = _digits_cnn()
    _STALE["model"] = SmallCNN(1, 10)
    return {**case, "optimizer_factory": optimizer_on_another_model}


def _augmented_val() -> dict:
    case = _digits_cnn()
    x, y = digits(flat=False)

    class Jitter(torch.utils.data.Dataset):  # the training augmentation, also on the validation set
        def __len__(self):
            return 400

        def __getitem__(self, i):
            shift = torch.randint(-1, 2, (2,)).tolist()
            return torch.roll(torch.as_tensor(x[i]), shift, dims=(1, 2)), int(y[i])
    return {**case, "val_loader": DataLoader(Jitter(), batch_size=100)}


def _torchvision(name: str, **kw) -> Callable[[], dict]:
    def build() -> dict:
        import torchvision

        x, y = stripes()
        train, val = _loaders(x, y, n_val=500)
        return {"model": getattr(torchvision.models, name)(weights=None, num_classes=4, **kw), "loader": train,
                "val_loader": val, "loss_fn": nn.CrossEntropyLoss(), "optimizer_factory": adam(1e-3)}
    return build


def _tabular(data: Callable, hidden: int = 128, lr: float = 1e-3) -> Callable[[], dict]:
    def build() -> dict:
        x, y = data()
        return {"model": mlp(x.shape[1], int(y.max()) + 1, hidden), "loader": _loaders(x, y),
                "loss_fn": nn.CrossEntropyLoss(), "optimizer_factory": adam(lr, 1e-4)}
    return build


def _pedestrian_lenet() -> dict:
    """This project's LeNet on the pedestrian scenes, through the generic API (tiny profile's sizes)."""
    from pedestrian.data.datamodule import SceneDataModule
    from pedestrian.models import LeNet

    dm = SceneDataModule(root="data", n_train=2000, n_train_val=100, n_test_val=100, n_test=100, n_target_pool=100,
                         image_size=32, batch_size=64, seed=0)
    dm.setup()
    images, labels, _ = dm.train_images_labels()
    x = dm.normalize(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)).numpy()
    return {"model": LeNet(3, 2, 32), "loader": _loaders(x, labels), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer_factory": adam(1e-3)}


def _signals() -> dict:
    x, y = signals()
    return {"model": SignalCNN(), "loader": _loaders(x, y), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer_factory": adam(3e-3)}


HEALTHY = [
    Case("digits_mlp", "MLP with dropout, scikit-learn digits as 64 features, Adam", _tabular(lambda: digits(True))),
    Case("digits_cnn", "CNN with batch norm, digits as 1x8x8 images, SGD + Nesterov, a val_loader", _digits_cnn),
    Case("breast_cancer_mlp", "MLP, scikit-learn breast cancer (30 features, 569 samples)",
         _tabular(breast_cancer, 64)),
    Case("moons_mlp", "MLP, scikit-learn two moons (2 features, nonlinear)", _tabular(moons, 64, 3e-3)),
    Case("resnet18_stripes", "torchvision ResNet-18, 3x32x32 stripe images, 4 classes", _torchvision("resnet18")),
    Case("mobilenet_v3_small_stripes", "torchvision MobileNetV3-small (hardswish, SE, dropout), stripes",
         _torchvision("mobilenet_v3_small")),
    Case("signal_cnn", "1-D CNN with batch norm, synthetic signals (3 frequencies), Adam", _signals),
    Case("pedestrian_lenet", "this project's LeNet on the pedestrian scenes, through diagnose()", _pedestrian_lenet),
]
BUGGY = [
    Case("no_zero_grad", "the step never calls optimizer.zero_grad()",
         lambda: _digits_cnn(step=step_without_zero_grad), "training_step", "grads_accumulate"),
    Case("no_backward", "the step never calls loss.backward()",
         lambda: _digits_cnn(step=step_without_backward), "training_step", "no_backward"),
    Case("optimizer_wrong_params", "the optimizer holds another model's parameters", _wrong_params,
         "training_step", "optimizer_wrong_params"),
    Case("eval_left_on", "the step calls model.eval() and never model.train()",
         lambda: _digits_cnn(step=step_left_in_eval), "training_step", "trained_in_eval_mode"),
    Case("dropout_at_eval", "F.dropout(h, 0.3) in forward: on in eval mode too",
         lambda: _digits_cnn(eval_dropout_bug=True), "modes", "nondeterministic"),
    Case("augmented_val_loader", "the validation loader applies random shifts", _augmented_val, "modes",
         "augmented_at_eval"),
]


def run(cases: list[Case], out: Path, console=None, device: str | None = None) -> dict:
    from pedestrian.doctor import diagnose

    rows = {}
    for case in cases:
        torch.manual_seed(0)
        kwargs = case.build()
        t0 = time.time()
        report = diagnose(**kwargs, out_dir=out / "runs" / case.name, name=case.name, console=console, device=device)
        report.save()
        r = report[case.check] if case.check else None
        rows[case.name] = {
            "what": case.what, "seconds": round(time.time() - t0, 1), "expected": case.check and
            {"check": case.check, "diagnosis": case.diagnosis},
            "caught": bool(r and r.status == "fail" and r.diagnosis == case.diagnosis) if case.check else None,
            "checks": {c.check: {"status": c.status, "diagnosis": c.diagnosis} for c in report.results}}
    return rows


MARK = {"pass": "✔", "warn": "⚠", "fail": "✘", "skip": "–"}


def markdown(rows: dict, machine: str) -> str:
    from pedestrian.doctor.common import CHECKS

    def table(names: list[str], last: str) -> list[str]:
        lines = ["| case | " + " | ".join(f"`{c}`" for c in CHECKS) + f" | {last} | time |",
                 "|---|" + "---|" * len(CHECKS) + "---|---|"]
        for n in names:
            row, exp = rows[n], rows[n]["expected"]
            cells = []
            for c in CHECKS:
                r = row["checks"].get(c)
                cell = "" if r is None else MARK[r["status"]] + (f" {r['diagnosis']}" if r["status"] in ("fail", "warn")
                                                                  else "")
                cells.append(f"**{cell}**" if exp and exp["check"] == c else cell)
            verdict = (("yes" if row["caught"] else "NO") if exp else
                       str(sum(r["status"] == "fail" for r in row["checks"].values())))
            lines.append(f"| `{n}` | " + " | ".join(cells) + f" | {verdict} | {row['seconds']:.1f} s |")
        return lines

    healthy = [n for n, r in rows.items() if not r["expected"]]
    buggy = [n for n, r in rows.items() if r["expected"]]
    false_alarms = sum(r["status"] == "fail" for n in healthy for r in rows[n]["checks"].values())
    warns = sum(r["status"] == "warn" for n in healthy for r in rows[n]["checks"].values())
    out = [f"Machine: {machine}. ✔ pass, ⚠ warning, ✘ fail (diagnosis); bold: the check that must catch the bug.", ""]
    if healthy:
        out += ["## Bug-free cases: false alarms", "", *[f"- `{n}`: {rows[n]['what']}" for n in healthy], "",
                *table(healthy, "failed checks"), "",
                f"{len(healthy)} bug-free cases, {len(healthy) * len(CHECKS)} checks: {false_alarms} false failures, "
                f"{warns} warnings; slowest case {max(rows[n]['seconds'] for n in healthy):.0f} s.", ""]
    if buggy:
        caught = sum(rows[n]["caught"] for n in buggy)
        out += ["## Bugs in the user's step or model: detection", "",
                *[f"- `{n}`: {rows[n]['what']}" for n in buggy], "", *table(buggy, "caught by its check"), "",
                f"{caught} of {len(buggy)} bugs caught by their check with the right diagnosis.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pedestrian.doctor.casebook", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/doctor/casebook", help="folder for casebook.md/json and the runs")
    p.add_argument("--cases", default=None, help="comma-separated subset of the cases")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default=None, help="e.g. cuda (default: where each model's parameters are)")
    a = p.parse_args(argv)
    cases = HEALTHY + BUGGY
    if a.cases:
        known = {c.name: c for c in cases}
        bad = sorted(set(a.cases.split(",")) - set(known))
        if bad:
            print(f"unknown cases {bad}; the casebook has {sorted(known)}", file=sys.stderr)
            return 2
        cases = [known[n] for n in a.cases.split(",")]
    if a.threads:
        torch.set_num_threads(a.threads)
    from rich.console import Console

    from pedestrian.core.train import machine
    from pedestrian.doctor.common import quiet_lightning

    quiet_lightning()
    out = Path(a.out)
    t0 = time.time()
    rows = run(cases, out, Console(), a.device)
    text = markdown(rows, f"{machine()}, {torch.get_num_threads()} torch threads")
    out.mkdir(parents=True, exist_ok=True)
    (out / "casebook.md").write_text(text + f"\nWall time {math.ceil(time.time() - t0)} s. Command: "
                                     f"`python -m pedestrian.doctor.casebook {' '.join(argv or sys.argv[1:])}`\n")
    (out / "casebook.json").write_text(json.dumps(rows, indent=2))
    print(text)
    bad = [n for n, r in rows.items() if (r["expected"] and not r["caught"]) or
           (not r["expected"] and any(c["status"] == "fail" for c in r["checks"].values()))]
    print(f"casebook: {out / 'casebook.md'}" + (f"; not as expected: {bad}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
