"""Splits -> loaders. Every data source (rendered scenes, a folder of photos) ends up as uint8 arrays per split
plus per-sample attributes; this module turns them into loaders and normalises inputs exactly once.

Splits (the lecture's two validation sets):
  train        training distribution (mostly day)      -> what we fit
  train_val    training distribution, held out         -> variance = train_val - train
  test_val     test distribution (more night), held out -> distribution shift = test_val - train_val
  test         test distribution                        -> validation overfitting = test - test_val
  target_pool  small labelled test-distribution pool    -> night_finetune trains on it
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pedestrian.data import augment as augment_lib
from pedestrian.data import scenes
from pedestrian.data.cache import SceneArrays, load_or_render

EVAL_SPLITS = ("train", "train_val", "test_val", "test")  # the order of the validation loaders
ALL_SPLITS = ("train", "train_val", "test_val", "test", "target_pool")
NORMALIZE_MODES = ("none", "once", "twice")


class ArrayDataset(Dataset):
    """uint8 NHWC images + int labels in memory. Batches are fetched with one index op (__getitems__)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray,
                 transform: Callable[[np.ndarray, int], np.ndarray] | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, np.asarray(labels, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx_arr = np.asarray(idx)
        imgs = self.images[idx_arr]
        if self.transform is not None:
            imgs = np.stack([self.transform(im, int(i)) for im, i in zip(imgs, idx_arr)])
        x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2)  # NCHW uint8, normalised later
        return x, torch.from_numpy(self.labels[idx_arr]), torch.from_numpy(idx_arr)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, j = self.__getitems__([i])
        return x[0], y[0], j[0]


def _collate(batch):  # __getitems__ already returns a batch
    return batch


class TrainDataset(ArrayDataset):
    """Training images whose augmentation is drawn from a pipeline seeded by the batch's indices, so by (seed,
    epoch, position): a resumed run, or a loader worker, augments exactly as one uninterrupted process would."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, make_transform: Callable[[int], Callable],
                 seed: int) -> None:
        super().__init__(images, labels)
        self.make_transform, self.seed = make_transform, seed

    def __getitems__(self, idx: list[int]):
        self.transform = self.make_transform(zlib.crc32(np.asarray(idx, dtype=np.int64).tobytes(), self.seed))
        return super().__getitems__(idx)


def epoch_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class EpochSampler(DistributedSampler):
    """The training order: a permutation that is a function of (seeds, epoch) alone, sharded over DDP ranks
    (padded so every rank steps the same number of times), resumable mid-epoch (`skip` samples already trained
    on). Being a DistributedSampler, Lightning leaves it in place under DDP."""

    def __init__(self, n: int, seeds: tuple[int, ...], rank: int = 0, world: int = 1) -> None:
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=True, drop_last=False)
        self.seeds, self.skip = seeds, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __iter__(self):
        n = len(self.dataset)
        g = torch.Generator().manual_seed(epoch_seed(*self.seeds, self.epoch))
        order = torch.randperm(n, generator=g).tolist()
        order = (order * (self.total_size // n + 1))[: self.total_size]
        mine = order[self.rank:self.total_size:self.num_replicas]
        skip, self.skip = self.skip, 0
        return iter(mine[skip:])


class ShardSampler(DistributedSampler):
    """Evaluation under DDP: rank r takes every world-th image from r, no padding, so no image is counted twice
    and the summed ErrorRate counts equal one process's."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=False)
        self.mine = range(rank, n, world)

    def __iter__(self):
        return iter(self.mine)

    def __len__(self) -> int:
        return len(self.mine)


class ResumableEpoch:
    """What Lightning checkpoints of a training loader (it calls state_dict/load_state_dict on loaders that have
    them): the epoch and how many of its batches were handed out; on load the sampler skips those."""

    sampler: EpochSampler
    batch_size: int
    batches_done: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            epoch, done = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.skip = done * self.batch_size


class TrainLoader(ResumableEpoch, DataLoader):
    """The training DataLoader, resumable mid-epoch."""

    def __iter__(self):
        self.batches_done = self.sampler.skip // self.batch_size
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch


