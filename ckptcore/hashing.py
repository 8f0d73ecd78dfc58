"""Write a file once and know its SHA-256 at the end: no read-back, no extra buffering.

:class:`HashingFile` is a write-only, forward-only binary file. Each ``write`` goes straight to
the file descriptor (no Python-level buffer, so a large array is written from its own memory)
and is hashed on the way. Large writes are hashed on a helper thread while this thread writes
them (``hashlib`` and ``os.write`` both release the GIL on large buffers), so hashing costs
little more than the write itself. With ``stable_buffers=True`` (the caller never changes a
buffer it wrote before the file is closed) ``write`` does not even wait for the hash: the
caller's next piece of work (computing a zip member's CRC, say) overlaps it too.

A full disk, a file size limit or any other write fault raises ``OSError`` from ``write`` in
Python, where the caller can report it.

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
import hashlib
import io
import os
import queue
import sys
import threading
from typing import Any, Callable

from ckptcore.digest import Digest

__all__ = ["HashingFile"]

#: Writes at least this large are hashed on the helper thread while they are written.
OVERLAP_MIN = 1 << 20
#: Slice of a large write: hashed on one side while written on the other.
SLICE = 8 << 20
#: Written bytes handed to the kernel's writeback at a time.
WRITEBACK = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2


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


class _Hasher:
    """One helper thread feeding slices to a hash object in order."""

    def __init__(self, sha: Any) -> None:
        self._sha = sha
        self._todo: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._queued = 0
        self._thread = threading.Thread(target=self._run, name="ckptcore-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (view := self._todo.get()) is not None:
            try:
                self._sha.update(view)
            except BaseException as exc:  # noqa: BLE001 - handed back to the writing thread
                self._done.put(exc)
            else:
                self._done.put(None)

    def start(self, view: Any) -> None:
        self._todo.put(view)
        self._queued += 1

    def join(self) -> None:
        """Wait for every slice handed over so far."""
        first = None
        while self._queued:
            exc = self._done.get()
            self._queued -= 1
            first = first or exc
        if first is not None:
            raise first

    def stop(self) -> None:
        self._todo.put(None)
        self._thread.join()


class HashingFile(io.RawIOBase):
    """A new file at ``path``, written forward only, hashed while written.

    Example::

        with HashingFile(path) as out:
            out.write(header)
            out.write(array.data)
        size, sha256 = out.digest

    Args:
        path: The file to create (truncated if it exists; a symbolic link there is refused).
        stable_buffers: The caller promises not to change any buffer it passed to ``write``
            until the file is closed; hashing then runs behind the writes.
    """

    def __init__(self, path: str, stable_buffers: bool = False) -> None:
        super().__init__()
        self.path = path
        self._stable = stable_buffers
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        self._fd = os.open(path, flags, 0o644)  # never through a symbolic link
        self._sha = hashlib.sha256()
        self._size = 0
        self._written_back = 0
        self._hasher: _Hasher | None = None

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
            self._hasher = _Hasher(self._sha)
        if self._hasher is None:
            self._sha.update(view)
            self._write_all(view)
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
                    if not self._stable:
                        self._hasher.join()
        return size

    def _write_all(self, view: memoryview) -> None:
        while view.nbytes:
            written = os.write(self._fd, view)
            view = view[written:]
            self._size += written
        end = self._size
        if _START_WRITEBACK is not None and end - self._written_back >= WRITEBACK:
            _START_WRITEBACK(self._fd, self._written_back, end - self._written_back)  # a hint: no errors
            self._written_back = end

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def digest(self) -> Digest:
        """Size and SHA-256 of everything written so far."""
        if self._hasher is not None:
            self._hasher.join()
        return Digest(self._size, self._sha.hexdigest())

    def close(self) -> None:
        if self.closed:
            return
        hasher, self._hasher = self._hasher, None
        try:
            if hasher is not None:
                try:
                    hasher.join()
                finally:
                    hasher.stop()
        finally:
            os.close(self._fd)
            super().close()
