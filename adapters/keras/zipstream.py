"""A forward-only ZIP writer for stored (uncompressed) members: the ``.keras`` archive's format.

``zipfile`` computes every member's CRC-32 with zlib on the writing thread (about 2 GB/s, some
110 ms for a 227 MB weights file); ISA-L's CRC-32 (the ``isal`` package, used when installed)
runs at over 10 GB/s on the same core. zipfile has no way to plug in another CRC, so this
module writes the archive itself: a local header per member, its bytes, the central
directory, and the Zip64 records when a size or an offset needs them (APPNOTE 6.3.9, 4.3 and
4.5.3). The output is a plain ZIP archive that ``zipfile`` (and so Keras) reads and checks.

Members of a known CRC (small ones, held in memory) carry it in their local header; the large
member streamed in pieces is followed by a data descriptor, as zipfile writes every member to
a stream that cannot seek.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import Any, Callable

__all__ = ["ZIP64_LIMIT", "StoredZipWriter", "crc32"]

try:  # ISA-L: the same CRC-32, several times faster
    from isal.isal_zlib import crc32 as _fast_crc32
except ImportError:  # pragma: no cover - the extra was not installed
    _fast_crc32 = None

#: ``crc32(data, value=0)``: ISA-L's where installed, else zlib's (the same results).
crc32: Callable[..., int] = _fast_crc32 or zlib.crc32

#: Sizes and offsets from this value on need Zip64 fields.
ZIP64_LIMIT = 0xFFFFFFFF
_UTF8 = 1 << 11
_DESCRIPTOR = 1 << 3
_MADE_BY = (3 << 8) | 20  # Unix, ZIP 2.0
_MODE = 0o100644 << 16  # a regular file, rw-r--r--


def _dos_time(stamp: float) -> tuple[int, int]:
    year, month, day, hour, minute, second = time.localtime(stamp)[:6]
    year = min(max(year, 1980), 2107)
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


class _Entry:
    def __init__(self, name: bytes, flags: int, dos: tuple[int, int], offset: int) -> None:
        self.name, self.flags, self.dos, self.offset = name, flags, dos, offset
        self.crc = 0
        self.size = 0


class _Member:
    """The open large member: ``write`` pieces, then ``close`` writes its data descriptor."""

    def __init__(self, archive: StoredZipWriter, entry: _Entry, size: int, zip64: bool) -> None:
        self._archive, self._entry, self._expected, self._zip64 = archive, entry, size, zip64

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._entry.crc = crc32(view, self._entry.crc)
        self._entry.size += view.nbytes
        self._archive._write(view)
        return view.nbytes

    def close(self) -> None:
        entry = self._entry
        if entry.size != self._expected:
            raise ValueError(f"zip member {entry.name.decode()!r}: {entry.size} bytes written, "
                             f"{self._expected} announced")
        size_format = "<LLQQ" if self._zip64 else "<LLLL"
        self._archive._write(struct.pack(size_format, 0x08074B50, entry.crc, entry.size, entry.size))
        self._archive._writing = False

    def __enter__(self) -> _Member:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()


class StoredZipWriter:
    """A ZIP archive written forward to ``out``, every member stored.

    Example::

        with StoredZipWriter(out) as archive:
            archive.writestr("config.json", config)
            with archive.open("model.weights.h5", size) as member:
                image.stream(member)

    Args:
        out: A binary file object; only its ``write`` is used.
        zip64_limit: Sizes and offsets from this value on get Zip64 fields (lower it in tests).
    """

    def __init__(self, out: Any, zip64_limit: int = ZIP64_LIMIT) -> None:
        self._out = out
        self._offset = 0
        self._entries: list[_Entry] = []
        self._names: set[bytes] = set()
        self._limit = zip64_limit
        self._writing = False
        self._closed = False

    def _write(self, data: Any) -> None:
        self._out.write(data)
        self._offset += memoryview(data).nbytes

    def _start(self, name: str, stamp: float | None) -> _Entry:
        if self._closed or self._writing:
            raise ValueError("the archive is closed" if self._closed else "a member is still being written")
        raw = name.encode("utf-8")
        if raw in self._names:
            raise ValueError(f"duplicate zip member {name!r}")
        self._names.add(raw)
        flags = _UTF8 if not name.isascii() else 0
        return _Entry(raw, flags, _dos_time(time.time() if stamp is None else stamp), self._offset)

    def _local_header(self, entry: _Entry, crc: int, size: int | None, zip64: bool) -> None:
        extra = b""
        field = 0 if size is None else size
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, field, field)
            field = ZIP64_LIMIT
        version = 45 if zip64 else 20
        self._write(struct.pack("<LHHHHHLLLHH", 0x04034B50, version, entry.flags, 0, *entry.dos, crc, field, field,
                                len(entry.name), len(extra)) + entry.name + extra)

    def writestr(self, name: str, data: str | bytes, stamp: float | None = None) -> None:
        """Add the member ``name`` holding ``data`` (a str is written as UTF-8)."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        entry = self._start(name, stamp)
        entry.crc, entry.size = crc32(payload), len(payload)
        self._local_header(entry, entry.crc, entry.size, zip64=entry.size >= self._limit)
        self._write(payload)
        self._entries.append(entry)

    def write(self, filename: str, arcname: str | None = None) -> None:
        """Add the file at ``filename`` as ``arcname`` (what Keras's asset store calls)."""
        with open(filename, "rb") as fh:
            data = fh.read()
        name = (arcname or os.path.basename(filename)).replace(os.sep, "/").lstrip("/")
        self.writestr(name, data, stamp=os.stat(filename).st_mtime)

    def open(self, name: str, size: int, stamp: float | None = None) -> _Member:
        """Start the member ``name`` of exactly ``size`` bytes, written in pieces.

        Raises:
            ValueError: Another member is open, or (at its close) the bytes written are not ``size``.
        """
        entry = self._start(name, stamp)
        entry.flags |= _DESCRIPTOR
        zip64 = size >= self._limit
        self._local_header(entry, 0, 0, zip64)  # CRC and size follow the data
        self._entries.append(entry)
        self._writing = True
        return _Member(self, entry, size, zip64)

    def close(self) -> None:
        """Write the central directory (and the Zip64 end records when needed)."""
        if self._closed:
            return
        if self._writing:
            raise ValueError("a member is still being written")
        self._closed = True
        start = self._offset
        for entry in self._entries:
            self._write(self._central_header(entry))
        size, count = self._offset - start, len(self._entries)
        if count >= 0xFFFF or start >= self._limit or size >= self._limit:
            end64 = self._offset
            self._write(struct.pack("<LQHHLLQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start))
            self._write(struct.pack("<LLQL", 0x07064B50, 0, end64, 1))
            count, size, start = min(count, 0xFFFF), min(size, ZIP64_LIMIT), min(start, ZIP64_LIMIT)
        self._write(struct.pack("<LHHHHLLH", 0x06054B50, 0, 0, count, count, size, start, 0))

    def _central_header(self, entry: _Entry) -> bytes:
        fields = []
        size = offset = None
        if entry.size >= self._limit:
            fields += [entry.size, entry.size]
            size = ZIP64_LIMIT
        if entry.offset >= self._limit:
            fields.append(entry.offset)
            offset = ZIP64_LIMIT
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        version = 45 if fields else 20
        stored = entry.size if size is None else size
        return struct.pack("<LHHHHHHLLLHHHHHLL", 0x02014B50, _MADE_BY, version, entry.flags, 0, *entry.dos,
                           entry.crc, stored, stored, len(entry.name), len(extra), 0, 0, 0, _MODE,
                           entry.offset if offset is None else offset) + entry.name + extra

    def __enter__(self) -> StoredZipWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
