"""The direction of a monitored Keras metric, read from the model's own metric objects.

Keras 3 metrics carry ``_direction`` (``"up"`` or ``"down"``); the metrics passed to
``compile`` sit inside containers (``CompileMetrics``, ``MetricsList``) that expose them through
their ``metrics`` attribute. The direction becomes the engine's ``mode_hint`` for
``mode="auto"``; a metric without one is placed by its class name (``TruePositives``).
"""

from __future__ import annotations

from typing import Any, Iterator, Literal, Optional

from ckptcore.modes import direction_from_name

__all__ = ["direction_hint", "iter_metrics", "metrics_built"]

_DIRECTIONS = {"up": "max", "down": "min"}
_MAX_DEPTH = 4


def iter_metrics(metrics: Any, _depth: int = 0) -> Iterator[Any]:
    """Yield every metric in ``metrics``, descending into metric containers."""
    if _depth > _MAX_DEPTH or metrics is None:
        return
    for metric in metrics:
        yield metric
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)) and inner:
            yield from iter_metrics(inner, _depth + 1)


def direction_hint(model: Any, monitor: str) -> Optional[Literal["min", "max"]]:
    """Return ``"max"``/``"min"`` from the direction of the metric ``monitor`` names, or None.

    As Keras does, a ``val_`` prefix is dropped before the name is compared with the metrics'
    names. A model that is not built yet, or has no such metric, gives None.
    """
    if model is None:
        return None
    name = monitor.removeprefix("val_")
    try:
        metrics = list(model.metrics)
    except Exception:  # noqa: BLE001 - an unbuilt or unusual model simply gives no hint
        return None
    for metric in iter_metrics(metrics):
        if getattr(metric, "name", None) == name:
            direction = _DIRECTIONS.get(getattr(metric, "_direction", None))
            if direction is None:
                # A metric without a direction (TruePositives counts): what its class is called.
                direction = direction_from_name(type(metric).__name__)
            if direction is not None:
                return direction  # type: ignore[return-value]
    return None


def metrics_built(model: Any) -> bool:
    """Whether the model's metric containers are built (so every metric object exists).

    Keras builds the compiled metrics at the first training step (before ``fit`` calls
    ``on_train_begin`` under JAX and PyTorch, inside the first step under TensorFlow).
    """
    if model is None:
        return False
    try:
        metrics = list(model.metrics)
    except Exception:  # noqa: BLE001
        return False
    return all(getattr(metric, "built", True) is not False for metric in metrics)