class ArrayDataModule(L.LightningDataModule):
    """Shared by every data source: subclasses implement `load_splits`."""

    def __init__(self, image_size: int = 32, batch_size: int = 128, eval_batch_size: int = 512,
                 train_splits: Sequence[str] = ("train",), eval_train_max: int = 2000, num_workers: int = 0,
                 normalize: str = "once", augment: str | None = None, night_synth: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"data.normalize={normalize!r} is not one of {NORMALIZE_MODES}")
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.train_splits, self.eval_train_max = list(train_splits), eval_train_max
        self.num_workers, self.normalize_mode, self.seed = num_workers, normalize, seed
        self.augment, self.night_synth = augment, night_synth
        self.splits: dict[str, SceneArrays] = {}
        self.num_classes, self.in_channels = 2, 3
        self.mean = torch.zeros(3)
        self.std = torch.ones(3)

    # -- subclasses -------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, SceneArrays]:
        raise NotImplementedError

    # -- Lightning hooks --------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = self.load_splits()
        for name in self.train_splits:
            if name not in self.splits:
                raise ValueError(f"data.train_splits names {name!r}, but the data has splits {sorted(self.splits)}")
        # Normalisation statistics from the training data only (never peek at held-out sets).
        ref = self.splits["train"].images[:10000].astype(np.float32) / 255.0
        self.mean = torch.tensor(ref.mean(axis=(0, 1, 2)), dtype=torch.float32)
        self.std = torch.tensor(ref.std(axis=(0, 1, 2)) + 1e-6, dtype=torch.float32)

    def train_images_labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The training images, labels and night flags of every split in train_splits, concatenated."""
        parts = [self.splits[s] for s in self.train_splits]
        images = np.concatenate([p.images for p in parts]) if len(parts) > 1 else parts[0].images
        labels = np.concatenate([p.attrs["label"] for p in parts])
        night = np.concatenate([p.attrs.get("night", np.zeros(len(p))) for p in parts])
        return images, labels, night

    def train_transform(self, seed: int | None = None) -> Callable[[np.ndarray, int], np.ndarray] | None:
        """Augmentation (augment stage) and synthetic night (night_synth stage), applied per sample; `seed`
        (default data.seed) seeds both pipelines (the training loader passes one per batch)."""
        seed = self.seed if seed is None else seed
        aug = augment_lib.build(self.augment, self.image_size, seed)
        night = augment_lib.build_night_synth(self.night_synth, seed) if self.night_synth > 0 else None
        if aug is None and night is None:
            return None
        if getattr(self, "_is_night", None) is None:
            self._is_night = self.train_images_labels()[2]
        is_night = self._is_night

        def transform(img: np.ndarray, i: int) -> np.ndarray:
            if night is not None and not is_night[i]:
                img = night(img, i)
            return aug(img) if aug is not None else img
        return transform

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer  # set while a Trainer uses this datamodule
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_sampler(self, n: int) -> EpochSampler:
        """Order from (data seed, training seed, epoch) only, so resuming or re-running never changes it."""
        train_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # the training seed (L.seed_everything sets it)
        return EpochSampler(n, (self.seed, train_seed), *self._rank_world())

    def train_dataloader(self) -> DataLoader:
        images, labels, _ = self.train_images_labels()
        if self.train_transform() is not None:
            ds = TrainDataset(images, labels, self.train_transform, self.seed)
        else:
            ds = ArrayDataset(images, labels)
        sampler = self.train_sampler(len(ds))
        return TrainLoader(ds, batch_size=self.batch_size, sampler=sampler, collate_fn=_collate,
                           generator=torch.Generator().manual_seed(epoch_seed(*sampler.seeds)),
                           num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                           pin_memory=torch.cuda.is_available())

    def eval_dataset(self, split: str) -> ArrayDataset:
        arr = self.splits[split]
        n = min(len(arr), self.eval_train_max) if split == "train" else len(arr)
        return ArrayDataset(arr.images[:n], arr.attrs["label"][:n])

    def eval_dataloader(self, split: str) -> DataLoader:
        return DataLoader(self.eval_dataset(split), batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=_collate, num_workers=0)

    def val_dataloader(self) -> list[DataLoader]:
        rank, world = self._rank_world()
        if world == 1:
            return [self.eval_dataloader(s) for s in EVAL_SPLITS]
        return [DataLoader(ds, batch_size=self.eval_batch_size, sampler=ShardSampler(len(ds), rank, world),
                           collate_fn=_collate) for ds in map(self.eval_dataset, EVAL_SPLITS)]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, idx = batch
        return self.normalize(x), y, idx

    # -- the one place inputs are normalised ------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float, standardised with the train-set mean/std (mode 'once'; the bug zoo flips it)."""
        times = NORMALIZE_MODES.index(self.normalize_mode)
        if times == 0:
            return x.float()  # 'none', the bug zoo's forgotten normalisation: raw 0..255 values reach the net
        x = x.float().div_(255.0)
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        for _ in range(times):
            x = (x - mean) / std
        return x


class SceneDataModule(ArrayDataModule):
    """The offline default: rendered street scenes, source (mostly day) and target (more night) splits."""

    def __init__(self, root: str | Path = "data", seed: int = 0, image_size: int = 32, n_train: int = 4000,
                 n_train_val: int = 2000, n_test_val: int = 2000, n_test: int = 2000, n_target_pool: int = 1000,
                 p_night_source: float = 0.05, p_night_target: float = 0.5, p_pedestrian: float = 0.5,
                 difficulty: dict | None = None, render_workers: int = 0, **kwargs) -> None:
        super().__init__(image_size=image_size, seed=seed, **kwargs)
        self.root = Path(root)
        self.sizes = {"train": n_train, "train_val": n_train_val, "test_val": n_test_val, "test": n_test,
                      "target_pool": n_target_pool}
        for split, n in self.sizes.items():
            if n < 1:
                raise ValueError(f"data.n_{split}={n}: every split needs at least one image")
        self.p_night = {"train": p_night_source, "train_val": p_night_source, "test_val": p_night_target,
                        "test": p_night_target, "target_pool": p_night_target}
        self.p_pedestrian, self.render_workers = p_pedestrian, render_workers
        self.difficulty = scenes.Difficulty.of(difficulty).key()  # names a bad knob here, before any rendering

    def load_splits(self) -> dict[str, SceneArrays]:
        return {s: load_or_render(self.root, self.seed, s, n, self.image_size, self.p_night[s],
                                  self.p_pedestrian, workers=self.render_workers, difficulty=self.difficulty)
                for s, n in self.sizes.items()}
