"""Every use of Keras's private saving code by non-blocking saves, in one module.

Keras 3 saves a model by walking it (``keras.src.saving.saving_lib._save_state``) and handing
each variable to a store: ``store.make(path, metadata)`` opens a group, ``store[key] = value``
writes one array. :func:`record` runs that same walk with a store that copies each value into
host memory (through a ``capture`` function) instead of writing it; :func:`write_keras_archive`
and :func:`write_weights_h5` later replay the record into Keras's own ``H5IOStore``, which
produces the ``.keras`` and ``.weights.h5`` files ``model.save`` and ``model.save_weights`` write.

The private names are checked by :func:`support_problem`; when it returns a reason, callers use
a synchronous save instead. The round trip (``tests/adapters/test_async_snapshot.py``) passes
on Keras 3.6, 3.7, 3.8, 3.9, 3.10 and 3.15 with the TensorFlow, JAX and PyTorch backends; an
older release can be checked with ``pip install --no-deps --target DIR keras==3.X`` and
``PYTHONPATH=DIR KERAS_BACKEND=jax pytest tests/adapters/test_async_snapshot.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import keras
import numpy as np

from ckptcore.adapters.keras.h5image import H5Image, defer_array
from ckptcore.adapters.keras.zipstream import StoredZipWriter
from ckptcore.digest import Digest
from ckptcore.hashing import HashingFile

__all__ = [
    "KERAS_RANGE",
    "Record",
    "keras_version",
    "record",
    "support_problem",
    "variable_class",
    "weights_image",
    "write_keras_archive",
    "write_weights_h5",
]

#: Keras versions whose saving walk this module knows (lower bound included, upper excluded).
KERAS_RANGE = ((3, 6), (4, 0))

Capture = Callable[[tuple[str, str], Any], np.ndarray]

_NAMES = (
    "_save_state", "_serialize_model_as_json", "_write_to_zip_recursively", "get_temp_dir",
    "H5IOStore", "DiskIOStore", "_CONFIG_FILENAME", "_METADATA_FILENAME", "_VARS_FNAME_H5",
    "_ASSETS_DIRNAME",
)
_SAVE_STATE_PARAMS = ["saveable", "weights_store", "assets_store", "inner_path", "visited_saveables"]
_STORE_ATTRS = ("make", "close")


def keras_version() -> tuple[int, ...]:
    """The installed Keras version as a tuple of ints (``(3, 15, 1)``)."""
    parts = []
    for piece in keras.__version__.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def support_problem() -> str | None:
    """Why host-snapshot saves cannot run on this Keras, or None when they can."""
    version = keras_version()
    low, high = KERAS_RANGE
    if not low <= version[:2] < high:
        return (f"Keras {keras.__version__} is outside the versions non-blocking saves support "
                f"({'.'.join(map(str, low))} <= version < {'.'.join(map(str, high))})")
    try:
        from keras.src.saving import saving_lib
    except ImportError as exc:
        return f"keras.src.saving.saving_lib cannot be imported ({exc})"
    missing = [name for name in _NAMES if not hasattr(saving_lib, name)]
    missing += [f"H5IOStore.{a}" for a in _STORE_ATTRS if not hasattr(saving_lib.H5IOStore, a)]
    if missing:
        return f"Keras {keras.__version__} lacks saving internals: {', '.join(missing)}"
    params = list(inspect.signature(saving_lib._save_state).parameters)
    if params[: len(_SAVE_STATE_PARAMS)] != _SAVE_STATE_PARAMS:
        return f"Keras {keras.__version__} changed saving_lib._save_state{tuple(params)}"
    return None


def variable_class() -> type:
    """The base class of every Keras variable (``keras.Variable`` is a subclass of it before
    Keras 3.10, so variables that Keras creates itself are not ``keras.Variable`` there)."""
    try:
        from keras.src.backend.common.variables import KerasVariable
    except ImportError:  # pragma: no cover - a Keras that moved it
        return keras.Variable
    return KerasVariable


def _saving_lib() -> Any:
    from keras.src.saving import saving_lib

    return saving_lib


@dataclass
class Record:
    """What one save would write, held in host memory.

    Attributes:
        groups: ``(path, metadata, {key: array})`` in the order Keras visited them.
        config_json: The model config (full-model saves only).
        metadata_json: Keras's ``metadata.json`` (full-model saves only).
        assets: Keras's asset store, filled in a temporary directory (full-model saves only).
    """

    groups: list[tuple[str, dict | None, dict[str, np.ndarray]]] = field(default_factory=list)
    config_json: str | None = None
    metadata_json: str | None = None
    assets: Any = None

    @property
    def nbytes(self) -> int:
        """Bytes of array data held."""
        return sum(int(a.nbytes) for _p, _m, values in self.groups for a in values.values())

    def discard(self) -> None:
        """Drop the arrays and the temporary asset directory."""
        self.groups = []
        if self.assets is not None:
            _remove_dir(self.assets.tmp_dir)
            self.assets = None


def _remove_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class _Entry:
    """One group of the walk: the mapping a saveable's ``save_own_variables`` writes into."""

    def __init__(self, path: str, capture: Capture, values: dict[str, np.ndarray]) -> None:
        self._path = path
        self._capture = capture
        self._values = values

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = self._capture((self._path, key), value)

    def __getitem__(self, key: str) -> np.ndarray:
        return self._values[key]

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> Any:
        return self._values.keys()


