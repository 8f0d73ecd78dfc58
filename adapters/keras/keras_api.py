"""The parts of Keras's own ``ModelCheckpoint`` that scripts and subclasses use.

Public scripts and tutorials subclass ``keras.callbacks.ModelCheckpoint`` and call or override
its methods: ``_save_model(epoch=..., batch=None, logs=...)`` to save outside the schedule,
``_should_save_on_batch(batch)`` to change when batch saves happen, ``_get_file_path`` to name
files, and they read ``self.best``, ``self.monitor_op`` and ``self._current_epoch``. Scripts
written for Keras 2 pass ``period=N``. :class:`KerasCheckpointAPI` gives ckptcore's callback
these names with Keras 3's meaning; the callback's hooks go through them, so an override is
called where Keras would call it.
"""

from __future__ import annotations

import posixpath
from typing import Any, Callable, Mapping

from ckptcore.errors import ConfigError, MissingKeyError
from ckptcore.modes import resolve_mode
from ckptcore.names import path_problem, reserved_reason
from ckptcore.warn import warn

__all__ = ["FilepathFormatError", "KerasCheckpointAPI", "keras2_arguments", "monitor_op_for"]


def monitor_op_for(mode: str) -> Callable[[Any, Any], Any]:
    """Keras's comparison for a resolved direction: ``keras.ops.less`` (min) or ``greater`` (max)."""
    from keras import ops

    return ops.less if mode == "min" else ops.greater


def keras2_arguments(owner: str, kwargs: dict[str, Any]) -> None:
    """Translate Keras 2 spellings in ``kwargs`` in place: ``period=N`` is ``every_n_epochs=N``.

    Raises:
        ConfigError: ``period`` is not an int >= 1, or is given beside ``every_n_epochs``.
    """
    if "period" not in kwargs:
        return
    period = kwargs.pop("period")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ConfigError(f"period: got {period!r} ({type(period).__name__}); allowed: an int >= 1 "
                          "(Keras 2's spelling of every_n_epochs)")
    if "every_n_epochs" in kwargs:
        raise ConfigError(f"period: got {period!r} beside every_n_epochs={kwargs['every_n_epochs']!r}; "
                          "allowed: one of them (period is Keras 2's spelling of every_n_epochs)")
    warn(f"{owner}: `period` is deprecated (Keras 2); saving every {period} epochs as "
         f"every_n_epochs={period}. Pass every_n_epochs={period} instead.", DeprecationWarning)
    kwargs["every_n_epochs"] = period


class FilepathFormatError(MissingKeyError):
    """A filepath placeholder had no value; Keras's message, then ckptcore's (a ``KeyError``)."""

    def __init__(self, filepath: str, cause: MissingKeyError) -> None:
        super().__init__(cause.key, cause.available)
        self.args = (f'Failed to format this callback filepath: "{filepath}". Reason: {cause}',)


