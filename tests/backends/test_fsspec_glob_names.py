"""Checkpoint names holding glob characters (``*``, ``?``, ``[...]``) on an fsspec root: a
delete removes that checkpoint, never the files a glob of its name would match."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptcore import Checkpointer
from ckptcore.manifest import MANIFEST_FORMAT, MANIFEST_NAME
from ckptcore.digest import bytes_digest

fsspec = pytest.importorskip("fsspec")


def _names(fs, url: str) -> list[str]:
    base = url.split("://", 1)[1]
    return sorted(p.split(base + "/", 1)[1] for p in fs.find(base))


def _write(path: str) -> None:
    np.save(path, np.zeros(2))


def test_retention_deletes_a_bracketed_name_and_nothing_it_would_match(memory_url):
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_url}/keep-b-1.npy", b"another tool's file")  # what the glob keep-[best]-1.npy matches
    with Checkpointer(f"{memory_url}/keep-[best]-{{epoch}}.npy", write=_write, keep_last=1) as ck:
        for epoch in range(3):
            ck.on_epoch_end(epoch, {})
    assert _names(fs, memory_url) == sorted(["keep-[best]-3.npy", "keep-b-1.npy", MANIFEST_NAME])


def test_retention_of_a_name_rendered_as_a_star_deletes_only_it(memory_url):
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_url}/precious.npy", b"another tool's file")
    with Checkpointer(f"{memory_url}/{{tag}}.npy", write=_write, keep_last=1, monitor="loss") as ck:
        ck.on_epoch_end(0, {"tag": "*", "loss": 1.0})
        ck.on_epoch_end(1, {"tag": "m2", "loss": 1.0})
    assert _names(fs, memory_url) == sorted([MANIFEST_NAME, "m2.npy", "precious.npy"])


def test_replacing_a_directory_checkpoint_with_a_glob_name_touches_nothing_else(memory_url):
    import os

    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_url}/m-x/other.bin", b"beside it")

    def write_dir(path: str) -> None:
        os.makedirs(path)
        np.save(os.path.join(path, "w.npy"), np.zeros(2))

    with Checkpointer(f"{memory_url}/m-?", write=write_dir) as ck:
        ck.on_epoch_end(0, {})
        ck.on_epoch_end(1, {})  # the fixed-name directory is replaced
    assert _names(fs, memory_url) == sorted([MANIFEST_NAME, "m-?/w.npy", "m-x/other.bin"])


def test_cli_prune_of_a_crafted_star_entry_deletes_only_that_object(memory_url):
    from ckptcore.cli import app

    fs = fsspec.filesystem("memory")
    entries = []
    for epoch, name in enumerate(["*", "m-2.npy"], 1):
        data = f"checkpoint {epoch}".encode()
        fs.pipe(f"{memory_url}/{name}", data)
        entries.append({"name": name, "path": name, "epoch": epoch, "size": len(data),
                        "digest": bytes_digest(data), "run_id": "r"})
    fs.pipe(f"{memory_url}/{MANIFEST_NAME}", json.dumps({"format": MANIFEST_FORMAT, "entries": entries}).encode())
    result = CliRunner().invoke(app, ["prune", memory_url, "--keep-last", "1"])
    assert result.exit_code == 0, result.output
    assert _names(fs, memory_url) == sorted([MANIFEST_NAME, "m-2.npy"])
    assert CliRunner().invoke(app, ["verify", memory_url]).exit_code == 0


def test_on_s3_a_star_or_bracketed_name_deletes_only_itself(s3_bucket, s3_options):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    url = f"s3://{s3_bucket}/run"
    fs.pipe(f"{s3_bucket}/run/precious.npy", b"another tool's file")
    fs.pipe(f"{s3_bucket}/run/keep-b-1.npy", b"another tool's file")
    with Checkpointer(f"{url}/{{tag}}.npy", write=_write, keep_last=1, monitor="loss",
                      storage_options=s3_options) as ck:
        for epoch, tag in enumerate(["*", "keep-[best]-1", "m3"]):
            ck.on_epoch_end(epoch, {"tag": tag, "loss": 1.0})
    fs.invalidate_cache()
    left = sorted(p.split("/run/", 1)[1] for p in fs.find(f"{s3_bucket}/run"))
    assert left == sorted([MANIFEST_NAME, "keep-b-1.npy", "m3.npy", "precious.npy"])
