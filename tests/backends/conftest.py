"""Fixtures for the backend tests: a real S3 API server on loopback, offline W&B runs.

S3 runs through s3fs against moto's ``ThreadedMotoServer`` (the way s3fs tests itself), started
once per session on 127.0.0.1 with a free port; each test gets a bucket of its own.
"""

from __future__ import annotations

import os
import sys

import pytest
from s3_server import running_s3

pytest.register_assert_rewrite("contract")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback for the session, with dummy credentials in the environment."""
    with pytest.MonkeyPatch.context() as patch, running_s3(patch) as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(s3_server) -> str:
    """The URL of the loopback S3 server."""
    return s3_server.endpoint


@pytest.fixture
def s3_options(s3_server) -> dict:
    """``storage_options`` that point s3fs at the loopback server (no listing cache)."""
    return dict(s3_server.options)


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket; returns its name."""
    return s3_server.make_bucket()


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

