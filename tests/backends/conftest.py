"""Fixtures for the backend tests: a real S3 API server on loopback, offline W&B runs.

S3 runs through s3fs against moto's ``ThreadedMotoServer`` (the way s3fs tests itself), started
once per session on 127.0.0.1 with a free port; each test gets a bucket of its own.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid

import pytest

pytest.register_assert_rewrite("contract")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of a moto S3 server on loopback, with dummy credentials in the environment."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    patch = pytest.MonkeyPatch()
    for name, value in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")]:
        patch.setenv(name, value)
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        patch.undo()


@pytest.fixture
def s3_options(s3_endpoint) -> dict:
    """``storage_options`` that point s3fs at the loopback server (no listing cache)."""
    return {"client_kwargs": {"endpoint_url": s3_endpoint}, "use_listings_cache": False}


@pytest.fixture
def s3_bucket(s3_options) -> str:
    """A fresh, empty bucket; returns its name."""
    import s3fs

    name = f"ckpt-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_options).mkdir(name)
    return name


@pytest.fixture
def memory_url():
    """A fresh ``memory://`` root, removed afterwards."""
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://ckptcore-{uuid.uuid4().hex[:12]}/run"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.fixture(autouse=True, scope="module")
def _no_wandb_service_after_the_module():
    """Stop the W&B service a module started, and forget it.

    ``wandb.init`` starts a service process and records it in ``WANDB_SERVICE`` in
    ``os.environ``; a subprocess that a later test starts (a demo using W&B) would inherit it
    and log into this process's service instead of its own.
    """
    before = os.environ.get("WANDB_SERVICE")
    yield
    if os.environ.get("WANDB_SERVICE") != before and "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
        if before is None:
            os.environ.pop("WANDB_SERVICE", None)
        else:
            os.environ["WANDB_SERVICE"] = before


@pytest.fixture
def wandb_run(tmp_path, monkeypatch):
    """An offline W&B run whose files (log, staging area, cache) all live under tmp_path."""
    wandb = pytest.importorskip("wandb")
    base = tmp_path / "wandb-home"
    for var, sub in [("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config"), ("WANDB_ARTIFACT_DIR", "artifacts")]:
        (base / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(base / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="ckptcore-tests", dir=str(base / "dir"),
                     settings=wandb.Settings(x_disable_stats=True, console="off"))
    try:
        yield run
    finally:
        if wandb.run is not None:
            wandb.finish()

