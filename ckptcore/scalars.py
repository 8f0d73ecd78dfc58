"""Turning monitored values into plain floats, with a clear error for anything else."""

from __future__ import annotations

import math
from typing import Any

from ckptcore.errors import MonitorError

__all__ = ["is_finite", "shown", "to_scalar"]


def to_scalar(name: str, value: Any) -> float:
    """Convert a logged value to ``float``.

    Accepts Python numbers and zero-dimensional (or single-element) array or tensor values from
    NumPy, TensorFlow, JAX or PyTorch, without importing any of them.

    Args:
        name: The metric name, for the error message.
        value: The logged value.

    Returns:
        The value as a float (possibly NaN or infinite).

    Raises:
        MonitorError: If the value is a bool, a string, or holds more than one element.
    """
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise MonitorError(
            f"monitor {name!r}: got {type(value).__name__} {value!r}; expected a real number"
        )
    if isinstance(value, (int, float)):
        return _float(name, value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            size = math.prod(int(d) for d in shape)
        except (TypeError, ValueError):
            size = -1
        if size != 1:
            raise MonitorError(
                f"monitor {name!r}: got a value of shape {tuple(shape)}; expected a scalar "
                "(reduce it, for example with .mean(), before logging it)"
            )
        if hasattr(value, "item"):
            value = value.item()
        elif hasattr(value, "numpy"):
            value = value.numpy().item()
    if isinstance(value, int) and not isinstance(value, bool):
        return _float(name, value)  # .item() of an object array: a Python int of any size
    try:
        result = float(value)
    except (TypeError, ValueError) as exc:
        raise MonitorError(
            f"monitor {name!r}: got {type(value).__name__} {value!r}; expected a real number"
        ) from exc
    except OverflowError as exc:
        raise MonitorError(f"monitor {name!r}: got {type(value).__name__} {shown(value)}, "
                           "too large for a float; expected a real number a float can hold") from exc
    if isinstance(value, complex):  # pragma: no cover - float(complex) already raises
        raise MonitorError(f"monitor {name!r}: got complex {value!r}; expected a real number")
    return result


def shown(value: Any) -> str:
    """``repr(value)`` for a message; for a huge int (whose ``str`` may raise) its size."""
    if isinstance(value, int) and value.bit_length() >= 200:
        # str() of a huge int raises past 4300 digits: count them from the bit length.
        return f"of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)


def _float(name: str, value: int | float) -> float:
    """``float(value)``; an int too large for a float is a :class:`MonitorError`, not OverflowError."""
    try:
        return float(value)
    except OverflowError as exc:
        raise MonitorError(
            f"monitor {name!r}: got int {shown(value)}, too large for a float (at most about "
            "1.8e308); expected a real number a float can hold"
        ) from exc


def is_finite(value: float) -> bool:
    """Return whether ``value`` is neither NaN nor infinite."""
    return math.isfinite(value)
