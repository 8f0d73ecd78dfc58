"""Copies of large arrays into host buffers on several cores, for the snapshot of a save.

A host snapshot blocks the training thread for as long as it copies the state. One thread
copies at about one core's memory bandwidth; a few threads together reach more of the
machine's (1.4x with two threads on a two-core machine, for 227 MB). :class:`ParallelCopy`
hands each large copy to a small shared pool in slices (NumPy's ``copyto`` releases the GIL),
so the walk over the model goes on while the bytes move; :meth:`ParallelCopy.wait` returns
once every byte is in place, and the snapshot calls it before training resumes.

Small arrays, and arrays that are not plain contiguous buffers, are copied at once on the
calling thread: handing them over would cost more than the copy.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["PARALLEL_MIN", "ParallelCopy", "workers"]

#: Copies at least this large go to the pool; smaller ones run on the calling thread.
PARALLEL_MIN = 4 << 20
#: The smallest slice handed to one thread.
_SLICE_MIN = 4 << 20
_MAX_WORKERS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """Threads that copy.

    Returns:
        The cores this process may run on (its CPU affinity; a container's CPU quota is not
        read), at most 4; 1 means every copy runs on the calling thread.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, cores))


def _shared_pool() -> ThreadPoolExecutor:
    """The process's copy pool, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="ckptcore-copy")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, so start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _copy_slice(target: np.ndarray, source: np.ndarray) -> None:
    """One slice's copy, on a pool thread."""
    np.copyto(target, source)


def _flat(array: np.ndarray) -> np.ndarray | None:
    """A one-dimensional byte view of a C-contiguous array, or None."""
    if not array.flags.c_contiguous:
        return None
    return array.reshape(-1).view(np.uint8)


class ParallelCopy:
    """The copies of one snapshot: :meth:`copy` starts each, :meth:`wait` finishes them all.

    Example::

        copies = ParallelCopy()
        for target, source in pairs:
            copies.copy(target, source)
        copies.wait()  # every target holds its source's bytes

    The sources must not change, and must stay alive, until :meth:`wait` returns; a target
    handed to :meth:`copy` holds its bytes only once :meth:`wait` has returned.
    """

    def __init__(self) -> None:
        self._pending: list[Future[Any]] = []
        self._threads = workers()

    def copy(self, target: np.ndarray, source: np.ndarray) -> None:
        """Copy ``source`` into ``target``, now or on the pool.

        Args:
            target: The host buffer, of ``source``'s shape and dtype.
            source: The array to copy (a view of a variable's memory, say).

        Raises:
            ValueError: The two arrays differ in shape or dtype (no broadcasting, no casting).
        """
        if target.shape != source.shape or target.dtype != source.dtype:
            raise ValueError(f"source: got shape {source.shape} and dtype {source.dtype}; allowed: the "
                             f"target's shape {target.shape} and dtype {target.dtype}")
        flat_target, flat_source = _flat(target), _flat(source)
        if self._threads == 1 or source.nbytes < PARALLEL_MIN or flat_target is None or flat_source is None:
            np.copyto(target, source, casting="no")
            return
        pool = _shared_pool()
        pieces = max(1, min(self._threads, source.nbytes // _SLICE_MIN))
        step = -(-source.nbytes // pieces)
        for start in range(0, source.nbytes, step):
            end = min(start + step, source.nbytes)
            try:
                future = pool.submit(_copy_slice, flat_target[start:end], flat_source[start:end])
            except RuntimeError:  # the interpreter is exiting (a save from an atexit hook): here
                np.copyto(flat_target[start:], flat_source[start:])
                return
            self._pending.append(future)

    def wait(self) -> None:
        """Return once every copy started is done.

        Every copy is waited for, even after one failed: none outlives this call.

        Raises:
            Exception: The first failed copy's error.
        """
        error: BaseException | None = None
        while self._pending:
            exc = self._pending[0].exception()  # an interrupt here leaves the rest pending
            self._pending.pop(0)
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error
