"""Read what the W&B SDK recorded for an offline run: the artifact records of its ``.wandb`` log.

The ``.wandb`` file is the run's transaction log (LevelDB log framing: 32 KiB blocks of
records, each with a 7-byte header, long records split into first/middle/last pieces) holding
``wandb_internal_pb2.Record`` messages; ``wandb sync`` uploads exactly these records later.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["LoggedArtifact", "logged_artifacts", "records"]

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class LoggedArtifact:
    """One ``log_artifact`` call as the SDK recorded it."""

    name: str
    type: str
    aliases: list[str]
    metadata: dict
    files: dict[str, int] = field(default_factory=dict)  # path in the artifact -> size
    digest: str = ""


def records(path: str) -> Iterator[bytes]:
    """Yield the raw records of a ``.wandb`` file."""
    with open(path, "rb") as fh:
        data = fh.read()
    ident, magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B transaction log"
    pos, pieces = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        if len(chunk) < length:  # still being written
            return
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pieces = chunk
        elif kind == _MIDDLE:
            pieces += chunk
        elif kind == _LAST:
            yield pieces + chunk


def _complete_records(path: str, timeout: float) -> list:
    """The records of a finished run, waiting until its final ``exit`` record is on disk.

    ``run.finish()`` can return before the W&B service has flushed the log.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + timeout
    while True:
        parsed = []
        for raw in records(path):
            record = pb.Record()
            record.ParseFromString(raw)
            parsed.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in parsed):
            return parsed
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no exit record after {timeout:.0f} s; the run did not finish")
        time.sleep(0.1)


def logged_artifacts(path: str, timeout: float = 60.0) -> list[LoggedArtifact]:
    """The artifacts a finished run logged, in order, from its ``.wandb`` file."""
    found = []
    for record in _complete_records(path, timeout):
        if record.WhichOneof("record_type") != "artifact":
            continue
        art = record.artifact
        found.append(
            LoggedArtifact(
                name=art.name, type=art.type, aliases=sorted(art.aliases),
                metadata=json.loads(art.metadata or "{}"),
                files={c.path: c.size for c in art.manifest.contents}, digest=art.digest,
            )
        )
    return found
