"""Bringing a Keras run back: a verified checkpoint into an existing model, and where ``fit``
continues.

:func:`restore_weights` loads the weights, and the optimizer state where the file holds it,
into a model that already exists (``model.load_weights``: no config is deserialised, so no
code from the file runs; the file's size and digest are checked against the manifest first).
:func:`resume_fit` is what a callback with ``resume=True`` does at ``on_train_begin``: find
this template's latest checkpoint, restore it, and set the model's initial epoch, the
mechanism ``keras.callbacks.BackupAndRestore`` uses (Keras's trainers start their epoch loop
at ``model._initial_epoch`` when it is set).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from ckptcore.store import validate_manifest
from ckptcore.store import load_settled
from ckptcore.digest import matches
from ckptcore.errors import ConfigError, ManifestError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ckptcore.resume import ResumePoint, pick_entry, resume_source
from ckptcore.template import FilepathTemplate

from ckptcore.adapters.keras.loading import _local_copy

__all__ = ["CheckpointMismatchError", "Restored", "end_fit", "find_resume_point", "restore_weights", "resume_fit"]

log = logging.getLogger("ckptcore")
#: The model attribute through which callbacks of one ``fit`` agree on what was restored.
_CLAIM = "_ckptcore_resumed"


class CheckpointMismatchError(ConfigError):
    """A checkpoint does not fit the model it is restored into (another architecture)."""


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_weights` restored.

    Attributes:
        point: The checkpoint, and where training continues (``point.initial_epoch``).
        optimizer: Whether the optimizer state (its iteration counter included) was restored.
        note: Why the optimizer starts fresh, when it does.
    """

    point: ResumePoint
    optimizer: bool
    note: str | None = None


def _backend(root: str, storage_options: dict[str, Any] | None) -> Any:
    from ckptcore.backends import resolve_backend

    return resolve_backend(root if "://" in root else "local", root, **(storage_options or {}))


def _pick(manifest: Manifest, which: str, template: FilepathTemplate | None) -> ManifestEntry | None:
    if which == "latest":
        return pick_entry(manifest, template)
    for entry in reversed(manifest.entries):
        if entry.is_best and (template is None or template.matches(entry.path)):
            return entry
    return None


def find_resume_point(root: Any, *, which: str = "latest", filepath: str | None = None,
                      storage_options: dict[str, Any] | None = None, other_root: bool = False) -> ResumePoint | None:
    """The ``which`` (``"latest"`` or ``"best"``) checkpoint under ``root``, or None.

    Args:
        root: A checkpoint root (directory or fsspec URL).
        which: ``"latest"`` or ``"best"``.
        filepath: A filepath template: only checkpoints it could have named count.
        storage_options: For a URL root.
        other_root: ``root`` was named as a resume source: it must hold a manifest, and
            without this template's names its latest checkpoint counts.
    """
    if which not in ("latest", "best"):
        raise ConfigError(f"which: got {which!r}; allowed: 'latest' or 'best'")
    root = os.fspath(root)
    backend = _backend(root, storage_options)
    try:
        manifest = load_settled(backend)  # a kill's pending records resolved by what is there
        if other_root:
            manifest = validate_manifest(manifest, backend.locate(MANIFEST_NAME))
        if manifest is None:
            return None
        template = None if filepath is None else FilepathTemplate(filepath)
        entry = _pick(manifest, which, template)
        if entry is None and other_root and which == "latest":
            entry = manifest.latest()
        return None if entry is None else ResumePoint.of(backend, entry)
    finally:
        backend.close()