def _recording_store_class() -> type:
    saving_lib = _saving_lib()

    class RecordingStore(saving_lib.H5IOStore):  # the walk accepts only H5IOStore and kin
        """Records ``make``/``__setitem__`` calls instead of writing an HDF5 file."""

        def __init__(self, target: Record, capture: Capture) -> None:  # no file is opened
            self.mode = "w"
            self.archive = None
            self._record = target
            self._capture = capture

        def __bool__(self) -> bool:
            return True

        def make(self, path: str, metadata: dict | None = None) -> _Entry:
            values: dict[str, np.ndarray] = {}
            self._record.groups.append((path, dict(metadata) if metadata else None, values))
            return _Entry(path, self._capture, values)

        def close(self) -> None:
            """Nothing to close."""

    return RecordingStore


def _save_own_variables_uncopied(optimizer: Any, store: Any) -> None:
    # The base optimizer stores ``variable.numpy()``, a fresh copy; the store copies anyway.
    for i, variable in enumerate(optimizer.variables):
        store[str(i)] = variable


@contextlib.contextmanager
def _optimizers_hand_over_variables(model: Any) -> Iterator[None]:
    """While walking, let stock optimizers pass their variables rather than numpy copies."""
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    base = BaseOptimizer.save_own_variables
    patched = []
    optimizer = getattr(model, "optimizer", None)
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if isinstance(opt, BaseOptimizer) and type(opt).save_own_variables is base:
            object.__setattr__(opt, "save_own_variables",
                               _save_own_variables_uncopied.__get__(opt))
            patched.append(opt)
    try:
        yield
    finally:
        for opt in patched:
            object.__delattr__(opt, "save_own_variables")


#: Object types whose attribute skip-sets Keras's saving walk asks for on every save.
_SKIPSET_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")
_SKIPSETS: dict[str, Any] = {}


def _seed_skipsets() -> None:
    """Let Keras's saving walk find its attribute skip-sets in its cache.

    ``saving_lib.get_attr_skipset`` builds a reference object (a ``Layer()``, an
    ``Optimizer(1.0)``, ...) to list the attributes it skips, and caches the result in the
    thread's global state, but under another key than the one it reads (``..._skipset_`` set,
    ``..._skiplist_`` read), so every save rebuilds them: about 20 ms a save, on the training
    thread for a non-blocking save. The sets are computed once per process here and put under
    the key the walk reads.
    """
    from keras.src.backend.common import global_state

    saving_lib = _saving_lib()
    for obj_type in _SKIPSET_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key) is None:
            if obj_type not in _SKIPSETS:
                _SKIPSETS[obj_type] = saving_lib.get_attr_skipset(obj_type)
            global_state.set_global_attribute(key, _SKIPSETS[obj_type])


