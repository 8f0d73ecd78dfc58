"""The background worker for non-blocking saves.

At most ``max_pending`` saves are in flight; the next ``submit`` waits (back-pressure) rather
than holding more snapshots in memory. A failure is kept and re-raised on the next ``submit``,
``check``, ``wait`` or ``close``, naming the checkpoint. Pending saves are finished at ``close``
and at interpreter exit; none is dropped silently.

With a ``timeout`` (``storage_timeout``, see :mod:`ckptcore.deadline`) no caller waits on a
save that has run longer than that: ``submit`` skips the new save (no snapshot is taken) and
raises, ``wait`` and ``close`` give up and report the stuck save and those queued behind it.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from typing import Callable

from ckptcore.deadline import skipped
from ckptcore.errors import CheckpointSaveError, ConfigError

__all__ = ["BackgroundWriter"]

log = logging.getLogger("ckptcore")

_Job = tuple[str, Callable[[], None]]
_STOP = object()


class BackgroundWriter:
    """Runs save jobs on one background thread, in submission order.

    Args:
        max_pending: Saves allowed in flight (queued or running) before ``submit`` blocks.
        timeout: Seconds a save may run before callers stop waiting on it (None: forever).
    """

    def __init__(self, max_pending: int = 1, timeout: float | None = None) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError(f"max_pending: got {max_pending!r}; allowed: an int >= 1")
        self.max_pending = max_pending
        self.timeout = timeout
        self._running: tuple[str, float] | None = None  # the save running now, since when
        self._slots = threading.BoundedSemaphore(max_pending)
        self._queue: queue.Queue[object] = queue.Queue()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ckptcore-writer", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        self._atexit = lambda: (w := ref()) is not None and w.close(raise_errors=False)
        atexit.register(self._atexit)

    @property
    def pending(self) -> int:
        """Saves queued or running now."""
        with self._lock:
            return self._pending

    def submit(self, label: str, job: Callable[[], None] | None = None, *,
               prepare: Callable[[], Callable[[], None]] | None = None,
               report: Callable[[CheckpointSaveError], None] | None = None) -> None:
        """Queue ``job`` (which saves checkpoint ``label``); waits while the writer is full.

        Args:
            label: The checkpoint the job saves (named in errors).
            job: The work to run on the background thread.
            prepare: Instead of ``job``: called on this thread once a slot is free, returns
                the job. A host snapshot taken here is then never held beside more than
                ``max_pending - 1`` others. If it raises, the slot is freed and nothing queued.
            report: Called with a previous save's failure instead of raising it, so that
                this save still goes ahead (unless ``report`` raises).

        Raises:
            CheckpointSaveError: A previous save failed (without ``report``).
            RuntimeError: The writer is closed.
        """
        if (job is None) == (prepare is None):
            raise TypeError("submit: pass exactly one of job and prepare")
        self._earlier_failures(report)
        if self._closed:
            raise RuntimeError(f"cannot save {label!r}: the background writer is closed")
        if not self._slots.acquire(timeout=self._patience()):
            raise skipped(label, self._stuck_reason("skipped, no snapshot taken"))
        try:
            self._earlier_failures(report)  # a save that failed while this one waited for its slot
        except BaseException:
            self._slots.release()
            raise
        if prepare is not None:
            try:
                job = prepare()
            except BaseException:
                self._slots.release()
                raise
        with self._lock:
            self._pending += 1
        self._queue.put((label, job))

    def _earlier_failures(self, report: Callable[[CheckpointSaveError], None] | None) -> None:
        if report is None:
            return self.check()
        try:
            self.check()
        except CheckpointSaveError as exc:
            report(exc)

    def check(self) -> None:
        """Re-raise the first failure of a background save, if any."""
        with self._lock:
            if not self._errors:
                return
            first, rest = self._errors[0], self._errors[1:]
            self._errors.clear()
        for other in rest:
            log.error("another background save failed as well: %s", other)
        raise first

    @property
    def stuck(self) -> str | None:
        """The checkpoint whose save has run past the deadline, if any."""
        with self._lock:
            if self._running is None or self._patience_locked() != 0.0:
                return None
            return self._running[0]

    def _patience(self) -> float | None:
        """Seconds until the running save passes its deadline (None: no deadline)."""
        with self._lock:
            return self._patience_locked()

    def _stuck_reason(self, outcome: str) -> str:
        with self._lock:
            label, started = self._running or ("?", time.monotonic())
        return (f"{outcome}: the save of {label!r} has been running for {time.monotonic() - started:.1f}s, "
                f"past storage_timeout={self.timeout:g}s; the writer goes on once storage answers")

    def _wait_idle(self) -> bool:
        """Wait until nothing is pending, or the running save is past its deadline (False)."""
        with self._idle:
            while self._pending:
                patience = self._patience_locked()
                if patience == 0.0:
                    return False
                self._idle.wait(patience)
        return True

    def _patience_locked(self) -> float | None:
        if self.timeout is None:
            return None
        started = time.monotonic() if self._running is None else self._running[1]
        return max(0.0, started + self.timeout - time.monotonic())

    def wait(self) -> None:
        """Block until every queued save has finished, then re-raise a failure, if any.

        Raises:
            CheckpointSaveError: A save failed, or one is still running past the deadline.
        """
        if not self._wait_idle():
            self.check()
            raise skipped(self._running_label(), self._stuck_reason("not finished yet"))
        self.check()

    def _running_label(self) -> str:
        with self._lock:
            return self._running[0] if self._running else "?"

    def close(self, raise_errors: bool = True) -> None:
        """Finish every pending save and stop the thread.

        Args:
            raise_errors: Re-raise a failure (True) or only log it (False, used at exit).
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            if self._wait_idle():
                self._thread.join()
            else:
                self._abandon()
            atexit.unregister(self._atexit)
        if raise_errors:
            self.check()
        else:
            with self._lock:
                errors, self._errors = self._errors, []
            for exc in errors:
                log.error("a background checkpoint save failed: %s", exc)

    def _abandon(self) -> None:
        """At close, with a save stuck past its deadline: report it and drop the queued ones."""
        dropped = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                dropped.append(item[0])  # type: ignore[index]
        self._queue.put(_STOP)  # the thread stops after the stuck save, should it ever return
        reason = self._stuck_reason("not finished at close")
        if dropped:
            reason += "; not saved either, queued behind it and dropped: " + ", ".join(map(repr, dropped))
        error = skipped(self._running_label(), reason)
        with self._lock:
            self._pending -= len(dropped)
            self._errors.append(error)
        for _ in dropped:
            self._slots.release()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            label, job = item  # type: ignore[misc]
            with self._lock:
                self._running = (label, time.monotonic())
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - every failure is reported
                if not isinstance(exc, CheckpointSaveError):
                    wrapped = CheckpointSaveError(label, f"{type(exc).__name__}: {exc}")
                    wrapped.__cause__ = exc
                    exc = wrapped
                with self._lock:
                    self._errors.append(exc)
            finally:
                with self._lock:
                    self._running = None
                    self._pending -= 1
                    self._idle.notify_all()
                self._slots.release()
