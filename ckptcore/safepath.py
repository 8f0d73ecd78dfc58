"""Path operations below a local root that never follow a symbolic link (standard library only).

The root itself may be a symbolic link (it is the directory the user named); below it, every
component is opened with ``O_NOFOLLOW`` relative to its parent's descriptor (``dir_fd``), so a
link such as ``ROOT/link -> ../outside`` can never make a read, write, rename or delete reach
outside the root. Meeting a link raises :class:`~ckptcore.errors.UnsafePathError` (an
``OSError`` with ``errno.ELOOP``) naming it.

Paths are ``/``-separated and relative to the root, as in a manifest.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from typing import IO, Iterator

from ckptcore.digest import DEFAULT, stream_digest, tree_digest
from ckptcore.errors import UnsafePathError

__all__ = [
    "check_path",
    "digest_below",
    "exists_below",
    "open_below",
    "parent_fd",
    "read_below",
    "remove_below",
    "rmdir_empty_parents",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC


def _join(root: str, parts: list[str]) -> str:
    return os.path.join(root, *parts) if root else os.path.join(*parts)


def _unsafe(root: str, parts: list[str]) -> UnsafePathError:
    link = _join(root, parts)
    return UnsafePathError(
        errno.ELOOP,
        f"{link!r} is a symbolic link below the root {root or '.'!r}; ckptcore never follows links "
        "below a root (the root itself may be one)",
        link,
    )


def _split(relpath: str) -> list[str]:
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{relpath!r} is not a relative path below the root")
    return parts


def _open_dir(fd: int, name: str, root: str, done: list[str]) -> int:
    """Open directory ``name`` under ``fd`` without following a link."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                is_link = stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode)
            except OSError:
                is_link = False
            if is_link:
                raise _unsafe(root, [*done, name]) from exc
        raise


@contextlib.contextmanager
def parent_fd(root: str, relpath: str, create: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(descriptor of the parent directory, last component)`` of ``relpath``.

    Args:
        root: The root directory (``""`` for the current one); it may itself be a link.
        relpath: A ``/``-separated path below the root.
        create: Make missing parent directories (never through a link).

    Raises:
        UnsafePathError: A parent below the root is a symbolic link.
        FileNotFoundError: A parent is missing (and ``create`` is false).
    """
    parts = _split(relpath)
    fd = os.open(root or ".", os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for index, name in enumerate(parts[:-1]):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
            child = _open_dir(fd, name, root, parts[:index])
            os.close(fd)
            fd = child
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return None


def check_path(root: str, relpath: str) -> str:
    """The path of ``relpath`` under ``root``, once no component below the root is a link.

    Missing components are fine (nothing there to follow); one that is there must not be a
    link, the last one included.

    Raises:
        UnsafePathError: A component below the root is a symbolic link.
    """
    parts = _split(relpath)
    try:
        with parent_fd(root, relpath) as (fd, name):
            found = _lstat(fd, name)
            if found is not None and stat.S_ISLNK(found.st_mode):
                raise _unsafe(root, parts)
    except (FileNotFoundError, NotADirectoryError):
        pass  # a parent is missing (or a file): the caller's own operation reports that
    return _join(root, parts)


def exists_below(root: str, relpath: str) -> bool:
    """Whether ``relpath`` exists under ``root`` (a link below the root raises)."""
    try:
        with parent_fd(root, relpath) as (fd, name):
            found = _lstat(fd, name)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if found is not None and stat.S_ISLNK(found.st_mode):
        raise _unsafe(root, _split(relpath))
    return found is not None


def _open_file(fd: int, name: str, root: str, parts: list[str]) -> int:
    """Open regular file ``name`` under ``fd``; a link raises, a FIFO or device is refused."""
    try:
        opened = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(root, parts) from exc
        raise
    if not stat.S_ISREG(os.fstat(opened).st_mode):
        os.close(opened)
        raise OSError(errno.EINVAL, "not a regular file", _join(root, parts))
    return opened


def open_below(root: str, relpath: str) -> IO[bytes]:
    """Open the file ``relpath`` under ``root`` for reading, following no link."""
    parts = _split(relpath)
    with parent_fd(root, relpath) as (fd, name):
        return os.fdopen(_open_file(fd, name, root, parts), "rb")


def read_below(root: str, relpath: str) -> bytes:
    """Read the file ``relpath`` under ``root``, following no link."""
    with open_below(root, relpath) as fh:
        return fh.read()


def remove_below(root: str, relpath: str) -> None:
    """Delete the file or directory tree ``relpath`` under ``root``; a missing one is no error.

    A directory is removed with ``shutil.rmtree(dir_fd=...)``, which does not follow the links
    it meets inside (on platforms where ``shutil.rmtree.avoids_symlink_attacks``).

    Raises:
        UnsafePathError: ``relpath`` or a parent below the root is a symbolic link.
    """
    parts = _split(relpath)
    try:
        with parent_fd(root, relpath) as (fd, name):
            found = _lstat(fd, name)
            if found is None:
                return
            if stat.S_ISLNK(found.st_mode):
                raise _unsafe(root, parts)
            if not stat.S_ISDIR(found.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                return
            if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - not on Linux/macOS
                raise UnsafePathError(errno.ENOTSUP, "this platform's rmtree can follow links", name)
            shutil.rmtree(name, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return


def rmdir_empty_parents(root: str, relpath: str) -> None:
    """Remove the parent directories of ``relpath`` up to the root while they are empty."""
    parents = _split(relpath)[:-1]
    while parents:
        try:
            with parent_fd(root, "/".join(parents)) as (fd, name):
                os.rmdir(name, dir_fd=fd)  # a link is not a directory: ENOTDIR, never followed
        except OSError:
            return
        parents.pop()


def digest_below(root: str, relpath: str, algorithm: str = DEFAULT) -> tuple[int, str] | None:
    """``(size, digest)`` of a file or directory under ``root`` as :func:`ckptcore.digest.digest`
    computes it, following no link (a link inside a directory checkpoint raises); None when
    ``relpath`` is missing."""
    parts = _split(relpath)
    try:
        with parent_fd(root, relpath) as (fd, name):
            found = _lstat(fd, name)
            if found is None:
                return None
            if stat.S_ISLNK(found.st_mode):
                raise _unsafe(root, parts)
            if not stat.S_ISDIR(found.st_mode):
                return stream_digest(lambda: os.fdopen(_open_file(fd, name, root, parts), "rb"), algorithm)
            fds: list[int] = []
            try:
                files = _tree_files(_open_dir(fd, name, root, parts[:-1]), root, parts, "", fds)
                return tree_digest(files, algorithm)
            finally:
                for opened in fds:
                    os.close(opened)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _tree_files(fd: int, root: str, parts: list[str], prefix: str, fds: list[int]) -> list[tuple[str, object]]:
    """``(relative path, opener)`` of every file under the directory ``fd`` (kept open in ``fds``)."""
    fds.append(fd)
    files: list[tuple[str, object]] = []
    with os.scandir(fd) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        where = [*parts, *filter(None, prefix.split("/")), entry.name]
        if entry.is_symlink():
            raise _unsafe(root, where)
        if entry.is_dir(follow_symlinks=False):
            child = _open_dir(fd, entry.name, root, where[:-1])
            files += _tree_files(child, root, parts, f"{prefix}{entry.name}/", fds)
        else:
            files.append((f"{prefix}{entry.name}",
                          lambda d=fd, n=entry.name, w=where: os.fdopen(_open_file(d, n, root, w), "rb")))
    return files
