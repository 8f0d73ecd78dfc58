"""The contract every storage backend meets, as tests each backend opts into.

Subclass :class:`BackendContract` in a ``test_*.py`` module (the way fsspec ships abstract tests
for its implementations) and define two fixtures:

- ``backend``: a fresh backend instance with nothing stored yet;
- ``stored``: a function ``stored(backend) -> {path: bytes}`` that reads back, through a channel
  independent of the backend's own code (the disk, a second file system client, what the W&B
  SDK recorded), every checkpoint file the backend holds, by '/'-separated path relative to its
  root, leaving out ``manifest.json``. It is called once, at the end of a test.

Capabilities decide which tests apply: deletion only where ``can_delete``, the manifest's small
files only where ``keeps_manifest``.
"""

from __future__ import annotations

import os

import pytest

from ckptcore.manifest import MANIFEST_NAME
from ckptcore import Checkpointer, Manifest
from ckptcore.backends import Backend
from ckptcore.digest import bytes_digest

__all__ = ["BackendContract", "info_for"]


def info_for(path, epoch: int = 1, loss: float = 0.5, is_best: bool = True) -> dict:
    """A commit info as the engine passes it, for the checkpoint at local ``path``."""
    sha = bytes_digest(open(path, "rb").read()) if os.path.isfile(path) else None
    return {"epoch": epoch, "batch": None, "global_step": epoch * 5, "metrics": {"loss": loss},
            "monitor": "loss", "monitor_value": loss, "is_best": is_best, "digest": sha,
            "size": os.path.getsize(path) if os.path.isfile(path) else 0}


