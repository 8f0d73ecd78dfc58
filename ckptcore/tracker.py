"""Tracking the best value of a monitored metric."""

from __future__ import annotations

import math
from typing import Any

from ckptcore.errors import ConfigError
from ckptcore.modes import Direction
from ckptcore.scalars import to_scalar

__all__ = ["BestTracker", "PendingBests"]


class BestTracker:
    """Remembers the best value seen so far and decides whether a new one improves on it.

    NaN and infinite values are never an improvement. A value improves when it beats the best by
    more than ``min_delta`` in the tracker's direction. ``initial_value_threshold`` seeds the best,
    so nothing counts as an improvement until a value beats it.

    Args:
        mode: ``"min"`` or ``"max"`` (already resolved, see :func:`ckptcore.resolve_mode`).
        min_delta: The smallest change that counts as an improvement (non-negative).
        initial_value_threshold: Optional starting best value.
        monitor: The metric's name, stored with the state so that a restored state is only
            ever one of the same metric.
    """

    def __init__(
        self,
        mode: Direction,
        min_delta: float = 0.0,
        initial_value_threshold: float | None = None,
        monitor: str | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode: got {mode!r}; allowed: 'min', 'max'")
        if not (isinstance(min_delta, (int, float)) and not isinstance(min_delta, bool)) or not (
            math.isfinite(min_delta) and min_delta >= 0
        ):
            raise ConfigError(f"min_delta: got {min_delta!r}; allowed: a finite number >= 0")
        self.mode: Direction = mode
        self.monitor = monitor
        self.min_delta = float(abs(min_delta))
        self.best: float | None = None
        if initial_value_threshold is not None:
            threshold = to_scalar("initial_value_threshold", initial_value_threshold)
            if math.isnan(threshold):
                raise ConfigError("initial_value_threshold: got nan; allowed: a number or None")
            self.best = threshold

    def is_improvement(self, value: Any) -> bool:
        """Return whether ``value`` would become the new best. Never changes state.

        Raises:
            MonitorError: If ``value`` is not a real scalar.
        """
        current = to_scalar("monitor", value)
        if not math.isfinite(current):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def update(self, value: Any) -> bool:
        """Record ``value``; return whether it was an improvement (and is now the best)."""
        if not self.is_improvement(value):
            return False
        self.best = to_scalar("monitor", value)
        return True

    def state_dict(self) -> dict[str, Any]:
        """Return the state that lets a restarted run keep the same best."""
        state: dict[str, Any] = {"mode": self.mode, "min_delta": self.min_delta, "best": self.best}
        if self.monitor is not None:
            state["monitor"] = self.monitor
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            ConfigError: The stored state tracked another metric or direction (its best means
                nothing for this one).
            MonitorError: The stored best is not a number.
        """
        monitor = state.get("monitor")
        if monitor is not None and self.monitor is not None and monitor != self.monitor:
            raise ConfigError(
                f"monitor: the stored tracker monitored {monitor!r} but this run monitors "
                f"{self.monitor!r}; pass monitor={monitor!r} to resume, or start a new root"
            )
        mode = state.get("mode", self.mode)
        if mode != self.mode:
            raise ConfigError(
                f"mode: the stored tracker used {mode!r} but this run uses {self.mode!r}; "
                "pass the same mode to resume"
            )
        best = state.get("best")
        self.best = None if best is None else to_scalar("stored best", best)

    def __repr__(self) -> str:
        return f"BestTracker(mode={self.mode!r}, min_delta={self.min_delta}, best={self.best})"


class PendingBests:
    """Bests recorded before their checkpoint reached storage, so a failed save can be undone.

    Each improvement keeps the tracker state from before it. When the save of that best fails
    without reaching any storage, the tracker falls back to that state; when a later best is
    still in flight, that later one inherits the earlier fallback instead.

    Args:
        tracker: The tracker to update and roll back.
        lock: Held for every change (the writer thread rolls back while training goes on).
    """

    def __init__(self, tracker: BestTracker, lock: Any) -> None:
        self.tracker = tracker
        self.lock = lock
        self._chain: list[dict[str, Any]] = []

    def record(self, value: Any, improved: bool) -> dict[str, Any]:
        """Update the tracker when ``improved``; return the state before, the save's token."""
        with self.lock:
            previous = self.tracker.state_dict()
            if improved:
                self.tracker.update(value)
                self._chain.append(previous)
            return previous

    def settle(self, previous: dict[str, Any]) -> None:
        """The save holding ``previous`` reached storage: its best stays."""
        with self.lock:
            self._chain[:] = [p for p in self._chain if p is not previous]

    def undo(self, previous: dict[str, Any]) -> None:
        """The save holding ``previous`` reached no storage: undo its best."""
        with self.lock:
            index = next((i for i, p in enumerate(self._chain) if p is previous), None)
            if index is None:
                return  # already undone, or never recorded as a best
            del self._chain[index]
            if index < len(self._chain):
                # A later best is still in flight; should it fail too, it falls back past this one.
                self._chain[index].clear()
                self._chain[index].update(previous)
            else:
                self.tracker.load_state_dict(previous)
