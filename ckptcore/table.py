"""Human-readable views of a manifest: sizes, ages and the table of checkpoints."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from rich.table import Table

from ckptcore.manifest import Manifest

__all__ = ["age_seconds", "checkpoint_table", "human_age", "human_size"]


def human_size(size: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - unreachable


def age_seconds(created_at: str, now: datetime | None = None) -> float | None:
    """Seconds since an ISO-8601 time (naive times are UTC), or None if it does not parse."""
    try:
        created = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - created).total_seconds()


def human_age(created_at: str, now: datetime | None = None) -> str:
    """How long ago an ISO-8601 time was: ``"42s"``, ``"5m"``, ``"3h"``, ``"2d"``."""
    seconds = age_seconds(created_at, now)
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit}"
    return f"{int(seconds)}s"


def _value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None else str(value)
    if value != 0 and not 1e-4 <= abs(value) < 1e6:
        return f"{value:.4e}"
    return f"{value:.5f}"


def checkpoint_table(manifest: Manifest, title: str | None = None) -> Table:
    """A rich table of the manifest's checkpoints: name, epoch, step, monitor, best, size, age.

    Args:
        manifest: The manifest to show.
        title: An optional title (such as the root).
    """
    monitors = sorted({e.monitor for e in manifest.entries if e.monitor})
    table = Table(title=title, title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    table.add_column(monitors[0] if len(monitors) == 1 else "monitor", justify="right")
    table.add_column("best", justify="center")
    table.add_column("size", justify="right")
    table.add_column("age", justify="right")
    for entry in manifest.entries:
        epoch = "-" if entry.epoch is None else str(entry.epoch)
        if entry.batch is not None:
            epoch += f" (batch {entry.batch})"
        value = _value(entry.monitor_value)
        if len(monitors) > 1 and entry.monitor:
            value = f"{entry.monitor}={value}"
        table.add_row(
            entry.path, epoch, str(entry.global_step), value, "*" if entry.is_best else "",
            human_size(entry.size), human_age(entry.created_at),
        )
    return table