def record(model: Any, capture: Capture, *, weights_only: bool) -> Record:
    """Walk ``model`` as Keras's saving does, capturing every array on this thread.

    Args:
        model: A built Keras model.
        capture: ``capture((group_path, key), value)`` returns a host copy of ``value``.
        weights_only: Record what ``save_weights`` writes (no config, no assets).

    Returns:
        The record to hand to :func:`write_keras_archive` or :func:`write_weights_h5`.
    """
    saving_lib = _saving_lib()
    if hasattr(saving_lib, "get_attr_skipset"):
        _seed_skipsets()
    target = Record()
    assets = None
    try:
        if not weights_only:
            target.config_json, target.metadata_json = saving_lib._serialize_model_as_json(model)
            assets = saving_lib.DiskIOStore(saving_lib._ASSETS_DIRNAME, mode="w")
            target.assets = assets
            # Not at exit: a write still pending then (the writer finishes it) needs the files.
            weakref.finalize(target, _remove_dir, assets.tmp_dir).atexit = False
        store = _recording_store_class()(target, capture)
        with _optimizers_hand_over_variables(model):
            saving_lib._save_state(model, weights_store=store, assets_store=assets,
                                   inner_path="", visited_saveables=set())
    except BaseException:
        target.discard()
        raise
    return target


def _write_array(image: H5Image | None, group: Any, key: str, value: np.ndarray) -> None:
    """Write one host array into an h5py group the way Keras's H5 stores do."""
    from keras.src import backend

    if backend.standardize_dtype(value.dtype) == "bfloat16":
        dataset = group.create_dataset(key, data=value)
        dataset.attrs["dtype"] = "bfloat16"
    else:
        defer_array(image, group, key, value)


def _replay_store_class() -> type:
    saving_lib = _saving_lib()

    class ReplayStore(saving_lib.H5IOStore):
        """Keras's H5IOStore on an :class:`H5Image`, writing host arrays without a copy."""

        def __init__(self, image: H5Image) -> None:
            self.image = image
            super().__init__(image, mode="w")

        def __setitem__(self, key: str, value: Any) -> None:
            # Keras >= 3.10: make() returns the store, which creates its group lazily.
            if not isinstance(value, np.ndarray) or not hasattr(self, "_h5_entry_initialized"):
                super().__setitem__(key, value)
                return
            if not self._h5_entry_initialized:
                self._create_h5_group(self._h5_entry_path)
            _write_array(self.image, self._h5_entry_group, key, value)

    return ReplayStore


def _replay(target: Record, store: Any) -> None:
    for path, metadata, values in target.groups:
        entry = store.make(path, metadata=metadata)
        # Keras < 3.10: make() returns an H5Entry whose h5py group already exists.
        group = getattr(entry, "group", None) if entry is not store else None
        for key, value in values.items():
            if group is not None and hasattr(group, "create_dataset") and isinstance(value, np.ndarray):
                _write_array(store.image, group, key, value)
            else:
                entry[key] = value


def weights_image(target: Record) -> H5Image:
    """The ``.weights.h5`` file of ``target`` in memory, its large arrays left in place."""
    image = H5Image()
    store = _replay_store_class()(image)
    try:
        _replay(target, store)
    finally:
        store.close()
    return image


def write_weights_h5(target: Record, path: str) -> Digest:
    """Write ``target`` as a ``.weights.h5`` file at ``path`` (what ``save_weights`` writes).

    Returns:
        The file's size and digest, computed while writing it.
    """
    image = weights_image(target)
    with HashingFile(path, stable_buffers=True) as out:
        image.stream(out)
    return out.digest


def write_keras_archive(target: Record, path: str) -> Digest:
    """Write ``target`` as a ``.keras`` zip archive at ``path`` (what ``model.save`` writes).

    The weights file is built in memory with its arrays left in their host buffers, then
    written into the archive in one pass (:class:`StoredZipWriter`: a forward-only stream, the
    weights member's CRC-32 after its data), hashed as it is written.

    Returns:
        The archive's size and digest, computed while writing it.
    """
    saving_lib = _saving_lib()
    if target.config_json is None or target.metadata_json is None:
        raise ValueError("write_keras_archive: the record holds weights only; record the full model")
    image = weights_image(target)
    with HashingFile(path, stable_buffers=True) as out:
        with StoredZipWriter(out) as archive:
            archive.writestr(saving_lib._METADATA_FILENAME, target.metadata_json)
            archive.writestr(saving_lib._CONFIG_FILENAME, target.config_json)
            with archive.open(saving_lib._VARS_FNAME_H5, image.size) as member:
                image.stream(member)
            if target.assets is not None:
                target.assets.archive = archive  # its close() adds the asset files, then removes them
                target.assets.close()
                target.assets = None
    return out.digest
