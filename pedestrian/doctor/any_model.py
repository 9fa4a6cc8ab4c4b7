"""The doctor on anyone's model: `diagnose(model, loader, loss_fn, ...)` runs the lecture's checks on any
classifier written in PyTorch (any input shape, channel count and number of classes).

    from pedestrian.doctor import diagnose
    report = diagnose(model, loader, torch.nn.CrossEntropyLoss(),
                      optimizer_factory=lambda params: torch.optim.Adam(params, lr=1e-3), num_classes=10)
    report.print(); report.save("doctor.json")   # report.failures, report.warnings, report.passed

The loader yields (inputs, labels, ...) batches as training sees them (normalised); labels are class indices.
Pass `step(model, batch, optimizer) -> loss` to have the checks use your own training step (the one that calls
zero_grad, backward and step): the doctor then sees the bugs that live there. `optimizer_factory` must build
the optimizer on the parameters it is given (the doctor trains copies of the model).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import SequentialSampler

from pedestrian.base.conf import CONF_DIR
from pedestrian.doctor.common import (
    CHECKS,
    DoctorError,
    Patient,
    Subject,
    dropout_off,
    eval_probs,
    pick,
    rebuild,
    run_checks,
    to_device,
)

SETTINGS = Path(CONF_DIR) / "doctor" / "default.yaml"
Step = Callable[[nn.Module, object, torch.optim.Optimizer], Tensor]


def default_step(loss_fn: Callable) -> Step:
    """The textbook training step, used when no `step` is given."""
    def step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        return loss
    return step


def settings_of(overrides: dict | None = None) -> DictConfig:
    """conf/doctor/default.yaml (the stage doctor's settings), with `overrides` merged in."""
    s = OmegaConf.load(SETTINGS)
    s.out_dir = None
    return OmegaConf.merge(s, OmegaConf.create(overrides or {}))


def _describe(batch) -> str:
    if batch is None:
        return "None"
    if isinstance(batch, Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, dict):
        return f"a dict with keys {sorted(batch)}"
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)}: " + ", ".join(
            f"tensor {tuple(b.shape)} {str(b.dtype).removeprefix('torch.')}" if isinstance(b, Tensor)
            else type(b).__name__ for b in batch)
    return f"a {type(batch).__name__}"


def check_batch(batch, num_classes: int | None, where: str = "loader") -> None:
    """A batch must be (inputs, labels, ...): inputs a tensor with a batch axis, labels integer class indices."""
    expected = "expected (inputs, labels, ...): inputs a float tensor (N, ...), labels an int64 tensor (N,)"
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DoctorError(f"the {where} yielded {_describe(batch)}; {expected}")
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise DoctorError(f"the {where} yielded {_describe(batch)}; {expected}")
    if x.dim() < 2 or y.dim() != 1 or len(y) != len(x):
        raise DoctorError(f"the {where} yielded inputs {tuple(x.shape)} and labels {tuple(y.shape)}; {expected} "
                          "(labels one class index per input, not one-hot)")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DoctorError(f"the {where}'s labels are {str(y.dtype).removeprefix('torch.')}; {expected}")
    if len(y) and (int(y.min()) < 0 or (num_classes is not None and int(y.max()) >= num_classes)):
        raise DoctorError(f"the {where}'s labels run from {int(y.min())} to {int(y.max())}; class indices must lie "
                          f"in 0..{(num_classes or 1) - 1} (num_classes={num_classes})")


def _cat(batches: Sequence) -> tuple | list:
    """Batches concatenated element-wise (tensor elements with the batch axis; others from the first batch)."""
    first, n = batches[0], len(batches[0][0])
    return rebuild(first, (torch.cat([b[k] for b in batches]) if isinstance(el, Tensor) and el.dim() and len(el) == n
                           else el for k, el in enumerate(first)))


def _take(batch, idx) -> tuple | list:
    n = len(batch[0])
    return rebuild(batch, (el[idx] if isinstance(el, Tensor) and el.dim() and len(el) == n else el for el in batch))


