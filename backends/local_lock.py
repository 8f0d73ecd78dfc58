"""Cross-process locks of a local root, with ``filelock``.

``ROOT/.ckptcore/state/lock`` serialises every read-merge-write of the manifest, the
directory swap of a replace and the recovery at open, between processes (and threads: each
thread holds the lock through its own file descriptor, while one thread may re-enter it).

A run also holds ``ROOT/.ckptcore/state/run-<run id>.lock`` while it is open, so the settling
at open (:mod:`ckptcore.pending`) leaves a live run's pending records to that run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from filelock import FileLock, Timeout

from ckptcore.layout import LOCK_NAME, STATE_DIR

__all__ = ["RunClaim", "root_lock", "run_alive"]

_LOCKS: dict[str, FileLock] = {}
_GUARD = threading.Lock()


def _path(root: str, relpath: str) -> str:
    return os.path.abspath(os.path.join(root or ".", *relpath.split("/")))


def _lock(path: str) -> FileLock:
    # One FileLock per path in a process: two instances would each take the OS lock and block
    # a thread that already holds it through the other.
    with _GUARD:
        if path not in _LOCKS:
            _LOCKS[path] = FileLock(path, preserve_lock_file=True)
        return _LOCKS[path]


@contextlib.contextmanager
def root_lock(root: str) -> Iterator[None]:
    """Hold the manifest lock of the local ``root`` (made with its state directory if needed)."""
    path = _path(root, LOCK_NAME)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = _lock(path)
        lock.acquire()
    except OSError:
        # A root that cannot be written (read-only, or below a file): nothing to serialise;
        # what the caller then tries to write fails and is reported there.
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _run_path(root: str, run_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return _path(root, f"{STATE_DIR}/run-{safe}.lock")


class RunClaim:
    """Hold the liveness lock of one run on a local root until :meth:`release`."""

    def __init__(self, root: str, run_id: str) -> None:
        self._path = _run_path(root, run_id)
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        self._lock = FileLock(self._path, thread_local=False)
        self._lock.acquire(timeout=0)

    def release(self) -> None:
        """Release the claim and remove its file."""
        if self._lock.is_locked:
            self._lock.release()
            with contextlib.suppress(OSError):
                os.remove(self._path)


def run_alive(root: str, run_id: str) -> bool:
    """Whether a process (this one included) holds the liveness lock of ``run_id``."""
    path = _run_path(root, run_id)
    if not os.path.exists(path):
        return False
    probe = FileLock(path, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    probe.release()  # a killed run's claim: its file stays (harmless; a resume reuses it)
    return False
