"""The size and SHA-256 of a checkpoint: of its one file, or of a directory file by file.

A directory's digest hashes one line per file, ``path NUL size NUL sha256``, in the order
``os.walk`` visits them with sorted names (at each level the files, then the sub-directories),
so the same tree gives the same digest on local disk and behind any file system.

A write function that hashed the bytes while writing them (:class:`ckptcore.hashing.HashingFile`)
returns a :class:`Digest`; the commit then takes it (:func:`written_digest`) instead of reading
the file back.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Iterable, NamedTuple

__all__ = ["Digest", "digest", "stream_digest", "tree_digest", "written_digest"]

_CHUNK = 1 << 20
Opener = Callable[[], Any]


class Digest(NamedTuple):
    """The size in bytes and the hex SHA-256 of a checkpoint, computed while it was written."""

    size: int
    sha256: str


def stream_digest(opener: Opener) -> tuple[int, str]:
    """``(size, sha256)`` of what ``opener()`` (a binary file object) holds, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with opener() as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def tree_digest(files: Iterable[tuple[str, Opener]]) -> tuple[int, str]:
    """``(size, sha256)`` of a directory checkpoint from ``(relative path, open)`` pairs.

    Args:
        files: The pairs in any order; ``open()`` returns a binary file object.
    """

    def walk_order(item: tuple[str, Opener]) -> tuple[tuple[int, str], ...]:
        parts = item[0].split("/")
        return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)

    sha = hashlib.sha256()
    total = 0
    for rel, opener in sorted(files, key=walk_order):
        size, file_sha = stream_digest(opener)
        sha.update(f"{rel}\0{size}\0{file_sha}\n".encode())
        total += size
    return total, sha.hexdigest()


def digest(path: str) -> tuple[int, str]:
    """``(size, sha256)`` of a local file, or of every file under a local directory."""
    if not os.path.isdir(path):
        return stream_digest(lambda: open(path, "rb"))
    files = []
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            files.append((os.path.relpath(full, path).replace(os.sep, "/"), lambda p=full: open(p, "rb")))
    return tree_digest(files)


def written_digest(result: Any, path: str) -> tuple[int, str]:
    """``(size, sha256)`` of the checkpoint a write function just wrote at ``path``.

    Args:
        result: What the write function returned: a :class:`Digest` of a single file is
            taken as is when its size matches the file's (one ``stat``, no read-back); anything
            else (``None``, a count of bytes, a directory's write) means reading it back.
        path: Where it wrote.
    """
    if isinstance(result, Digest) and not os.path.isdir(path) and os.path.getsize(path) == result.size:
        return result.size, result.sha256
    return digest(path)
