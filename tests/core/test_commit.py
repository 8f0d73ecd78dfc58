"""``Committer``: stage, write, commit to every backend, record in the manifest, prune."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ckptcore import CheckpointSaveError, Manifest, ManifestEntry, ManifestError, RetentionPolicy
from ckptcore.backends import LocalBackend
from ckptcore.commit import Committer, load_manifest
from ckptcore.digest import digest
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.digest import bytes_digest
from layout_helpers import leftovers, visible


class Mirror(LocalBackend):
    """A second local backend under another name (a real one, writing to disk)."""

    name = "mirror"


def _entry(path: str, value: float | None = None, run: str = "run-1", is_best: bool = False):
    return ManifestEntry(name=path.rsplit("/", 1)[-1], path=path, epoch=1, monitor_value=value,
                         is_best=is_best, run_id=run)


def _committer(backends, retention=None, run="run-1", manifest=None):
    return Committer(backends, retention or RetentionPolicy(), "min", run,
                     state=lambda: ({"best": 1.0}, {"batches_run": 3}), manifest=manifest)


def _save_array(value: float):
    def write(path: str) -> None:
        np.save(path, np.full(3, value))

    return write


def test_a_save_reaches_every_backend_and_both_manifests(tmp_path):
    primary, mirror = LocalBackend(str(tmp_path / "a")), Mirror(str(tmp_path / "b"))
    committer = _committer([primary, mirror])
    entry = committer.save("sub/w-1.npy", _save_array(1.0), _entry("sub/w-1.npy", 0.5, is_best=True))
    assert entry.backends == ["local", "mirror"]
    data = (tmp_path / "a" / "sub" / "w-1.npy").read_bytes()
    assert data == (tmp_path / "b" / "sub" / "w-1.npy").read_bytes()
    assert entry.size == len(data) and entry.digest == bytes_digest(data)
    for root in ("a", "b"):
        # Written once, before the commit: the checkpoint as a pending record with its digest.
        manifest = load_manifest(LocalBackend(str(tmp_path / root)))
        assert manifest.entries == []
        assert [(r.path, r.digest, r.size, r.replaces) for r in manifest.pending] == [
            ("sub/w-1.npy", entry.digest, entry.size, None)]
        # The best stored is that of the checkpoint the record holds, not the tracker's.
        assert manifest.tracker == {"best": 0.5} and manifest.schedule == {"batches_run": 3}
        assert manifest.runs == ["run-1"]
    committer.close()
    for root in ("a", "b"):
        manifest = load_manifest(LocalBackend(str(tmp_path / root)))
        assert [e.path for e in manifest.entries] == ["sub/w-1.npy"] and manifest.pending == []


def test_a_failing_secondary_keeps_the_primary_commit_and_says_so(tmp_path, caplog):
    (tmp_path / "blocker").write_text("a file where the mirror wants a directory")
    primary, broken = LocalBackend(str(tmp_path / "a")), Mirror(str(tmp_path / "blocker" / "b"))
    committer = _committer([primary, broken])
    with pytest.raises(CheckpointSaveError) as info:
        committer.save("w-1.npy", _save_array(1.0), _entry("w-1.npy"))
    message = str(info.value)
    assert "'w-1.npy'" in message and "committed to local" in message and "failed on mirror" in message
    assert (tmp_path / "a" / "w-1.npy").exists()
    assert [e.backends for e in committer.manifest.entries] == [["local"]]
    committer.write_manifest()
    assert load_manifest(primary).entries[0].backends == ["local"]


def test_a_failing_write_commits_nothing_and_leaves_no_temp_file(tmp_path):
    primary = LocalBackend(str(tmp_path))

    def broken(path: str) -> None:
        np.save(path, np.zeros(2))
        raise ValueError("cannot serialise layer 3")

    committer = _committer([primary])
    with pytest.raises(CheckpointSaveError, match="'w-1.npy'.*ValueError: cannot serialise layer 3"):
        committer.save("w-1.npy", broken, _entry("w-1.npy"))
    assert visible(tmp_path) == [] and leftovers(tmp_path) == []
    assert committer.manifest.entries == []


def test_an_interrupt_during_a_write_propagates_unchanged_and_cleans_up(tmp_path):
    def interrupted(path: str) -> None:
        np.save(path, np.zeros(2))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _committer([LocalBackend(str(tmp_path))]).save("w.npy", interrupted, _entry("w.npy"))
    assert visible(tmp_path) == [] and leftovers(tmp_path) == []


def test_staging_failure_names_the_checkpoint(tmp_path):
    (tmp_path / "blocker").write_text("")
    committer = _committer([LocalBackend(str(tmp_path / "blocker" / "root"))])
    with pytest.raises(CheckpointSaveError, match="'w.npy'.*cannot stage"):
        committer.save("w.npy", _save_array(0), _entry("w.npy"))


def test_pruning_deletes_from_every_backend_that_holds_the_checkpoint(tmp_path):
    primary, mirror = LocalBackend(str(tmp_path / "a")), Mirror(str(tmp_path / "b"))
    committer = _committer([primary, mirror], RetentionPolicy(keep_last=1))
    for i in (1, 2, 3):
        committer.save(f"w-{i}.npy", _save_array(i), _entry(f"w-{i}.npy"))
    for root in ("a", "b"):
        assert visible(tmp_path / root) == ["w-3.npy"]
        stored = load_manifest(LocalBackend(str(tmp_path / root)))
        assert stored.entries == []
        assert {r.path for r in stored.pending} == {"w-2.npy", "w-3.npy"}, "w-2 pruned, w-3 pending"
    committer.close()
    for root in ("a", "b"):
        stored = load_manifest(LocalBackend(str(tmp_path / root)))
        assert [e.path for e in stored.entries] == ["w-3.npy"] and stored.pending == []


def test_pruning_spares_other_runs_and_protected_paths(tmp_path):
    primary = LocalBackend(str(tmp_path))
    old = Manifest(runs=["run-0"])
    (tmp_path / "w-0.npy").write_bytes(b"old run")
    old.add(_entry("w-0.npy", run="run-0").model_copy(update={"backends": ["local"]}))
    committer = Committer([primary], RetentionPolicy(keep_last=1), "min", "run-1",
                          state=lambda: ({}, {}), manifest=old, protected=["w-1.npy"])
    for i in (1, 2, 3):
        committer.save(f"w-{i}.npy", _save_array(i), _entry(f"w-{i}.npy"))
    assert visible(tmp_path) == ["w-0.npy", "w-1.npy", "w-3.npy"]
    assert load_manifest(primary).runs == ["run-0", "run-1"]


def test_digest_of_files_and_directories(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert digest(str(tmp_path / "f")) == (3, bytes_digest(b"abc"))
    for name, order in (("d1", ["x", "y/z"]), ("d2", ["y/z", "x"])):
        for rel in order:
            full = tmp_path / name / rel
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(rel.encode())
    size1, sha1 = digest(str(tmp_path / "d1"))
    assert (size1, sha1) == digest(str(tmp_path / "d2")), "independent of creation order"
    assert size1 == len(b"x") + len(b"y/z")
    (tmp_path / "d2" / "x").write_bytes(b"X")
    assert digest(str(tmp_path / "d2"))[1] != sha1


def test_a_directory_checkpoint_is_committed_and_digested(tmp_path):
    def write_dir(path: str) -> None:
        os.makedirs(os.path.join(path, "variables"))
        np.save(os.path.join(path, "variables", "v.npy"), np.ones(2))

    committer = _committer([LocalBackend(str(tmp_path))])
    entry = committer.save("model", write_dir, _entry("model"))
    assert (tmp_path / "model" / "variables" / "v.npy").exists()
    assert (entry.size, entry.digest) == digest(str(tmp_path / "model"))


def test_load_manifest(tmp_path):
    backend = LocalBackend(str(tmp_path))
    assert load_manifest(backend) is None
    (tmp_path / MANIFEST_NAME).parent.mkdir(parents=True)
    (tmp_path / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(ManifestError) as info:
        load_manifest(backend)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value)
