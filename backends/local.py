"""Local disk: write to a hidden temporary name beside the target, fsync, then ``os.replace``."""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from typing import Any, ClassVar

from ckptcore import safepath
from ckptcore.backends.base import CommitInfo
from ckptcore.names import TEMP_MARK

__all__ = ["STALE_AFTER_SECONDS", "LocalBackend", "atomic_write_bytes", "fsync_tree"]

_TMP_MARK = TEMP_MARK
#: A temporary file untouched for this long is left over from a killed writer.
STALE_AFTER_SECONDS = 600.0


def fsync_tree(path: str) -> None:
    """fsync a file, or every file and directory under a directory."""
    if os.path.isdir(path):
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                _fsync_file(os.path.join(dirpath, name))
            _fsync_dir(dirpath)
    else:
        _fsync_file(path)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temp_name(final: str) -> str:
    head, tail = os.path.split(final)
    # The original name stays at the end, so a writer that checks the suffix still accepts it.
    return os.path.join(head, f"{_TMP_MARK}{uuid.uuid4().hex[:12]}-{tail}")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file, never a part."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


def _file_in_the_way(path: str) -> str:
    """The first component of ``path`` that exists but is not a directory (or ``path``)."""
    probe = os.path.abspath(path)
    parts = []
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        parts.append(probe)
        probe = os.path.dirname(probe)
    return probe if os.path.exists(probe) and not os.path.isdir(probe) else path


class LocalBackend:
    """Checkpoints on the local file system.

    Args:
        root: The checkpoint root directory (``""`` for the current directory).
    """

    name: ClassVar[str] = "local"
    can_delete: ClassVar[bool] = True
    keeps_manifest: ClassVar[bool] = True

    def __init__(self, root: str = "", **_options: Any) -> None:
        for scheme in ("file://", "local://"):  # local:///data/x is the local path /data/x
            if root.startswith(scheme):
                root = root[len(scheme) :]
        self.root = root

    def _abs(self, relpath: str) -> str:
        return os.path.join(self.root, *relpath.split("/")) if self.root else os.path.join(*relpath.split("/"))

    def locate(self, relpath: str) -> str:
        return self._abs(relpath)

    def locate_for_read(self, relpath: str) -> str:
        """The path of ``relpath``, once no component below the root is a symbolic link.

        Raises:
            UnsafePathError: A component below the root is a symbolic link.
        """
        return safepath.check_path(self.root, relpath)

    def stage(self, relpath: str) -> str:
        final = safepath.check_path(self.root, relpath)  # makedirs must not create past a link
        parent = os.path.dirname(final) or "."
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            blocker = _file_in_the_way(parent)
            raise NotADirectoryError(
                errno.ENOTDIR, f"cannot create the directory {parent!r}: {blocker!r} is a file, not a directory"
            ) from exc
        return _temp_name(final)

    def commit(self, staged: str, relpath: str, info: CommitInfo) -> str:
        final = safepath.check_path(self.root, relpath)
        if not os.path.exists(staged):
            raise FileNotFoundError(f"the writer produced nothing at {staged!r} for {relpath!r}")
        fsync_tree(staged)
        if os.path.lexists(final) and (os.path.isdir(staged) or os.path.isdir(final)):
            # A directory cannot be replaced atomically (nor a file by a directory, or back):
            # move the old one aside first, so the final name holds either the old or the new
            # complete checkpoint (or, for an instant, nothing), never a mix.
            old = _temp_name(final)
            os.replace(final, old)
            try:
                os.replace(staged, final)
            except BaseException:
                os.replace(old, final)
                raise
            _remove(old)
        else:
            os.replace(staged, final)
        _fsync_dir(os.path.dirname(final))
        return final

    def put(self, src: str, relpath: str, info: CommitInfo) -> str:
        staged = self.stage(relpath)
        try:
            if os.path.isdir(src):
                shutil.copytree(src, staged)
            else:
                shutil.copyfile(src, staged)
            return self.commit(staged, relpath, info)
        except BaseException:
            self.discard(staged)
            raise

    def discard(self, staged: str) -> None:
        _remove(staged)
        # A writer that appended a suffix to the staged name (np.save adds ".npy") left its
        # file beside it; the unique temporary prefix says it is ours.
        head, tail = os.path.split(staged)
        if tail.startswith(_TMP_MARK):
            try:
                names = os.listdir(head or ".")
            except OSError:
                return
            for name in names:
                if name.startswith(tail) and name != tail:
                    _remove(os.path.join(head, name))

    def delete(self, relpath: str) -> None:
        # Never through a link below the root (UnsafePathError); then drop the directories the
        # template made for it ("e3/model"), up to the root, while they are empty.
        safepath.remove_below(self.root, relpath)
        safepath.rmdir_empty_parents(self.root, relpath)

    def read_bytes(self, relpath: str) -> bytes:
        return safepath.read_below(self.root, relpath)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        atomic_write_bytes(safepath.check_path(self.root, relpath), data)

    def exists(self, relpath: str) -> bool:
        return safepath.exists_below(self.root, relpath)

    def remove_stale_temporaries(self, max_age: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove temporary files and directories a killed writer left under the root.

        Only names carrying the temporary mark are touched, and only those nothing has written
        to for ``max_age`` seconds (a save in progress in another process keeps its files'
        modification times fresh).

        Returns:
            The paths removed.
        """
        root = self.root or "."
        if not os.path.isdir(root):
            return []
        cutoff = time.time() - max_age
        removed = []
        for dirpath, dirs, files in os.walk(root):
            for name in [*files, *dirs]:
                path = os.path.join(dirpath, name)
                if name.startswith(_TMP_MARK) and _last_write(path) < cutoff:
                    _remove(path)
                    removed.append(path)
            dirs[:] = [d for d in dirs if not d.startswith(_TMP_MARK)]
        return removed

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"


def _last_write(path: str) -> float:
    """The newest modification time of a file, or of anything under a directory."""
    try:
        newest = os.lstat(path).st_mtime
        if os.path.isdir(path):
            for dirpath, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
        return newest
    except OSError:
        return time.time()  # vanished or unreadable: treat as in use
