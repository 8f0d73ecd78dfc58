"""The local backend runs the backend contract."""

from __future__ import annotations

import os

import pytest
from contract import BackendContract

from ckptcore.backends import LocalBackend


def _read_tree(root: str) -> dict[str, bytes]:
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if not rel.startswith(".ckptcore/"):
                with open(full, "rb") as fh:
                    found[rel] = fh.read()
    return found


class TestLocalContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(str(tmp_path / "store"))

    @pytest.fixture
    def stored(self):
        return lambda backend: _read_tree(backend.root)
