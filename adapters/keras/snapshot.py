"""Non-blocking Keras saves: a host snapshot on the training thread, the file write later.

:class:`KerasSnapshot` is the ``snapshot=`` callable of :class:`ckptcore.Checkpointer`. Called on
the training thread, it copies the model and optimizer state into host (numpy) buffers, once
per array, and returns a ``write(path)`` function that the background writer runs later to
produce the same ``.keras`` or ``.weights.h5`` file Keras writes. Training steps taken after the
call never reach that file.

Host buffers are kept between saves and reused (``np.copyto`` into arrays already paged in), so
a steady-state save costs one memory copy of the state, which large arrays spread over the
cores (:mod:`ckptcore.adapters.keras.hostcopy`). A buffer set is handed back when its
write finishes; with the engine's back-pressure that means one set per pending save.

The writes stream each array from its host buffer into the file, hashed as written
(:mod:`ckptcore.adapters.keras.h5image`); ``write(path)`` returns the file's
:class:`ckptcore.digest.Digest`. A legacy ``.h5`` file is built in memory on the training thread
(h5py's legacy writer cannot be replayed) and streamed out later. A SavedModel export and Keras
versions whose saving internals are unknown fall back to a synchronous write on the training
thread into a temporary location; the background thread then only moves it into place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import weakref
from typing import Any, Callable

import numpy as np

from ckptcore.adapters.keras.hostcopy import ParallelCopy
from ckptcore.warn import warn

__all__ = ["HostBuffers", "KerasSnapshot", "host_array"]

log = logging.getLogger("ckptcore")

WriteFn = Callable[[str], Any]
_PLAIN_KINDS = frozenset("biufc")  # bool, int, uint, float, complex: numpy copies them bitwise


def host_array(value: Any) -> tuple[np.ndarray, bool]:
    """A host (numpy) array holding ``value``'s data, copying only when there is no other way.

    Args:
        value: A Keras variable, a backend tensor or anything numpy accepts.

    Returns:
        ``(array, fresh)``: ``fresh`` is True when ``array`` is a new copy this call made (and
        may be kept); False when it may share memory with ``value`` and must be copied at once.
    """
    import keras

    from ckptcore.adapters.keras._saving_internals import variable_class

    if isinstance(value, variable_class()):
        value = value.value
    if isinstance(value, np.ndarray):
        return value, False
    gathered = _gather_across_processes(value)
    if gathered is not None:
        return gathered, True
    view = _backend_view(value)
    if view is not None and view.dtype.kind in _PLAIN_KINDS:
        return view, False
    return np.array(keras.ops.convert_to_numpy(value)), True


def _gather_across_processes(value: Any) -> np.ndarray | None:
    """The whole of a JAX array sharded over several processes' devices, else None.

    A collective: every process of the job must call it for the same array, as every worker
    takes the same save decisions and walks the model's variables in the same order.
    """
    if not type(value).__module__.startswith(("jax", "jaxlib")):
        return None
    if getattr(value, "is_fully_addressable", True) or getattr(value, "is_fully_replicated", True):
        return None
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _backend_view(value: Any) -> np.ndarray | None:
    """A numpy array over a CPU tensor's memory (no copy), or None when there is none."""
    module = type(value).__module__
    try:
        if module.startswith("tensorflow"):
            if hasattr(value, "read_value"):  # a tf.Variable: a read shares the buffer
                value = value.read_value()
            return np.asarray(value)
        if module.startswith(("jax", "jaxlib")):
            return np.asarray(value)
        if module.startswith("torch"):
            tensor = value.detach()
            return tensor.numpy() if tensor.device.type == "cpu" else None
    except (TypeError, ValueError, RuntimeError):
        return None
    return None


