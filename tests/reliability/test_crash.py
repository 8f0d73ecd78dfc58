"""Crash safety: SIGKILL real processes while they save or prune, then check what is left.

A bounded run of ``benchmarks/crash_harness.py`` (the campaign runs the same harness with 200
kills). The harness's own check is tested first, on roots it must reject: a torn file, a
final-name file the manifest does not account for, a manifest that lists what is not there,
a lost best.

Every kill must leave loadable checkpoints and a manifest that lists only what the disk holds.
That every final-name file is also accounted for (no window between a rename and the manifest
write that records it, no best withdrawn before its replacement) is what the commit protocol
with pending records provides, and is asserted too.
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

from benchmarks import crash_harness as harness  # noqa: E402
from benchmarks.crash_check import check_root  # noqa: E402

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and a fork server need POSIX")
HAS_KERAS = importlib.util.find_spec("keras") is not None


@pytest.fixture(scope="module")
def ctx():
    return harness.context(keras=HAS_KERAS)


def _write_npy_root(root, best: bool = False) -> None:
    from ckptcore import Checkpointer

    name = "best.npy" if best else "w-{epoch}.npy"
    ck = Checkpointer(str(root / name), write=lambda p: np.save(p, np.arange(4.0)), monitor="loss",
                      save_best_only=best)
    ck.on_epoch_end(0, {"loss": 1.0})
    ck.on_epoch_end(1, {"loss": 0.5})
    ck.close()


def _manifest_path(root):
    from ckptcore.manifest import MANIFEST_NAME

    return root / MANIFEST_NAME


def test_the_check_passes_a_clean_root(tmp_path):
    _write_npy_root(tmp_path / "every")
    _write_npy_root(tmp_path / "best", best=True)
    for sub in ("every", "best"):
        assert check_root(str(tmp_path / sub), ["best.npy"]) == {
            "unaccounted": [], "lie": [], "corrupt": [], "lost_best": []}


def test_the_check_rejects_a_torn_unaccounted_file_and_a_manifest_that_disagrees(tmp_path):
    root = tmp_path / "every"
    _write_npy_root(root)
    torn = root / "w-2.npy"
    torn.write_bytes(torn.read_bytes()[:100])  # what an in-place write leaves when killed
    (root / "w-3.npy").write_bytes((root / "w-1.npy").read_bytes())  # renamed, never recorded
    (root / ".ckpt-tmp-0123-w-4.npy").write_bytes(b"partial")  # hidden: not a final name
    found = check_root(str(root))
    assert any(p.startswith("w-2.npy: does not load") for p in found["corrupt"]), found
    assert found["unaccounted"] == [
        "w-2.npy: under a final name, its bytes are not the ones the manifest lists",
        "w-3.npy: under a final name, not in the manifest",
    ]
    assert found["lie"] == ["w-2.npy: listed with a size/digest the file does not have"]
    (root / "w-1.npy").unlink()
    assert "w-1.npy: listed in the manifest but missing" in check_root(str(root))["lie"]
    manifest = _manifest_path(root)
    manifest.write_text(manifest.read_text()[:-20])
    assert any("does not parse" in p for p in check_root(str(root))["lie"])


def test_the_check_finds_a_lost_best(tmp_path):
    from ckptcore import Manifest

    root = tmp_path / "best"
    _write_npy_root(root, best=True)
    manifest_path = _manifest_path(root)
    manifest = Manifest.from_json(manifest_path.read_text())
    manifest.tracker["best"] = 0.4  # a best value no committed checkpoint holds
    manifest_path.write_text(manifest.to_json())
    assert check_root(str(root), ["best.npy"])["lost_best"] == [
        "best.npy: the stored best is 0.4, the best checkpoint holds 0.5"]
    manifest.entries = []  # a good best.npy the manifest forgot
    manifest_path.write_text(manifest.to_json())
    found = check_root(str(root), ["best.npy"])
    assert found["lost_best"] == ["best.npy: a best checkpoint on disk, but the manifest names no best"]
    assert found["unaccounted"] == ["best.npy: under a final name, not in the manifest"]


@pytest.mark.skipif(not HAS_KERAS, reason="keras is not installed")
def test_the_check_rejects_torn_keras_files(tmp_path, ctx):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.keras").write_bytes(b"PK\x03\x04 torn zip")
    (tmp_path / "best" / "w-0001.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n torn")
    with ctx.Pool(1) as pool:
        outcome = pool.apply(harness.verify, (str(tmp_path),))
    assert outcome["files"] == 2 and len(outcome["problems"]["corrupt"]) == 2, outcome


def test_the_campaign_plan_shares_the_kills_out():
    counts = harness.plan(200, list(harness.CAMPAIGN))
    assert sum(counts.values()) >= 200 and set(counts) == set(harness.CAMPAIGN)
    assert counts["prune"] > counts["keras-sync"] > 0
    assert harness.plan(3, ["file-sync", "prune"]) == {"file-sync": 1, "prune": 2}


BOUNDED = {"file-sync": 3, "file-async": 3, "dir-sync": 2, "dir-async": 2, "prune": 3}
KERAS_BOUNDED = {"keras-sync": 2, "keras-async": 2}


@pytest.fixture(scope="module")
def campaign(ctx, tmp_path_factory):
    plan = {**BOUNDED, **(KERAS_BOUNDED if HAS_KERAS else {})}
    work = str(tmp_path_factory.mktemp("crash"))
    return [harness.run_scenario(s, kills, seed=1, workdir=work) for s, kills in plan.items()]


def test_every_kill_leaves_loadable_checkpoints_and_a_manifest_that_holds(campaign):
    for summary in campaign:
        assert summary.not_ready == 0, f"{summary.scenario}: every process reached its ready moment"
        assert summary.files_checked >= summary.kills
        assert summary.by_kind["corrupt"] == 0, json.dumps(summary.examples, indent=1)
        assert summary.by_kind["lie"] == 0, json.dumps(summary.examples, indent=1)


def test_every_final_name_file_is_accounted_for_and_no_best_is_lost(campaign):
    failed = {s.scenario: (s.by_kind["unaccounted"], s.by_kind["lost_best"]) for s in campaign
              if s.by_kind["unaccounted"] or s.by_kind["lost_best"]}
    examples = [e for s in campaign for e in s.examples if not e.startswith(("corrupt", "lie"))]
    assert not failed, f"(unaccounted, lost best) kills per scenario: {failed}; " + json.dumps(examples, indent=1)
