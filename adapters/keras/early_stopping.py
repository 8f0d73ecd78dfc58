"""``EarlyStopping``: a drop-in for ``keras.callbacks.EarlyStopping`` on ckptcore's mode rules.

Same signature and behaviour as Keras 3's callback, with the direction of the metric decided
by :func:`ckptcore.resolve_mode` (the classic rule, the direction of the Keras metric object,
the name table) and improvements by :class:`ckptcore.BestTracker`, so an ``EarlyStopping`` and
a :class:`ModelCheckpoint` watching the same metric always agree on what "better" means.

Beyond Keras: ``restore_best_weights`` may be a ckptcore ``ModelCheckpoint`` instead of
``True``. The best weights are then read back from that checkpoint's file of the best epoch
on storage, checked against its manifest entry (size and digest), instead of a copy held in
memory every time the metric improves: for models that do not fit in memory twice::

    checkpoint = ModelCheckpoint("ckpt/m-{epoch:02d}.keras", save_best_only=True)
    stopper = EarlyStopping(patience=3, restore_best_weights=checkpoint)
    model.fit(x, y, validation_split=0.2, epochs=100, callbacks=[checkpoint, stopper])
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import keras

from ckptcore.errors import ConfigError, ManifestError
from ckptcore.manifest import ManifestEntry
from ckptcore.modes import MODES, resolve_mode
from ckptcore.scalars import to_scalar
from ckptcore.tracker import BestTracker
from ckptcore.warn import warn

from ckptcore.adapters.keras.callback import ModelCheckpoint, _print_msg
from ckptcore.adapters.keras.formats import SAVED_MODEL
from ckptcore.adapters.keras.keras_api import monitor_op_for
from ckptcore.adapters.keras.monitor import direction_hint

__all__ = ["EarlyStopping", "load_entry_weights"]

log = logging.getLogger("ckptcore")


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: got {value!r} ({type(value).__name__}); allowed: an int >= 0")
    return value


def _number(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        number = to_scalar(name, value)
    except ValueError as exc:
        raise ConfigError(f"{name}: got {value!r}; allowed: a number{' or None' if allow_none else ''}") from exc
    if math.isnan(number) or (not allow_none and math.isinf(number)):
        raise ConfigError(f"{name}: got {value!r}; allowed: a finite number")
    return number


def _check_restore(restore: Any, monitor: str, mode: str) -> Any:
    if isinstance(restore, bool):
        return restore
    if not isinstance(restore, ModelCheckpoint):
        raise ConfigError(
            f"restore_best_weights: got {restore!r} ({type(restore).__name__}); allowed: True, "
            "False, or a ckptcore ModelCheckpoint whose best checkpoint the weights are read from"
        )
    if restore.format == SAVED_MODEL:
        raise ConfigError(f"restore_best_weights: {restore!r} exports SavedModels, which hold no "
                          "Keras weights to restore; use a `.keras` or `.weights.h5` filepath")
    if restore.monitor != monitor and restore.save_best_only:
        raise ConfigError(
            f"restore_best_weights: the ModelCheckpoint saves only the best {restore.monitor!r} "
            f"epochs, but this EarlyStopping monitors {monitor!r}, so its best epoch may not be "
            f"saved; allowed: a ModelCheckpoint monitoring {monitor!r} (or saving every epoch)"
        )
    if restore.monitor == monitor and "auto" not in (mode, restore.mode) and mode != restore.mode:
        raise ConfigError(f"mode: got {mode!r}, but the ModelCheckpoint of restore_best_weights "
                          f"uses mode={restore.mode!r} for {monitor!r}; allowed: the same mode")
    return restore


class EarlyStopping(keras.callbacks.Callback):
    """Stop training when a monitored metric has stopped improving (Keras 3's callback).

    Args:
        monitor: The logs key to monitor (default ``"val_loss"``).
        min_delta: The smallest change that counts as an improvement (its absolute value).
        patience: Epochs without improvement after which training stops.
        verbose: 0 (silent) or 1 (says when it stops and restores, as Keras does).
        mode: ``"auto"``, ``"min"`` or ``"max"``; ``auto`` is ckptcore's rule, the same as
            :class:`ModelCheckpoint`'s (the metric's name, then the direction of the Keras
            metric object it names, then the name table; otherwise ``min``).
        baseline: A value to beat: training stops when ``patience`` epochs pass without one
            better than it.
        restore_best_weights: ``True``: keep a copy of the weights of the best epoch in memory
            and restore it when training ends, as Keras does. A ckptcore
            :class:`ModelCheckpoint`: restore from its checkpoint of the best epoch on storage
            (verified against its manifest entry). ``False``: keep the last weights.
        start_from_epoch: Epochs of warm-up before monitoring starts.

    Raises:
        ConfigError: An argument is invalid (a ``ValueError``), raised here.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool | ModelCheckpoint = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"monitor: got {monitor!r}; allowed: a non-empty metric name such as 'val_loss'")
        if mode not in MODES:
            raise ConfigError(f"EarlyStopping mode: got {mode!r}; allowed: 'auto', 'min', 'max'")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(_number("min_delta", min_delta) or 0.0)
        self.patience = _count("patience", patience)
        self.verbose = int(_count("verbose", int(verbose) if isinstance(verbose, bool) else verbose))
        self.baseline = _number("baseline", baseline, allow_none=True)
        self.restore_best_weights = _check_restore(restore_best_weights, monitor, mode)
        self.start_from_epoch = _count("start_from_epoch", start_from_epoch)
        #: ``keras.ops.less`` or ``keras.ops.greater`` once the direction is known (first epoch end).
        self.monitor_op: Any = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights: Any = None
        self.best_epoch = 0
        self._tracker: BestTracker | None = None
        self._best: float | None = None  # the best before the direction (and tracker) is known
        self._monitored = False  # an epoch was monitored: there is a best epoch to restore

    # -- the best value ----------------------------------------------------------------------
    @property
    def best(self) -> float | None:
        """The best monitored value of this ``fit`` (None before any)."""
        return self._tracker.best if self._tracker is not None else self._best

    @best.setter
    def best(self, value: float | None) -> None:
        value = None if value is None else to_scalar("best", value)
        self._best = value
        if self._tracker is not None:
            self._tracker.best = value

    @property
    def direction(self) -> str | None:
        """``"min"`` or ``"max"`` once known (at the first epoch end), else None."""
        return None if self._tracker is None else self._tracker.mode

    def _set_monitor_op(self) -> None:
        """Resolve the direction once the model's metrics are built (Keras's moment)."""
        mode, hint = self.mode, None
        checkpoint = self.restore_best_weights
        if mode == "auto" and isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor == self.monitor:
            if checkpoint.checkpointer is not None:
                mode = checkpoint.checkpointer.mode  # the direction that checkpoint saves by
            elif checkpoint.mode != "auto":
                mode = checkpoint.mode
        if mode == "auto":
            hint = direction_hint(self._model, self.monitor)
        direction = resolve_mode(self.monitor, mode, hint)
        self._tracker = BestTracker(direction, self.min_delta, monitor=self.monitor)
        self._tracker.best = self._best
        self.monitor_op = monitor_op_for(direction)

    # -- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Reset the state of a previous ``fit`` (the callback can be reused)."""
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self._monitored = False

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Count an epoch without improvement, or record a new best; stop when patience runs out."""
        if self._tracker is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return  # no value, or still warming up
        if not self._monitored:
            # Until something beats them, the first monitored epoch's weights are the best.
            self._monitored, self.best_epoch = True, epoch
            if self.restore_best_weights is True:
                self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._tracker.update(current):  # type: ignore[union-attr]
            self.best_epoch = epoch
            if self.restore_best_weights is True:
                self.best_weights = self.model.get_weights()
            # Patience restarts only for a value that beats both the baseline and the best.
            if self.baseline is None or BestTracker(
                self._tracker.mode, self.min_delta, self.baseline  # type: ignore[union-attr]
            ).is_improvement(current):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Say that training stopped early; restore the weights of the best epoch when asked."""
        if self.stopped_epoch > 0:
            self._say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights is True and self.best_weights is not None:
            self._say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)
        elif isinstance(self.restore_best_weights, ModelCheckpoint) and self._monitored:
            self._restore_from_checkpoint(self.restore_best_weights)

    def get_monitor_value(self, logs: Mapping[str, Any] | None) -> Any:
        """The monitored value from ``logs``; warns (Keras's words) when it is missing."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                 f"Available metrics are: {','.join(list(logs.keys()))}")
        return value

    # -- restoring from storage ---------------------------------------------------------------
    def _restore_from_checkpoint(self, checkpoint: ModelCheckpoint) -> None:
        checkpoint.wait()  # its saves of this fit are committed (it may end after this callback)
        engine = checkpoint.checkpointer
        epoch = self.best_epoch + 1
        entry = None if engine is None else _epoch_entry(engine, epoch)
        if entry is None:
            warn(f"EarlyStopping: {checkpoint!r} holds no checkpoint of the best epoch {epoch} "
                 "(not saved, or removed by retention); the model keeps the weights of the last epoch")
            return
        location = engine.template.join(entry.path)  # type: ignore[union-attr]
        self._say(f"Restoring model weights from the end of the best epoch: {epoch}. (from {location})")
        load_entry_weights(self.model, engine.template.root, entry,  # type: ignore[union-attr]
                           storage_options=engine.config.storage_options)  # type: ignore[union-attr]

    def _say(self, message: str) -> None:
        log.info("%s", message)
        if self.verbose > 0:
            _print_msg(message)

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, mode={self.mode!r}, "
                f"restore_best_weights={self.restore_best_weights!r})")


def _epoch_entry(engine: Any, epoch: int) -> ManifestEntry | None:
    """This run's committed checkpoint of the end of 1-based ``epoch``, the newest if several."""
    for entry in reversed(engine.manifest.entries):
        if entry.run_id == engine.run_id and entry.epoch == epoch and entry.batch is None:
            return entry
    return None


def load_entry_weights(model: Any, root: str, entry: ManifestEntry, *,
                       storage_options: dict[str, Any] | None = None) -> Any:
    """Load the weights of the checkpoint ``entry`` under ``root`` into ``model``, verified.

    The file (a local path, or downloaded from a URL root) must have the size and digest its
    manifest entry records; ``.keras``, ``.h5``/``.hdf5`` and ``.weights.h5`` files are read
    with ``model.load_weights``.

    Returns:
        ``model``.

    Raises:
        ManifestError: The file differs from its manifest entry (changed or damaged).
        FileNotFoundError: The file is gone.
    """
    from ckptcore.backends import resolve_backend
    from ckptcore.digest import matches

    from ckptcore.adapters.keras.loading import _local_copy

    backend = resolve_backend(root if "://" in root else "local", root, **(storage_options or {}))
    try:
        with _local_copy(backend, entry, entry.size) as path:
            if not matches(path, entry.size, entry.digest):
                raise ManifestError(f"{backend.locate(entry.path)}: size or digest differs from the manifest; "
                                    "the file was changed or damaged after it was saved; weights not restored")
            model.load_weights(path)
    finally:
        backend.close()
    return model
