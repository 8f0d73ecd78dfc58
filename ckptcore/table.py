"""Human-readable views of a manifest: sizes, ages and the table of checkpoints."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from rich.text import Text

from ckptcore.manifest import Manifest, ManifestEntry

__all__ = ["age_seconds", "checkpoint_table", "entry_row", "fit", "human_age", "human_size", "printable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``a\\nb``, ``\\x1b``).

    Names come from a manifest, which may have been crafted: printed raw, a newline in one
    would forge a line of output and an escape sequence would drive the terminal.
    """
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


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


def entry_row(entry: ManifestEntry, location: str, now: datetime | None = None) -> dict[str, Any]:
    """A manifest entry as the CLI's JSON shows it: its fields, ``location`` and ``age_seconds``."""
    row = json.loads(Manifest(entries=[entry]).to_json())["entries"][0]
    row["location"] = location
    row["age_seconds"] = age_seconds(entry.created_at, now)
    return row


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, keeping its start and more of its end
    (``digi…8-0.964.keras``)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 3  # the end differs more (epoch, metric, extension)
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


_MIN_NAME = 8  # below this a name says nothing; the table grows past the width instead


def _rows(manifest: Manifest, monitors: list[str]) -> list[list[str]]:
    rows = []
    for entry in manifest.entries:
        epoch = "-" if entry.epoch is None else str(entry.epoch)
        if entry.batch is not None:
            epoch += f" (batch {entry.batch})"
        value = _value(entry.monitor_value)
        if len(monitors) > 1 and entry.monitor:
            value = f"{printable(entry.monitor)}={value}"
        rows.append([
            printable(entry.run_id or "-"), printable(entry.path), epoch, str(entry.global_step), value,
            "*" if entry.is_best else "", human_size(entry.size), human_age(entry.created_at),
        ])
    return rows


def _shrink(headers: list[str], rows: list[list[str]], width: int, run: bool) -> tuple[list[list[str]], bool]:
    """Fit ``width``: first drop the box, then number the runs, then cut the names.

    Returns the rows and whether the table goes without its box."""
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    shown = [i for i in range(len(headers)) if run or i != 0]
    content = sum(natural[i] for i in shown)
    if content + 3 * len(shown) + 1 <= width:  # the boxed table fits
        return rows, False
    excess = content + 2 * (len(shown) - 1) - width  # without the box: two spaces between columns
    runs = list(dict.fromkeys(r[0] for r in rows))
    if excess > 0 and run:  # runs by number; the caption names them
        cut = natural[0] - max(len(headers[0]), len(str(len(runs))))
        natural[0] -= cut
        excess -= cut
    name_width = max(_MIN_NAME, len(headers[1]), natural[1] - max(0, excess))
    out = []
    for row in rows:
        row = list(row)
        if len(row[0]) > natural[0]:
            row[0] = str(runs.index(row[0]) + 1)
        row[1] = fit(row[1], name_width)
        out.append(row)
    return out, True


def checkpoint_table(manifest: Manifest, title: str | None = None, width: int | None = None) -> Table:
    """A rich table of the manifest's checkpoints: name, epoch, step, monitor, best, size, age.

    A root several runs wrote gets a ``run`` column first. Given a ``width`` the table does not
    fit, it loses its box, then the run ids and the names are shortened (a name is cut in the
    middle, keeping its end) so that it fits; the numbers never are.

    Args:
        manifest: The manifest to show.
        title: An optional title (such as the root).
        width: The width to fit (a terminal's), or None for the natural width.
    """
    monitors = sorted({printable(e.monitor) for e in manifest.entries if e.monitor})
    run = len({e.run_id for e in manifest.entries}) > 1
    headers = ["run", "name", "epoch", "step", monitors[0] if len(monitors) == 1 else "monitor",
               "best", "size", "age"]
    rows, compact = _rows(manifest, monitors), False
    if width is not None:
        rows, compact = _shrink(headers, rows, width, run)
    # Every cell is Text, never markup: a name such as "m[bold]1.keras" is shown as it is.
    heading = None if title is None else Text(printable(title))
    table = Table(title=heading, title_justify="left")
    if compact:
        numbered = run and rows and rows[0][0] != (manifest.entries[0].run_id or "-")
        runs = list(dict.fromkeys(e.run_id or "-" for e in manifest.entries))
        caption = "runs: " + ", ".join(f"{n} {printable(r)}" for n, r in enumerate(runs, 1)) if numbered else None
        table = Table(title=heading, title_justify="left", box=None, pad_edge=False, header_style="bold",
                      caption=None if caption is None else Text(caption), caption_justify="left")
    for index, header in enumerate(headers):
        if index == 0 and not run:
            continue
        justify = "left" if index < 2 else "center" if header == "best" else "right"
        table.add_column(Text(header), justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in (row if run else row[1:])))
    return table
