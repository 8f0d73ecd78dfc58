"""Crash safety: SIGKILL real training processes while they save, then check what is left.

A bounded run of ``benchmarks/crash_harness.py`` (the benchmark runs the same harness longer):
every file under a final checkpoint name must load, and every manifest must parse
and agree with the disk. The harness's own check is tested first, on files it must reject.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # the fork server's children import the harness by module name
    sys.path.insert(0, ROOT)

from ckptcore.manifest import MANIFEST_NAME
from benchmarks import crash_harness as harness  # noqa: E402

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and a fork server need POSIX")
HAS_KERAS = importlib.util.find_spec("keras") is not None


@pytest.fixture(scope="module")
def ctx():
    return harness.context(keras=HAS_KERAS)


def _write_npy_root(root) -> None:
    from ckptcore import Checkpointer

    ck = Checkpointer(str(root / "every" / "w-{epoch}.npy"), write=lambda p: np.save(p, np.arange(4.0)))
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.on_epoch_end(1, {"val_loss": 1.0})
    ck.close()


def test_the_check_rejects_a_torn_file_and_a_manifest_that_disagrees(tmp_path, ctx):
    _write_npy_root(tmp_path)
    with ctx.Pool(1) as pool:
        assert pool.apply(harness.verify, (str(tmp_path),)) == {"files": 2, "leftovers": 0, "problems": []}
        torn = tmp_path / "every" / "w-2.npy"
        torn.write_bytes(torn.read_bytes()[:100])  # what an in-place write leaves when killed
        (tmp_path / "every" / ".ckpt-tmp-0123-w-3.npy").write_bytes(b"partial")  # ignored
        outcome = pool.apply(harness.verify, (str(tmp_path),))
        assert outcome["files"] == 2 and outcome["leftovers"] == 1
        assert any("w-2.npy" in p and "Error" in p for p in outcome["problems"])
        assert any("w-2.npy" in p and "sha256" in p for p in outcome["problems"])
        manifest = tmp_path / "every" / MANIFEST_NAME
        manifest.write_text(manifest.read_text()[:-20])
        assert any("manifest.json" in p for p in pool.apply(harness.verify, (str(tmp_path),))["problems"])


@pytest.mark.skipif(not HAS_KERAS, reason="keras is not installed")
def test_the_check_rejects_torn_keras_files(tmp_path, ctx):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.keras").write_bytes(b"PK\x03\x04 torn zip")
    (tmp_path / "best" / "w-0001.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n torn")
    with ctx.Pool(1) as pool:
        outcome = pool.apply(harness.verify, (str(tmp_path),))
    assert outcome["files"] == 2 and len(outcome["problems"]) == 2, outcome


def _assert_survived(summary: harness.Summary, kills: int) -> None:
    assert summary.kills == kills
    assert summary.not_ready == 0, "every process wrote its first checkpoint before the kill"
    assert summary.files_checked >= kills
    assert summary.corrupt == 0, json.dumps(summary.examples, indent=1)


@pytest.mark.parametrize("mode", ["core-sync", "core-async"])
def test_killed_numpy_training_leaves_only_loadable_checkpoints(tmp_path, ctx, mode):
    _assert_survived(harness.run_mode(mode, kills=4, window=1.0, seed=1, workdir=str(tmp_path)), 4)


@pytest.mark.skipif(not HAS_KERAS, reason="keras is not installed")
@pytest.mark.parametrize("mode", ["keras-sync", "keras-async"])
def test_killed_keras_training_leaves_only_loadable_checkpoints(tmp_path, ctx, mode):
    _assert_survived(harness.run_mode(mode, kills=2, window=1.5, seed=1, workdir=str(tmp_path)), 2)
