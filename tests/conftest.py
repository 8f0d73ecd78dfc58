"""Fixtures for every test folder."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def memory_url():
    """A fresh ``memory://`` root, removed afterwards."""
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://ckptcore-{uuid.uuid4().hex[:12]}/run"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)
