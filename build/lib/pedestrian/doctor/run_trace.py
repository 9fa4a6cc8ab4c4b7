"""Get the model to run (lecture, implement-and-debug step 1): one forward and backward pass on a real batch,
traced layer by layer (shapes, dtypes, parameter counts, gradient norms).

The lecture's advice is to step through model creation and inference in a debugger and inspect the shape and
type of every output; this does that walk for you. A shape mismatch, a casting (dtype) error or out-of-memory is
caught and explained with the layer where it happened; after the backward pass every trainable layer must have
received a finite, non-zero gradient (a frozen or disconnected layer silently never learns).
"""

from __future__ import annotations

import re
import time

import torch
from torch import Tensor, nn

from pedestrian.doctor.common import CheckResult

FIXES = {
    "shape_mismatch": ["step through model creation and one forward pass (e.g. in ipdb) and inspect the shape of "
                       "every layer's output, as the table above does",
                       "check that the model was built for this input: image size, channels, number of classes",
                       "look for a flatten/view/reshape whose size was computed for another input size"],
    "dtype_mismatch": ["cast the inputs once, where they are normalised (uint8 -> float32)",
                       "labels for cross-entropy are int64 class indices; model weights and inputs share a dtype"],
    "device_mismatch": ["move the inputs (and any tensor created in forward) to the model's device"],
    "out_of_memory": ["scale back the memory-hungry operations one by one until it runs: first data.batch_size",
                      "then the input size (data.image_size / the profile), then the model width or depth",
                      "the largest activations are listed in the details: that is where the memory goes"],
    "no_gradient": ["make sure every parameter you mean to train has requires_grad=True (unfreeze the backbone "
                    "after fine-tuning warm-up), and that the optimizer gets all of them",
                    "a layer with no gradient that is not frozen is not in the graph: is its output used?"],
    "nonfinite_gradient": ["a numerical issue in forward or loss: look for exp, log, division or sqrt of values "
                           "that can be 0 or huge; normalise inputs; use the library's fused losses"],
    "dead_relu": ["ReLU units that output 0 for every input pass no gradient back, and never come back: look at "
                  "the biases (a large negative init) and the scale of the weights and inputs",
                  "use the init scheme that fits the nonlinearity (He/Kaiming, biases 0); lower the learning rate "
                  "if units die during training; a leaky ReLU or GELU cannot die"],
    "crashed": ["read the error and the layer it names; step through that layer in a debugger"],
}
DEAD = 0.99  # a layer whose outputs are 0 for this share of the batch's values is dead


def _shape(t) -> str:
    if isinstance(t, Tensor):
        return "x".join(str(s) for s in t.shape) if t.dim() else "scalar"
    if isinstance(t, (tuple, list)):
        return ", ".join(_shape(x) for x in t)
    return type(t).__name__


def _dtype(t) -> str:
    if isinstance(t, Tensor):
        return str(t.dtype).removeprefix("torch.")
    if isinstance(t, (tuple, list)) and t:
        return _dtype(t[0])
    return "-"


def _expects(m: nn.Module) -> str:
    """What a layer expects of its input, to set against what it got."""
    if isinstance(m, nn.Linear):
        return f"(*, {m.in_features}) {_dtype(m.weight)}"
    if isinstance(m, nn.Conv2d):
        return f"(N, {m.in_channels}, H, W) {_dtype(m.weight)}"
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return f"{m.num_features} channels"
    return ""


def classify_error(e: BaseException) -> str:
    msg = str(e).lower()
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or "can't allocate memory" in msg:
        return "out_of_memory"
    if re.search(r"expected (all tensors to be on the same device|.* on the same device)|same device", msg):
        return "device_mismatch"
    if re.search(r"(input type|expected scalar type|dtype|should be the same|found dtype|not implemented for "
                 r"'(byte|char|int|long|half)')", msg):
        return "dtype_mismatch"
    if re.search(r"(shape|size|dimension|channels|cannot be multiplied|must match)", msg):
        return "shape_mismatch"
    return "crashed"


