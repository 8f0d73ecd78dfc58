"""Multi-process tests: real worker processes on 127.0.0.1, run once (not per Keras backend).

Each worker script sets its own Keras backend (the JAX job ``jax``, the tf.distribute job
``tensorflow``), so ``make test`` runs this folder once, whatever ``KERAS_BACKEND`` is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from launch import files_under, own_files

from ckptcore.commit import load_manifest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_local_root(root: Path) -> list:
    """The root holds the chief's checkpoints and ckptcore's files only, each listed once with
    its real sha256, from one run; returns the manifest entries."""
    from ckptcore.backends.local import LocalBackend

    manifest = load_manifest(LocalBackend(str(root)))
    assert manifest is not None, f"no manifest under {root}: {files_under(root)}"
    visible, mine = own_files(files_under(root))
    paths = [e.path for e in manifest.entries]
    assert len(paths) == len(set(paths)), paths
    assert sorted(visible) == sorted(paths), (visible, paths)
    assert not [f for f in mine if "staging" in f or "tmp" in f], mine
    assert len(manifest.runs) == 1 and {e.run_id for e in manifest.entries} == set(manifest.runs)
    for entry in manifest.entries:
        assert sha256(root / entry.path) == entry.sha256, entry.path
    return manifest.entries


@pytest.fixture
def report_json():
    return json.dumps
