"""Atomic file writes: a temp file in the same folder, then os.replace. A reader (or a crash) sees the old
file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, data: str | bytes | Callable[[IO[bytes]], Any], fsync: bool = False) -> Path:
    """Write text, bytes, or whatever `data(fh)` writes to a binary file handle. fsync=True: the bytes and the
    rename survive a power cut too (checkpoints, caches); plain reports only need the rename."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # (*.tmp: readers skip it)
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself
        finally:
            os.close(dir_fd)
    return path


def write_json(path: str | Path, obj: Any, indent: int | None = 2, default: Callable | None = None) -> Path:
    return atomic_write(path, json.dumps(obj, indent=indent, default=default))
