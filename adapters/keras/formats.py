"""Checkpoint file formats of the Keras adapter: detection, Keras's extension checks, writers.

The format follows the filepath, as in Keras 3:

=================  ===========================  ==========================================
filepath ends in   ``save_weights_only``        written with
=================  ===========================  ==========================================
``.keras``         False                        what ``model.save`` writes (Keras archive)
``.h5``            False                        what ``model.save`` writes (legacy HDF5)
``.weights.h5``    True                         what ``model.save_weights`` writes
no suffix          False                        a TensorFlow SavedModel export directory
=================  ===========================  ==========================================

The files are the ones Keras writes, produced in one pass by
:mod:`ckptcore.adapters.keras.writers` (hashed while written, a full disk reported as an
``OSError``); a SavedModel is exported by Keras. Every check runs at construction, so a wrong filepath fails before training starts. The
writers are built in one place, :func:`make_write`, so that another way of writing (such as a
host snapshot written on a background thread) can replace them without touching the callback.
"""

from __future__ import annotations

import re
import string
from typing import Any, Callable

from ckptcore.errors import ConfigError

__all__ = [
    "FORMATS",
    "H5",
    "KERAS",
    "SAVED_MODEL",
    "WEIGHTS_H5",
    "check_backend",
    "check_options",
    "detect_format",
    "make_write",
]

KERAS = "keras"
H5 = "h5"
WEIGHTS_H5 = "weights.h5"
SAVED_MODEL = "saved_model"
FORMATS: tuple[str, ...] = (KERAS, H5, WEIGHTS_H5, SAVED_MODEL)

WriteFn = Callable[[str], Any]
ModelFn = Callable[[], Any]

_WEIGHTS_MESSAGE = (
    "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end "
    "in `.weights.h5` (Keras weights format). Received: filepath={filepath}"
)
_MODEL_MESSAGE = (
    "The filepath provided must end in `.keras` (Keras model format). Received: "
    "filepath={filepath}. Also allowed: `.h5` (legacy HDF5 model), or no suffix at all, which "
    "exports a TensorFlow SavedModel directory (TensorFlow backend only)."
)


def _trailing_literal(filepath: str) -> str:
    """The text after the last placeholder of the file name (the whole name if it has none)."""
    name = re.split(r"[\\/]", filepath)[-1]
    parts = list(string.Formatter().parse(name))
    if not parts or parts[-1][1] is not None:
        return ""
    return parts[-1][0]


def detect_format(filepath: str, save_weights_only: bool) -> str:
    """Return the format a filepath selects, with the checks Keras 3 makes.

    Args:
        filepath: The filepath template (placeholders allowed).
        save_weights_only: Whether only the weights are saved.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        ConfigError: The suffix does not fit ``save_weights_only`` (Keras's own messages), or
            names no format Keras can write.
    """
    if save_weights_only:
        if not filepath.endswith(".weights.h5"):
            raise ConfigError(_WEIGHTS_MESSAGE.format(filepath=filepath))
        return WEIGHTS_H5
    if filepath.endswith(".weights.h5"):
        # Keras would write a legacy full-model HDF5 file under a weights name, which
        # model.load_weights then cannot read.
        raise ConfigError(
            f"filepath: {filepath!r} ends in `.weights.h5` (Keras weights format) but "
            "save_weights_only=False; pass save_weights_only=True to save the weights, or use "
            "a `.keras` filepath to save the whole model"
        )
    if filepath.endswith(".keras"):
        return KERAS
    if filepath.endswith(".h5"):
        return H5
    if "." not in _trailing_literal(filepath):
        return SAVED_MODEL
    raise ConfigError(_MODEL_MESSAGE.format(filepath=filepath))


def check_backend(fmt: str, filepath: str, backend: str) -> None:
    """Check that the Keras backend can write ``fmt``.

    Raises:
        ConfigError: A SavedModel export is asked for under a backend other than TensorFlow.
    """
    if fmt == SAVED_MODEL and backend != "tensorflow":
        raise ConfigError(
            f"filepath: {filepath!r} has no suffix, which exports a TensorFlow SavedModel "
            f"directory; that needs KERAS_BACKEND=tensorflow, but the backend is {backend!r}. "
            "Use a `.keras` filepath (whole model) or a `.weights.h5` filepath with "
            "save_weights_only=True instead"
        )


def check_options(fmt: str, options: Any) -> Any:
    """Validate ``options`` for ``fmt`` and return it.

    Only the SavedModel export takes options (a ``tf.saved_model.SaveOptions``); Keras 3's
    ``.keras``, ``.h5`` and ``.weights.h5`` writers take none.

    Raises:
        ConfigError: ``options`` does not fit the format.
    """
    if options is None:
        return None
    if fmt == SAVED_MODEL:
        import tensorflow as tf  # the format is only allowed under the TensorFlow backend

        if isinstance(options, tf.saved_model.SaveOptions):
            return options
        allowed = "None or a tf.saved_model.SaveOptions"
    else:
        allowed = (
            f"None; the `.{fmt}` format of Keras 3 takes no options (options apply to a "
            "SavedModel export: a filepath without a suffix, with tf.saved_model.SaveOptions)"
        )
    hint = ""
    if isinstance(options, (int, float)) and not isinstance(options, bool):
        # Keras 3 and W&B dropped `options`: their 8th positional argument is the threshold.
        hint = (f"; a number here is Keras 3's 8th positional argument, pass it as "
                f"initial_value_threshold={options!r}")
    raise ConfigError(f"options: got {options!r} ({type(options).__name__}); allowed: {allowed}{hint}")


_WRITERS = {KERAS: "write_keras_model", H5: "write_h5_model", WEIGHTS_H5: "write_weights"}


def _write_file(model_fn: ModelFn, fmt: str, path: str) -> Any:
    """Save in one pass through :mod:`ckptcore.adapters.keras.writers`; returns its digest."""
    from ckptcore.adapters.keras import writers

    return getattr(writers, _WRITERS[fmt])(model_fn(), path)


def _export_saved_model(model_fn: ModelFn, options: Any, path: str) -> None:
    model = model_fn()
    if options is None:
        model.export(path, format="tf_saved_model", verbose=False)
        return
    from keras.export import ExportArchive
    from keras.src.export.export_utils import get_input_signature

    archive = ExportArchive()
    archive.track_and_add_endpoint("serve", model, get_input_signature(model))
    archive.write_out(path, options=options, verbose=False)


def make_write(model_fn: ModelFn, fmt: str, options: Any = None) -> WriteFn:
    """Return ``write(path)`` that saves the model in ``fmt`` to ``path``.

    Args:
        model_fn: Returns the model at write time (under JAX, reading ``callback.model``
            first syncs the training state into the model's variables).
        fmt: One of :data:`FORMATS`.
        options: Validated by :func:`check_options`.
    """
    if fmt in _WRITERS:
        return lambda path: _write_file(model_fn, fmt, path)
    if fmt == SAVED_MODEL:
        return lambda path: _export_saved_model(model_fn, options, path)
    raise ConfigError(f"format: got {fmt!r}; allowed: {', '.join(FORMATS)}")
