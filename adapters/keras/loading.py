"""Loading a checkpoint back, safely: from the manifest, checked against it, with ``safe_mode``.

Nothing here unpickles: the manifest is JSON, ``.keras`` archives are read with Keras's
``safe_mode=True`` (no arbitrary code from a ``Lambda`` layer), and a checkpoint whose size or
sha256 differs from the manifest is refused before Keras opens it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator

import keras

from ckptcore.commit import validate_manifest
from ckptcore.digest import digest
from ckptcore.errors import ConfigError, ManifestError
from ckptcore.manifest import MANIFEST_NAME, ManifestEntry
from ckptcore.store import load_settled

__all__ = ["load_best", "load_latest"]


def load_best(root: Any, *, model: Any = None, custom_objects: dict[str, Any] | None = None,
              compile: bool = True, verify: bool = True, storage_options: dict[str, Any] | None = None) -> Any:
    """Load the best checkpoint the manifest under ``root`` records.

    Args:
        root: The checkpoint root (a directory or an fsspec URL), as in ``filepath``.
        model: For ``.weights.h5`` checkpoints: the model to load the weights into.
        custom_objects: Passed to ``keras.saving.load_model``.
        compile: Passed to ``keras.saving.load_model``.
        verify: Refuse a file whose size or sha256 differs from the manifest.
        storage_options: For a URL root: passed to the fsspec file system.

    Returns:
        The loaded model (``model`` itself for weights).

    Raises:
        ManifestError: No manifest, no best checkpoint, or a file that does not match it.
        ConfigError: A weights checkpoint without ``model``, or a SavedModel export.
        ValueError: Keras refuses the file, such as a ``Lambda`` layer under ``safe_mode``.
    """
    return _load(root, "best", model, custom_objects, compile, verify, storage_options)


def load_latest(root: Any, *, model: Any = None, custom_objects: dict[str, Any] | None = None,
                compile: bool = True, verify: bool = True, storage_options: dict[str, Any] | None = None) -> Any:
    """Load the most recent checkpoint the manifest under ``root`` records (see :func:`load_best`)."""
    return _load(root, "latest", model, custom_objects, compile, verify, storage_options)


def _load(root: Any, which: str, model: Any, custom_objects: Any, compile: bool, verify: bool,
          storage_options: dict[str, Any] | None) -> Any:
    from ckptcore.backends import resolve_backend

    root = os.fspath(root)
    backend = resolve_backend(root if "://" in root else "local", root, **(storage_options or {}))
    try:
        manifest = validate_manifest(load_settled(backend), backend.locate(MANIFEST_NAME))
        entry = manifest.best() if which == "best" else manifest.latest()
        if entry is None:
            raise ManifestError(f"{backend.locate(MANIFEST_NAME)}: no {which} checkpoint is recorded")
        with _local_copy(backend, entry) as path:
            if verify and digest(path) != (entry.size, entry.sha256):
                raise ManifestError(
                    f"{backend.locate(entry.path)}: size or sha256 differs from the manifest; the file "
                    "was changed or damaged after it was saved (pass verify=False to load it anyway)"
                )
            return _load_file(path, model, custom_objects, compile)
    finally:
        backend.close()


@contextlib.contextmanager
def _local_copy(backend: Any, entry: ManifestEntry) -> Iterator[str]:
    """The checkpoint as a local file: in place for a local root, else downloaded for the load."""
    location = backend.locate(entry.path)
    if "://" not in location:
        if os.path.isdir(location):
            raise ConfigError(f"{location!r} is a SavedModel export, not a Keras model; "
                              "load it with keras.layers.TFSMLayer")
        yield location
        return
    tmpdir = tempfile.mkdtemp(prefix="ckptcore-load-")
    try:
        path = os.path.join(tmpdir, entry.name)
        with open(path, "wb") as fh:
            fh.write(backend.read_bytes(entry.path))
        yield path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _load_file(path: str, model: Any, custom_objects: Any, compile: bool) -> Any:
    if path.endswith(".weights.h5"):
        if model is None:
            raise ConfigError(f"model: {path!r} holds weights only; pass model= to load them into")
        model.load_weights(path)
        return model
    return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile, safe_mode=True)
