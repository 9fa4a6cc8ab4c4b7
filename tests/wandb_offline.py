"""Read a W&B offline run's transaction log (run-*.wandb) without a server: the records W&B would sync.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of records, each with a 7-byte header
(crc32, length, type) and a protobuf `Record` payload; types 2/3/4 are the first/middle/last pieces of a record
that spans blocks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7


def records(path: str | Path) -> list[pb.Record]:
    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pos, pieces = [], HEADER, b""
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        data = raw[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            payloads = [data]
        elif kind == 2:
            pieces, payloads = data, []
        elif kind == 3:
            pieces, payloads = pieces + data, []
        else:
            payloads, pieces = [pieces + data], b""
        for p in payloads:
            r = pb.Record()
            r.ParseFromString(p)
            out.append(r)
    return out


def run_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def summary(path: str | Path) -> dict:
    """The run summary as W&B would show it (the last value of each key)."""
    out: dict = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def run_info(path: str | Path) -> dict:
    for r in records(path):
        if r.WhichOneof("record_type") == "run":
            return {"id": r.run.run_id, "name": r.run.display_name, "group": r.run.run_group,
                    "job_type": r.run.job_type, "tags": list(r.run.tags)}
    raise AssertionError(f"no run record in {path}")


def history(path: str | Path) -> list[dict]:
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return rows


def artifacts(path: str | Path) -> list[tuple[str, str]]:
    return [(r.artifact.name, r.artifact.type) for r in records(path) if r.WhichOneof("record_type") == "artifact"]
