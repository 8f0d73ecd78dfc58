"""The fsspec backend: the contract on memory:// and on S3 (s3fs against a moto server on
loopback), plus what only URLs have: storage_options, missing buckets, URLs as locations."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from contract import BackendContract

from ckptcore import BucketNotFoundError, CheckpointSaveError, Checkpointer, MissingDependencyError
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.backends import resolve_backend

fsspec = pytest.importorskip("fsspec")
from ckptcore.backends.fsspec import FsspecBackend  # noqa: E402


def _read_fs(fs, root: str) -> dict[str, bytes]:
    base = fs._strip_protocol(root).rstrip("/")
    if not fs.exists(base):
        return {}
    found = {}
    for path in fs.find(base):
        rel = fs._strip_protocol(path)[len(base):].lstrip("/")
        if not rel.startswith(".ckptcore/"):
            found[rel] = fs.cat_file(path)
    return found


def npwrite(value: float):
    return lambda path: np.save(path, np.full(3, value)) if path.endswith(".npy") else None


class TestMemoryContract(BackendContract):
    @pytest.fixture
    def backend(self, memory_url):
        return resolve_backend(memory_url)

    @pytest.fixture
    def stored(self):
        return lambda backend: _read_fs(fsspec.filesystem("memory"), backend.root)


class TestS3Contract(BackendContract):
    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return resolve_backend(f"s3://{s3_bucket}/runs/a", **s3_options)

    @pytest.fixture
    def stored(self, s3_options):
        import s3fs

        client = s3fs.S3FileSystem(**s3_options)  # a second client, not the backend's
        return lambda backend: _read_fs(client, backend.root)


# -- resolution and construction -----------------------------------------------------------------
def test_urls_fsspec_knows_resolve_to_the_fsspec_backend(memory_url, s3_bucket, s3_options, s3_endpoint):
    memory = resolve_backend(memory_url)
    assert isinstance(memory, FsspecBackend) and memory.name == "memory"
    s3 = resolve_backend(f"s3://{s3_bucket}/x/", **s3_options)
    assert isinstance(s3, FsspecBackend) and s3.name == "s3"
    assert s3.root == f"s3://{s3_bucket}/x"
    assert s3.storage_options["client_kwargs"] == {"endpoint_url": s3_endpoint}
    assert s3.locate("sub/w-1.keras") == f"s3://{s3_bucket}/x/sub/w-1.keras"
    explicit = FsspecBackend(memory_url, storage_options={"skip_instance_cache": True})
    assert explicit.locate("w.bin") == memory_url + "/w.bin"


def test_a_url_fsspec_cannot_serve_without_its_package_names_the_install(monkeypatch):
    from fsspec.registry import known_implementations

    monkeypatch.setitem(known_implementations, "ckptfake",
                        {"class": "ckptcore_no_such_pkg.FakeFS", "err": "Install ckptcore-no-such-pkg"})
    with pytest.raises(MissingDependencyError, match="ckptfake://b/x") as info:
        resolve_backend("ckptfake://b/x")
    assert isinstance(info.value, ImportError)


def test_bad_arguments_are_refused(memory_url):
    from ckptcore import ConfigError

    with pytest.raises(ConfigError, match="root: got 'relative/path'"):
        FsspecBackend("relative/path")
    with pytest.raises(ConfigError, match="storage_options: got 'anon'"):
        FsspecBackend(memory_url, storage_options="anon")


# -- a URL as the primary ----------------------------------------------------------------------
def test_a_checkpointer_on_s3_commits_files_then_the_manifest(s3_bucket, s3_options):
    import s3fs

    url = f"s3://{s3_bucket}/run"
    ck = Checkpointer(url + "/w-{epoch}.npy", write=npwrite(1.0), storage_options=s3_options,
                      monitor="loss", keep_last=2)
    for epoch, loss in enumerate([0.5, 0.4, 0.3]):
        ck.on_epoch_end(epoch, {"loss": loss})
    ck.close()
    client = s3fs.S3FileSystem(**s3_options)
    assert sorted(p.rsplit("/", 1)[-1] for p in client.find(f"{s3_bucket}/run")) == \
        ["manifest.json", "w-2.npy", "w-3.npy"]
    manifest = json.loads(client.cat_file(f"{s3_bucket}/run/{MANIFEST_NAME}"))
    assert [e["path"] for e in manifest["entries"]] == ["w-2.npy", "w-3.npy"]
    assert all(e["backends"] == ["s3"] for e in manifest["entries"])
    assert ck.latest() == ck.best() == url + "/w-3.npy"
    with client.open(f"{s3_bucket}/run/w-3.npy", "rb") as fh:
        assert np.load(fh).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("make", ["backend", "checkpointer"])
def test_a_bucket_that_does_not_exist_fails_at_construction_and_is_not_created(s3_options, make):
    import s3fs

    url = "s3://ckptcore-no-such-bucket/run"
    with pytest.raises(BucketNotFoundError) as info:
        if make == "backend":
            FsspecBackend(url, s3_options)
        else:
            Checkpointer(url + "/w-{epoch}.npy", write=npwrite(1.0), storage_options=s3_options)
    assert isinstance(info.value, FileNotFoundError)
    assert str(info.value).startswith(
        f"{url}: bucket 'ckptcore-no-such-bucket' does not exist at s3://ckptcore-no-such-bucket"
    )
    assert not s3fs.S3FileSystem(**s3_options).exists("ckptcore-no-such-bucket")


def test_a_bucket_deleted_after_construction_fails_the_save(s3_server, s3_options):
    import s3fs

    bucket = s3_server.make_bucket()
    ck = Checkpointer(f"s3://{bucket}/run/w-{{epoch}}.npy", write=npwrite(1.0),
                      storage_options=s3_options, on_save_error="raise", retries=0)
    s3fs.S3FileSystem(**s3_options).rmdir(bucket)
    with pytest.raises(CheckpointSaveError, match="w-1.npy") as info:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    assert isinstance(info.value, OSError)
    ck.close()
    assert not s3fs.S3FileSystem(**s3_options).exists(bucket)


def test_a_memory_url_has_no_bucket_to_check(memory_url):
    assert FsspecBackend(memory_url + "/not/made/yet").exists("manifest.json") is False


def test_a_large_checkpoint_goes_to_s3_as_a_multipart_upload_in_parts(s3_bucket, s3_options, tmp_path):
    import s3fs

    from ckptcore.backends.fsspec import S3_PART_SIZE

    data = os.urandom(2 * S3_PART_SIZE + 12345)  # three parts
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    backend = resolve_backend(f"s3://{s3_bucket}/parts", **s3_options)
    backend.put(str(src), "big.bin", {})
    client = s3fs.S3FileSystem(**s3_options)
    # S3 (and moto) give a multipart object the ETag "<md5 of the parts' md5s>-<parts>".
    assert client.info(f"{s3_bucket}/parts/big.bin")["ETag"].strip('"').endswith("-3")
    assert client.cat_file(f"{s3_bucket}/parts/big.bin") == data
