"""Checkpoints on disk: written atomically (temp file, fsync, rename), verified before loading (a truncated
file fails its zip directory or CRC check and is reported, never half-loaded), loaded with weights_only=True.

    python -m pedestrian.core.checkpoints CKPT...    # is each checkpoint whole?
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from pedestrian.base.files import atomic_write

LAST = "last.ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint that must not be loaded (truncated, corrupt, or holding more than tensors and plain data)."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash leaves the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f), fsync=True)


def verify_checkpoint(path: str | Path) -> None:
    """torch.save writes a zip with its directory at the end and a CRC per entry: a truncated or damaged file
    fails here, before a single tensor is loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every entry and checks its CRC
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path} ({size} bytes) is truncated or corrupt ({e}); it was not loaded. "
                              "Delete it to start over, or resume from another checkpoint.") from None
    if bad is not None:
        raise CheckpointError(f"{path} ({size} bytes) is corrupt: entry {bad!r} fails its CRC; it was not loaded.")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Verify, then load with weights_only=True (tensors and plain data only: no code runs on load)."""
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # the weights-only unpickler refuses anything but tensors and plain containers
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): {e}") from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and verified, weights-only loads (used for resuming)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location=map_location or "cpu")


def last_path(trainer: L.Trainer) -> Path:
    """Where the Trainer's last.ckpt goes."""
    ckpt = trainer.checkpoint_callback
    folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
    return folder / LAST


if __name__ == "__main__":
    for p in sys.argv[1:]:
        verify_checkpoint(p)
        print(f"{p}: ok")
