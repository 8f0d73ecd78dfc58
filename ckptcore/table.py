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


_MONITOR = 4  # the index of the monitor column


def _label_monitors(rows: list[list[str]], monitors: list[str]) -> str:
    """Replace ``monitor=value`` cells by ``m1=value``; return the caption naming them."""
    longest_first = sorted(monitors, key=len, reverse=True)
    for row in rows:
        found = next((m for m in longest_first if row[_MONITOR].startswith(m + "=")), None)
        if found is not None:
            row[_MONITOR] = f"m{monitors.index(found) + 1}" + row[_MONITOR][len(found):]
    return "monitors: " + ", ".join(f"m{n} {m}" for n, m in enumerate(monitors, 1))


def _shrink(headers: list[str], rows: list[list[str]], width: int, run: bool,
            monitors: list[str]) -> tuple[list[list[str]], int | None, list[str]]:
    """Fit ``width``: drop the box, then number the runs, then the monitors, then cut the names.

    Returns the rows, the width the table needs (None: it fits with its box; more than
    ``width`` when even the shortest names leave it too wide: the numbers are never cut) and
    the caption lines naming what was numbered."""
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    shown = [i for i in range(len(headers)) if run or i != 0]
    content = sum(natural[i] for i in shown)
    if content + 3 * len(shown) + 1 <= width:  # the boxed table fits
        return rows, None, []
    excess = content + 2 * (len(shown) - 1) - width  # without the box: two spaces between columns
    rows, captions = [list(row) for row in rows], []
    runs = list(dict.fromkeys(r[0] for r in rows))
    if excess > 0 and run:  # runs by number; the caption names them
        cut = natural[0] - max(len(headers[0]), len(str(len(runs))))
        natural[0] -= cut
        excess -= cut
        for row in rows:
            if len(row[0]) > natural[0]:
                row[0] = str(runs.index(row[0]) + 1)
        if cut > 0:
            captions.append("runs: " + ", ".join(f"{n} {r}" for n, r in enumerate(runs, 1)))
    if excess > 0 and len(monitors) > 1:
        captions.append(_label_monitors(rows, monitors))
        labelled = max([len(headers[_MONITOR])] + [len(r[_MONITOR]) for r in rows])
        excess -= natural[_MONITOR] - labelled
        natural[_MONITOR] = labelled
    name_width = max(_MIN_NAME, len(headers[1]), natural[1] - max(0, excess))
    for row in rows:
        row[1] = fit(row[1], name_width)
    natural[1] = max([len(headers[1])] + [len(r[1]) for r in rows])
    return rows, sum(natural[i] for i in shown) + 2 * (len(shown) - 1), captions


def checkpoint_table(manifest: Manifest, title: str | None = None, width: int | None = None) -> Table:
    """A rich table of the manifest's checkpoints: name, epoch, step, monitor, best, size, age.

    A root several runs wrote gets a ``run`` column first. Given a ``width`` the table does not
    fit, it loses its box, then the run ids and the monitor names are numbered (the caption
    names them) and the names are shortened (a name is cut in the middle, keeping its end) so
    that it fits; the numbers never are. When even that is too wide, the table is wider than
    ``width``: print it with ``crop=False``.

    Args:
        manifest: The manifest to show.
        title: An optional title (such as the root).
        width: The width to fit (a terminal's), or None for the natural width.
    """
    monitors = sorted({printable(e.monitor) for e in manifest.entries if e.monitor})
    run = len({e.run_id for e in manifest.entries}) > 1
    headers = ["run", "name", "epoch", "step", monitors[0] if len(monitors) == 1 else "monitor",
               "best", "size", "age"]
    rows, needed, captions = _rows(manifest, monitors), None, []
    if width is not None:
        rows, needed, captions = _shrink(headers, rows, width, run, monitors)
    # Every cell is Text, never markup: a name such as "m[bold]1.keras" is shown as it is.
    heading = None if title is None else Text(printable(title))
    table = Table(title=heading, title_justify="left")
    if needed is not None:
        # Past the width only when nothing more can be cut: print it uncropped (crop=False).
        table = Table(title=heading, title_justify="left", box=None, pad_edge=False, header_style="bold",
                      caption=Text("\n".join(captions)) if captions else None, caption_justify="left",
                      width=needed if needed > width else None)
    for index, header in enumerate(headers):
        if index == 0 and not run:
            continue
        justify = "left" if index < 2 else "center" if header == "best" else "right"
        table.add_column(Text(header), justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in (row if run else row[1:])))
    return table
