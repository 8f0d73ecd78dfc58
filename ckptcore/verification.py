"""Checking one listed checkpoint against its manifest entry (``ckptcore verify``, ``best``,
``latest``).

The bytes are hashed with the algorithm the entry's digest names. A local checkpoint is read
without following any symbolic link below the root: a link there (or inside a directory
checkpoint) is ``BAD``, never vouched for.
"""

from __future__ import annotations

import functools
from typing import Any

from ckptcore.audit import stored_digest
from ckptcore.digest import DEFAULT, algorithm_of
from ckptcore.manifest import Manifest, ManifestEntry
from ckptcore.pending import accounted
from ckptcore.safepath import digest_below
from ckptcore.table import human_size

__all__ = ["check_entry", "one_line"]


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _short(value: str) -> str:
    """The first 12 hex digits of a digest, for a one-line message."""
    return value.split(":", 1)[-1][:12] + "…"


def check_entry(backend: Any, manifest: Manifest, entry: ManifestEntry, local: bool) -> tuple[str, str]:
    """``(status, detail)``, status ``ok``, ``BAD``, ``MISSING`` or ``UNVERIFIED``.

    Args:
        backend: The root's backend.
        manifest: Its manifest (a save in progress is ``ok`` when a pending record holds it).
        entry: The entry to check.
        local: Read the file under ``backend.root`` without following links; otherwise stream
            it through the backend.
    """

    @functools.cache  # each algorithm hashes the bytes once
    def hashed(algorithm: str) -> tuple[int, str] | None:
        if local:
            return digest_below(backend.root, entry.path, algorithm)
        return stored_digest(backend, entry.path, algorithm)  # streamed through fsspec

    algorithm = DEFAULT if entry.digest is None else algorithm_of(entry.digest)
    try:
        found = hashed(algorithm)
    except ModuleNotFoundError as exc:  # a blake3 digest where the blake3 package is missing
        return "UNVERIFIED", one_line(exc)
    except OSError as exc:
        return "BAD", f"cannot be read: {one_line(exc)}"
    if found is None:
        return "MISSING", "listed in the manifest but not found"
    size, value = found
    if entry.digest is None:
        if size != entry.size:  # no digest to compare, but the size alone says these are other bytes
            return "BAD", f"{size} bytes != manifest {entry.size} bytes (the manifest records no digest)"
        return "UNVERIFIED", "the manifest records no digest, so nothing vouches for these bytes"
    if value == entry.digest:
        return "ok", human_size(size)
    def digest_of(other: str) -> str | None:
        again = hashed(other)
        return None if again is None else again[1]

    try:
        in_progress = accounted(manifest, entry.path, digest_of)
    except (OSError, ModuleNotFoundError) as exc:
        return "BAD", f"cannot be read: {one_line(exc)}"
    if in_progress:
        return "ok", f"{human_size(size)} (a save in progress: its pending record holds this digest)"
    return "BAD", f"{algorithm} {_short(value)} != manifest {_short(entry.digest)} ({size} vs {entry.size} bytes)"
