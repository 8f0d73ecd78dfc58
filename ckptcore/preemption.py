"""Saving a final checkpoint when the process is told to stop (``SIGTERM``).

Schedulers and spot/preemptible machines send ``SIGTERM`` and wait a grace period before they
kill. :class:`PreemptionGuard` turns that signal into one call of a callback (the engine's final
save), then lets the handler that was there before act: a default handler terminates the
process as ``SIGTERM`` would have, a Python handler is called, an ignored signal stays ignored.

The handler can only be installed from the main thread (a Python rule); elsewhere the guard
logs a warning and does nothing. A signal that arrives while a save runs on the main thread is
held until that save is done, so saves never interleave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Callable, Iterator

__all__ = ["PreemptionGuard", "final_save", "preempted_name"]

log = logging.getLogger("ckptcore")

#: ``callback(exiting)``: ``exiting`` is True when the process will terminate right after.
Callback = Callable[[bool], None]


def preempted_name(relpath: str) -> str:
    """A sibling name for a final checkpoint that must not replace the best one.

    ``best.keras`` becomes ``best-preempted.keras``, ``a/m.weights.h5``
    ``a/m-preempted.weights.h5``: the suffix goes before the first dot of the file name, so
    the format read from the extension stays the same.
    """
    head, _, name = relpath.rpartition("/")
    stem, dot, ext = name[1:].partition(".")
    stem = name[0] + stem  # a leading dot belongs to the stem
    renamed = f"{stem}-preempted{dot}{ext}"
    return f"{head}/{renamed}" if head else renamed


class PreemptionGuard:
    """Calls ``callback`` once when one of ``signals`` arrives, then chains the old handler.

    Args:
        callback: Called on the main thread as ``callback(exiting)``.
        signals: The signals to handle (default: ``SIGTERM``).
    """

    def __init__(self, callback: Callback, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self._callback = callback
        self._signals = signals
        self._previous: dict[int, Any] = {}
        self._active = False
        self._fired = False
        self._depth = 0
        self._held: tuple[int, FrameType | None] | None = None

    @property
    def installed(self) -> bool:
        """Whether the handler is in place."""
        return self._active

    def install(self) -> bool:
        """Install the handler; returns False (with a warning logged) off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            log.warning("save_on_preemption: signal handlers can only be installed from the main "
                        "thread; this checkpointer was built on %s, so SIGTERM is not handled",
                        threading.current_thread().name)
            return False
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._active = True
        return True

    def uninstall(self) -> None:
        """Put the previous handlers back (where ours is still the one installed)."""
        if not self._active:
            return
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return  # our handler stays and only chains; it cannot be removed from here
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a signal that arrives inside the block until the block is done.

        The held signal is then sent again, so its handler runs on the main thread even when
        the block ran elsewhere.
        """
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._held is not None and self._depth == 0:
                signum, _frame = self._held
                self._held = None
                os.kill(os.getpid(), signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._active and not self._fired:
            if self._depth:
                self._held = (signum, frame)
                return
            self._fired = True
            previous = self._previous.get(signum)
            exiting = previous in (signal.SIG_DFL, None)
            log.warning("signal %d received: saving a final checkpoint", signum)
            try:
                self._callback(exiting)
            except Exception as exc:  # noqa: BLE001 - the process must still stop
                log.error("the final checkpoint on signal %d failed: %s", signum, exc)
        self._chain(signum, frame)

    def _chain(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # The default action: terminate as the signal would have, with its exit status.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def final_save(ck: Any, exiting: bool) -> None:
    """Save ``ck``'s current state as a final checkpoint, then finish every pending save.

    Named with the last logs seen, never over a best checkpoint or another run's; skipped if
    nothing ran since this run's latest checkpoint. With ``exiting``, ``ck`` is closed after.

    Args:
        ck: The :class:`ckptcore.Checkpointer` a signal stopped.
        exiting: The process exits after this (the checkpointer is closed).
    """
    from ckptcore.errors import CheckpointSaveError

    if ck._closed:
        return
    ck.wait()
    last_epoch, batch, logs = ck._last or (ck.epoch, None, {})
    epoch, batch = ck.epoch, batch if last_epoch == ck.epoch else None
    latest = ck.manifest.latest(ck.run_id)
    if latest is None or (latest.epoch, latest.global_step) != (epoch + 1, ck.schedule.batches_run):
        try:
            relpath = ck.template.render(epoch, batch, logs, step=ck.schedule.batches_run)
        except ValueError as exc:
            log.warning("save_on_preemption: no final checkpoint, it cannot be named yet: %s", exc)
            return ck.close() if exiting else None
        there = ck.manifest.get(relpath)
        if there is not None and (there.is_best or there.run_id != ck.run_id):
            relpath = preempted_name(relpath)
        entry = ck._entry(relpath, epoch, batch, logs, partial=not ck._epoch_ended)
        ck.reporter.saving(epoch, ck.template.join(relpath), reason="stopping on a signal, ")
        try:
            ck._dispatch(relpath, entry, ck.tracker.state_dict())
        except CheckpointSaveError as exc:
            ck._save_failed(exc)
    ck.close() if exiting else ck.wait()
