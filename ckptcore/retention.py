"""Which checkpoints to keep: the last N, the best K, every N-th epoch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ckptcore.errors import ConfigError
from ckptcore.manifest import ManifestEntry
from ckptcore.modes import Direction

__all__ = ["RetentionPolicy"]


def _check_count(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: got {value!r}; allowed: an int >= 1 or None (keep all)")
    return value


class RetentionPolicy:
    """A pure policy: given the entries, say which to delete.

    With no limit set, everything is kept. With several, a checkpoint is kept when any rule
    keeps it. Only entries written by one of ``own_runs`` are candidates, and ``protected``
    paths (the checkpoint training resumed from) are never selected.

    Args:
        keep_last: Keep the N most recent checkpoints (alone, the best goes too once N newer exist).
        keep_best: Keep the K checkpoints with the best monitor values.
        keep_every_n_epochs: Also keep checkpoints whose epoch is a multiple of N.
    """

    def __init__(
        self,
        keep_last: int | None = None,
        keep_best: int | None = None,
        keep_every_n_epochs: int | None = None,
    ) -> None:
        self.keep_last = _check_count("keep_last", keep_last)
        self.keep_best = _check_count("keep_best", keep_best)
        self.keep_every_n_epochs = _check_count("keep_every_n_epochs", keep_every_n_epochs)

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.keep_last is not None or self.keep_best is not None

    def select_deletions(
        self,
        entries: Sequence[ManifestEntry],
        mode: Direction,
        own_runs: Iterable[str],
        protected: Iterable[str] = (),
    ) -> list[ManifestEntry]:
        """Return the entries to delete, oldest first.

        Args:
            entries: Manifest entries in commit order.
            mode: Direction of the monitor, for ``keep_best``.
            own_runs: Run ids whose checkpoints this engine may delete.
            protected: Relative paths never to delete.
        """
        if not self.active:
            return []
        owned = set(own_runs)
        candidates = [e for e in entries if e.run_id in owned]
        keep: set[str] = set(protected)
        if self.keep_last is not None:
            keep.update(e.path for e in candidates[-self.keep_last :])
        if self.keep_best is not None:
            # NaN and inf are never "best", just as in the tracker (and NaN would break sorting).
            scored = [
                e for e in candidates
                if e.monitor_value is not None and math.isfinite(e.monitor_value)
            ]
            scored.sort(key=lambda e: e.monitor_value, reverse=(mode == "max"))  # type: ignore[arg-type,return-value]
            keep.update(e.path for e in scored[: self.keep_best])
            # The current best is always kept, even if it has no score recorded here.
            keep.update(e.path for e in candidates if e.is_best)
        if self.keep_every_n_epochs is not None:
            keep.update(
                e.path
                for e in candidates
                if e.epoch is not None and e.batch is None and e.epoch % self.keep_every_n_epochs == 0
            )
        return [e for e in candidates if e.path not in keep]

    def __repr__(self) -> str:
        return (
            f"RetentionPolicy(keep_last={self.keep_last}, keep_best={self.keep_best}, "
            f"keep_every_n_epochs={self.keep_every_n_epochs})"
        )