class HostBuffers:
    """One snapshot's host arrays, keyed by ``(group path, key)``, reused from save to save.

    :meth:`capture` may leave a large copy running on other cores
    (:class:`ckptcore.adapters.keras.hostcopy.ParallelCopy`); :meth:`settle` waits for them, and
    the arrays hold the snapshot only after it returns.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, str], np.ndarray] = {}
        self._copies = ParallelCopy()
        self._copying: set[tuple[str, str]] = set()  # slots captured since the last settle

    @property
    def nbytes(self) -> int:
        """Bytes of host memory held."""
        return sum(int(a.nbytes) for a in self._arrays.values())

    def capture(self, slot: tuple[str, str], value: Any) -> np.ndarray:
        """Copy ``value`` into the buffer for ``slot`` (allocated on first use) and return it.

        ``value`` must not change, and the buffer returned holds it only, once :meth:`settle`
        has returned.
        """
        if slot in self._copying:  # the same slot twice in one snapshot: the last value wins
            self.settle()
        array, fresh = host_array(value)
        if array.dtype.kind not in _PLAIN_KINDS:  # strings, objects: no reuse, a plain copy
            kept = np.array(array, copy=not fresh)
        elif fresh:
            kept = array
        else:
            kept = self._arrays.get(slot)
            if kept is None or kept.shape != array.shape or kept.dtype != array.dtype:
                kept = np.empty(array.shape, array.dtype)
            self._copies.copy(kept, array)
            self._copying.add(slot)
        self._arrays[slot] = kept
        return kept

    def settle(self) -> None:
        """Wait until every copy :meth:`capture` started is done.

        Raises:
            Exception: A copy's error.
        """
        self._copying.clear()
        self._copies.wait()


class _Pool:
    """Free buffer sets. A set in use belongs to one pending write, which hands it back."""

    def __init__(self) -> None:
        self._free: list[HostBuffers] = []
        self._alive: weakref.WeakSet[HostBuffers] = weakref.WeakSet()
        self._lock = threading.Lock()

    @property
    def alive(self) -> int:
        """Buffer sets in existence: free ones plus those held by pending writes."""
        with self._lock:
            return len(self._alive)

    def acquire(self) -> HostBuffers:
        with self._lock:
            if self._free:
                return self._free.pop()
            buffers = HostBuffers()
            self._alive.add(buffers)
            return buffers

    def release(self, buffers: HostBuffers) -> None:
        with self._lock:
            self._free.append(buffers)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


class _ReplayWrite:
    """``write(path)`` for the background thread: replays one record into a Keras file."""

    def __init__(self, record: Any, buffers: HostBuffers, pool: _Pool, writer: WriteFn) -> None:
        self.record = record
        self.nbytes = record.nbytes
        self._buffers: HostBuffers | None = buffers
        self._pool = pool
        self._writer = writer

    def __call__(self, path: str) -> Any:
        if self._buffers is None:
            raise RuntimeError("this snapshot was already written; take a new one")
        try:
            return self._writer(self.record, path)
        finally:
            self.skip()

    def skip(self) -> None:
        """Drop the snapshot unwritten (a worker that is not the chief): the buffers go back."""
        if self._buffers is not None:
            self.record.discard()
            self._pool.release(self._buffers)
            self._buffers = None


class _MoveWrite:
    """``write(path)`` for a save made synchronously into a temporary location."""

    def __init__(self, source: str, tmpdir: str, written: Any = None) -> None:
        self._source = source
        self._tmpdir = tmpdir
        self._written = written  # the digest the synchronous write computed, if any
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmpdir, True)
        self._cleanup.atexit = False  # a write pending at exit still needs the file

    def __call__(self, path: str) -> Any:
        try:
            shutil.move(self._source, path)
        finally:
            self._cleanup()
        return self._written


class _ImageWrite:
    """``write(path)`` for a legacy ``.h5`` file built in memory on the training thread."""

    def __init__(self, image: Any) -> None:
        self._image = image

    def __call__(self, path: str) -> Any:
        from ckptcore.adapters.keras.writers import stream_image

        if self._image is None:
            raise RuntimeError("this snapshot was already written; take a new one")
        image, self._image = self._image, None
        return stream_image(image, path)

    def skip(self) -> None:
        """Drop the image unwritten (a worker that is not the chief)."""
        self._image = None


_SYNC_NAMES = {"keras": "checkpoint.keras", "weights.h5": "checkpoint.weights.h5",
               "h5": "checkpoint.h5", "saved_model": "checkpoint"}
_REPLAYED = ("keras", "weights.h5")


class KerasSnapshot:
    """The ``snapshot=`` callable of :class:`ckptcore.Checkpointer` for a Keras model.

    Example::

        snap = KerasSnapshot(lambda: callback.model, "keras", sync_write=write_model)
        ck = Checkpointer("ck/m-{epoch}.keras", write=write_model, snapshot=snap,
                          async_save=True)

    Args:
        model: Returns the model to save (a callback's ``model`` property, which also brings
            the JAX backend's training state back onto the model).
        fmt: The format, one of ``ckptcore.adapters.keras.FORMATS``: ``"keras"`` and
            ``"weights.h5"`` are snapshotted; ``"h5"`` and ``"saved_model"`` are written
            synchronously.
        sync_write: ``sync_write(path)`` saves the model synchronously; used for formats the
            snapshot cannot replay (``.h5``, SavedModel) and on unsupported Keras versions.
    """

    def __init__(self, model: Callable[[], Any], fmt: str, *, sync_write: WriteFn) -> None:
        if not callable(model):
            raise TypeError(f"model: got {model!r}; allowed: a callable returning the model")
        if not callable(sync_write):
            raise TypeError(f"sync_write: got {sync_write!r}; allowed: a callable write(path)")
        self._model = model
        self._sync_write = sync_write
        if fmt not in _SYNC_NAMES:
            raise ValueError(f"fmt: got {fmt!r}; allowed: {', '.join(map(repr, _SYNC_NAMES))}")
        self.format = fmt
        self._sync_name = _SYNC_NAMES[fmt]
        self.kind = fmt if fmt in _REPLAYED else "sync"
        self.reason: str | None = None
        if self.kind == "sync":
            self.reason = (f"the {fmt!r} format is written by Keras directly" if fmt != "h5" else
                           "the legacy 'h5' file is built in memory on the training thread")
        else:
            from ckptcore.adapters.keras import _saving_internals as internals

            self.reason = internals.support_problem()
            if self.reason is not None:
                warn(f"non-blocking saves write synchronously: {self.reason}")
                self.kind = "sync"
        self._pool = _Pool()

    @property
    def replays(self) -> bool:
        """True when saves are host snapshots written later; False when they are synchronous."""
        return self.kind != "sync"

    def __call__(self) -> WriteFn:
        """Take the snapshot now (training thread); return the ``write(path)`` for later."""
        if self.format == "h5" and self.kind == "sync":
            from ckptcore.adapters.keras.writers import legacy_h5_image

            return _ImageWrite(legacy_h5_image(self._model()))
        if self.kind == "sync":
            return self._sync()
        model = self._model()
        from ckptcore.adapters.keras import _saving_internals as internals

        weights_only = self.kind == "weights.h5"
        if weights_only and not model.built:
            raise ValueError("You are saving a model that has not yet been built; build it "
                             "(call it on data or call build()) before saving weights")
        buffers = self._pool.acquire()
        try:
            try:
                record = internals.record(model, buffers.capture, weights_only=weights_only)
            except BaseException:
                with contextlib.suppress(Exception):  # the walk's error is the one to report
                    buffers.settle()
                raise
            buffers.settle()  # training may change the variables once this call returns
        except Exception as exc:  # noqa: BLE001 - an unknown saveable: save synchronously
            self._pool.release(buffers)
            self._give_up(exc)
            return self._sync()
        writer = internals.write_weights_h5 if weights_only else internals.write_keras_archive
        return _ReplayWrite(record, buffers, self._pool, writer)

    @property
    def buffer_sets(self) -> int:
        """Sets of host buffers in existence (one snapshot of the state each)."""
        return self._pool.alive

    def release(self) -> None:
        """Free the host buffers kept for reuse (pending writes keep theirs until done)."""
        self._pool.clear()

    def _give_up(self, exc: Exception) -> None:
        self.reason = f"taking a host snapshot failed ({type(exc).__name__}: {exc})"
        self.kind = "sync"
        log.warning("non-blocking saves write synchronously from now on: %s", self.reason)

    def _sync(self) -> WriteFn:
        tmpdir = tempfile.mkdtemp(prefix="ckptcore-sync-")
        target = os.path.join(tmpdir, self._sync_name)
        try:
            written = self._sync_write(target)
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        return _MoveWrite(target, tmpdir, written)

    def __repr__(self) -> str:
        return f"KerasSnapshot({self.format!r}, replays={self.replays})"
