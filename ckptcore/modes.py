"""Which direction of a monitored metric counts as better.

``mode="auto"`` follows the classic Keras rule, ``max`` if the monitor contains ``acc`` or starts
with ``fmeasure``, else ``min``, extended by a small table of well-known metric names and by a
direction hint that an adapter may read from framework metadata.
"""

from __future__ import annotations

import re
from typing import Literal

from ckptcore.errors import ConfigError

__all__ = ["MAX_NAMES", "MIN_NAMES", "MODES", "Direction", "direction_from_name", "resolve_mode"]

Direction = Literal["min", "max"]
MODES: tuple[str, ...] = ("auto", "min", "max")

#: Metric name tokens for which larger is better.
MAX_NAMES: frozenset[str] = frozenset(
    {
        "auc", "prc", "precision", "recall", "f1", "fbeta", "fmeasure", "f1_score", "fbeta_score",
        "iou", "miou", "mean_iou", "r2", "r2_score", "dice", "map", "ndcg", "psnr", "ssim", "bleu",
        "rouge", "top_k_categorical_accuracy", "sensitivity", "specificity", "true_positives",
        "true_negatives", "reward", "return", "score",
    }
)
#: Metric name tokens for which smaller is better.
MIN_NAMES: frozenset[str] = frozenset(
    {
        "loss", "error", "err", "mae", "mse", "rmse", "msle", "mape", "logcosh", "hinge",
        "crossentropy", "kld", "kl_divergence", "poisson", "perplexity", "wer", "cer",
        "false_positives", "false_negatives", "huber",
    }
)

_PREFIXES = ("val_", "train_", "test_", "eval_", "validation_")


def _base_name(monitor: str) -> str:
    name = monitor.lower().rsplit("/", 1)[-1]
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def direction_from_name(name: str) -> Direction | None:
    """The direction the name table gives ``name`` (a metric or class name), or None.

    ``"val_mean_absolute_error"`` gives ``"min"``; a class name such as ``"TruePositives"``
    is read as ``true_positives`` (``"max"``).
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return _from_table(_base_name(snake))


def _from_table(name: str) -> Direction | None:
    if name in MIN_NAMES:
        return "min"
    if name in MAX_NAMES:
        return "max"
    tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
    # The last token that names a direction wins: "mean_absolute_error" -> "error" -> min.
    for token in reversed(tokens):
        if token in MIN_NAMES:
            return "min"
        if token in MAX_NAMES:
            return "max"
    return None


def resolve_mode(monitor: str, mode: str = "auto", hint: str | None = None) -> Direction:
    """Resolve ``mode`` to ``"min"`` or ``"max"`` for a monitored metric.

    Args:
        monitor: The metric name, such as ``"val_loss"``.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        hint: An optional direction (``"min"``/``"max"``) from framework metadata, such as a
            Keras metric's own direction. ``auto`` applies, in order: the classic rule, the
            hint, the name table, then ``"min"``.

    Returns:
        ``"min"`` or ``"max"``.

    Raises:
        ConfigError: If ``mode`` or ``hint`` is not one of the allowed values.
    """
    if mode not in MODES:
        raise ConfigError(f"mode: got {mode!r}; allowed: 'auto', 'min', 'max'")
    if hint is not None and hint not in ("min", "max"):
        raise ConfigError(f"mode hint: got {hint!r}; allowed: 'min', 'max' or None")
    if mode != "auto":
        return mode  # type: ignore[return-value]
    lowered = monitor.lower()
    if "acc" in lowered or lowered.startswith("fmeasure"):
        return "max"
    if hint is not None:
        return hint  # type: ignore[return-value]
    return _from_table(_base_name(monitor)) or "min"
