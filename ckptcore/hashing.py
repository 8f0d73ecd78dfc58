"""Write a file once and know its digest at the end: no read-back, no extra buffering.

:class:`HashingFile` is a write-only, forward-only binary file. Each ``write`` goes straight to
the file descriptor (no Python-level buffer, so a large array is written from its own memory)
and is hashed on the way. Large writes are hashed on a helper thread while this thread writes
them (BLAKE3, ``hashlib`` and ``os.write`` all release the GIL on large buffers), so hashing costs
little more than the write itself. With ``stable_buffers=True`` (the caller never changes a
buffer it wrote before the file is closed) ``write`` waits for neither: one helper thread
hashes and another writes, each in order, while the caller prepares the next piece (a zip
member's CRC-32, say), so the three run on as many cores as there are.

A full disk, a file size limit or any other write fault raises ``OSError`` in Python, where
the caller can report it: from ``write``, or with ``stable_buffers`` from a later ``write``, from
:attr:`HashingFile.digest` or from ``close``.

The file is not fsynced here: the backend that commits it does that once, before its rename.
On Linux the kernel is asked to start writing each 32 MiB to disk as soon as it is written
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which neither waits nor drops the cached pages), so
that final fsync finds little left to do.
It does not seek, so writers that need to seek back (``zipfile``) see a stream and write
their sizes after the data instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import queue
import sys
import threading
from typing import Any, Callable

from ckptcore.digest import DEFAULT, Digest, new_hash

__all__ = ["HashingFile"]

#: Writes at least this large are hashed on the helper thread while they are written.
OVERLAP_MIN = 1 << 20
#: Slice of a large write: hashed on one side while written on the other.
SLICE = 8 << 20
#: Slices each helper thread may have waiting (bounds the memory a fast caller holds).
DEPTH = 4
#: Written bytes handed to the kernel's writeback at a time.
WRITEBACK = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2
_PAGE = 1 << 16  # a multiple of every page size in use (4 KiB, 16 KiB, 64 KiB)


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """``start(fd, offset, length)``: start writeback of that range without waiting (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return lambda fd, offset, length: fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE) and None


_START_WRITEBACK = _sync_file_range()


class _Worker:
    """One helper thread applying ``apply`` to the pieces handed to it, in order.

    At most ``depth`` pieces wait at once (:meth:`start` blocks until one is done), so a caller
    faster than the disk holds a few slices in memory, not the whole file. The first exception
    ``apply`` raises is kept (the pieces after it are dropped) and raised by :meth:`join`.
    """

    def __init__(self, apply: Callable[[Any], None], name: str, depth: int = DEPTH) -> None:
        self._apply = apply
        self._slots = threading.BoundedSemaphore(depth)
        self._todo: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._queued = 0
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failed = False
        while (piece := self._todo.get()) is not None:
            outcome: BaseException | None = None
            if not failed:
                try:
                    self._apply(piece)
                except BaseException as exc:  # noqa: BLE001 - handed back to the writing thread
                    failed = True
                    outcome = exc
            del piece
            self._slots.release()
            self._done.put(outcome)

    def start(self, piece: Any) -> None:
        """Queue ``piece``, once fewer than ``depth`` pieces are waiting."""
        self._slots.acquire()
        self._todo.put(piece)
        self._queued += 1

    def check(self) -> None:
        """Raise the first failure seen so far, without waiting."""
        while self._queued:
            try:
                exc = self._done.get_nowait()
            except queue.Empty:
                break
            self._queued -= 1
            self._failed = self._failed or exc
        if self._failed is not None:
            raise self._failed

    def join(self) -> None:
        """Wait for every piece handed over so far; raise the first failure."""
        while self._queued:
            exc = self._done.get()
            self._queued -= 1
            self._failed = self._failed or exc
        if self._failed is not None:
            raise self._failed

    def stop(self) -> None:
        self._todo.put(None)
        self._thread.join()


