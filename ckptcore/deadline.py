"""Deadlines on storage: a store that never answers costs training a bounded time per save.

``storage_timeout`` (a :class:`~ckptcore.CheckpointConfig` field) is how long the training
thread waits on storage for one save:

* synchronous saves run their commit on a worker thread that the hook waits on for at most
  ``storage_timeout`` seconds (:class:`SaveDeadline`); a commit still running then is reported,
  goes on in the background (it is recorded if it completes) and every later save is skipped,
  at once, until it has finished, so stuck threads never pile up;
* non-blocking saves wait for a writer slot only until the save holding it has run for
  ``storage_timeout`` seconds (:class:`~ckptcore.writer.BackgroundWriter`); a save that gets
  no slot is skipped and reported, and no snapshot is taken for it;
* ``close`` and ``wait`` give up on a save that has run past its deadline and report it and
  every save queued behind it.

``"auto"`` (the default) means :data:`AUTO_REMOTE_SECONDS` when any backend is remote (an
object store, W&B) and :data:`AUTO_LOCAL_SECONDS` when all are local disks; ``None`` waits
forever. Storage clients get timeouts of their own as well (see
:mod:`ckptcore.backends.fsspec`), so a call to a store that does not answer fails; this deadline
is the bound on what training waits, whatever the client does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, TypeVar

from ckptcore.errors import CheckpointSaveError, StorageTimeoutError
from ckptcore.manifest import MANIFEST_NAME

__all__ = [
    "AUTO_LOCAL_SECONDS", "AUTO_REMOTE_SECONDS", "BoundedLock", "SaveDeadline",
    "resolve_timeout", "skipped",
]

log = logging.getLogger("ckptcore")
T = TypeVar("T")

#: ``storage_timeout="auto"`` when every backend is a local disk: a large model written to a
#: slow disk may take minutes, a disk that hangs (a hard NFS mount) is rare.
AUTO_LOCAL_SECONDS = 600.0
#: ``storage_timeout="auto"`` when a backend is remote: the storage clients' own timeouts fail
#: a call to a store that does not answer well within it (several retries included).
AUTO_REMOTE_SECONDS = 120.0


def resolve_timeout(value: float | str | None, backends: Iterable[Any]) -> float | None:
    """The deadline in seconds for ``storage_timeout=value`` with these backends (None: none)."""
    if value != "auto":
        return value  # type: ignore[return-value]
    local = all(str(getattr(b, "name", "")).split(":", 1)[0] == "local" for b in backends)
    return AUTO_LOCAL_SECONDS if local else AUTO_REMOTE_SECONDS


def skipped(relpath: str, reason: str) -> CheckpointSaveError:
    """The error of a save that did not run (or was given up on) because storage hangs."""
    error = CheckpointSaveError(relpath, reason)
    error.__cause__ = StorageTimeoutError(reason)
    return error


class BoundedLock:
    """A lock that the training thread acquires for at most a deadline; other threads wait.

    Args:
        lock: The lock (the committer's, which a hung storage call may hold).
        timeout: Returns the seconds the training thread may wait now (None: forever).
        thread: The training thread (default: the one creating this lock).
        limit: The configured ``storage_timeout``, named in the error (default: the wait).
    """

    def __init__(self, lock: Any, timeout: Callable[[], float | None],
                 thread: threading.Thread | None = None, limit: float | None = None) -> None:
        self._lock = lock
        self._timeout = timeout
        self._thread = thread or threading.current_thread()
        self._limit = limit

    def __enter__(self) -> "BoundedLock":
        timeout = self._timeout() if threading.current_thread() is self._thread else None
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise StorageTimeoutError(
                f"storage did not answer within storage_timeout={self._limit or timeout:g}s "
                "(an earlier save still holds the manifest)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class _Stuck:
    """A commit that ran past its deadline and goes on in the background."""

    def __init__(self, relpath: str, thread: threading.Thread, started: float) -> None:
        self.relpath, self.thread, self.started = relpath, thread, started


class SaveDeadline:
    """Runs synchronous commits on a worker thread and waits for each at most ``seconds``.

    Args:
        seconds: The deadline (None: run on the calling thread, no deadline).
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._stuck: _Stuck | None = None
        self._late: list[CheckpointSaveError] = []  # failures of commits that finished late
        self._abandoned = False  # the last run() gave up on a commit that is still running
        self._lock = threading.Lock()

    @property
    def stuck(self) -> str | None:
        """The checkpoint whose commit is still running past its deadline, if any."""
        with self._lock:
            if self._stuck is not None and not self._stuck.thread.is_alive():
                self._stuck = None
            return None if self._stuck is None else self._stuck.relpath

    def undo(self, bests: Any, previous: dict[str, Any]) -> None:
        """Undo a best whose save reached no storage; later, off the training thread, if a
        hung save holds the lock now.

        The save :meth:`run` has just given up on is left alone: its commit goes on in the
        background and settles its best if it lands, or undoes it if it fails. Undone now, a
        best that lands late would be overwritten by a worse one.
        """
        with self._lock:
            abandoned, self._abandoned = self._abandoned, False
        if abandoned:
            return
        try:
            bests.undo(previous)
        except StorageTimeoutError:
            threading.Thread(target=bests.undo, args=(previous,), name="ckptcore-undo-best", daemon=True).start()

    def lock_timeout(self, writer: Any = None) -> float | None:
        """How long to wait for a lock a commit may hold: not at all while one is stuck.

        Args:
            writer: The background writer, if any (its stuck save counts too).
        """
        if self.stuck is not None or (writer is not None and writer.stuck):
            return 0.0
        return self.seconds

    def run(self, relpath: str, commit: Callable[[Callable[[Callable[[str], None]], Callable[[str], None]]], T],
            report: Callable[[CheckpointSaveError], None]) -> T | None:
        """Run ``commit(guard)`` within the deadline; ``guard(write)`` wraps the write function.

        A write function still running at the deadline reads a state that training then
        changes, so its output is never committed; a commit past the write (an upload, a
        manifest write) completes in the background if storage answers.

        Args:
            relpath: The checkpoint being saved.
            commit: Does the save; called with ``guard``.
            report: Called with the failure of an earlier commit that finished late.

        Raises:
            CheckpointSaveError: The commit failed, ran past the deadline, or was skipped
                because an earlier one is still running.
        """
        with self._lock:
            self._abandoned = False
        for failure in self._take_late():
            report(failure)
        if self.seconds is None:
            return commit(lambda write: write)
        if (running := self.stuck) is not None:
            age = time.monotonic() - self._stuck.started if self._stuck else 0.0
            raise skipped(relpath, f"skipped: the save of {running!r} has not finished after {age:.0f}s "
                                   f"(storage_timeout={self.seconds:g}s); saves resume once storage answers")
        return self._run_bounded(relpath, commit)

    def _run_bounded(self, relpath: str, commit: Callable[..., T]) -> T:
        box: dict[str, Any] = {}
        abandoned = threading.Event()

        def guard(write: Callable[[str], Any]) -> Callable[[str], Any]:
            def guarded(path: str) -> Any:
                written = write(path)  # a Digest when it hashed while writing: handed on
                if abandoned.is_set():
                    raise skipped(relpath, f"the write function ran past storage_timeout={self.seconds:g}s "
                                           "while training went on; its output is not committed")
                return written
            return guarded

        def work() -> None:
            try:
                box["result"] = commit(guard)
                if abandoned.is_set():
                    log.info("the save of %r finished after storage_timeout=%gs and is recorded", relpath,
                             self.seconds)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc
                if abandoned.is_set():
                    self._finished_late(relpath, exc)

        started = time.monotonic()
        thread = threading.Thread(target=work, name=f"ckptcore-save-{relpath}", daemon=True)
        thread.start()
        thread.join(self.seconds)
        if thread.is_alive():
            with self._lock:
                abandoned.set()
                self._abandoned = True
                self._stuck = _Stuck(relpath, thread, started)
            raise skipped(relpath, f"storage did not answer within storage_timeout={self.seconds:g}s; "
                                   "training goes on, later saves are skipped until this one finishes "
                                   "(it is recorded if it completes)")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _finished_late(self, relpath: str, exc: BaseException) -> None:
        if isinstance(exc, CheckpointSaveError):
            error = exc
        else:
            error = CheckpointSaveError(relpath, f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
        with self._lock:
            self._late.append(error)

    def _take_late(self) -> list[CheckpointSaveError]:
        with self._lock:
            late, self._late = self._late, []
        return late

    def finish(self, report: Callable[[CheckpointSaveError], None]) -> bool:
        """At close: wait for a stuck commit up to the deadline; report what did not finish.

        Returns:
            True when nothing is running any more (the final manifest may be written).
        """
        with self._lock:
            stuck = self._stuck
        if stuck is not None and self.seconds is not None:
            stuck.thread.join(max(0.0, stuck.started + 2 * self.seconds - time.monotonic()))
        for failure in self._take_late():
            report(failure)
        if (running := self.stuck) is not None:
            report(skipped(running, f"still not finished at close (storage_timeout={self.seconds:g}s); "
                                    "it is recorded only if storage answers before the process ends"))
            return False
        return True

    def release(self, committer: Any, writer: Any, report: Callable[[CheckpointSaveError], None]) -> None:
        """At close: write the final manifest and release the backends, within the deadline.

        While a save is stuck past its deadline nothing more is asked of storage: that save
        keeps the backends and records itself should storage answer.

        Args:
            committer: The engine's committer.
            writer: The background writer, if any (already closed).
            report: Called with what could not be finished.
        """
        if not self.finish(report) or (writer is not None and writer.stuck):
            return

        def final(guard: Callable[..., Any]) -> None:
            if committer.manifest.entries:
                committer.write_manifest()
            committer.close()

        try:
            self.run(MANIFEST_NAME, final, report=report)
        except CheckpointSaveError as exc:
            report(exc)
