"""``ModelCheckpoint``: a drop-in for ``keras.callbacks.ModelCheckpoint`` on the ckptcore engine.

The callback is glue: it checks the Keras-specific arguments (format, options), reads the
metric's direction from the model, and forwards the training hooks to a
:class:`ckptcore.Checkpointer`, which decides, names, writes through a staging path and commits.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Mapping

import keras

from ckptcore.backends.local import LocalBackend
from ckptcore.commit import load_manifest
from ckptcore.config import CheckpointConfig
from ckptcore.engine import Checkpointer
from ckptcore.errors import ConfigError
from ckptcore.modes import resolve_mode
from ckptcore.resume import RESUME_STATE, ResumePoint
from ckptcore.schedule import SaveSchedule
from ckptcore.template import FilepathTemplate

from ckptcore.adapters.keras.distributed import check_layout, chief
from ckptcore.adapters.keras.formats import SAVED_MODEL, check_backend, check_options, detect_format, make_write
from ckptcore.adapters.keras.monitor import direction_hint, metrics_built
from ckptcore.adapters.keras.resume import Restored, end_fit, resume_fit
from ckptcore.adapters.keras.snapshot import KerasSnapshot

__all__ = ["ModelCheckpoint"]

#: Engine arguments that the Keras signature already names.
_SIGNATURE = frozenset(
    {"filepath", "monitor", "verbose", "save_best_only", "mode", "save_freq", "initial_value_threshold"}
)
#: Keyword-only extras: every other engine argument.
EXTRAS: tuple[str, ...] = tuple(sorted(set(CheckpointConfig.model_fields) - _SIGNATURE))


def _print_msg(message: str) -> None:
    try:
        from keras.src.utils.io_utils import print_msg
    except ImportError:  # pragma: no cover - a Keras without the private helper
        print(message)
    else:
        print_msg(message)


def _check_extras(owner: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"allowed extras: {', '.join(sorted(allowed))}"
        )


class ModelCheckpoint(keras.callbacks.Callback):
    """Save the Keras model or its weights during training, through the ckptcore engine.

    Takes the arguments of ``keras.callbacks.ModelCheckpoint`` (same meaning, same file
    names) plus keyword-only extras of :class:`ckptcore.Checkpointer` (:data:`EXTRAS`:
    ``keep_last``, ``keep_best``, ``min_delta``, ``every_n_epochs``, ``every_seconds``,
    ``backends``, ``storage_options``, ``resume``, ``async_save``, ``max_pending``, ...). Saves are non-blocking by default
    (``async_save=True``: a host snapshot on the training thread, the write in the
    background; see :mod:`ckptcore.adapters.keras.snapshot`); ``async_save=False`` opts out.

    Args:
        filepath: Path or URL template: ``{epoch}``, ``{batch}`` (1-based) and logs keys.
            Ends in ``.keras`` or ``.h5`` (whole model), ``.weights.h5`` (with
            ``save_weights_only=True``), or has no suffix (a TensorFlow SavedModel export,
            TensorFlow backend only).
        monitor: The logs key to monitor, such as ``"val_loss"``.
        verbose: 0 (silent) or 1 (a message per action, as Keras prints them).
        save_best_only: Save only when ``monitor`` improves.
        save_weights_only: Save the weights only (``model.save_weights``).
        mode: ``"auto"``, ``"min"`` or ``"max"``; ``auto`` uses the name of the metric and the
            direction of the Keras metric object it names.
        save_freq: ``"epoch"`` or a number of batches (counted as batches actually run, also
            with ``steps_per_execution``).
        options: A ``tf.saved_model.SaveOptions`` for a SavedModel export; None otherwise.
        initial_value_threshold: Starting "best" value; only better values are saved.
        **kwargs: The keyword-only extras above.

    Raises:
        ConfigError: An argument is invalid (a ``ValueError``; raised here, before training).
    """

    #: Names accepted in ``**kwargs`` (subclasses add their own).
    extra_names: tuple[str, ...] = EXTRAS

    def __init__(
        self,
        filepath: Any,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        options: Any = None,
        initial_value_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if hasattr(filepath, "__fspath__"):
            filepath = os.fspath(filepath)
        if not isinstance(save_weights_only, bool):
            raise ConfigError(
                f"save_weights_only: got {save_weights_only!r} "
                f"({type(save_weights_only).__name__}); allowed: True or False"
            )
        _check_extras(type(self).__name__, kwargs, self.extra_names)
        kwargs.setdefault("async_save", True)  # host snapshot now, write in the background
        self._engine_args: dict[str, Any] = dict(
            monitor=monitor, verbose=verbose, save_best_only=save_best_only, mode=mode,
            save_freq=save_freq, initial_value_threshold=initial_value_threshold, **kwargs,
        )
        config = CheckpointConfig.build(filepath=filepath, **self._engine_args)
        self.filepath: str = config.filepath
        self._root = FilepathTemplate(self.filepath).root
        self.format = detect_format(self.filepath, save_weights_only)
        check_backend(self.format, self.filepath, keras.backend.backend())
        self.options = check_options(self.format, options)
        self._check_batch_placeholder(config)
        self.monitor = config.monitor
        self.verbose = config.verbose
        self.save_best_only = config.save_best_only
        self.save_weights_only = save_weights_only
        self.mode = config.mode
        self.save_freq = config.save_freq
        self.initial_value_threshold = config.initial_value_threshold
        self._batch_hooks = SaveSchedule(config.save_freq, config.every_n_epochs, config.every_seconds).uses_batches
        self._check_backend_specs(config)
        #: ``resume=True`` (or a source root) restores the model too; ``"state"`` the tracker only.
        self._resumes_model = bool(config.resume) and config.resume != RESUME_STATE
        if self._resumes_model and self.format == SAVED_MODEL:
            raise ConfigError(f"resume: got {config.resume!r} with {self.filepath!r}, a SavedModel export, which "
                              "cannot be restored into a model; allowed: resume='state' (the best value and "
                              "batch count only), or a .keras filepath")
        if self.save_best_only and isinstance(self.save_freq, int) and self.monitor.startswith("val_"):
            warnings.warn(
                f"ModelCheckpoint: save_best_only with save_freq={self.save_freq} saves at batch "
                f"ends, whose logs hold no validation metrics, so {self.monitor!r} is never there "
                "and nothing would be saved; monitor a training metric (such as 'loss') or use "
                "save_freq='epoch'",
                stacklevel=2,
            )
        self._engine: Checkpointer | None = None
        self._engine_open = False
        #: What the last ``on_train_begin`` restored (``resume=True``), or None.
        self.restored: Restored | None = None
        self._epoch = 0

    # -- construction checks ------------------------------------------------------------------
    @staticmethod
    def _check_batch_placeholder(config: CheckpointConfig) -> None:
        if "batch" in FilepathTemplate(config.filepath).placeholders and config.save_freq == "epoch":
            raise ConfigError(
                f"filepath: {config.filepath!r} uses {{batch}}, which only batch saves know; "
                "allowed: an int save_freq with {batch}, or a filepath without {batch}"
            )

    @staticmethod
    def _check_backend_specs(config: CheckpointConfig) -> None:
        """Resolve named backends now, so an unknown name or a missing package fails early."""
        from ckptcore.backends import resolve_backend

        root = FilepathTemplate(config.filepath).root
        # A worker that is not the chief commits to no extra backend (W&B needs no run there).
        extras = config.backends if chief(config.is_chief) else ()
        # The root is a location, as the engine takes it: a relative "ckpt" is not a backend name.
        for spec in (root if "://" in root else "local", *extras):
            if isinstance(spec, str):
                resolve_backend(spec, root, **config.storage_options).close()
        if "://" not in root:
            # A manifest.json there that is not ckptcore's (or is unreadable) fails now, not in fit.
            load_manifest(LocalBackend(root))

    # -- the batch hook, defined only when a batch schedule needs it ----------------------------
    @property
    def on_train_batch_end(self) -> Callable[..., Any]:  # type: ignore[override]
        """Keras's default (no-op) hook, or the saving one when a batch schedule needs it.

        Keras dispatches batch-end hooks on a worker thread unless a callback overrides
        ``on_train_batch_end`` (it checks the ``_is_default`` mark of the method). Returning
        the inherited default keeps that fast path for epoch schedules.
        """
        if getattr(self, "_batch_hooks", False):
            return self._save_on_batch
        return super().on_train_batch_end

    def _save_on_batch(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        engine = self._ensure_engine()
        # With steps_per_execution=k Keras reports the last index of each execution, the final,
        # partial one of an epoch past the end (index 11 of 10): the schedule bounds it by steps.
        self._finished(engine.on_train_batch_end(batch, logs, steps=self._steps_per_epoch()), engine)

    # -- Keras hooks --------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Attach the model; the metric direction is read from it once its metrics are built."""
        super().set_model(model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Receive Keras's training parameters; ``steps`` (batches per epoch) bounds the batch
        indices Keras reports and gives epoch saves their global step."""
        super().set_params(params)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Open the engine (again, after an earlier ``fit``, continuing its state).

        When the monitor's direction depends on a metric object the model has not built yet
        (the TensorFlow backend and custom loops build them in the first step), the engine
        opens at the first batch or epoch end instead, with the direction known.
        """
        self._epoch = 0
        # Before the first epoch: a layout this save cannot read whole is refused now.
        replays = self._engine_args.get("async_save") and self.format in ("keras", "weights.h5")
        if self._current_model() is not None:
            check_layout(self._current_model(), gathers=bool(replays))
        if self._resumes_model:
            if self._engine_open:  # an exception ended the last fit: finish its saves first
                self._close_engine()
            self.restored = self._restore()
        if self._direction_settled():
            self._ensure_engine()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Start 0-based ``epoch``."""
        self._epoch = epoch
        if self._engine_open:
            self._engine.on_epoch_begin(epoch, logs)  # type: ignore[union-attr]

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Save at the end of 0-based ``epoch`` when the schedule and the monitor say so."""
        engine = self._ensure_engine()
        steps = self._steps_per_epoch()
        if not self._batch_hooks and steps is not None:
            engine.schedule.advance(steps - 1)  # keeps global_step right without batch hooks
        self._finished(engine.on_epoch_end(epoch, logs), engine)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Finish pending saves, write the manifest and release the storage backends."""
        if self._resumes_model:
            end_fit(self._current_model())
        self._close_engine()

    def _close_engine(self) -> None:
        if self._engine is not None and self._engine_open:
            self._engine_open = False
            try:
                self._engine.close()
            finally:
                if getattr(self, "_snapshot", None) is not None:
                    self._snapshot.release()  # the host buffers kept for reuse

    def _restore(self, point: ResumePoint | None = None) -> Restored | None:
        """Restore ``point`` (default: this template's latest checkpoint) into the model."""
        return resume_fit(self, self._say, root=self._root, filepath=self.filepath,
                          resume=self._engine_args["resume"], point=point,
                          storage_options=self._engine_args.get("storage_options"))

    @property
    def initial_epoch(self) -> int:
        """The 0-based epoch this ``fit`` continues at (0 without a restored checkpoint); a custom
        loop runs ``range(callback.initial_epoch, epochs)``."""
        return 0 if self.restored is None else self.restored.point.initial_epoch

    def _say(self, message: str) -> None:
        if self.verbose > 0:
            _print_msg(message)

    def wait(self) -> None:
        """Block until every pending non-blocking save is committed; report a failure as a hook would.

        Call it before reading a checkpoint this callback just saved (from another callback,
        or after an exception out of ``fit``, which skips ``on_train_end``).
        """
        if self._engine is not None:
            self._engine.wait()

    def _steps_per_epoch(self) -> int | None:
        steps = (self.params or {}).get("steps")
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            return steps
        return None

    # -- the engine ---------------------------------------------------------------------------
    @property
    def checkpointer(self) -> Checkpointer | None:
        """The engine of the current (or last) training run; None before training."""
        return self._engine

    @property
    def best(self) -> float | None:
        """The best monitored value so far (``initial_value_threshold`` before any)."""
        if self._engine is None:
            return self.initial_value_threshold
        return self._engine.tracker.best

    def _require_model(self) -> Any:
        model = self.model
        if model is None:
            raise RuntimeError(
                "ModelCheckpoint has no model; pass model= to keras.callbacks.CallbackList "
                "or call set_model(model) before training"
            )
        return model

    def _current_model(self) -> Any:
        return self.model if self._model is not None else None

    def _direction_settled(self) -> bool:
        """Whether the resolved mode can no longer change with the model's metrics."""
        if self.mode != "auto" or self._engine_args.get("mode_hint") is not None:
            return True
        if resolve_mode(self.monitor, "auto", "min") == resolve_mode(self.monitor, "auto", "max"):
            return True  # the classic acc/fmeasure rule decides before any hint
        if self._engine is not None:
            return True  # a later fit keeps the direction of the first
        model = self._current_model()
        return direction_hint(model, self.monitor) is not None or metrics_built(model)

    def _mode_hint(self) -> str | None:
        if self.mode != "auto":
            return None
        given = self._engine_args.get("mode_hint")
        if given is not None:
            return given
        if self._engine is not None:
            return self._engine.config.mode_hint
        return direction_hint(self._current_model(), self.monitor)

    def _engine_backends(self) -> list[Any]:
        """Secondary backends for a new engine (subclasses add their own)."""
        return list(self._engine_args.get("backends") or ())

    def _ensure_engine(self) -> Checkpointer:
        """Return the open engine, opening one (continuing the previous one's state) if needed."""
        if self._engine is not None and self._engine_open:
            return self._engine
        previous = self._engine
        args = {**self._engine_args, "backends": self._engine_backends(), "mode_hint": self._mode_hint(),
                "is_chief": chief(self._engine_args.get("is_chief"))}
        write = make_write(self._require_model, self.format, self.options)
        self._snapshot = (KerasSnapshot(self._require_model, self.format, sync_write=write)
                          if args.get("async_save") else None)
        engine = Checkpointer(
            self.filepath,
            write=write,
            snapshot=self._snapshot,
            printer=_print_msg,
            run_id=None if previous is None else previous.run_id,
            **args,
        )
        if previous is not None and not self._resumes_model:  # a restored model continues the stored state
            engine.schedule.load_state_dict(previous.schedule.state_dict())
            if previous.mode == engine.mode:
                engine.tracker.load_state_dict(previous.tracker.state_dict())
        engine.on_epoch_begin(self._epoch)
        self._engine, self._engine_open = engine, True
        return engine

    def _finished(self, relpath: str | None, engine: Checkpointer) -> None:
        if relpath is None or self.verbose <= 0 or engine.writer is not None:
            return
        _print_msg(f"\nEpoch {engine.epoch + 1}: finished saving model to {engine.template.join(relpath)}")

    def __repr__(self) -> str:
        return (
            f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, "
            f"save_best_only={self.save_best_only}, save_weights_only={self.save_weights_only}, "
            f"save_freq={self.save_freq!r})"
        )
