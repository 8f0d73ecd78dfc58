"""The size and digest of a checkpoint: of its one file, or of a directory file by file.

A digest names its algorithm: ``"blake3:<64 hex digits>"`` or ``"sha256:<64 hex digits>"``
(the way container registries write theirs). New checkpoints get BLAKE3 (:data:`DEFAULT`),
which runs at several GB/s on one core, faster than disks take the bytes, so a save hashed
while it is written costs no more than the write. SHA-256 digests, the only ones manifests of
version 1 hold (as bare hex), are still read and checked. Every check hashes the bytes with the
algorithm of the digest it compares against (:func:`algorithm_of`).

A directory's digest hashes one line per file, ``path NUL size NUL hex``, in the order
``os.walk`` visits them with sorted names (at each level the files, then the sub-directories),
so the same tree gives the same digest on local disk and behind any file system.

A write function that hashed the bytes while writing them (:class:`ckptcore.hashing.HashingFile`)
returns a :class:`Digest`; the commit then takes it (:func:`written_digest`) instead of reading
the file back.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Callable, Iterable, NamedTuple

try:  # a dependency of ckptcore; without it (a vendored copy, say) new digests are SHA-256
    import blake3 as _blake3
except ImportError:  # pragma: no cover - installed with ckptcore
    _blake3 = None

__all__ = [
    "ALGORITHMS", "DEFAULT", "Digest", "algorithm_of", "bytes_digest", "digest", "matches", "new_hash", "stream_digest",
    "tree_digest", "written_digest",
]

#: The algorithms a digest may name.
ALGORITHMS = ("blake3", "sha256")
#: The algorithm of new digests.
DEFAULT = "blake3" if _blake3 is not None else "sha256"
_CHUNK = 1 << 20
_FORM = re.compile(r"(blake3|sha256):[0-9a-f]{64}")
Opener = Callable[[], Any]


class Digest(NamedTuple):
    """The size in bytes and the digest (``"algorithm:hex"``) of a checkpoint, computed while
    it was written."""

    size: int
    digest: str


def algorithm_of(value: str) -> str:
    """The algorithm a digest names (``"blake3:..."`` -> ``"blake3"``).

    Raises:
        ValueError: ``value`` is not ``"<algorithm>:<64 lowercase hex digits>"`` with an
            algorithm of :data:`ALGORITHMS`.
    """
    if not isinstance(value, str) or _FORM.fullmatch(value) is None:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
        raise ValueError(f"digest {shown!r} is not '<algorithm>:<64 lowercase hex digits>' "
                         f"with an algorithm of {', '.join(ALGORITHMS)}")
    return value.split(":", 1)[0]


def new_hash(algorithm: str = DEFAULT) -> Any:
    """A fresh hash object (``update``, ``hexdigest``) of ``algorithm``.

    Raises:
        ValueError: An algorithm not in :data:`ALGORITHMS`.
        ModuleNotFoundError: BLAKE3 without the ``blake3`` package installed.
    """
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        if _blake3 is None:
            raise ModuleNotFoundError("this digest is BLAKE3 and the blake3 package is not installed "
                                      "(pip install blake3)", name="blake3")
        return _blake3.blake3()
    raise ValueError(f"digest algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")


def bytes_digest(data: bytes, algorithm: str = DEFAULT) -> str:
    """The digest (``"algorithm:hex"``) of ``data``, as a checkpoint holding those bytes has."""
    hasher = new_hash(algorithm)
    hasher.update(data)
    return f"{algorithm}:{hasher.hexdigest()}"


def _bytes_hex(opener: Opener, algorithm: str) -> tuple[int, str]:
    hasher = new_hash(algorithm)
    size = 0
    with opener() as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def stream_digest(opener: Opener, algorithm: str = DEFAULT) -> tuple[int, str]:
    """``(size, digest)`` of what ``opener()`` (a binary file object) holds, read in chunks."""
    size, hex_ = _bytes_hex(opener, algorithm)
    return size, f"{algorithm}:{hex_}"


def tree_digest(files: Iterable[tuple[str, Opener]], algorithm: str = DEFAULT) -> tuple[int, str]:
    """``(size, digest)`` of a directory checkpoint from ``(relative path, open)`` pairs.

    Args:
        files: The pairs in any order; ``open()`` returns a binary file object.
        algorithm: One of :data:`ALGORITHMS`, for the files and for the lines naming them.
    """

    def walk_order(item: tuple[str, Opener]) -> tuple[tuple[int, str], ...]:
        parts = item[0].split("/")
        return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)

    hasher = new_hash(algorithm)
    total = 0
    for rel, opener in sorted(files, key=walk_order):
        size, file_hex = _bytes_hex(opener, algorithm)
        hasher.update(f"{rel}\0{size}\0{file_hex}\n".encode())
        total += size
    return total, f"{algorithm}:{hasher.hexdigest()}"


def digest(path: str, algorithm: str = DEFAULT) -> tuple[int, str]:
    """``(size, digest)`` of a local file, or of every file under a local directory.

    To check a recorded digest, pass its algorithm: ``digest(path, algorithm_of(recorded))``.
    """
    if not os.path.isdir(path):
        return stream_digest(lambda: open(path, "rb"), algorithm)
    files = []
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            files.append((os.path.relpath(full, path).replace(os.sep, "/"), lambda p=full: open(p, "rb")))
    return tree_digest(files, algorithm)


def matches(path: str, size: int, expected: str | None) -> bool:
    """Whether the local file or directory at ``path`` has ``size`` bytes and digest ``expected``
    (hashed in its algorithm); never for a ``None`` digest. A file of another size is not read.
    """
    if expected is None or (not os.path.isdir(path) and os.path.getsize(path) != size):
        return False
    return digest(path, algorithm_of(expected)) == (size, expected)


def written_digest(result: Any, path: str) -> tuple[int, str]:
    """``(size, digest)`` of the checkpoint a write function just wrote at ``path``.

    Args:
        result: What the write function returned: a :class:`Digest` of a single file is
            taken as is when its size matches the file's (one ``stat``, no read-back); anything
            else (``None``, a count of bytes, a directory's write) means reading it back.
        path: Where it wrote.
    """
    if isinstance(result, Digest) and not os.path.isdir(path) and os.path.getsize(path) == result.size:
        try:
            algorithm_of(result.digest)
        except ValueError as exc:  # a bug of the write function, not a storage fault
            raise ValueError(f"the write function returned {result!r} for {path!r}: {exc}") from None
        return result.size, result.digest
    return digest(path)
