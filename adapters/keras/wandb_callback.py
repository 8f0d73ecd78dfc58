"""``WandbModelCheckpoint``: ``ModelCheckpoint`` that also logs every checkpoint to W&B.

A drop-in for ``wandb.integration.keras.WandbModelCheckpoint``: each committed checkpoint
becomes a version of a W&B artifact (type ``model``) with the aliases ``latest``, ``epoch_N``
(N as in the file name) and, on improvement only, ``best``; the logs go into its metadata.
"""

from __future__ import annotations

from typing import Any

from ckptcore.errors import ConfigError, MissingDependencyError

from ckptcore.adapters.keras.callback import ModelCheckpoint

__all__ = ["WandbModelCheckpoint"]


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise MissingDependencyError(
            f"WandbModelCheckpoint needs the W&B SDK ({exc.name or exc} is not installed); "
            'install it with: pip install "ckptcore[wandb]"'
        ) from exc
    return wandb


#: Made on first use (it subclasses ``wandb.Error``, and W&B is imported lazily).
NoActiveRunError: type[ConfigError] | None = None


def _no_run_error() -> type[ConfigError]:
    """``ConfigError`` that is also the ``wandb.Error`` W&B's own callback raises here."""
    global NoActiveRunError
    if NoActiveRunError is None:
        wandb_error = _wandb().Error

        class NoActiveRunError(ConfigError, wandb_error):  # type: ignore[no-redef]
            """No W&B run is active (``wandb.run`` is None)."""

            def __init__(self, message: str, context: dict | None = None) -> None:
                wandb_error.__init__(self, message, context)  # sets .message and .context

    return NoActiveRunError  # a module attribute (global), so it pickles by name


def _active_run() -> Any:
    run = _wandb().run
    if run is None:
        raise _no_run_error()(
            "WandbModelCheckpoint: no active W&B run (wandb.run is None); call wandb.init() "
            "before creating the callback and keep the run open while training"
        )
    return run


class WandbModelCheckpoint(ModelCheckpoint):
    """Save the model like :class:`ModelCheckpoint` and log each checkpoint as a W&B artifact.

    Takes the arguments of :class:`ModelCheckpoint` (the seeds' signature and its keyword-only
    extras), plus two keyword-only extras:

    Args:
        artifact_name: Name of the artifact (default ``run_<run id>_model``, as W&B's own
            callback names it).
        artifact_type: Type of the artifact (default ``"model"``).

    The local (or ``fsspec``) checkpoint under ``filepath`` stays the primary copy; W&B is an
    extra backend next to any in ``backends``.

    Raises:
        ConfigError: No W&B run is active (call ``wandb.init()`` first; this error is a
            ``wandb.Error`` too, as W&B's callback raises), or an argument is invalid.
        MissingDependencyError: The W&B SDK is not installed.
    """

    extra_names = (*ModelCheckpoint.extra_names, "artifact_name", "artifact_type")

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
        artifact_name = kwargs.pop("artifact_name", None)
        artifact_type = kwargs.pop("artifact_type", "model")
        from ckptcore.adapters.keras.distributed import chief

        # Only the chief of a distributed job logs artifacts (and needs a run).
        self._logs_artifacts = chief(kwargs.get("is_chief"))
        if self._logs_artifacts:
            _active_run()
        super().__init__(
            filepath, monitor=monitor, verbose=verbose, save_best_only=save_best_only,
            save_weights_only=save_weights_only, mode=mode, save_freq=save_freq, options=options,
            initial_value_threshold=initial_value_threshold, **kwargs,
        )
        # Checks artifact_name/artifact_type now; each engine (one per fit) gets a fresh
        # backend of its own, on the run active then.
        self._artifact_name: str | None = artifact_name
        self.artifact_type: str = artifact_type
        if self._logs_artifacts:
            self._wandb_backend().close()

    @property
    def artifact_name(self) -> str | None:
        """The artifact's name: the one given, else ``run_<id>_model`` of the run active now
        (None while none is), as W&B's own callback names it at each save."""
        from ckptcore.backends.wandb import default_artifact_name

        if self._artifact_name is not None:
            return self._artifact_name
        run = _wandb().run
        return None if run is None else default_artifact_name(run)

    def _wandb_backend(self) -> Any:
        from ckptcore.backends.wandb import WandbBackend

        return WandbBackend(self._root, artifact_name=self._artifact_name,
                            artifact_type=self.artifact_type, run=_active_run())

    def _engine_backends(self) -> list[Any]:
        """A fresh W&B backend for each engine (one per ``fit``), then the user's backends."""
        if not self._logs_artifacts:
            return super()._engine_backends()
        return [self._wandb_backend(), *super()._engine_backends()]
