"""What the W&B SDK recorded for an offline run: the artifact records of its ``.wandb`` file.

The ``.wandb`` file is the run's transaction log, the very records ``wandb sync`` uploads later:
LevelDB log framing (32 KiB blocks of records, each with a 7-byte header; a long record is split
into first/middle/last pieces) around ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["ArtifactFile", "RecordedArtifact", "finish_and_read", "recorded_artifacts", "stored_files"]

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class ArtifactFile:
    """One manifest entry of a logged artifact version."""

    path: str
    size: int
    digest: str
    local_path: str


@dataclass
class RecordedArtifact:
    """One ``log_artifact`` call as the SDK recorded it."""

    name: str
    type: str
    aliases: list[str]
    metadata: dict
    files: dict[str, ArtifactFile] = field(default_factory=dict)


def _records(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        data = fh.read()
    ident, magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pieces = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the padding at the end of a block
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pieces = chunk
        elif kind == _MIDDLE:
            pieces += chunk
        elif kind == _LAST:
            yield pieces + chunk


def _parsed(sync_file: str) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    found = []
    for raw in _records(sync_file):
        record = pb.Record()
        record.ParseFromString(raw)
        found.append(record)
    return found


def recorded_artifacts(sync_file: str, timeout: float = 60.0) -> list[RecordedArtifact]:
    """The artifact versions a finished offline run logged, in order.

    ``run.finish()`` may return before the SDK's service has written the last records, so this
    waits (up to ``timeout`` seconds) for the run's ``exit`` record, written after every other.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = _parsed(sync_file)
        except Exception:  # noqa: BLE001 - a record still being written does not parse yet
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sync_file}: no exit record after {timeout:g}s; did the run finish?")
        time.sleep(0.05)
    found = []
    for record in records:
        if record.WhichOneof("record_type") != "artifact":
            continue
        art = record.artifact
        files = {
            c.path: ArtifactFile(c.path, c.size, c.digest, c.local_path) for c in art.manifest.contents
        }
        found.append(RecordedArtifact(art.name, art.type, sorted(art.aliases),
                                      json.loads(art.metadata or "{}"), files))
    return found


def stored_files(artifacts: list[RecordedArtifact]) -> dict[str, bytes]:
    """The bytes W&B would upload for each checkpoint path: its last version wins.

    A version holds one checkpoint (``metadata["path"]``): a file stored under that path, or a
    directory whose files sit at the artifact's root (returned here under ``path/``).
    """
    out: dict[str, bytes] = {}
    for artifact in artifacts:
        ckpt = artifact.metadata["path"]
        for key in [k for k in out if k == ckpt or k.startswith(ckpt + "/")]:
            del out[key]
        directory = ckpt not in artifact.files
        for entry in artifact.files.values():
            with open(entry.local_path, "rb") as fh:
                out[f"{ckpt}/{entry.path}" if directory else entry.path] = fh.read()
    return out


def finish_and_read(run) -> list[RecordedArtifact]:
    """Finish ``run`` (flushing its log) and return the artifact versions it recorded."""
    sync_file = run.settings.sync_file
    run.finish()
    return recorded_artifacts(sync_file)