class KerasCheckpointAPI:
    """Keras 3 ``ModelCheckpoint`` names on ckptcore's callback (mixed in before ``Callback``).

    The host class provides ``_ensure_engine()``,
    ``_steps_per_epoch()``, ``_engine``, ``_epoch``, ``monitor``, ``mode``, ``filepath`` and
    ``initial_value_threshold``.
    """

    _epoch: int
    _engine: Any
    _batch_logs: Mapping[str, Any] | None = None
    _last_batch_seen: int | None = None
    _best_given: tuple[float | None] | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def best(self) -> float | None:
        """The best monitored value so far (``initial_value_threshold`` before any).

        Assigning it (as Keras scripts that resume by hand do) sets the value to beat.
        """
        if self._engine is not None:
            return self._engine.tracker.best
        if self._best_given is not None:
            return self._best_given[0]
        return self.initial_value_threshold  # type: ignore[attr-defined]

    @best.setter
    def best(self, value: float | None) -> None:
        from ckptcore.scalars import to_scalar

        value = None if value is None else to_scalar("best", value)
        if self._engine is not None:
            with self._engine.committer.lock:
                self._engine.tracker.best = value
        else:
            self._best_given = (value,)  # applied when the engine opens

    @property
    def min_delta(self) -> float:
        """The smallest change that counts as an improvement (Keras's ``min_delta``)."""
        return float(self._engine_args.get("min_delta", 0.0))  # type: ignore[attr-defined]

    @property
    def monitor_op(self) -> Callable[[Any, Any], Any]:
        """``keras.ops.less`` for a metric to minimise, ``keras.ops.greater`` to maximise.

        Unlike Keras 3 (None until the first epoch end), it is known at any time: the direction
        the engine uses, or, before training, the one ``mode`` resolves to now.
        """
        return monitor_op_for(self._direction())

    def _direction(self) -> str:
        """``"min"`` or ``"max"``: the engine's, or what ``mode`` resolves to now."""
        if self._engine is not None:
            return self._engine.mode
        return resolve_mode(self.monitor, self.mode, self._mode_hint())  # type: ignore[attr-defined]

    def _set_monitor_op(self) -> None:
        """Keras 3 sets ``monitor_op`` here; ckptcore resolves it on each read (nothing to do)."""

    def _is_improvement(self, monitor_value: Any, reference_value: Any) -> bool:
        """Keras's test: whether ``monitor_value`` beats ``reference_value`` by ``min_delta``."""
        if reference_value is None:
            return True
        delta = self.min_delta
        if self._direction() == "min":
            return bool(monitor_value + delta < reference_value)
        return bool(monitor_value - delta > reference_value)

    @property
    def _current_epoch(self) -> int:
        """The 0-based epoch in progress (Keras sets it in ``on_epoch_begin``)."""
        return self._epoch

    @_current_epoch.setter
    def _current_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    # -- the methods Keras's hooks call -------------------------------------------------------
    def _should_save_on_batch(self, batch: int) -> bool:
        """Count batches up to index ``batch``; return whether a batch save is due now.

        As in Keras, asking changes state: a True answer marks the save as handled. The count
        is the engine's (batches actually run, also with ``steps_per_execution``).
        """
        engine = self._ensure_engine()  # type: ignore[attr-defined]
        steps = self._steps_per_epoch()  # type: ignore[attr-defined]
        self._last_batch_seen, due = engine.batch_end_due(batch, self._batch_logs, steps=steps)
        self._epoch = engine.epoch  # the next one, in a loop that calls no on_epoch_begin
        return due

    def _save_model(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        """Save now for 0-based ``epoch`` (and ``batch``, None at an epoch end), honouring
        ``save_best_only``, outside the schedule: what Keras's hooks call once a save is due."""
        engine = self._ensure_engine()  # type: ignore[attr-defined]
        logs = dict(logs or {})
        name = None
        if type(self)._get_file_path is not KerasCheckpointAPI._get_file_path:
            name = self._relative_name(self._get_file_path(epoch, batch, logs))
        try:
            engine.save(epoch, batch, logs, name=name)
        except MissingKeyError as exc:
            if isinstance(exc, FilepathFormatError):
                raise
            raise FilepathFormatError(self.filepath, exc) from exc  # type: ignore[attr-defined]

    def _get_file_path(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> str:
        """The full path (or URL) of the checkpoint for 0-based ``epoch`` and ``batch``.

        Raises:
            FilepathFormatError: A placeholder has no value (a ``KeyError``, Keras's message).
        """
        engine = self._ensure_engine()  # type: ignore[attr-defined]
        try:
            relpath = engine.template.render(epoch, batch, dict(logs or {}), step=engine.schedule.batches_run)
        except MissingKeyError as exc:
            raise FilepathFormatError(self.filepath, exc) from exc  # type: ignore[attr-defined]
        return engine.template.join(relpath)

    def _checkpoint_exists(self, filepath: str) -> bool:
        """Whether a committed checkpoint of this root is listed under ``filepath``."""
        engine = self._ensure_engine()  # type: ignore[attr-defined]
        name = self._relative_name(filepath)
        return engine.manifest.get(name) is not None

    def _relative_name(self, filepath: Any) -> str:
        """``filepath`` (from an overridden ``_get_file_path``) relative to the checkpoint root.

        Raises:
            ConfigError: It is not a path below the root.
        """
        engine = self._engine
        root = engine.template.root.rstrip("/")
        text = str(filepath).replace("\\", "/")
        relative = text[len(root) + 1:] if root and text.startswith(root + "/") else text
        problem = path_problem(relative) or reserved_reason(relative)
        if (root and relative == text) or posixpath.isabs(relative) or problem:
            raise ConfigError(
                f"_get_file_path: got {filepath!r}; allowed: a path below the checkpoint root "
                f"{engine.template.root or '.'!r} (the directory before the first placeholder)"
                + (f" ({problem})" if problem else "")
            )
        return relative
