"""When to save: every epoch, every N epochs, every N batches, or every T seconds.

Checks (``*_due``) never change state; ``advance`` and ``consume`` do, so a caller can ask twice.
Batches are counted as batches actually run: a hook that reports batch index ``b`` after a
multi-step execution (Keras's ``steps_per_execution``) advances the count by every step it ran,
and a save is due whenever the running total crosses a multiple of N. The schedule therefore
never drifts, whatever the execution size.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ckptcore.errors import ConfigError

__all__ = ["SaveSchedule", "validate_save_freq"]


def validate_save_freq(save_freq: Any) -> str | int:
    """Validate ``save_freq``: ``"epoch"`` or a positive int (batches).

    Raises:
        ConfigError: For anything else (0, negatives, floats, bools, other strings).
    """
    if save_freq == "epoch" and isinstance(save_freq, str):
        return "epoch"
    if isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0:
        return save_freq
    # Keras's own wording first: code and tests match on "Unrecognized save_freq".
    raise ConfigError(
        f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values "
        f"(got {save_freq!r} ({type(save_freq).__name__}); allowed: 'epoch' or a positive int, "
        "a number of batches)"
    )


class SaveSchedule:
    """Decides when a save is due.

    Args:
        save_freq: ``"epoch"`` or a positive int N (save every N batches run).
        every_n_epochs: With ``"epoch"``, save every N-th epoch (1 = every epoch).
        every_seconds: Also (or only) save when this many seconds have passed since the last
            save; checked at batch and epoch ends.
        clock: Monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        save_freq: str | int = "epoch",
        every_n_epochs: int = 1,
        every_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.save_freq = validate_save_freq(save_freq)
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs: got {every_n_epochs!r}; allowed: an int >= 1")
        if every_seconds is not None and (
            isinstance(every_seconds, bool)
            or not isinstance(every_seconds, (int, float))
            or not math.isfinite(every_seconds)
            or every_seconds <= 0
        ):
            raise ConfigError(f"every_seconds: got {every_seconds!r}; allowed: a number > 0 or None")
        self.every_n_epochs = every_n_epochs
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        self._clock = clock
        self.batches_run = 0  # across epochs
        self._consumed_batch_windows = 0
        self._epoch_last_batch = -1
        self._last_save_time = clock()

    # -- what the hooks need ------------------------------------------------------------------
    @property
    def uses_batches(self) -> bool:
        """Whether batch-end hooks are needed (int ``save_freq`` or a time schedule)."""
        return isinstance(self.save_freq, int) or self.every_seconds is not None

    def start_epoch(self) -> None:
        """Reset the per-epoch batch index (batch indices restart at 0 each epoch)."""
        self._epoch_last_batch = -1

    def advance(self, batch: int, steps: int | None = None) -> int:
        """Record that batches up to index ``batch`` of this epoch have run.

        Args:
            batch: The 0-based index of the last batch run.
            steps: Batches per epoch, when known. An index past the end (Keras reports the
                last, partial execution of an epoch that way) counts up to the epoch's end
                only; an index past a ``steps`` that is evidently too small (the batches go
                on) counts as run.

        Returns:
            The batch index counted (``batch``, or bounded by ``steps``).
        """
        if steps is not None and batch >= steps:
            batch = max(steps - 1, self._epoch_last_batch + 1)
        ran = batch - self._epoch_last_batch
        if ran <= 0:
            # The index went back: a new epoch began without ``start_epoch`` (a hand-written
            # loop that skips ``on_epoch_begin``), so batches 0..batch of it have run.
            ran = max(batch + 1, 1)
        self._epoch_last_batch = batch
        self.batches_run += ran
        return batch

    def batch_due(self) -> bool:
        """Whether a batch-count save is due (pure)."""
        if not isinstance(self.save_freq, int):
            return False
        return self.batches_run // self.save_freq > self._consumed_batch_windows

    def epoch_due(self, epoch: int) -> bool:
        """Whether an epoch-end save is due for 0-based ``epoch`` (pure)."""
        return self.save_freq == "epoch" and (epoch + 1) % self.every_n_epochs == 0

    def time_due(self) -> bool:
        """Whether the time-based save is due (pure)."""
        if self.every_seconds is None:
            return False
        return self._clock() - self._last_save_time >= self.every_seconds

    def consume(self) -> None:
        """Mark what is due as handled (whether or not a file was written)."""
        if isinstance(self.save_freq, int):
            self._consumed_batch_windows = self.batches_run // self.save_freq
        self._last_save_time = self._clock()

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the counters a restarted run needs."""
        return {
            "save_freq": self.save_freq,
            "batches_run": self.batches_run,
            "consumed_batch_windows": self._consumed_batch_windows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.batches_run = int(state.get("batches_run", 0))
        self._consumed_batch_windows = int(state.get("consumed_batch_windows", 0))
        if state.get("save_freq") != self.save_freq:
            # A new frequency starts a fresh window count from where the run is now.
            if isinstance(self.save_freq, int):
                self._consumed_batch_windows = self.batches_run // self.save_freq
        self._last_save_time = self._clock()

    def __repr__(self) -> str:
        return (
            f"SaveSchedule(save_freq={self.save_freq!r}, every_n_epochs={self.every_n_epochs}, "
            f"every_seconds={self.every_seconds}, batches_run={self.batches_run})"
        )
