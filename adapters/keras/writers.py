"""Synchronous Keras saves in one pass: the file streamed from the model's memory, hashed as written.

``model.save`` and ``model.save_weights`` let h5py write the file (where a full disk can crash
the process inside HDF5), and the commit then reads the file back for its digest. The writers
here instead walk the model as Keras's saving does, taking each array's memory as it is (a view
where the backend allows, no copy) and write the same ``.keras``, ``.weights.h5`` or legacy
``.h5`` file through Python's own writes, returning its :class:`ckptcore.digest.Digest`. A write
fault is an ``OSError`` the save reports.

When Keras's saving internals are not the ones this adapter knows, or the walk meets something
it cannot record, the writers fall back to ``model.save`` / ``save_weights`` (and the file is
read back for its digest).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ckptcore.adapters.keras.h5image import H5Image
from ckptcore.digest import Digest
from ckptcore.hashing import HashingFile

__all__ = ["legacy_h5_image", "stream_image", "write_h5_model", "write_keras_model", "write_weights"]

log = logging.getLogger("ckptcore")
_PLAIN_KINDS = frozenset("biufc")


def _view(slot: tuple[str, str], value: Any) -> np.ndarray:
    """The host array of ``value`` without a copy where one exists (the save is synchronous)."""
    from ckptcore.adapters.keras.snapshot import host_array

    array, _fresh = host_array(value)
    if array.dtype.kind not in _PLAIN_KINDS:
        return np.array(array)
    return array


def _recorded(model: Any, weights_only: bool) -> Any | None:
    """The model's saving walk with views of its arrays, or None when Keras's own save is needed."""
    from ckptcore.adapters.keras import _saving_internals as internals

    if (reason := internals.support_problem()) is not None:
        log.debug("saving with Keras directly: %s", reason)
        return None
    try:
        return internals.record(model, _view, weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - an unknown saveable: Keras's own save writes it
        log.debug("saving with Keras directly: recording the model failed: %s", exc)
        return None


def _write_recorded(model: Any, path: str, weights_only: bool) -> Digest | None:
    """Record ``model`` and write it at ``path`` in one pass, or let Keras save it."""
    from ckptcore.adapters.keras import _saving_internals as internals

    target = _recorded(model, weights_only=weights_only)
    if target is None:
        if weights_only:
            model.save_weights(path, overwrite=True)
        else:
            model.save(path, overwrite=True)
        return None
    try:
        write = internals.write_weights_h5 if weights_only else internals.write_keras_archive
        return write(target, path)
    finally:
        target.discard()


def write_keras_model(model: Any, path: str) -> Digest | None:
    """Write ``model`` as a ``.keras`` archive at ``path``, as ``model.save(path)`` does.

    Returns:
        The archive's digest, or None when Keras wrote it (then it has to be read back).
    """
    return _write_recorded(model, path, weights_only=False)


def write_weights(model: Any, path: str) -> Digest | None:
    """Write ``model``'s weights as a ``.weights.h5`` file, as ``model.save_weights(path)`` does.

    Raises:
        ValueError: The model is not built (Keras's own condition for saving weights).
    """
    if not model.built:
        raise ValueError("You are saving a model that has not yet been built; build it "
                         "(call it on data or call build()) before saving weights")
    return _write_recorded(model, path, weights_only=True)


def legacy_h5_image(model: Any) -> H5Image:
    """The legacy ``.h5`` full-model file of ``model`` (``model.save("m.h5")``), in memory."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    image = H5Image()
    with h5py.File(image, "w") as h5:
        legacy_h5_format.save_model_to_hdf5(model, h5)
    return image


def stream_image(image: H5Image, path: str) -> Digest:
    """Write an in-memory HDF5 file to ``path`` in one pass; returns its digest."""
    with HashingFile(path, stable_buffers=True) as out:
        image.stream(out)
    return out.digest


def write_h5_model(model: Any, path: str) -> Digest:
    """Write ``model`` as a legacy ``.h5`` file at ``path``, as ``model.save(path)`` does."""
    return stream_image(legacy_h5_image(model), path)
