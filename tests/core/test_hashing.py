"""Hashing while writing: the digest a write returns is the file's, and the commit trusts it."""

from __future__ import annotations

import os

import pytest

from ckptcore import Checkpointer
from ckptcore import digest as digest_module
from ckptcore.commit import load_manifest
from ckptcore.backends import LocalBackend
from ckptcore.digest import Digest, digest, written_digest
from ckptcore.hashing import SLICE, HashingFile
from ckptcore.digest import bytes_digest


def _sha(path) -> str:
    with open(path, "rb") as fh:
        return bytes_digest(fh.read())


@pytest.mark.parametrize("stable", [False, True])
def test_the_digest_of_small_and_large_writes_is_the_files(tmp_path, stable):
    path = tmp_path / "f.bin"
    pieces = [b"head", os.urandom(3 * SLICE + 12345), b"", bytearray(b"x" * 5000), memoryview(os.urandom(2 << 20)),
              b"mid", os.urandom(SLICE), b"tail"]
    with HashingFile(str(path), stable_buffers=stable) as out:
        for piece in pieces:
            assert out.write(piece) == len(piece)
    assert out.digest == Digest(os.path.getsize(path), _sha(path))
    assert out.digest == digest(str(path))


def test_it_is_a_forward_only_stream(tmp_path):
    with HashingFile(str(tmp_path / "f.bin")) as out:
        assert not out.seekable()
        with pytest.raises(OSError):
            out.tell()
        with pytest.raises(OSError):
            out.seek(0)
    with pytest.raises(ValueError, match="closed"):
        out.write(b"late")


def test_a_write_fault_is_an_oserror_in_python(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    out = HashingFile("/dev/full")
    with pytest.raises(OSError, match="No space left"):
        out.write(os.urandom(4 << 20))
    out.close()


def test_a_returned_digest_is_taken_only_when_its_size_is_the_files(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert written_digest(Digest(3, "blake3:" + "f" * 64), str(path)) == (3, "blake3:" + "f" * 64)  # taken, not read
    assert written_digest(Digest(4, "blake3:" + "f" * 64), str(path)) == digest(str(path))  # wrong size: read
    assert written_digest(3, str(path)) == digest(str(path))  # a count of bytes is no digest
    assert written_digest(None, str(path)) == digest(str(path))


def test_the_commit_records_the_written_digest_without_reading_the_file_back(tmp_path, monkeypatch):
    def write(path: str) -> Digest:
        with HashingFile(path) as out:
            out.write(b"weights" * 1000)
        return out.digest

    def no_read_back(path, *args, **kwargs):
        raise AssertionError(f"read back {path}")

    monkeypatch.setattr(digest_module, "open", no_read_back, raising=False)  # what digest() reads with
    with Checkpointer(str(tmp_path / "m-{epoch}.bin"), write=write) as ck:
        assert ck.on_epoch_end(0, {"loss": 1.0}) == "m-1.bin"
    entry = load_manifest(LocalBackend(str(tmp_path))).entries[0]
    assert (entry.size, entry.digest) == (7000, _sha(tmp_path / "m-1.bin"))


def test_a_write_fault_behind_the_caller_is_raised_by_a_later_call(tmp_path):
    """With stable buffers the write runs on a helper thread: its ENOSPC still reaches Python."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    out = HashingFile("/dev/full", stable_buffers=True)
    out.write(os.urandom(4 << 20))  # accepted; the helper thread's write fails
    with pytest.raises(OSError, match="No space left"):
        out.digest
    with pytest.raises(OSError, match="No space left"):
        out.close()
    assert out.closed


def test_stable_writes_keep_their_order_across_small_and_large_pieces(tmp_path):
    path = tmp_path / "f.bin"
    pieces = [os.urandom(2 << 20), *(bytes([i]) * 100 for i in range(50)), os.urandom(SLICE + 1), b"end"]
    with HashingFile(str(path), stable_buffers=True) as out:
        for piece in pieces:
            out.write(piece)
    assert path.read_bytes() == b"".join(pieces)
    assert out.digest == Digest(len(b"".join(pieces)), _sha(path))


def test_a_caller_faster_than_the_disk_holds_a_few_slices_not_the_file(tmp_path, monkeypatch):
    """Stable writes are queued to helper threads; a slow disk must hold the caller back."""
    import time
    import tracemalloc

    from ckptcore import hashing

    real_write = os.write

    def slow_write(fd, data):
        time.sleep(0.002)
        return real_write(fd, data)

    monkeypatch.setattr(hashing.os, "write", slow_write)
    tracemalloc.start()
    try:
        with HashingFile(str(tmp_path / "f.bin"), stable_buffers=True) as out:
            for _ in range(40):  # 320 MiB of fresh pieces, each dropped by the caller at once
                out.write(bytearray(SLICE))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.digest.size == 40 * SLICE
    assert peak < 12 * SLICE, f"{peak / SLICE:.1f} slices in memory at once"


def test_an_unclosed_file_is_still_collected_and_its_threads_end(tmp_path):
    import gc
    import threading

    out = HashingFile(str(tmp_path / "f.bin"), stable_buffers=True)
    out.write(os.urandom(2 << 20))
    del out
    gc.collect()
    names = [t.name for t in threading.enumerate()]
    assert "ckptcore-write" not in names and "ckptcore-hash" not in names
    assert (tmp_path / "f.bin").stat().st_size == 2 << 20
