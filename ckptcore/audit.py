"""Checking a root against its manifest: what is really stored, and what is not accounted for.

"Accounted for" (see :mod:`ckptcore.pending`): a file or directory under a final name is
listed by a manifest entry for that path with its real digest, or by a pending record for that
path holding its digest.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ckptcore.digest import DEFAULT, algorithm_of, bytes_digest, digest, stream_digest, tree_digest
from ckptcore.manifest import Manifest
from ckptcore.pending import accounted

__all__ = ["checkpoint_paths", "digest_under", "holds", "stored_digest", "unaccounted"]


def stored_digest(backend: Any, relpath: str, algorithm: str = DEFAULT) -> tuple[int, str] | None:
    """``(size, digest)`` of the checkpoint (file or directory) under ``relpath``; None when
    nothing is there. Local files are hashed in place; others are streamed through the
    backend's fsspec file system, or read with ``read_bytes``.

    Raises:
        OSError: It could not be read.
    """
    if not _present(backend, relpath):
        return None
    fs = getattr(backend, "fs", None)
    url = backend.locate(relpath)
    if fs is None:
        if "://" not in url:
            return digest(url, algorithm)
        data = backend.read_bytes(relpath)
        return len(data), bytes_digest(data, algorithm)
    if not fs.isdir(url):
        return stream_digest(lambda: fs.open(url, "rb"), algorithm)
    base = fs._strip_protocol(url).rstrip("/")
    pairs = []
    for found in fs.find(url):
        path = fs._strip_protocol(found)
        pairs.append((path[len(base):].lstrip("/"), lambda p=path: fs.open(p, "rb")))
    return tree_digest(pairs, algorithm)


def _present(backend: Any, relpath: str) -> bool:
    """Whether anything is under ``relpath`` (nothing is read or hashed).

    Raises:
        OSError: It could not be told.
    """
    fs = getattr(backend, "fs", None)
    url = backend.locate(relpath)
    if fs is None:
        return os.path.lexists(url) if "://" not in url else bool(backend.exists(relpath))
    fs.invalidate_cache(url)
    return bool(fs.exists(url))


def digest_under(backend: Any, relpath: str, algorithm: str = DEFAULT) -> str | None:
    """The digest in ``algorithm`` of what is under ``relpath`` (see :func:`stored_digest`);
    None when nothing is there. A :data:`ckptcore.pending.Found`."""
    found = stored_digest(backend, relpath, algorithm)
    return None if found is None else found[1]


def holds(backend: Any, relpath: str, expected: str | None) -> bool | None:
    """Whether ``backend`` holds the bytes of digest ``expected`` under ``relpath`` (after a
    call that reported a failure, say), or nothing there for None; None when that cannot be
    told now."""
    try:
        if expected is None:
            return not _present(backend, relpath)
        return digest_under(backend, relpath, algorithm_of(expected)) == expected
    except Exception:  # noqa: BLE001 - unreachable still: unknown
        return None


def checkpoint_paths(root: str, manifest: Manifest | None = None) -> list[str]:
    """The relative paths under a local ``root`` that hold checkpoints (or anything else).

    A directory is one checkpoint when the manifest names it (or a pending record does), or
    when it holds files directly; otherwise its contents are listed. Hidden names (a leading
    dot: ``.ckptcore``, other tools' files) are never final names and are skipped.
    """
    named = set() if manifest is None else {e.path for e in manifest.entries} | {r.path for r in manifest.pending}
    found = []

    def visit(rel: str) -> None:
        path = os.path.join(root or ".", *rel.split("/")) if rel else (root or ".")
        for name in sorted(os.listdir(path)):
            child = f"{rel}/{name}" if rel else name
            if name.startswith("."):
                continue  # ckptcore's own directory, other tools' hidden files: no final names
            full = os.path.join(path, name)
            if os.path.isdir(full) and not os.path.islink(full) and child not in named and (
                any(p.startswith(child + "/") for p in named) or not _holds_files(full)
            ):
                visit(child)
            else:
                found.append(child)

    visit("")
    return found


def _holds_files(path: str) -> bool:
    return any(not os.path.isdir(os.path.join(path, n)) for n in os.listdir(path))


def unaccounted(target: Any) -> list[str]:
    """The paths under a local root that its manifest does not account for.

    Args:
        target: A local root directory, or a local backend.

    Returns:
        Relative paths, sorted: files or directories under final names that no entry lists
        with their real digest and no pending record holds.
    """
    from ckptcore.commit import load_manifest

    if isinstance(target, (str, os.PathLike)):
        from ckptcore.backends.local import LocalBackend

        backend: Any = LocalBackend(os.fspath(target))
    else:
        backend = target
    manifest = load_manifest(backend) or Manifest()
    root = backend.root
    return sorted(p for p in checkpoint_paths(root, manifest)  # each algorithm hashes a path once
                  if not accounted(manifest, p, functools.cache(lambda algorithm, p=p: digest_under(backend, p, algorithm))))