class ModelSubject(Subject):
    kind = "model"

    def __init__(self, model: nn.Module, loader: Iterable, loss_fn: Callable, optimizer_factory: Callable,
                 num_classes: int, step: Step | None, val_loader: Iterable | None, settings: DictConfig,
                 seed: int, out_dir: Path, device: torch.device, name: str, pretrained: bool = False) -> None:
        self.model, self.loader, self.loss_fn, self.optimizer_factory = model, loader, loss_fn, optimizer_factory
        self.step = step or default_step(loss_fn)
        self.num_classes, self.val_loader, self.settings, self.seed = num_classes, val_loader, settings, seed
        self.out_dir, self.device, self.name, self.pretrained = out_dir, device, name, pretrained
        self._batches: list = []
        self._iter = None
        self._split: tuple | None = None

    # -- the loader, read once, in order --------------------------------------------------------------
    def _read(self) -> bool:
        """One more batch from the loader (read once, in order, then kept); False when it is exhausted."""
        if self._iter is None:
            self._iter = iter(self.loader)
        try:
            b = next(self._iter)
        except StopIteration:
            return False
        check_batch(b, self.num_classes)
        self._batches.append(b)
        return True

    def loader_batches(self, n_samples: int) -> list:
        """The loader's first batches holding at least n_samples samples."""
        while sum(len(b[0]) for b in self._batches) < n_samples and self._read():
            pass
        out, seen = [], 0
        for b in self._batches:
            if seen >= n_samples:
                break
            out.append(b)
            seen += len(b[0])
        return out

    def fresh(self) -> nn.Module:
        return Patient(copy.deepcopy(self.model), self.loss_fn).to(self.device)

    def batch(self) -> tuple[Tensor, Tensor]:
        n = int(self.settings.batch_size)
        b = _cat(self.loader_batches(n))
        return b[0][:n].to(self.device), b[1][:n].to(self.device)

    def small_batch(self, k: int):
        b = _cat(self.loader_batches(max(k, 256)))
        return _take(b, torch.as_tensor(pick(b[1].cpu().numpy(), k, self.seed), device=b[1].device))

    def training_batches(self, n: int) -> list:
        while len(self._batches) < n and self._read():
            pass
        return self._batches[:n]

    def labels(self, batch) -> Tensor:
        return batch[1]

    def model_inputs(self, batch) -> tuple[Tensor, Tensor]:
        b = to_device(batch, self.device)
        return b[0], b[1]

    def train_steps(self, module, batches, plain=False, on_step_start=None, on_step_end=None) -> None:
        optimizer = self.optimizer_factory(module.model.parameters())
        if plain:  # the overfit setting: regularisation off
            for g in optimizer.param_groups:
                if "weight_decay" in g:
                    g["weight_decay"] = 0.0
            dropout_off(module)
        module.model.train()  # as a training loop does at the start of an epoch (a step may change it)
        for i, b in enumerate(batches):
            if on_step_start:
                on_step_start(i)
            loss = step_loss(self.step(module.model, to_device(b, self.device), optimizer))
            if on_step_end and on_step_end(i, loss):
                break

    def lr(self, module) -> float | None:
        opt = self.optimizer_factory(copy.deepcopy(module.model).parameters())
        return float(opt.param_groups[0].get("lr", float("nan")))

    def train_labels(self) -> np.ndarray:
        n = int(self.settings.get("max_label_samples", 4096))
        return _cat(self.loader_batches(n))[1][:n].cpu().numpy()

    def samples(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        b = _cat(self.loader_batches(n))
        return b[0][:n].reshape(len(b[0][:n]), -1).float().cpu().numpy(), b[1][:n].cpu().numpy()

    def split(self) -> tuple[Tensor, Tensor, list]:
        """(held-out inputs, labels, training batches): the val loader's first known.n_holdout samples and the
        training loader's first known.max_train_samples; without a val loader, the training loader's first
        batches are held out (at most half of what it holds) and the batches after them train."""
        if self._split is None:
            s = self.settings.known
            n_hold, n_train = int(s.n_holdout), int(s.max_train_samples)
            if self.val_loader is not None:
                xs, ys, seen = [], [], 0
                for b in self.val_loader:
                    check_batch(b, self.num_classes, "val_loader")
                    xs.append(b[0])
                    ys.append(b[1])
                    seen += len(b[0])
                    if seen >= n_hold:
                        break
                self._split = torch.cat(xs)[:n_hold], torch.cat(ys)[:n_hold], self.loader_batches(n_train)
            else:
                batches = self.loader_batches(n_hold + n_train)
                sizes = np.cumsum([len(b[0]) for b in batches])
                k = max(1, min(int(np.searchsorted(sizes, n_hold)) + 1, len(batches) // 2))
                held = _cat(batches[:k])
                self._split = held[0], held[1], batches[k:]
        return self._split

    def baseline_data(self, n_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        hx, hy, train = self.split()
        if not train:
            raise DoctorError("the loader holds too few batches to hold some out: pass val_loader")
        b = _cat(train)
        flat = lambda t: t.reshape(len(t), -1).float().cpu().numpy()  # noqa: E731
        return flat(b[0][:n_train]), b[1][:n_train].cpu().numpy(), flat(hx), hy.cpu().numpy()

    def held_out_probs(self, module) -> np.ndarray:
        return eval_probs(module, self.split()[0], device=self.device)

    def held_out_score(self, module) -> dict:
        from pedestrian.doctor.known_results import score_of

        return score_of(self.held_out_probs(module), self.split()[1].cpu().numpy())

    def short_training(self, max_epochs: int, max_samples: int | None, good) -> tuple[list[dict], nn.Module]:
        """Your step on the training batches, pass after pass, scored on the held-out ones after each pass.
        (split() already read at most known.max_train_samples = max_samples of them.)"""
        train = self.split()[2]
        module, history = self.fresh(), []

        def after(i: int, loss: float) -> bool:
            if (i + 1) % len(train):
                return False
            history.append(self.held_out_score(module))
            module.model.train()
            return good(history[-1])
        self.train_steps(module, train * max_epochs, on_step_end=after)
        return history, module

    def eval_inputs(self, n: int) -> Tensor:
        return self.split()[0][:n].to(self.device)

    def predict(self, module) -> tuple[np.ndarray, list[str]]:
        """A fresh pass over val_loader (in its order) when it is given, else the held-out inputs, in eval mode set
        by the doctor (your own evaluation code is not run, so no layer is ever found in train mode here)."""
        n = int(self.settings.modes.n_images)
        if self.val_loader is not None and self._ordered(self.val_loader):
            xs, seen = [], 0
            for b in self.val_loader:
                xs.append(b[0])
                seen += len(b[0])
                if seen >= n:
                    break
            return eval_probs(module, torch.cat(xs)[:n], device=self.device), []
        return eval_probs(module, self.eval_inputs(n)), []

    @staticmethod
    def _ordered(loader) -> bool:
        return isinstance(loader, (list, tuple)) or isinstance(getattr(loader, "sampler", None), SequentialSampler)

    def modes_note(self) -> str:
        if self.val_loader is None:
            return "held-out inputs, eval mode set by the doctor"
        return "val_loader" + ("" if self._ordered(self.val_loader) else " (shuffled: held-out inputs instead)") + \
            ", eval mode set by the doctor"


def step_loss(loss) -> float:
    """The value a step returned: a scalar tensor or a number."""
    if isinstance(loss, Tensor) and loss.numel() == 1:
        return float(loss.detach())
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    raise DoctorError(f"step(model, batch, optimizer) returned {_describe(loss)}; expected the loss (a scalar "
                      "tensor or a number)")


def _first_batch(loader: Iterable, where: str):
    if iter(loader) is loader:
        raise DoctorError(f"the {where} is a {type(loader).__name__}, which can be read only once; the doctor reads "
                          "it several times: pass a DataLoader or a list of batches")
    try:
        return next(iter(loader))
    except StopIteration:
        raise DoctorError(f"the {where} is empty: it yielded no batch") from None
    except Exception as e:
        raise DoctorError(f"the {where} failed while yielding its first batch: {type(e).__name__}: {e}") from e


def _num_classes(probe: nn.Module, x: Tensor, given: int | None) -> int | None:
    """The output's class axis must match num_classes; when not given, the output says it (None: the forward
    fails, which run_trace reports layer by layer). `probe`: a copy of the model in eval mode."""
    try:
        with torch.no_grad():
            out = probe(x[:2])
    except Exception:
        return given
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise DoctorError(f"the model returned {_describe(out)} for inputs {tuple(x[:2].shape)}; expected class "
                          "logits of shape (N, num_classes)")
    if out.shape[1] == 1:
        raise DoctorError("the model returns 1 logit per input (a sigmoid classifier): the checks need class logits "
                          "(N, classes) and a loss on class indices, e.g. 2 logits and cross-entropy (for a "
                          "sigmoid model z, torch.cat([-z / 2, z / 2], 1) gives the same probabilities)")
    if given is not None and out.shape[1] != given:
        raise DoctorError(f"the model returns {out.shape[1]} logits per input but num_classes={given}")
    return given or int(out.shape[1])


def _check_loss(loss_fn: Callable, probe: nn.Module, batch) -> None:
    x, y = batch[0][:4], batch[1][:4]
    try:
        with torch.no_grad():
            logits = probe(x)
    except Exception:
        return  # run_trace explains a failing forward
    try:
        loss = loss_fn(logits, y)
    except Exception as e:
        raise DoctorError(f"loss_fn(logits {tuple(logits.shape)}, labels {tuple(y.shape)} "
                          f"{str(y.dtype).removeprefix('torch.')}) raised {type(e).__name__}: {e}") from e
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise DoctorError(f"loss_fn returned {_describe(loss)} for a batch of {len(y)}; expected the mean loss, a "
                          "scalar tensor (a per-sample loss needs reduction='mean')")


def diagnose(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None, *,
             optimizer_factory: Callable | None = None, num_classes: int | None = None, step: Step | None = None,
             val_loader: Iterable | None = None, checks: Sequence[str] | None = None, settings: dict | None = None,
             out_dir: str | Path | None = None, seed: int = 0, device: str | torch.device | None = None,
             name: str | None = None, pretrained: bool = False, console=None):
    """Run the lecture's checks on any classifier; returns a Report (report.print(), report.save(path)).

    loss_fn: the training loss on (logits, labels), default cross-entropy. optimizer_factory: params ->
    optimizer, default Adam(lr=1e-3). step: your training step (model, batch, optimizer) -> loss, default the
    textbook one. val_loader: held-out batches (else the first training batches serve). settings: overrides of
    conf/doctor/default.yaml, e.g. {"overfit": {"max_steps": 500}}. pretrained: the model starts from trained
    weights (its first loss need not be ln(classes)). Raises DoctorError, naming the problem, when the inputs
    cannot be examined."""
    from pedestrian.doctor.report import Report

    t0 = time.time()
    if not isinstance(model, nn.Module):
        raise DoctorError(f"model is a {type(model).__name__}; expected a torch.nn.Module")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    optimizer_factory = optimizer_factory or (lambda params: torch.optim.Adam(params, lr=1e-3))
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    first = _first_batch(loader, "loader")
    check_batch(first, num_classes)
    try:  # every check works on copies: the model you pass is left as it was
        probe = copy.deepcopy(model).to(device).eval()
    except Exception as e:
        raise DoctorError(f"the model cannot be copied (copy.deepcopy): {type(e).__name__}: {e}; the doctor trains "
                          "copies so that your model is left as it was") from e
    first = to_device(first, device)
    try:
        with torch.no_grad():
            probe(first[0][:2])
        runs = True
    except Exception:
        runs = False  # run_trace explains a failing forward, layer by layer
    num_classes = _num_classes(probe, first[0], num_classes) or int(first[1].max()) + 1
    check_batch(first, num_classes)
    _check_loss(loss_fn, probe, first)
    opt = optimizer_factory(probe.parameters())
    if not isinstance(opt, torch.optim.Optimizer):
        raise DoctorError(f"optimizer_factory(params) returned a {type(opt).__name__}; expected a "
                          "torch.optim.Optimizer")
    if step is not None and runs:  # once, on a copy: a step that cannot run is named here, not deep inside a check
        try:
            step_loss(step(probe.train(), first, opt))
        except DoctorError:
            raise
        except Exception as e:
            raise DoctorError(f"step(model, batch, optimizer) raised {type(e).__name__}: {e}") from e
    if val_loader is not None:
        check_batch(_first_batch(val_loader, "val_loader"), num_classes, "val_loader")
    s = settings_of(settings)
    name = name or type(model).__name__
    out = Path(out_dir) if out_dir is not None else Path("outputs/doctor") / name / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    s.out_dir = str(out)
    subject = ModelSubject(model, loader, loss_fn, optimizer_factory, num_classes, step, val_loader, s, seed, out,
                           device, name, pretrained)
    results = run_checks(subject, list(checks or CHECKS), console)
    return Report.of_model(name, results, time.time() - t0, s, out, user_step=step is not None)
