"""S3 manifest writes are conditional: ``If-Match`` on the ETag read before the merge (and
``If-None-Match: *`` for a first manifest), against moto's S3 server on loopback, so a writer
that got in between a read and a write is merged, not overwritten."""

from __future__ import annotations

import numpy as np
import pytest

from ckptcore import Checkpointer, Manifest, ManifestEntry
from ckptcore.manifest import MANIFEST_NAME

s3fs = pytest.importorskip("s3fs")
from ckptcore.backends.fsspec import FsspecBackend  # noqa: E402


def test_write_bytes_if_sends_the_condition_and_reports_a_conflict(s3_bucket, s3_options):
    backend = FsspecBackend(f"s3://{s3_bucket}/cond", storage_options=s3_options)
    raw = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    assert backend.conditional_writes
    assert backend.tag("small.json") is None
    assert backend.write_bytes_if("small.json", b"v1", None)
    assert not backend.write_bytes_if("small.json", b"v1 again", None), "If-None-Match: * refused it"
    first = backend.tag("small.json")
    raw.pipe_file(f"{s3_bucket}/cond/small.json", b"v2 by another writer")
    assert not backend.write_bytes_if("small.json", b"v3", first), "If-Match on a stale ETag refused it"
    assert raw.cat_file(f"{s3_bucket}/cond/small.json") == b"v2 by another writer"
    assert backend.write_bytes_if("small.json", b"v3", backend.tag("small.json"))
    assert raw.cat_file(f"{s3_bucket}/cond/small.json") == b"v3"


def test_a_manifest_written_by_another_process_between_read_and_write_is_merged(s3_bucket, s3_options):
    root = f"s3://{s3_bucket}/shared"
    raw = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    ck = Checkpointer(f"{root}/a-{{epoch}}.npy", write=lambda p: np.save(p, np.zeros(3)),
                      storage_options=s3_options)
    backend = ck.committer.primary
    real_read = backend.read_bytes
    raced = []

    def read_then_another_writer(relpath):
        data = real_read(relpath)
        if relpath == MANIFEST_NAME and not raced:
            # Another process's save lands between this read and the write that follows it.
            raw.pipe_file(f"{s3_bucket}/shared/b-1.npy", b"theirs")
            theirs = Manifest.from_json(data)
            theirs.add(ManifestEntry(name="b-1.npy", path="b-1.npy", run_id="other-run", backends=["s3"]))
            raw.pipe_file(f"{s3_bucket}/shared/{MANIFEST_NAME}", theirs.to_json().encode())
            raced.append(True)
        return data

    ck.on_epoch_end(0, {"val_loss": 1.0})  # the first manifest
    backend.read_bytes = read_then_another_writer
    ck.on_epoch_end(1, {"val_loss": 0.9})
    ck.close()
    assert raced
    stored = Manifest.from_json(raw.cat_file(f"{s3_bucket}/shared/{MANIFEST_NAME}"))
    assert {e.path for e in stored.entries} == {"a-1.npy", "a-2.npy", "b-1.npy"}, "nothing lost"
