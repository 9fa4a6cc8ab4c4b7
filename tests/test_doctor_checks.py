"""The checks' own logic on cases with a known answer: errors caught and explained with their layer, input
statistics of each normalisation mode, batch-mixing found by the gradient probes, train mode found in predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pedestrian.core import bugs
from pedestrian.core.module import Classifier
from pedestrian.data.datamodule import ArrayDataModule
from pedestrian.doctor.grad_dependency import loss_leak, model_leak
from pedestrian.doctor.inputs import channel_stats, verdict
from pedestrian.doctor.run_trace import explain, gradient_report, trace
from pedestrian.models import LeNet, ResNet

OPTIM = {"name": "adam", "lr": 3e-4, "betas": [0.9, 0.999], "weight_decay": 0.0}


def module_for(model: nn.Module) -> Classifier:
    return Classifier(model, OPTIM)


def batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.tensor([0, 1] * (n // 2))


# -- get it to run ----------------------------------------------------------------------------------------------
def test_trace_lists_every_layer_with_shapes_dtypes_and_parameters():
    rows, failure = trace(module_for(LeNet(image_size=32)), *batch())
    assert failure == {}
    assert [r["type"] for r in rows][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert rows[0]["input"] == "4x3x32x32" and rows[0]["output"] == "4x6x32x32" and rows[0]["params"] == 456
    assert rows[-1]["output"] == "4x2" and rows[-1]["dtype"] == "float32"
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in LeNet(image_size=32).parameters())


def test_shape_mismatch_is_caught_at_its_layer():
    """A model built for 32 px fed 16 px images: the first Linear gets the wrong number of features."""
    x, y = batch(size=16)
    rows, failure = trace(module_for(LeNet(image_size=32)), x, y)
    assert failure["error"] == "shape_mismatch" and failure["phase"] == "forward pass"
    assert failure["where"]["layer"] == "classifier.1" and failure["where"]["type"] == "Linear"
    text = explain(failure["error"], failure["exception"], failure["where"], failure["phase"], rows, len(x))
    assert "classifier.1" in text and "expects (*, 576)" in text and "got input 4x64" in text


def test_casting_error_is_caught_at_its_layer():
    """uint8 images that never went through normalisation."""
    x, y = batch()
    rows, failure = trace(module_for(LeNet(image_size=32)), (x.abs() * 50).to(torch.uint8), y)
    assert failure["error"] == "dtype_mismatch" and failure["where"]["layer"] == "features.0"
    text = explain(failure["error"], failure["exception"], failure["where"], failure["phase"], rows, 4)
    assert "uint8" in text and "casting" in text


def test_out_of_memory_says_what_to_shrink():
    """A layer whose output cannot be allocated (a real allocator failure, not a simulated one)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Upsample(scale_factor=2**14), nn.Flatten(),
                          nn.LazyLinear(2))
    x, y = batch()
    rows, failure = trace(module_for(model), x, y)
    assert failure["error"] == "out_of_memory" and failure["where"]["layer"] == "1"
    text = explain(failure["error"], failure["exception"], failure["where"], failure["phase"], rows, len(x))
    assert "Batch size is 4" in text and "Largest so far" in text


def test_gradient_report_names_frozen_and_disconnected_layers():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.used(x.flatten(1)[:, :4]))

    module = module_for(Net())
    module.model.used.weight.requires_grad_(False)
    _, failure = trace(module, *batch())
    assert failure == {}
    rows, dead, nonfinite = gradient_report(module.model)
    assert set(dead) == {"used.weight", "unused.weight", "unused.bias"} and not nonfinite
    states = {r["param"]: r["state"] for r in rows}
    assert states["used.weight"].startswith("frozen") and states["unused.bias"].startswith("no gradient")


# -- inputs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,diagnosis", [("once", None), ("none", "not_normalized"),
                                            ("twice", "normalized_twice")])
