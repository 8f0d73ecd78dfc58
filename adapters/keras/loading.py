"""Loading a checkpoint back, safely: from the manifest, checked against it, with ``safe_mode``.

Nothing here unpickles: the manifest is JSON, ``.keras`` archives are read with Keras's
``safe_mode=True`` (no arbitrary code from a ``Lambda`` layer), and a checkpoint whose size or
digest differs from the manifest is refused before Keras opens it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Any, Iterator

import keras

from ckptcore.store import validate_manifest
from ckptcore.digest import matches
from ckptcore.errors import ConfigError, ManifestError, UnsafePathError
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
        verify: Refuse a file whose size or digest differs from the manifest.
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
        with _local_copy(backend, entry, entry.size if verify else None) as path:
            if verify and not matches(path, entry.size, entry.digest):
                raise ManifestError(
                    f"{backend.locate(entry.path)}: size or digest differs from the manifest; the file "
                    "was changed or damaged after it was saved (pass verify=False to load it anyway)"
                )
            return _load_file(path, model, custom_objects, compile)
    except UnsafePathError as exc:
        raise ManifestError(f"{exc.filename}: refusing to load through a symbolic link below the root") from exc
    finally:
        backend.close()


@contextlib.contextmanager
def _local_copy(backend: Any, entry: ManifestEntry, limit: int | None) -> Iterator[str]:
    """The checkpoint as a local file: in place for a local root, else downloaded for the load.

    A local one is reached without following a symbolic link below the root. A download goes
    into a private temporary directory under a name chosen here (``checkpoint`` plus the
    format's suffix), never under a name the manifest gives, and stops past ``limit`` bytes
    (the size the manifest records, when verifying).
    """
    locate_for_read = getattr(backend, "locate_for_read", None)
    location = locate_for_read(entry.path) if locate_for_read is not None else backend.locate(entry.path)
    if "://" not in location:
        if os.path.isdir(location):
            raise ConfigError(f"{location!r} is a SavedModel export, not a Keras model; "
                              "load it with keras.layers.TFSMLayer")
        if os.path.lexists(location) and not stat.S_ISREG(os.lstat(location).st_mode):
            # A FIFO would block the digest (or Keras) forever; a device is no checkpoint.
            raise ManifestError(f"{location!r} is not a regular file; refusing to load it")
        yield location
        return
    tmpdir = tempfile.mkdtemp(prefix="ckptcore-load-")
    try:
        path = os.path.join(tmpdir, "checkpoint" + _suffix(entry.name))
        _download(backend, entry.path, path, limit)
        yield path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _download(backend: Any, relpath: str, path: str, limit: int | None) -> None:
    """Copy ``relpath`` to the new local file ``path``, streamed when the backend has a file system."""
    fs = getattr(backend, "fs", None)
    with open(path, "xb") as out:
        if fs is None:
            chunks: Iterator[bytes] = iter([backend.read_bytes(relpath)])
        else:
            src = fs.open(backend.locate(relpath), "rb")
            chunks = iter(lambda: src.read(1 << 20), b"")
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                if limit is not None and total > limit:
                    raise ManifestError(f"{backend.locate(relpath)}: larger than the {limit} bytes the manifest "
                                        "records; the file was changed after it was saved (pass verify=False "
                                        "to load it anyway)")
                out.write(chunk)
        finally:
            if fs is not None:
                src.close()


def _suffix(name: str) -> str:
    """The suffix Keras reads the format from: ``.weights.h5``, ``.keras``, ``.h5`` or ``.hdf5``."""
    for suffix in (".weights.h5", ".keras", ".h5", ".hdf5"):
        if name.endswith(suffix):
            return suffix
    raise ConfigError(f"{name!r} is not a Keras checkpoint; allowed: a .keras, .h5, .hdf5 or .weights.h5 file")


def _load_file(path: str, model: Any, custom_objects: Any, compile: bool) -> Any:
    if path.endswith(".weights.h5"):
        if model is None:
            raise ConfigError(f"model: {path!r} holds weights only; pass model= to load them into")
        model.load_weights(path)
        return model
    return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile, safe_mode=True)
