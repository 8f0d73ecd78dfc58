"""Local disk: write under the root's hidden staging directory, fsync, then ``os.replace``.

The layout (``ROOT/.ckptcore/``) and what a killed save or delete leaves there are handled in
:mod:`ckptcore.backends.local_layout`; the cross-process locks in
:mod:`ckptcore.backends.local_lock`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from typing import Any, ClassVar, Iterator

from ckptcore import safepath
from ckptcore.backends.base import CommitInfo
from ckptcore.backends.local_layout import ASIDE, TRASH, make_layout, new_slot, recover, remove_tree, sweep
from ckptcore.backends.local_lock import RunClaim, root_lock, run_alive
from ckptcore.backends.local_reaper import EXIT_WAIT_SECONDS, REAPER
from ckptcore.layout import STAGING_DIR, TMP_MARK

__all__ = ["STALE_AFTER_SECONDS", "LocalBackend", "atomic_write_bytes", "fsync_tree"]

log = logging.getLogger("ckptcore")
_TMP_MARK = TMP_MARK
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
        self._prepared = False
        #: Set when the root's layout had to be made again (the root was deleted in use).
        self.recreated = False

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

    def _make_parent(self, final: str) -> None:
        parent = os.path.dirname(final) or "."
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            blocker = _file_in_the_way(parent)
            raise NotADirectoryError(
                errno.ENOTDIR, f"cannot create the directory {parent!r}: {blocker!r} is a file, not a directory"
            ) from exc

    def _check_layout(self) -> None:
        """Make the hidden layout; a root whose layout vanished after :meth:`prepare` was deleted."""
        try:
            made = make_layout(self.root)
        except (FileExistsError, NotADirectoryError) as exc:
            raise NotADirectoryError(errno.ENOTDIR, f"cannot create the directory {self.root!r}: "
                                     f"{_file_in_the_way(self.root or '.')!r} is a file, not a directory") from exc
        if made and self._prepared:
            self.recreated = True
            log.warning("the checkpoint root %r was deleted while in use; made it again (the "
                        "checkpoints it held are gone and are no longer listed)", self.root or ".")

    def stage(self, relpath: str) -> str:
        """A fresh ``.ckptcore/staging/<id>/<final name>`` path (the final name last)."""
        safepath.check_path(self.root, relpath)  # a link below the root is refused now
        self._check_layout()
        return os.path.join(new_slot(self.root), os.path.basename(self._abs(relpath)))

    def commit(self, staged: str, relpath: str, info: CommitInfo) -> str:
        final = safepath.check_path(self.root, relpath)
        if not os.path.exists(staged):
            raise FileNotFoundError(f"the writer produced nothing at {staged!r} for {relpath!r}")
        fsync_tree(staged)
        self._make_parent(final)
        if os.path.lexists(final) and (os.path.isdir(staged) or os.path.isdir(final)):
            self._swap(staged, final, relpath)
            _drop_slot(staged)
        else:
            aside = _link_aside(self.root, final, relpath)
            try:
                os.replace(staged, final)  # with the old file linked aside, this frees nothing
            finally:
                if aside is not None:
                    REAPER.submit(aside, self.root)  # the old copy's blocks (or, if the rename failed, a link)
            _fsync_dir(os.path.dirname(final))
            _drop_slot(staged)
        return final

    def _swap(self, staged: str, final: str, relpath: str) -> None:
        """Replace a directory (or a file by one, or back): no atomic rename does it.

        The old copy is moved into a staging slot marked ``aside`` (with its relative path)
        first, so a kill between the two renames leaves it where the next open puts it back.
        Once the new copy is in, the slot's marker becomes ``trash`` (durably, under the lock)
        before the reaper gets it: an ``aside`` copy left to the reaper would be put back by
        the next open if the final name were deleted (or mid-swap) when a kill came.
        """
        with self.lock():
            slot = new_slot(self.root, ASIDE, relpath)
            old = os.path.join(slot, os.path.basename(final))
            os.replace(final, old)
            try:
                os.replace(staged, final)
            except BaseException:
                os.replace(old, final)
                raise
            _fsync_dir(os.path.dirname(final))
            os.replace(os.path.join(slot, ASIDE), os.path.join(slot, TRASH))
            _fsync_dir(slot)
        REAPER.submit(slot, self.root)

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
        slot = os.path.dirname(staged)
        if _is_slot(slot):
            # The whole slot: a writer that appended a suffix to the staged name (np.save adds
            # ".npy") left its file beside it.
            remove_tree(slot)
        else:
            _remove(staged)

    def delete(self, relpath: str) -> None:
        """Move the checkpoint into a staging slot marked ``trash``, then remove it there.

        Never through a link below the root (UnsafePathError); then drop the directories the
        template made for it ("e3/model"), up to the root, while they are empty.
        """
        final = safepath.check_path(self.root, relpath)
        if os.path.lexists(final):
            slot = new_slot(self.root, TRASH, relpath)
            os.replace(final, os.path.join(slot, os.path.basename(final)))
            REAPER.submit(slot, self.root)  # its blocks are freed off this thread
        safepath.rmdir_empty_parents(self.root, relpath)

    def read_bytes(self, relpath: str) -> bytes:
        return safepath.read_below(self.root, relpath)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        atomic_write_bytes(safepath.check_path(self.root, relpath), data)

    def exists(self, relpath: str) -> bool:
        return safepath.exists_below(self.root, relpath)

    def remove_stale_temporaries(self, max_age: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove saves a killed writer left in ``.ckptcore/staging`` (and stale temporary
        files in ``.ckptcore/state``), untouched for ``max_age`` seconds.

        Nothing outside ``.ckptcore`` is looked at. One that cannot be removed is a logged
        warning, not an error.

        Returns:
            The paths removed.
        """
        removed, problems = sweep(self.root, max_age)
        for problem in problems:
            log.warning("stale temporary file left: %s", problem)
        return removed

    def prepare(self) -> list[str]:
        """Open the root: make the layout, put back what an interrupted replace moved aside,
        empty the trash of an interrupted delete, remove stale saves.

        Returns:
            One line per thing done; problems are logged as warnings, never raised.
        """
        REAPER.drain(EXIT_WAIT_SECONDS, self.root)  # this process's own removals here finish before the root is tidied
        try:
            make_layout(self.root)
            with self.lock():
                done, problems = recover(self.root)
        except OSError as exc:
            log.warning("cannot prepare the checkpoint root %r: %s", self.root or ".", exc)
            return []
        for problem in problems:
            log.warning("checkpoint root %r: %s", self.root or ".", problem)
        removed = self.remove_stale_temporaries()
        self._prepared = True
        return done + [f"removed {path!r} (left by a killed save)" for path in removed]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the root's cross-process lock (``.ckptcore/state/lock``)."""
        with root_lock(self.root):
            yield

    def claim_run(self, run_id: str) -> Any:
        """Mark ``run_id`` live on this root until the returned claim's ``release()``."""
        return RunClaim(self.root, run_id)

    def run_alive(self, run_id: str) -> bool:
        """Whether an open run (of any process) holds the claim of ``run_id``."""
        return run_alive(self.root, run_id)

    def close(self) -> None:
        """Wait (a bounded time) for the space of replaced and deleted checkpoints to be freed."""
        if not REAPER.drain(EXIT_WAIT_SECONDS, self.root):
            log.warning("the space of replaced or deleted checkpoints is still being freed after %gs; "
                        "what is left is removed at the next open of %r", EXIT_WAIT_SECONDS, self.root or ".")

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"


def _is_slot(path: str) -> bool:
    """Whether ``path`` is a ``.ckptcore/staging/<id>`` directory."""
    parent = os.path.dirname(os.path.abspath(path))
    return os.path.basename(path) != "" and parent.endswith(os.sep + os.path.join(*STAGING_DIR.split("/")))


def _link_aside(root: str, final: str, relpath: str) -> str | None:
    """Hard-link the file at ``final`` into a new trash slot, so replacing it frees nothing.

    Returns:
        The slot, for the reaper; None where there is no regular file at ``final``, the file
        system has no hard links or no room for the slot (the replace then frees the old file
        itself).
    """
    if not os.path.isfile(final) or os.path.islink(final):
        return None
    slot = None
    try:  # a full disk or no hard links: the plain replace below still commits
        slot = new_slot(root, TRASH, relpath, durable=False)  # lost in a crash: swept when stale
        os.link(final, os.path.join(slot, os.path.basename(final)), follow_symlinks=False)
    except OSError:
        if slot is not None:
            shutil.rmtree(slot, ignore_errors=True)
        return None
    return slot


def _drop_slot(staged: str) -> None:
    slot = os.path.dirname(staged)
    if _is_slot(slot):
        with contextlib.suppress(OSError):
            os.rmdir(slot)