def restore_weights(model: Any, source: Any, *, which: str = "latest", filepath: str | None = None,
                    verify: bool = True, storage_options: dict[str, Any] | None = None) -> Restored:
    """Load a checkpoint's weights (and optimizer state, where it has one) into ``model``.

    Example (restore the best weights of a ``ModelCheckpoint`` run)::

        restore_weights(model, "ckpt", which="best")

    Args:
        model: A built Keras model (its optimizer is built here when it is not yet).
        source: A checkpoint root (directory or fsspec URL), or a :class:`ResumePoint`.
        which: With a root: ``"latest"`` or ``"best"``.
        filepath: With a root several runs share: that run's filepath template.
        verify: Refuse a file whose size or digest differs from the manifest.
        storage_options: For a URL root.

    Raises:
        ManifestError: Nothing to restore under the root, or the file differs from the manifest.
        CheckpointMismatchError: The checkpoint does not fit the model (names the file).
        ConfigError: A SavedModel export, or a model that is not built.
    """
    point = source
    if not isinstance(point, ResumePoint):
        point = find_resume_point(source, which=which, filepath=filepath, storage_options=storage_options)
        if point is None:
            raise ManifestError(f"{os.fspath(source)}: no {which} checkpoint is recorded; nothing to restore")
    if not getattr(model, "built", False):
        raise ConfigError(f"model: {model.name!r} is not built; build it (call it on a batch, or give "
                          f"keras.Input a shape) before restoring {point.location}")
    backend = _backend(point.root, storage_options)
    try:
        with _local_copy(backend, point.entry, point.entry.size if verify else None) as path:
            if verify and not matches(path, point.entry.size, point.entry.digest):
                raise ManifestError(f"{point.location}: size or digest differs from the manifest; the file "
                                    "was changed or damaged after it was saved")
            optimizer, note = _load_into(model, path, point.location)
    finally:
        backend.close()
    return Restored(point, optimizer, note)


def _load_into(model: Any, path: str, location: str) -> tuple[bool, str | None]:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)  # its variables must exist to be loaded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise CheckpointMismatchError(
                f"{location}: does not fit the model {model.name!r} (another architecture?): {exc}"
            ) from exc
    skipped = [w for w in caught if "optimizer" in str(w.message)]
    for other in caught:
        if other not in skipped:
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if optimizer is None:
        return False, None
    if path.endswith(".h5") and not path.endswith(".weights.h5"):
        return False, f"{location} (legacy HDF5) holds no optimizer state"
    if skipped:
        return False, f"{location} holds no optimizer state for this optimizer ({skipped[0].message})"
    return True, None


def resume_fit(callback: Any, say: Callable[[str], None], *, root: str, filepath: str,
               resume: bool | str, storage_options: dict[str, Any] | None,
               point: ResumePoint | None = None) -> Restored | None:
    """At ``on_train_begin``: restore the latest checkpoint into the callback's model and set
    the epoch ``fit`` continues at; None (training starts fresh) when there is none.

    Several callbacks of one ``fit`` may resume: one restores only when its checkpoint
    continues later than what another restored in this ``fit``.
    """
    model = callback._require_model()
    source = resume_source(resume)
    if point is None:
        point = find_resume_point(root if source is None else source, filepath=filepath,
                                  storage_options=storage_options, other_root=source is not None)
    name = type(callback).__name__
    if point is None:
        say(f"{name}: nothing to resume from in {root or '.'}; training starts fresh")
        return None
    claim = getattr(model, _CLAIM, None)
    at = (point.initial_epoch, point.initial_step)
    if claim is not None and claim[0] is callback.params and claim[1] >= at:
        return None
    restored = restore_weights(model, point, storage_options=storage_options)
    model._initial_epoch = point.initial_epoch or None  # Keras's trainers read it after on_train_begin
    setattr(model, _CLAIM, (callback.params, at))
    again = " (it was saved mid-epoch: that epoch runs again)" if point.mid_epoch else ""
    say(f"{name}: restored {point.location}; training continues at epoch {point.initial_epoch + 1}{again}")
    epochs = (callback.params or {}).get("epochs")
    if isinstance(epochs, int) and point.initial_epoch >= epochs:
        say(f"{name}: all {epochs} epochs have run already; fit(epochs=...) more to train on")
    if restored.note is not None:
        log.warning("resume: %s; the optimizer starts fresh", restored.note)
        say(f"{name}: {restored.note}; the optimizer starts fresh")
    return restored


def end_fit(model: Any) -> None:
    """At ``on_train_end``: a later ``fit`` without resume starts where it is told to."""
    if model is not None and getattr(model, _CLAIM, None) is not None:
        setattr(model, _CLAIM, None)
        model._initial_epoch = None
