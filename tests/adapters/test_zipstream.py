"""The .keras archive's own ZIP writer: what it writes is a ZIP that zipfile (and Keras) read."""

from __future__ import annotations

import io
import os
import zipfile
import zlib

import pytest

from ckptcore.adapters.keras.zipstream import StoredZipWriter, crc32


def _archive(zip64_limit: int | None = None) -> tuple[bytes, dict[str, bytes]]:
    big = os.urandom(3 << 20)
    out = io.BytesIO()
    options = {} if zip64_limit is None else {"zip64_limit": zip64_limit}
    with StoredZipWriter(out, **options) as archive:
        archive.writestr("metadata.json", '{"keras_version": "3"}')
        archive.writestr("config.json", b"{}")
        with archive.open("model.weights.h5", len(big)) as member:
            for start in range(0, len(big), 1 << 20):  # in pieces, as the HDF5 image streams
                member.write(memoryview(big)[start:start + (1 << 20)])
        archive.writestr("assets/vocabulary/ünïcode.txt", "a\nb\n")
    expected = {"metadata.json": b'{"keras_version": "3"}', "config.json": b"{}", "model.weights.h5": big,
                "assets/vocabulary/ünïcode.txt": b"a\nb\n"}
    return out.getvalue(), expected


@pytest.mark.parametrize("zip64_limit", [None, 100], ids=["plain", "zip64"])
def test_zipfile_reads_every_member_back_and_its_crc_checks(zip64_limit):
    data, expected = _archive(zip64_limit)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every member's CRC-32 verified
        assert zf.namelist() == list(expected)
        assert {name: zf.read(name) for name in zf.namelist()} == expected
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        info = zf.getinfo("model.weights.h5")
        assert info.file_size == len(expected["model.weights.h5"])
        assert info.CRC == zlib.crc32(expected["model.weights.h5"])


def test_zip64_records_are_written_when_a_size_or_offset_needs_them():
    plain, _ = _archive()
    forced, _ = _archive(zip64_limit=100)
    assert b"PK\x06\x06" not in plain[-200:] and b"PK\x06\x06" in forced[-300:]  # the Zip64 end record


def test_asset_files_are_added_by_path_as_keras_asset_store_does(tmp_path):
    asset = tmp_path / "vocab.txt"
    asset.write_text("x y z")
    out = io.BytesIO()
    with StoredZipWriter(out) as archive:
        archive.write(str(asset), "assets/layer/vocab.txt")
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        assert zf.read("assets/layer/vocab.txt") == b"x y z"


def test_a_member_of_another_size_than_announced_is_refused():
    archive = StoredZipWriter(io.BytesIO())
    member = archive.open("w.h5", 10)
    member.write(b"12345")
    with pytest.raises(ValueError, match="5 bytes written, 10 announced"):
        member.close()


def test_a_duplicate_or_overlapping_member_is_refused():
    archive = StoredZipWriter(io.BytesIO())
    archive.writestr("a", b"1")
    with pytest.raises(ValueError, match="duplicate"):
        archive.writestr("a", b"2")
    archive.open("b", 1)
    with pytest.raises(ValueError, match="still being written"):
        archive.writestr("c", b"3")


def test_the_crc_is_zlibs():
    data = os.urandom(1 << 20)
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data[1000:], crc32(data[:1000])) == zlib.crc32(data)
