"""What the engine says: printed at ``verbose=1``, always logged through the ``ckptcore`` logger.

The decisions keep Keras's wording (``Epoch 3: val_loss improved from 0.41200 to 0.39800,
saving model to ...``; the generic engine says "checkpoint" where the Keras callbacks say
"model"). After them, ckptcore says what happened:

- when a save is committed: ``Epoch 3: finished saving model to ckpt/m-03.keras (1.2 MB in
  0.35 s, 3.4 MB/s)``, also for non-blocking saves, which finish in the background;
- when retention deletes a checkpoint: ``Epoch 5: deleted ckpt/m-01.keras (retention: keep_last=3)``;
- while a save or upload runs longer than :attr:`Reporter.slow_after` seconds, every
  :attr:`Reporter.slow_every` seconds: ``Epoch 3: still saving model to s3://b/m-03.keras (10 s so far)``.

Commits and deletions are logged at INFO, decisions at DEBUG, on the ``ckptcore`` logger.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Iterator

from ckptcore.errors import ConfigError

__all__ = ["Reporter", "human_size"]

log = logging.getLogger("ckptcore")

_UNITS = ("B", "kB", "MB", "GB", "TB")


class _Watcher:
    """One daemon thread for the whole process that says which saves are still running.

    A thread per save would outlive a save stuck in storage; this one is started once and
    idles on a condition while no save is slow.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[int, list[Any]] = {}  # key -> [next time, tick, every]
        self._keys = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ckptcore-progress", daemon=True)
                self._thread.start()

    def add(self, first: float, every: float, tick: Callable[[], None]) -> int:
        self.start()
        with self._cond:
            self._keys += 1
            self._jobs[self._keys] = [time.monotonic() + first, tick, every]
            self._cond.notify()
            return self._keys

    def remove(self, key: int) -> None:
        with self._cond:
            self._jobs.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for job in self._jobs.values():
                    if job[0] <= now:
                        job[0] = now + job[2]
                        job[1]()  # under the lock: a save that has ended is never reported
                upcoming = min((job[0] for job in self._jobs.values()), default=None)
                self._cond.wait(None if upcoming is None else max(0.0, upcoming - time.monotonic()))


_WATCHER = _Watcher()


def human_size(size: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (powers of 1000, as file managers show sizes)."""
    for unit in _UNITS:
        if abs(size) < 1000 or unit == _UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class Reporter:
    """The engine's messages.

    Args:
        printer: Where messages go at ``verbose >= 1``.
        verbose: 0 (log only) or >= 1 (also print).
        noun: What a checkpoint is called: ``"checkpoint"``, or ``"model"`` in the Keras callbacks.

    Raises:
        ConfigError: ``printer`` is not callable or ``noun`` is not a word.
    """

    #: Seconds a save may run before progress is shown.
    slow_after: float = 5.0
    #: Seconds between two progress lines.
    slow_every: float = 10.0

    def __init__(self, printer: Callable[[str], None], verbose: int, noun: str = "checkpoint") -> None:
        if not callable(printer):
            raise ConfigError(f"printer: got {printer!r}; allowed: a callable taking one message string")
        if not isinstance(noun, str) or not noun.strip():
            raise ConfigError(f"noun: got {noun!r}; allowed: a word such as 'checkpoint' or 'model'")
        self.printer = printer
        self.verbose = verbose
        self.noun = noun
        _WATCHER.start()  # once per process, before training starts

    def say(self, message: str, level: int = logging.INFO) -> None:
        """Log ``message`` at ``level``; print it too at ``verbose >= 1``."""
        log.log(level, "%s", message.strip())
        if self.verbose > 0:
            self.printer(message)

    # -- decisions (Keras's wording) -----------------------------------------------------------
    @staticmethod
    def best_text(best: float | None, mode: str) -> str:
        """The best so far as Keras prints it; ``inf``/``-inf`` before any."""
        if best is None:
            return "inf" if mode == "min" else "-inf"
        return f"{best:.5f}"

    def not_improved(self, epoch: int, monitor: str, best: str) -> None:
        """``save_best_only``: the value at 0-based ``epoch`` did not beat the best."""
        self.say(f"\nEpoch {epoch + 1}: {monitor} did not improve from {best}", logging.DEBUG)

    def saving(self, epoch: int, location: str, improved: tuple[str, str, float] | None = None,
               reason: str = "") -> None:
        """A save at 0-based ``epoch`` starts; ``improved`` is ``(monitor, previous best text,
        value)`` for a new best, ``reason`` a prefix such as ``"stopping on a signal, "``."""
        if improved is not None:
            monitor, best, value = improved
            text = f"{monitor} improved from {best} to {value:.5f}, saving {self.noun} to {location}"
        else:
            text = f"{reason}saving {self.noun} to {location}"
        self.say(f"\nEpoch {epoch + 1}: {text}", logging.DEBUG)

    # -- outcomes ------------------------------------------------------------------------------
    def committed(self, epoch: int, location: str, size: int | None, seconds: float) -> None:
        """A save of 1-based ``epoch`` is committed: where, how large, how long it took."""
        stats = f"{seconds:.2f} s"
        if size is not None:
            rate = human_size(size / seconds) + "/s" if seconds > 0 else "instant"
            stats = f"{human_size(size)} in {stats}, {rate}"
        self.say(f"\nEpoch {epoch}: finished saving {self.noun} to {location} ({stats})")

    def deleted(self, epoch: int, location: str, policy: Any) -> None:
        """Retention deleted a checkpoint during 1-based ``epoch``."""
        rules = ", ".join(f"{name}={getattr(policy, name)}" for name in ("keep_last", "keep_best", "keep_every_n_epochs")
                          if getattr(policy, name, None) is not None)
        self.say(f"\nEpoch {epoch}: deleted {location} (retention: {rules or 'pruned'})")

    @contextlib.contextmanager
    def progress(self, epoch: int, location: str, size: Callable[[], int | None] = lambda: None) -> Iterator[None]:
        """Time the save of ``location`` (1-based ``epoch``) that the body runs.

        While it runs past :attr:`slow_after` seconds, say every :attr:`slow_every` seconds
        that it is still going; when it returns, say it is committed (:meth:`committed`, with
        ``size()`` bytes).
        """
        start = time.monotonic()

        def tick() -> None:
            self.say(f"\nEpoch {epoch}: still saving {self.noun} to {location} "
                     f"({time.monotonic() - start:.0f} s so far)")

        key = _WATCHER.add(self.slow_after, self.slow_every, tick)
        try:
            yield
        finally:
            _WATCHER.remove(key)
        self.committed(epoch, location, size(), time.monotonic() - start)