class _Sink:
    """Writes whole buffers to a file descriptor, starting the kernel's writeback as it goes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written = 0  # bytes on the file descriptor
        self.written_back = 0

    def write_all(self, view: memoryview) -> None:
        while view.nbytes:
            written = os.write(self.fd, view)
            view = view[written:]
            self.written += written
        # Whole pages only: a page under writeback that the next write fills up would make that
        # write wait for the disk (file offsets after a zip or HDF5 header are not page-aligned).
        end = self.written & ~(_PAGE - 1)
        if _START_WRITEBACK is not None and end - self.written_back >= WRITEBACK:
            _START_WRITEBACK(self.fd, self.written_back, end - self.written_back)  # a hint: no errors
            self.written_back = end


class HashingFile(io.RawIOBase):
    """A new file at ``path``, written forward only, hashed while written.

    Example::

        with HashingFile(path) as out:
            out.write(header)
            out.write(array.data)
        size, digest = out.digest  # digest: "blake3:..."

    Args:
        path: The file to create (truncated if it exists; a symbolic link there is refused).
        stable_buffers: The caller promises not to change any buffer it passed to ``write``
            until the file is closed. Large writes then return at once: they are hashed on
            one helper thread and written on another, in order, while the caller prepares
            the next piece (a zip member's CRC, say). A write fault is raised by a later
            ``write``, by :attr:`digest` or by ``close``.
        algorithm: The digest's, one of :data:`ckptcore.digest.ALGORITHMS`.
    """

    def __init__(self, path: str, stable_buffers: bool = False, algorithm: str = DEFAULT) -> None:
        super().__init__()
        self.path = path
        self._algorithm = algorithm
        self._hash = new_hash(algorithm)  # before the file is created: an unknown one creates nothing
        self._stable = stable_buffers
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        self._fd = os.open(path, flags, 0o644)  # never through a symbolic link
        self._size = 0  # bytes accepted
        self._sink = _Sink(self._fd)  # what the writer thread holds: not this object, so an
        # unclosed file is still collected (and closed) like any other
        self._hasher: _Worker | None = None
        self._writer: _Worker | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise io.UnsupportedOperation("HashingFile is a forward-only stream")

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("HashingFile is a forward-only stream")

    def write(self, data: Any) -> int:
        """Write all of ``data`` (any bytes-like object) and hash it; returns its length."""
        if self.closed:
            raise ValueError(f"write to a closed file {self.path!r}")
        view = memoryview(data).cast("B")
        size = view.nbytes
        if size >= OVERLAP_MIN and self._hasher is None:
            self._hasher = _Worker(self._hash.update, "ckptcore-hash")
            if self._stable:
                self._writer = _Worker(self._sink.write_all, "ckptcore-write")
        if self._hasher is None:  # small writes before any large one: on this thread
            self._hash.update(view)
            self._write_all(view)
        elif self._writer is not None:  # stable buffers: both sides behind the caller
            self._writer.check()
            piece = memoryview(bytes(view)) if size < OVERLAP_MIN else view  # a small one may be reused
            for start in range(0, size, SLICE):
                self._hasher.start(piece[start:start + SLICE])
                self._writer.start(piece[start:start + SLICE])
        elif size < OVERLAP_MIN:  # in order behind the queued slices; a copy, as it is small
            self._hasher.start(bytes(view))
            self._write_all(view)
        else:
            for start in range(0, size, SLICE):
                piece = view[start:start + SLICE]
                self._hasher.start(piece)
                try:
                    self._write_all(piece)
                finally:
                    self._hasher.join()
        self._size += size
        return size

    def _write_all(self, view: memoryview) -> None:
        self._sink.write_all(view)

    def _finish(self) -> None:
        """Wait for every write and hash handed to the helper threads."""
        for worker in (self._writer, self._hasher):
            if worker is not None:
                worker.join()

    @property
    def size(self) -> int:
        """Bytes written so far (with ``stable_buffers``, some may still be on their way)."""
        return self._size

    @property
    def digest(self) -> Digest:
        """Size and digest (``"algorithm:hex"``) of everything written so far.

        Raises:
            OSError: A write handed to the helper thread failed.
        """
        self._finish()
        return Digest(self._size, f"{self._algorithm}:{self._hash.hexdigest()}")

    def close(self) -> None:
        """Finish the pending writes and close the file.

        Raises:
            OSError: A pending write failed (the file is closed anyway).
        """
        if self.closed:
            return
        workers = [w for w in (self._writer, self._hasher) if w is not None]
        self._writer = self._hasher = None
        try:
            for worker in workers:
                worker.join()
        finally:
            for worker in workers:  # every helper thread ends, a failed write or not
                worker.stop()
            os.close(self._fd)
            super().close()
