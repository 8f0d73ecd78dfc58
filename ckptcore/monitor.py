"""Reading the monitored value out of the logs, with one warning for each kind of trouble."""

from __future__ import annotations

from typing import Any, Mapping

from ckptcore.errors import MonitorError
from ckptcore.scalars import to_scalar
from ckptcore.warn import warn

__all__ = ["Monitor"]


class Monitor:
    """The monitored metric of one engine.

    Args:
        name: The logs key, such as ``"val_loss"``.
        required: Whether a save or retention depends on the value (``save_best_only``,
            ``keep_best``): then a value that is not a scalar is an error.
    """

    def __init__(self, name: str, required: bool) -> None:
        self.name = name
        self.required = required
        self._warned_missing = False
        self._warned_unscalar = False

    def read(self, logs: Mapping[str, Any]) -> float | None:
        """The monitored value as a float; None when the logs lack it (or hold None).

        When not ``required`` the monitor only annotates the checkpoint, so a value that is
        not a scalar is reported once and the checkpoint saved without it, as Keras saves.

        Raises:
            MonitorError: When ``required``, the value is not a real scalar.
        """
        raw = logs.get(self.name)
        if raw is None:
            return None
        try:
            return to_scalar(self.name, raw)
        except MonitorError as exc:
            if self.required:
                raise
            if not self._warned_unscalar:
                self._warned_unscalar = True
                warn(f"{exc}; saving without a monitored value")
            return None

    def warn_missing(self, logs: Mapping[str, Any]) -> None:
        """Say once that a save was skipped for want of the value, listing the keys present."""
        if self._warned_missing:
            return
        self._warned_missing = True
        keys = ", ".join(sorted(logs)) or "(none)"
        warn(
            f"Can save best model only with {self.name} available; skipping. "
            f"Keys present in the logs: {keys}"
        )
