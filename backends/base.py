"""The storage protocol every backend implements, and a base class with sensible defaults."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["Backend", "BaseBackend", "CommitInfo"]


class CommitInfo(dict):
    """What the engine knows about a checkpoint at commit time.

    Keys: ``epoch``, ``batch``, ``global_step``, ``metrics``, ``monitor``, ``monitor_value``,
    ``is_best``, ``digest`` (``"blake3:<hex>"``, see :mod:`ckptcore.digest`), ``size``. A plain dict, so third-party backends need nothing from us.
    """


@runtime_checkable
class Backend(Protocol):
    """Where checkpoints go. Paths are ``/``-separated and relative to the backend's root.

    Attributes:
        name: A short label used in the manifest's ``backends`` list and in messages.
        root: The root the backend writes under (a path or URL).
        can_delete: Whether retention may delete from it.
        keeps_manifest: Whether the engine should write ``manifest.json`` to it.
    """

    name: str
    root: str
    can_delete: bool
    keeps_manifest: bool

    def stage(self, relpath: str) -> str:
        """Return a local path where a writer may put the checkpoint before :meth:`commit`."""

    def commit(self, staged: str, relpath: str, info: CommitInfo) -> str:
        """Make a staged checkpoint visible under ``relpath``; return its location.

        It may move the staged copy (local disk) or upload it and leave it in place (object
        stores); either way the caller calls :meth:`discard` afterwards, once the other
        backends have copied the checkpoint from the staged copy or from the location.
        """

    def put(self, src: str, relpath: str, info: CommitInfo) -> str:
        """Copy a committed local checkpoint (file or directory) here; return its location."""

    def discard(self, staged: str) -> None:
        """Remove a staged checkpoint that will not be committed."""

    def delete(self, relpath: str) -> None:
        """Delete a checkpoint; a missing one is not an error."""

    def read_bytes(self, relpath: str) -> bytes:
        """Read a small file (the manifest). Raises ``FileNotFoundError`` when absent."""

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write a small file atomically (the manifest)."""

    def exists(self, relpath: str) -> bool:
        """Whether ``relpath`` exists."""

    def locate(self, relpath: str) -> str:
        """The full path or URL of ``relpath``."""

    def close(self) -> None:
        """Release resources; pending work is finished first."""


class BaseBackend:
    """Defaults for remote backends: stage into a local temporary directory, commit by ``put``.

    The staged copy stays after :meth:`commit` until :meth:`discard` removes its directory.

    Subclasses implement :meth:`put`, :meth:`delete`, :meth:`read_bytes`, :meth:`write_bytes`,
    :meth:`exists` and :meth:`locate`.
    """

    name: str = "base"
    can_delete: ClassVar[bool] = True
    keeps_manifest: ClassVar[bool] = True

    def __init__(self, root: str, **options: Any) -> None:
        self.root = root
        self.options = options

    def stage(self, relpath: str) -> str:
        tmpdir = tempfile.mkdtemp(prefix="ckptcore-stage-")
        return os.path.join(tmpdir, relpath.rsplit("/", 1)[-1])

    def commit(self, staged: str, relpath: str, info: CommitInfo) -> str:
        # The staged copy stays (for a retry, and as the local source the other backends copy
        # from); the caller discards it.
        return self.put(staged, relpath, info)

    def discard(self, staged: str) -> None:
        shutil.rmtree(os.path.dirname(staged), ignore_errors=True)

    def put(self, src: str, relpath: str, info: CommitInfo) -> str:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"
