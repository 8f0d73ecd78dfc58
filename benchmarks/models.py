"""Models and data of a chosen size, and the plain host copy the non-blocking save aims at."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

__all__ = ["INPUT_DIM", "OUTPUT_DIM", "build", "data", "host_copy_seconds", "state_bytes"]

INPUT_DIM = 256
OUTPUT_DIM = 10
_BYTES_PER_PARAM = 12  # float32 weight + Adam's two float32 slots


def _width(state_mb: float, depth: int) -> int:
    """Hidden width of an MLP whose weights and Adam state take about ``state_mb`` MB."""
    params = state_mb * 1e6 / _BYTES_PER_PARAM
    # params ~= (depth - 1) * w^2 + (INPUT_DIM + OUTPUT_DIM + depth) * w
    a, b = depth - 1, INPUT_DIM + OUTPUT_DIM + depth
    return max(8, int((-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)))


def build(state_mb: float, depth: int = 3, seed: int = 0) -> Any:
    """A compiled MLP (Adam, MSE) with about ``state_mb`` MB of weights and optimizer state.

    The optimizer is built, so its slots count from the start.
    """
    import keras

    keras.utils.set_random_seed(seed)
    width = _width(state_mb, depth)
    layers = [keras.Input((INPUT_DIM,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    layers.append(keras.layers.Dense(OUTPUT_DIM))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def data(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random regression data for :func:`build`'s models."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, INPUT_DIM)).astype("float32")
    y = rng.normal(size=(samples, OUTPUT_DIM)).astype("float32")
    return x, y


def _variables(model: Any) -> list[Any]:
    return list(model.weights) + list(model.optimizer.variables)


def state_bytes(model: Any) -> int:
    """Bytes of the model's weights and optimizer variables."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in _variables(model))


def host_copy_seconds(model: Any, repeats: int = 5, reuse: bool = False, parallel: bool = False) -> list[float]:
    """Times of a plain host copy of every weight and optimizer variable.

    Args:
        model: A model from :func:`build`.
        repeats: How many copies to time.
        reuse: Copy into arrays allocated (and paged in) once, with ``np.copyto`` from a view
            of each variable's memory, rather than into fresh arrays (``variable.numpy()``).
        parallel: With ``reuse``, copy as the snapshot does, large arrays in slices on several
            cores (:class:`ckptcore.adapters.keras.hostcopy.ParallelCopy`).
    """
    from ckptcore.adapters.keras.hostcopy import ParallelCopy
    from ckptcore.adapters.keras.snapshot import host_array

    variables = _variables(model)
    buffers = [np.empty(v.shape, np.dtype(v.dtype)) for v in variables] if reuse else None
    times = []
    for _ in range(repeats + (1 if reuse else 0)):
        start = time.perf_counter()
        if buffers is None:
            copies = [v.numpy() for v in variables]
            del copies
        elif parallel:
            copies = ParallelCopy()
            for buffer, variable in zip(buffers, variables):
                copies.copy(buffer, host_array(variable)[0])
            copies.wait()
        else:
            for buffer, variable in zip(buffers, variables):
                np.copyto(buffer, host_array(variable)[0])
        times.append(time.perf_counter() - start)
    return times[1:] if reuse else times