class Tracer:
    """Forward hooks on every layer: a row per leaf layer, and the stack of layers running when one fails."""

    def __init__(self, model: nn.Module) -> None:
        self.rows: list[dict] = []
        self.stack: list[tuple[str, nn.Module, str, str]] = []
        self.handles = []
        for name, m in model.named_modules():
            if m is model:
                continue
            self.handles.append(m.register_forward_pre_hook(self._pre(name)))
            self.handles.append(m.register_forward_hook(self._post(name)))

    def _pre(self, name: str):
        def hook(m, inputs):
            self.stack.append((name, m, _shape(inputs), _dtype(inputs)))
        return hook

    def _post(self, name: str):
        def hook(m, inputs, out):
            _, _, in_shape, in_dtype = self.stack.pop()
            if next(m.children(), None) is None:  # leaf layers only: containers repeat their children
                params = sum(p.numel() for p in m.parameters(recurse=False))
                self.rows.append({
                    "layer": name, "type": type(m).__name__, "input": in_shape, "output": _shape(out),
                    "dtype": _dtype(out), "params": params,
                    "trainable": sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad),
                    "activation_mb": round(out.numel() * out.element_size() / 2**20, 3)
                    if isinstance(out, Tensor) else 0.0,
                    "zero_fraction": round(float((out == 0).float().mean()), 4)
                    if isinstance(out, Tensor) and out.numel() else 0.0})
        return hook

    def failing_layer(self) -> dict | None:
        if not self.stack:
            return None
        name, m, in_shape, in_dtype = self.stack[-1]
        return {"layer": name, "type": type(m).__name__, "input": in_shape, "input_dtype": in_dtype,
                "expects": _expects(m)}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def explain(kind: str, e: BaseException, where: dict | None, phase: str, rows: list[dict], batch_size: int) -> str:
    at = f" in layer `{where['layer']}` ({where['type']})" if where else f" in the {phase}"
    text = f"{phase} failed{at}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
    if where:
        text += f". It got input {where['input']} ({where['input_dtype']})"
        text += f" but expects {where['expects']}." if where["expects"] else "."
    if kind == "out_of_memory":
        big = sorted(rows, key=lambda r: -r["activation_mb"])[:3]
        text += (f" Batch size is {batch_size}; activations scale with it. Largest so far: "
                 + ", ".join(f"`{r['layer']}` {r['output']} ({r['activation_mb']} MB)" for r in big) + ".")
    elif kind == "dtype_mismatch":
        text += " A casting issue: the model expects floats (inputs normalised once, as float32)."
    return text


def gradient_report(model: nn.Module) -> tuple[list[dict], list[str], list[str]]:
    """Per layer: gradient norm; and the layers that got none (frozen / not in the graph) or a non-finite one."""
    rows, dead, nonfinite = [], [], []
    for name, m in model.named_modules():
        params = list(m.named_parameters(recurse=False))
        if not params:
            continue
        for pname, p in params:
            full = f"{name}.{pname}" if name else pname
            if not p.requires_grad:
                rows.append({"param": full, "grad_norm": None, "state": "frozen (requires_grad=False)"})
                dead.append(full)
            elif p.grad is None:
                rows.append({"param": full, "grad_norm": None, "state": "no gradient (not in the graph)"})
                dead.append(full)
            else:
                norm = float(p.grad.detach().float().norm())
                state = "ok" if norm > 0 else "zero gradient"
                if not torch.isfinite(p.grad).all():
                    state = "non-finite gradient"
                    nonfinite.append(full)
                elif norm == 0:
                    dead.append(full)
                rows.append({"param": full, "grad_norm": norm, "state": state})
    return rows, dead, nonfinite