def _file(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def _tree(root, files: dict[str, bytes]) -> str:
    for rel, data in files.items():
        _file(os.path.join(root, *rel.split("/")), data)
    return str(root)


class BackendContract:
    """Tests every backend passes; see the module docstring for how to opt in."""

    def test_it_is_a_backend(self, backend):
        assert isinstance(backend, Backend)
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.can_delete, bool) and isinstance(backend.keeps_manifest, bool)
        assert isinstance(backend.root, str)

    def test_put_a_file(self, backend, stored, tmp_path):
        data = os.urandom(3000)
        src = _file(tmp_path / "src" / "w-1.bin", data)
        location = backend.put(src, "w-1.bin", info_for(src))
        assert isinstance(location, str) and location
        assert backend.exists("w-1.bin")
        assert not backend.exists("w-2.bin")
        assert os.path.exists(src), "put copies; the source stays"
        assert stored(backend) == {"w-1.bin": data}

    def test_put_nested_paths_and_a_directory(self, backend, stored, tmp_path):
        files = {"saved_model.pb": b"graph", "variables/variables.index": b"idx",
                 "variables/variables.data-00000-of-00001": os.urandom(500)}
        tree = _tree(tmp_path / "src" / "model", files)
        single = _file(tmp_path / "src" / "w.bin", b"weights")
        backend.put(tree, "e1/model", info_for(tree))
        backend.put(single, "sub/dir/w.bin", info_for(single))
        assert backend.exists("e1/model") and backend.exists("sub/dir/w.bin")
        expected = {f"e1/model/{rel}": data for rel, data in files.items()}
        expected["sub/dir/w.bin"] = b"weights"
        assert stored(backend) == expected

    def test_a_checkpoint_replaced_under_the_same_name(self, backend, stored, tmp_path):
        first = _file(tmp_path / "a" / "best.bin", b"first")
        second = _file(tmp_path / "b" / "best.bin", b"second, longer")
        backend.put(first, "best.bin", info_for(first, epoch=1))
        backend.put(second, "best.bin", info_for(second, epoch=2))
        old_tree = _tree(tmp_path / "a" / "model", {"x": b"old x", "y": b"old y"})
        new_tree = _tree(tmp_path / "b" / "model", {"x": b"new x"})
        backend.put(old_tree, "model", info_for(old_tree, epoch=1))
        backend.put(new_tree, "model", info_for(new_tree, epoch=2))
        # No stale file of the older directory stays beside the newer one.
        assert stored(backend) == {"best.bin": b"second, longer", "model/x": b"new x"}

    def test_stage_then_commit(self, backend, stored):
        staged = backend.stage("e2/w.bin")
        assert not os.path.exists(staged), "staging hands out a fresh local path"
        _file(staged, b"staged bytes")
        assert not backend.exists("e2/w.bin"), "nothing under the final name before the commit"
        location = backend.commit(staged, "e2/w.bin", info_for(staged, epoch=2))
        assert isinstance(location, str) and location
        backend.discard(staged)
        assert not os.path.exists(staged)
        assert backend.exists("e2/w.bin")
        assert stored(backend) == {"e2/w.bin": b"staged bytes"}

    def test_a_discarded_stage_leaves_nothing(self, backend, stored):
        staged = backend.stage("w.bin")
        _file(staged, b"never committed")
        backend.discard(staged)
        backend.discard(staged)  # twice is fine
        assert not os.path.exists(staged)
        assert not backend.exists("w.bin")
        assert stored(backend) == {}

    def test_a_missing_source_is_a_file_not_found_error(self, backend, stored, tmp_path):
        with pytest.raises(FileNotFoundError):
            backend.put(str(tmp_path / "missing.bin"), "missing.bin", info_for(tmp_path / "missing.bin"))
        assert stored(backend) == {}

    def test_delete(self, backend, stored, tmp_path):
        if not backend.can_delete:
            pytest.skip(f"{backend.name} does not delete (can_delete is False)")
        keep = _file(tmp_path / "keep.bin", b"keep")
        gone = _file(tmp_path / "gone.bin", b"gone")
        tree = _tree(tmp_path / "tree", {"a": b"a", "b/c": b"c"})
        for src, rel in [(keep, "keep.bin"), (gone, "e1/gone.bin"), (tree, "e1/tree")]:
            backend.put(src, rel, info_for(src))
        backend.delete("e1/gone.bin")
        backend.delete("e1/tree")
        backend.delete("e1/tree")  # a missing checkpoint is not an error
        backend.delete("never-there.bin")
        assert not backend.exists("e1/gone.bin") and not backend.exists("e1/tree")
        assert stored(backend) == {"keep.bin": b"keep"}

    def test_small_files_for_the_manifest(self, backend, stored):
        if not backend.keeps_manifest:
            pytest.skip(f"{backend.name} keeps no manifest")
        with pytest.raises(FileNotFoundError):
            backend.read_bytes(MANIFEST_NAME)
        assert not backend.exists(MANIFEST_NAME)
        backend.write_bytes(MANIFEST_NAME, b'{"version": 1}')
        backend.write_bytes(MANIFEST_NAME, b'{"version": 1, "entries": []}')
        assert backend.read_bytes(MANIFEST_NAME) == b'{"version": 1, "entries": []}'
        assert backend.exists(MANIFEST_NAME)
        assert stored(backend) == {}

    def test_as_an_extra_backend_of_a_checkpointer(self, backend, stored, tmp_path):
        """Every checkpoint reaches it; retention prunes it where it can delete."""
        written: list[str] = []

        def write(path: str) -> None:
            written.append(path)
            _file(path, f"checkpoint {len(written)}".encode())

        ck = Checkpointer(str(tmp_path / "primary" / "w-{epoch}.bin"), write=write,
                          backends=[backend], monitor="loss", keep_last=2, on_save_error="raise")
        for epoch, loss in enumerate([0.9, 0.7, 0.8, 0.6]):
            ck.on_epoch_end(epoch, {"loss": loss})
        ck.close()
        entries = ck.manifest.entries
        assert [e.path for e in entries] == ["w-3.bin", "w-4.bin"]
        assert all(e.backends == ["local", backend.name] for e in entries)
        kept = [3, 4] if backend.can_delete else [1, 2, 3, 4]
        if backend.keeps_manifest:
            held = Manifest.from_json(backend.read_bytes(MANIFEST_NAME))
            assert [e.path for e in held.entries] == ["w-3.bin", "w-4.bin"]
        assert stored(backend) == {f"w-{n}.bin": f"checkpoint {n}".encode() for n in kept}
