"""Fast GPU input: the whole training split lives on the GPU as uint8 and is augmented there.

Small images train at tens of thousands per second on one GPU; at that rate a Python DataLoader (index, stack,
pin, copy) is the bottleneck. As in KellerJordan/cifar10-airbench, keep the uint8 tensor on the device (a 250k
x 64x64x3 split is 3 GB), draw each epoch's permutation there and index it, and augment with batched tensor
ops: a random horizontal flip and a random translation (zero fill), drawn per epoch up front. Inputs are still
normalised exactly once, by the datamodule's on_after_batch_transfer.

Same contract as the CPU loader: the order is EpochSampler's (seeds, epoch) permutation and DDP shard, and the
loader is resumable mid-epoch. The augmentation differs from albumentations' "basic" (no rotation, scale or
colour jitter) and synthetic night is not available here: that is a CPU pipeline.

`trainer.extras.gpu_data=true` turns it on (conf/trainer/gpu_fast.yaml); it also runs on the CPU (device=cpu),
which is how the tests exercise it.
"""

from __future__ import annotations

import math
import os
import types

import torch

from pedestrian.data.datamodule import ArrayDataModule, EpochSampler, ResumableEpoch, epoch_seed

TRANSLATE = 0.08  # the largest shift, as a fraction of the image side (albumentations "basic" uses 8%)


def flip_translate(x: torch.Tensor, flip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Per image: mirror where `flip`, then shift by (dy, dx) pixels in [-pad, pad] with zero fill; one gather."""
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (torch.arange(h, device=x.device) + pad - dy.view(-1, 1)).view(n, h, 1)
    cols = (torch.arange(w, device=x.device) + pad - dx.view(-1, 1)).view(n, 1, w)
    out = padded[torch.arange(n, device=x.device).view(n, 1, 1), :, rows, cols]  # N, H, W, C
    return out.permute(0, 3, 1, 2).contiguous()


class DeviceBatches(ResumableEpoch):
    """Training batches (x uint8 NCHW, y, index) sliced from tensors that already live on `device`."""

    def __init__(self, images, labels, batch_size: int, sampler: EpochSampler, device: torch.device,
                 augment: bool) -> None:
        self.x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()
        self.y = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.batch_size, self.sampler, self.device, self.augment = batch_size, sampler, device, augment
        self.pad = round(TRANSLATE * self.x.shape[-1]) if augment else 0

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        skip = self.sampler.skip
        idx = torch.tensor(list(self.sampler), dtype=torch.int64, device=self.device)  # consumes the skip
        self.batches_done = skip // self.batch_size
        if self.augment:  # drawn for the whole epoch, so skipping batches on resume skips their draws too
            g = torch.Generator(device=self.device).manual_seed(epoch_seed(*self.sampler.seeds,
                                                                            self.sampler.epoch, 1))
            m = len(self.sampler)
            flip = torch.rand(m, generator=g, device=self.device)[skip:] < 0.5
            dy, dx = torch.randint(-self.pad, self.pad + 1, (2, m), generator=g, device=self.device)[:, skip:]
        for start in range(0, len(idx), self.batch_size):
            i = idx[start:start + self.batch_size]
            x = self.x[i]
            if self.augment:
                s = slice(start, start + len(i))
                x = flip_translate(x, flip[s], dy[s], dx[s], self.pad)
            self.batches_done += 1
            yield x, self.y[i], i


def resolve_workers(value: int | str) -> int:
    """'auto': enough loader processes to keep a GPU fed (all cores but one, at most 8)."""
    if value == "auto":
        return max(0, min(8, (os.cpu_count() or 1) - 1))
    return int(value)


def apply(dm: ArrayDataModule, extras: dict) -> None:
    """Set the loader per trainer extras: `loader_workers` (int or auto) and `gpu_data` (device-resident)."""
    if extras.get("loader_workers") is not None:
        dm.num_workers = resolve_workers(extras["loader_workers"])
    if not extras.get("gpu_data"):
        return
    if dm.night_synth > 0:
        raise ValueError("trainer.extras.gpu_data=true cannot run data.night_synth (an albumentations CPU "
                         "pipeline): use trainer=gpu for the night_synth stage")

    def train_dataloader(self: ArrayDataModule) -> DeviceBatches:
        images, labels, _ = self.train_images_labels()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return DeviceBatches(images, labels, self.batch_size, self.train_sampler(len(labels)), device,
                             augment=self.augment is not None)

    dm.train_dataloader = types.MethodType(train_dataloader, dm)  # this datamodule's training loader only