def trace(module, x: Tensor, y: Tensor) -> tuple[list[dict], dict]:
    """Forward, loss (module.loss_fn, as the training step calls it) and backward. Returns the layer rows and
    {'error': kind, 'where': layer, 'phase': ..., 'exception': e} when a phase fails ({} when it runs)."""
    module.train()
    module.zero_grad(set_to_none=True)
    tracer = Tracer(module.model)
    phase, failure = "forward pass", {}
    try:
        logits = module(x)
        phase = "loss (module.loss_fn)"
        loss = module.loss_fn(logits, y)
        phase = "backward pass"
        loss.backward()
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, AttributeError, KeyError,
            torch.OutOfMemoryError) as e:
        where = tracer.failing_layer() if phase == "forward pass" else None
        failure = {"error": classify_error(e), "where": where, "phase": phase, "exception": e}
    finally:
        tracer.close()
    return tracer.rows, failure


def dead_layers(rows: list[dict]) -> list[dict]:
    """Rectifier layers (ReLU and kin) whose output is all but entirely 0 on the batch."""
    return [r for r in rows if "relu" in r["type"].lower() and r["zero_fraction"] >= DEAD]


def check(subject) -> CheckResult:
    t0 = time.time()
    module = subject.fresh()
    x, y = subject.batch()
    rows, failure = trace(module, x, y)
    n_params = sum(p.numel() for p in module.model.parameters())
    n_train = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    details = {"batch": {"x": _shape(x), "x_dtype": _dtype(x), "y": _shape(y), "y_dtype": _dtype(y)},
               "layers": rows, "params": n_params, "trainable_params": n_train}
    if failure:
        kind = failure["error"]
        text = explain(kind, failure["exception"], failure["where"], failure["phase"], rows, len(x))
        details["failure"] = {k: v for k, v in failure.items() if k != "exception"}
        return CheckResult("run_trace", "fail", f"the {failure['phase']} fails: {kind.replace('_', ' ')}",
                           kind, text, FIXES[kind], details, seconds=time.time() - t0)

    grads, dead, nonfinite = gradient_report(module.model)
    details["gradients"] = grads
    summary = (f"{len(rows)} layers, {n_params:,} parameters ({n_train:,} trainable); "
               f"input {_shape(x)} {_dtype(x)} -> logits {rows[-1]['output'] if rows else '?'}")
    if nonfinite:
        return CheckResult("run_trace", "fail", summary, "nonfinite_gradient",
                           f"{len(nonfinite)} parameters got NaN/inf gradients after one step, e.g. {nonfinite[:3]}",
                           FIXES["nonfinite_gradient"], details, seconds=time.time() - t0)
    frozen = [g["param"] for g in grads if g["state"].startswith("frozen")]
    dead_relus = dead_layers(rows)
    if dead and not frozen and dead_relus:
        names = ", ".join(f"`{r['layer']}` ({r['zero_fraction']:.0%} zeros)" for r in dead_relus[:4])
        text = (f"{len(dead_relus)} ReLU layers output 0 for (almost) every input of the batch: {names}. Dead "
                f"units pass no gradient back: {len(dead)} of {len(grads)} parameter tensors get exactly zero "
                f"gradient (first: {', '.join(dead[:3])}), so they can never learn")
        return CheckResult("run_trace", "fail", summary, "dead_relu", text, FIXES["dead_relu"], details,
                           seconds=time.time() - t0)
    if dead:
        text = (f"{len(dead)} of {len(grads)} parameter tensors get no gradient ({len(frozen)} frozen with "
                f"requires_grad=False); only {n_train:,} of {n_params:,} parameters ({n_train / n_params:.1%}) "
                f"can learn. First ones: {', '.join(dead[:4])}")
        return CheckResult("run_trace", "fail", summary, "no_gradient", text, FIXES["no_gradient"], details,
                           seconds=time.time() - t0)
    return CheckResult("run_trace", "pass", summary, details=details, seconds=time.time() - t0)
