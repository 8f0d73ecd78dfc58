"""A picture of a checkpoint root: the monitored metric over its checkpoints, best ones marked.

``ckptcore plot ROOT`` draws it into a PNG. matplotlib is optional (the ``plot`` extra) and
imported only here, when a plot is drawn; the figure is made without pyplot, so drawing changes
no global matplotlib state.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from ckptcore.errors import MissingDependencyError
from ckptcore.manifest import Manifest, ManifestEntry

__all__ = ["plot_checkpoints", "plotted_entries"]

_HINT = (
    "drawing a plot needs matplotlib, which is not installed; "
    'install it with: pip install "ckptcore[plot]"'
)


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(_HINT) from exc
    return Figure, FigureCanvasAgg


def plotted_entries(manifest: Manifest) -> list[ManifestEntry]:
    """The entries with a finite monitored value: the points a plot shows."""
    return [
        e for e in manifest.entries
        if e.monitor and e.monitor_value is not None and math.isfinite(e.monitor_value)
    ]


def _x(entry: ManifestEntry, by_step: bool) -> float:
    return float(entry.global_step) if by_step else float(entry.epoch or 0)


def _draw_monitor(ax: Any, entries: list[ManifestEntry], by_step: bool, kept: Collection[str] | None) -> None:
    runs = list(dict.fromkeys(e.run_id for e in entries))
    for index, run in enumerate(runs):
        own = sorted((e for e in entries if e.run_id == run), key=lambda e: _x(e, by_step))
        label = f"run {run}" if len(runs) > 1 else "checkpoints"
        color = f"C{index % 10}"
        ax.plot([_x(e, by_step) for e in own], [e.monitor_value for e in own], "-o", color=color,
                markersize=5, label=label, zorder=2)
    gone = [e for e in entries if kept is not None and e.path not in kept]
    if gone:
        ax.plot([_x(e, by_step) for e in gone], [e.monitor_value for e in gone], "o", markersize=9,
                markerfacecolor="white", markeredgecolor="0.45", label="would be pruned", zorder=3)
    best = [e for e in entries if e.is_best]
    if best:
        ax.plot([_x(e, by_step) for e in best], [e.monitor_value for e in best], "*", color="gold",
                markeredgecolor="black", markersize=16, label="best", zorder=4)
        xs = [_x(e, by_step) for e in entries]
        middle = (min(xs) + max(xs)) / 2
        for entry in best:  # the label leans into the plot, never off its edge
            right = _x(entry, by_step) > middle
            ax.annotate(entry.path, (_x(entry, by_step), entry.monitor_value), textcoords="offset points",
                        xytext=(-10 if right else 10, 8), ha="right" if right else "left", fontsize=8)
    ax.margins(x=0.06, y=0.15)
    ax.set_ylabel(entries[0].monitor)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def plot_checkpoints(manifest: Manifest, output: str, *, title: str | None = None,
                     kept: Collection[str] | None = None) -> int:
    """Draw the monitored value of every checkpoint into a PNG at ``output``.

    One panel per monitored metric; one line per run; the best checkpoint of each run as a star
    with its name. Given ``kept``, the checkpoints not in it (those a prune would delete) are
    drawn hollow.

    Args:
        manifest: The root's manifest.
        output: Where to write the PNG.
        title: A title (such as the root).
        kept: The paths a retention policy keeps, or None to mark nothing as pruned.

    Returns:
        How many checkpoints were drawn.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        ValueError: No checkpoint has a monitored value to draw.
    """
    entries = plotted_entries(manifest)
    if not entries:
        raise ValueError("no checkpoint records a monitored value; nothing to plot")
    figure_class, canvas_class = _matplotlib()
    monitors = list(dict.fromkeys(e.monitor for e in entries))
    by_step = any(e.global_step for e in entries)
    figure = figure_class(figsize=(8, 3.2 * len(monitors) + 0.6), layout="constrained")
    canvas_class(figure)
    axes = figure.subplots(len(monitors), 1, squeeze=False, sharex=True)[:, 0]
    for ax, monitor in zip(axes, monitors):
        _draw_monitor(ax, [e for e in entries if e.monitor == monitor], by_step, kept)
    axes[-1].set_xlabel("step (batches run)" if by_step else "epoch")
    skipped = len(manifest.entries) - len(entries)
    note = f" ({skipped} without a value not drawn)" if skipped else ""
    figure.suptitle(f"{title or 'checkpoints'}: {len(entries)} checkpoints{note}", fontsize=10)
    figure.savefig(output, format="png", dpi=110)
    return len(entries)