def test_input_statistics_of_each_normalisation_mode(mode, diagnosis):
    """The datamodule's own normalize() in each mode, on images with realistic statistics."""
    rng = np.random.default_rng(0)
    images = np.clip(rng.normal([120, 110, 100], [60, 55, 50], (32, 16, 16, 3)), 0, 255).astype(np.uint8)
    dm = ArrayDataModule()
    ref = images.astype(np.float32) / 255
    dm.mean, dm.std = torch.tensor(ref.mean(axis=(0, 1, 2))), torch.tensor(ref.std(axis=(0, 1, 2)))
    dm.normalize_mode = mode
    x = dm.normalize(torch.from_numpy(images).permute(0, 3, 1, 2))
    got, text = verdict(channel_stats(x), dm.mean, dm.std)
    assert got == diagnosis, text


def test_inputs_divided_by_255_twice_are_tiny():
    x = torch.rand(8, 3, 16, 16) / 255
    assert verdict(channel_stats(x))[0] == "normalized_twice"
    assert verdict(channel_stats(torch.rand(8, 3, 16, 16)))[0] is None  # [0, 1]: the lecture calls it fine


# -- gradient dependency ----------------------------------------------------------------------------------------
class MixesBatch(nn.Module):
    """A flatten written with the axes swapped: each row of the feature matrix holds pieces of every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        h = self.conv(x)                                   # N, C, H, W
        h = h.transpose(0, 1).reshape(x.shape[0], -1)      # meant: h.flatten(1); same shape, no error
        return self.fc(h)


def test_model_probe_finds_batch_mixing_and_clears_a_per_sample_model():
    x, _ = batch(n=4, size=8)
    assert model_leak(module_for(MixesBatch()), x, [0, 3]) > 1e-3
    assert model_leak(module_for(LeNet(image_size=16)), batch(n=4, size=16)[0], [0, 3]) == 0.0
    # batch norm mixes samples in train mode by design: the probe runs in eval mode
    assert model_leak(module_for(ResNet(image_size=16, width=4, blocks=[1])), batch(n=4, size=16)[0], [0, 3]) == 0.0


def test_loss_probe_finds_a_broadcast_loss():
    logits, y = torch.randn(8, 2), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    assert loss_leak(F.cross_entropy, logits, y, [0, 7], 2)[0] == 0.0
    assert loss_leak(bugs.softmax_then_cross_entropy, logits, y, [0, 7], 2)[0] == 0.0  # wrong, but per-sample
    assert loss_leak(bugs.broadcast_cross_entropy, logits, y, [0, 7], 2)[0] > 0.1


def test_listing_order_is_a_fixed_permutation_not_the_sorted_order():
    order = bugs.listing_order(100, "train")
    assert sorted(order) == list(range(100)) and list(order) != list(range(100))
    assert (order == bugs.listing_order(100, "train")).all() and (order != bugs.listing_order(100, "test")).any()


@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_every_model_starts_at_chance(init):
    """The lecture's loss-at-initialisation check on our own models: about ln(2), no saturated outputs (the output
    layer is initialised small; a ReLU gain there gave losses near 2.6 and 60% saturated outputs). In train mode,
    as the doctor's init_loss check and the first training step see the model (in eval mode an untrained batch
    norm's running statistics are the identity, and a max-pooled ResNet's features are not yet normalised)."""
    from pedestrian.models import ConvNet

    x, y = batch(64)
    for seed in range(5):
        torch.manual_seed(seed)
        for model in (LeNet(init=init), ConvNet(width=16, init=init, batch_norm=True),
                      ResNet(width=16, blocks=[1, 1, 1], init=init),
                      ResNet(width=16, blocks=[1, 1, 1], init=init, downsample="stride")):
            with torch.no_grad():
                logits = model.train()(x)
            p = logits.softmax(1)
            name = f"{type(model).__name__} (seed {seed})"
            assert abs(F.cross_entropy(logits, y).item() - np.log(2)) < 0.05, name
            assert (p.max(1).values > 0.99).float().mean() == 0, name
