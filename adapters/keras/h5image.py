"""HDF5 files built in memory and streamed out through Python's own writes.

h5py never touches the disk here: it writes into an :class:`H5Image`, a sparse in-memory file.
Large arrays are not even copied into it: :func:`defer_array` creates their dataset with its
space allocated and never filled, and notes where it lies; :meth:`H5Image.stream` then writes the
file in one forward pass, HDF5's own bytes from the image and each array's bytes straight from
its host buffer. A full disk is then an ``OSError`` from a plain Python ``write`` (which the
caller reports), never a fault inside HDF5, which on some systems kills the process.

The file holds what h5py would have written with ``group[key] = array``: the same groups,
attributes and contiguous datasets with the same data, so Keras reads it as its own.
"""

from __future__ import annotations

import bisect
import io
from typing import Any

import numpy as np

__all__ = ["H5Image", "defer_array"]

_PAGE = 1 << 16
_SLICE = 8 << 20
#: Arrays at least this large are written from their own buffer rather than through HDF5.
DEFER_MIN = 1 << 16
_DEFERRABLE_KINDS = frozenset("iuf")


class H5Image(io.BytesIO):
    """A sparse in-memory file for h5py (``h5py.File(image, "w")``), streamed out once.

    It subclasses ``io.BytesIO`` only so that Keras's ``H5IOStore`` accepts it; its bytes live
    in pages of its own (unwritten ranges read as zeros).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pages: dict[int, bytearray] = {}
        self._extents: list[tuple[int, int]] = []  # (start, end) of every write, for checks
        self._pos = 0
        self._size = 0
        self.deferred: list[tuple[int, np.ndarray]] = []  # (file offset, array), see defer_array

    # -- the file interface h5py's file-object driver uses ----------------------------------
    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        self._size = size
        for index in [i for i in self._pages if i * _PAGE >= size]:
            del self._pages[index]
        return size

    def flush(self) -> None:
        """Nothing to flush: the image is in memory."""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        start, n = self._pos, view.nbytes
        done = 0
        while done < n:
            index, offset = divmod(start + done, _PAGE)
            page = self._pages.get(index)
            if page is None:
                page = self._pages[index] = bytearray(_PAGE)
            take = min(_PAGE - offset, n - done)
            page[offset:offset + take] = view[done:done + take]
            done += take
        if n:
            self._extents.append((start, start + n))
        self._pos = start + n
        self._size = max(self._size, self._pos)
        return n

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(view.nbytes, self._size - self._pos))
        self._copy_out(self._pos, view[:n])
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        n = self._size - self._pos if size is None or size < 0 else size
        buffer = bytearray(max(0, min(n, self._size - self._pos)))
        self.readinto(buffer)
        return bytes(buffer)

    def _copy_out(self, start: int, view: memoryview) -> None:
        done, n = 0, view.nbytes
        while done < n:
            index, offset = divmod(start + done, _PAGE)
            take = min(_PAGE - offset, n - done)
            page = self._pages.get(index)
            if page is None:
                view[done:done + take] = bytes(take)
            else:
                view[done:done + take] = page[offset:offset + take]
            done += take

    def getvalue(self) -> bytes:
        out = io.BytesIO()
        self.stream(out)
        return out.getvalue()

    def close(self) -> None:
        """Keep the image: h5py closes its file object when the HDF5 file is closed."""

    # -- streaming out ----------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes of the file (once h5py closed it)."""
        return self._size

    def stream(self, out: Any) -> int:
        """Write the whole file to ``out`` in one forward pass; returns the bytes written.

        Raises:
            RuntimeError: HDF5 wrote into the space of a deferred array (a bug, never silent).
            OSError: From ``out.write`` (a full disk, say).
        """
        regions = sorted(((off, arr) for off, arr in self.deferred), key=lambda item: item[0])
        self._check_untouched(regions)
        pos = 0
        for offset, array in regions:
            pos = self._stream_pages(out, pos, offset)
            view = _raw_view(array)
            for start in range(0, view.nbytes, _SLICE):  # so a zip member's CRC pipelines too
                out.write(view[start:start + _SLICE])
            pos = offset + array.nbytes
        self._stream_pages(out, pos, self._size)
        return self._size

    def _stream_pages(self, out: Any, start: int, end: int) -> int:
        """Write the image's bytes ``[start, end)`` to ``out``, in runs of up to 8 MiB."""
        run = 8 << 20
        while start < end:
            piece = bytearray(min(run, end - start))
            self._copy_out(start, memoryview(piece))
            out.write(piece)
            start += len(piece)
        return end

    def _check_untouched(self, regions: list[tuple[int, np.ndarray]]) -> None:
        starts = sorted(self._extents)
        keys = [s for s, _e in starts]
        for offset, array in regions:
            end = offset + array.nbytes
            if end > self._size:
                raise RuntimeError(f"a deferred dataset at {offset} ends past the file's end {self._size}")
            i = bisect.bisect_left(keys, end)
            for s, e in starts[max(0, i - 64):i]:
                if s < end and e > offset:
                    raise RuntimeError(f"HDF5 wrote bytes {s}-{e} inside a deferred dataset at {offset}")


def _raw_view(array: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(array)).cast("B")


def _deferrable(image: Any, value: Any) -> bool:
    return (isinstance(image, H5Image) and isinstance(value, np.ndarray)
            and value.dtype.kind in _DEFERRABLE_KINDS and value.dtype.isnative
            and value.nbytes >= DEFER_MIN and value.flags.c_contiguous)


def defer_array(image: H5Image | None, group: Any, key: str, value: Any) -> Any:
    """``group[key] = value`` for a group of a file h5py writes on ``image``.

    A large plain numeric array gets a contiguous dataset whose space is allocated now and
    never written by HDF5; the image writes the array there when it is streamed out. Any other
    value (small, strings, another file) is written by h5py as usual.

    Args:
        image: The image the group's file lives on (None: a file on disk; no deferring).
        group: The h5py group.
        key: The dataset's name.
        value: The array; it must not change until the image has been streamed out.

    Returns:
        The new dataset.
    """
    import h5py

    if not _deferrable(image, value):
        group[key] = value
        return group[key]
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dataset = group.create_dataset(key, shape=value.shape, dtype=value.dtype, dcpl=dcpl)
    offset = dataset.id.get_offset()
    if offset is None or dataset.id.get_storage_size() != value.nbytes:
        raise RuntimeError(f"HDF5 did not allocate {value.nbytes} contiguous bytes for {key!r}")
    image.deferred.append((offset, value))  # type: ignore[union-attr]
    return dataset

