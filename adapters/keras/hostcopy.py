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
    """Threads that copy: the cores this process may run on, at most 4 (1 means no pool)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, cores))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="ckptcore-copy")
        return _pool


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

    The sources must not change, and must stay alive, until :meth:`wait` returns.
    """

    def __init__(self) -> None:
        self._pending: list[Future[Any]] = []
        self._threads = workers()

    def copy(self, target: np.ndarray, source: np.ndarray) -> None:
        """Copy ``source`` into ``target`` (same shape and dtype), now or on the pool.

        Raises:
            TypeError: From NumPy, at once, when the two arrays do not match.
        """
        if target.shape != source.shape or target.dtype != source.dtype:
            np.copyto(target, source, casting="no")  # raises NumPy's own error
            return
        flat_target, flat_source = _flat(target), _flat(source)
        if self._threads == 1 or source.nbytes < PARALLEL_MIN or flat_target is None or flat_source is None:
            np.copyto(target, source, casting="no")
            return
        pool = _shared_pool()
        pieces = max(1, min(self._threads, source.nbytes // _SLICE_MIN))
        step = -(-source.nbytes // pieces)
        for start in range(0, source.nbytes, step):
            end = min(start + step, source.nbytes)
            self._pending.append(pool.submit(_copy_slice, flat_target[start:end], flat_source[start:end]))

    def wait(self) -> None:
        """Return once every copy started is done; raises the first copy's error, if any."""
        pending, self._pending = self._pending, []
        error: BaseException | None = None
        for future in pending:  # every one, even after an error: no copy may outlive the wait
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error
