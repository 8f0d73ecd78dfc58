"""``BackupAndRestore``: a drop-in for ``keras.callbacks.BackupAndRestore`` on the ckptcore engine.

Same signature and behaviour as Keras 3's: back up the weights and optimizer state at each
epoch end (or every ``save_freq`` batches), restore them at the start of the next ``fit`` and
continue at the epoch after the backup (a mid-epoch backup repeats its epoch from the start),
delete the backup after a ``fit`` that finishes when ``delete_checkpoint=True`` (on the chief of
a distributed job only: see :mod:`ckptcore.distributed`). Built on the
engine, so a backup is written to a staging name and committed atomically (a kill never leaves
a half-written backup), checked against its digest before it is loaded, and ``backup_dir`` may
be any fsspec URL. It can run beside a ``ModelCheckpoint`` in the same ``fit`` (give each its
own directory).

Deviations from Keras, and why:

* A model that is not built is refused only when there is a backup to restore into it (Keras
  refuses it always); the first ``fit`` of a script can therefore build the model lazily.
* Backups are named ``backup-<epoch>[-<batch>].weights.h5`` beside ckptcore's manifest, which
  replaces Keras's ``training_metadata.json``; ``double_checkpoint=True`` keeps the last two.
* A backup that differs from its recorded digest (damaged after it was written) is refused
  like an unreadable one, so ``double_checkpoint`` falls back to the previous backup.
* A second ``fit`` of the same callback after an exception out of the first (which skips
  ``on_train_end``) first finishes that run's pending (non-blocking) saves.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ckptcore.store import load_settled
from ckptcore.errors import ConfigError, ManifestError
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.resume import ResumePoint
from ckptcore.template import FilepathTemplate

from ckptcore.adapters.keras.callback import ModelCheckpoint
from ckptcore.adapters.keras.distributed import chief
from ckptcore.adapters.keras.resume import Restored, _backend

__all__ = ["BackupAndRestore"]


def _check_save_freq(save_freq: Any) -> None:
    if save_freq == "epoch" and isinstance(save_freq, str):
        return
    if isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0:
        return
    raise ConfigError(f"Invalid value for argument `save_freq`. Received: save_freq={save_freq!r}. "
                      "Expected either 'epoch' or an integer value (a number of batches > 0).")


class BackupAndRestore(ModelCheckpoint):
    """Back up the training state and restore it when training restarts.

    Args:
        backup_dir: Directory or fsspec URL for the backup; not shared with other callbacks.
        save_freq: ``"epoch"``, or a number of batches between backups.
        double_checkpoint: Keep the previous backup too, and fall back to it when the latest
            cannot be loaded.
        delete_checkpoint: Delete the backup when ``fit`` finishes.
        storage_options: For a URL ``backup_dir``: passed to the fsspec file system.

    Raises:
        ConfigError: An empty ``backup_dir`` or an invalid ``save_freq`` (a ``ValueError``).
    """

    def __init__(self, backup_dir: Any, save_freq: str | int = "epoch", double_checkpoint: bool = False,
                 delete_checkpoint: bool = True, *, storage_options: dict[str, Any] | None = None) -> None:
        if not backup_dir:
            raise ConfigError(f"Empty `backup_dir` argument passed (got {backup_dir!r}); allowed: a "
                              "directory or URL")
        _check_save_freq(save_freq)
        for name, flag in (("double_checkpoint", double_checkpoint), ("delete_checkpoint", delete_checkpoint)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name}: got {flag!r} ({type(flag).__name__}); allowed: True or False")
        self.backup_dir = os.fspath(backup_dir).rstrip("/")
        name = "backup-{epoch:06d}.weights.h5" if save_freq == "epoch" else "backup-{epoch:06d}-{batch:06d}.weights.h5"
        super().__init__(
            f"{self.backup_dir}/{name}", monitor="loss", save_weights_only=True, save_freq=save_freq,
            resume=True, keep_last=2 if double_checkpoint else 1, storage_options=dict(storage_options or {}),
        )
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint

    def _restore(self, point: ResumePoint | None = None) -> Restored | None:
        """Restore the latest backup; with ``double_checkpoint``, the previous one if it fails."""
        try:
            return super()._restore()
        except (ManifestError, OSError, ValueError) as exc:
            previous = self._previous() if self.double_checkpoint else None
            if previous is None:
                raise
            self._say(f"BackupAndRestore: the latest backup cannot be restored ({exc}); "
                      f"restoring the previous one, {previous.location}")
            return super()._restore(previous)

    def _previous(self) -> ResumePoint | None:
        backend = _backend(self._root, self._engine_args["storage_options"])
        try:
            manifest = load_settled(backend)
            template = FilepathTemplate(self.filepath)
            mine = [e for e in (manifest.entries if manifest else []) if template.matches(e.path)]
            return ResumePoint.of(backend, mine[-2]) if len(mine) >= 2 else None
        finally:
            backend.close()

    def on_train_end(self, logs: Any = None) -> None:
        """Finish the backup's saves; with ``delete_checkpoint``, then delete the backup."""
        super().on_train_end(logs)
        if self.delete_checkpoint and chief(self._engine_args.get("is_chief")):
            self._delete_backup()  # only the chief deletes, as only it commits

    def _delete_backup(self) -> None:
        backend = _backend(self._root, self._engine_args["storage_options"])
        try:
            manifest = load_settled(backend)
            template = FilepathTemplate(self.filepath)
            entries = manifest.entries if manifest else []
            for entry in entries:
                if template.matches(entry.path):
                    backend.delete(entry.path)
            only_ours = all(template.matches(e.path) for e in entries)
            if only_ours:
                backend.delete(MANIFEST_NAME)  # nothing else is recorded here
        finally:
            backend.close()
        if only_ours and "://" not in self._root and os.path.isdir(self._root):
            internal, sep, _ = MANIFEST_NAME.partition("/")
            if sep:  # ckptcore's own directory (lock, staging) goes with the manifest
                shutil.rmtree(os.path.join(self._root, internal), ignore_errors=True)
            try:
                os.rmdir(self._root)
            except OSError:
                pass  # something else is there: left alone

    def __repr__(self) -> str:
        return (f"BackupAndRestore({self.backup_dir!r}, save_freq={self.save_freq!r}, "
                f"double_checkpoint={self.double_checkpoint}, delete_checkpoint={self.delete_checkpoint})")
