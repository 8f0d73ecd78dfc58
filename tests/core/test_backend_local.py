"""``LocalBackend``: atomic commit of files and directories, no temp files left, atomic bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptcore.backends import LocalBackend
from ckptcore.backends.local import atomic_write_bytes
from ckptcore.layout import DIR, MANIFEST_NAME, STAGING_DIR
from layout_helpers import leftovers as _leftovers
from layout_helpers import visible


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _write_dir(path: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        full = os.path.join(path, *rel.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        _write_file(full, text)


def _read_dir(path: str) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full) as fh:
                out[os.path.relpath(full, path).replace(os.sep, "/")] = fh.read()
    return out


def test_stage_is_in_the_hidden_staging_directory_and_commit_replaces(tmp_path):
    backend = LocalBackend(str(tmp_path))
    staged = backend.stage("sub/w-1.npy")
    assert os.path.dirname(os.path.dirname(staged)) == str(tmp_path.joinpath(*STAGING_DIR.split("/")))
    assert os.path.basename(staged) == "w-1.npy", "a writer that checks the suffix still accepts it"
    assert not (tmp_path / "sub").exists(), "nothing visible is made before the commit"
    assert not os.path.exists(staged)
    _write_file(staged, "one")
    location = backend.commit(staged, "sub/w-1.npy", {})
    assert location == str(tmp_path / "sub" / "w-1.npy")
    assert (tmp_path / "sub" / "w-1.npy").read_text() == "one"
    staged = backend.stage("sub/w-1.npy")
    _write_file(staged, "two")
    assert (tmp_path / "sub" / "w-1.npy").read_text() == "one", "not visible before commit"
    backend.commit(staged, "sub/w-1.npy", {})
    assert (tmp_path / "sub" / "w-1.npy").read_text() == "two"
    backend.close()  # waits for the replaced copy to be freed
    assert _leftovers(tmp_path) == []
    assert backend.exists("sub/w-1.npy") and backend.locate("sub/w-1.npy") == location


def test_a_replaced_file_is_freed_off_the_committing_thread(tmp_path, monkeypatch):
    """Freeing a large file takes time: the commit hard-links the old copy into the save's
    staging slot, renames, and hands the slot to the reaper thread."""
    from ckptcore.backends import local_reaper

    handed: list[str] = []
    monkeypatch.setattr(local_reaper.REAPER, "submit", lambda path, root="": handed.append(path))
    backend = LocalBackend(str(tmp_path))
    for text in ("one", "two"):
        staged = backend.stage("w.npy")
        _write_file(staged, text)
        backend.commit(staged, "w.npy", {})
    assert (tmp_path / "w.npy").read_text() == "two"
    [slot] = handed  # the first commit replaced nothing
    assert os.path.dirname(slot) == str(tmp_path.joinpath(*STAGING_DIR.split("/")))
    assert (Path(slot) / "w.npy").read_text() == "one", "the old copy, not yet freed"
    monkeypatch.undo()
    local_reaper.REAPER.submit(slot)
    assert local_reaper.REAPER.drain(timeout=30)
    assert not os.path.exists(slot) and _leftovers(tmp_path) == []


def test_a_directory_checkpoint_replaces_an_existing_one_completely(tmp_path):
    backend = LocalBackend(str(tmp_path))
    first = backend.stage("model")
    _write_dir(first, {"saved_model.pb": "v1", "variables/old.index": "v1"})
    backend.commit(first, "model", {})
    second = backend.stage("model")
    _write_dir(second, {"saved_model.pb": "v2", "variables/new.index": "v2"})
    assert _read_dir(tmp_path / "model") == {"saved_model.pb": "v1", "variables/old.index": "v1"}
    backend.commit(second, "model", {})
    assert _read_dir(tmp_path / "model") == {"saved_model.pb": "v2", "variables/new.index": "v2"}
    assert _leftovers(tmp_path) == []
    assert visible(tmp_path) == ["model"]


@pytest.mark.parametrize("old_is_dir", [True, False])
def test_a_checkpoint_of_the_other_kind_replaces_the_old_one(tmp_path, old_is_dir):
    backend = LocalBackend(str(tmp_path))
    old = backend.stage("ck")
    _write_dir(old, {"a": "old"}) if old_is_dir else _write_file(old, "old")
    backend.commit(old, "ck", {})
    new = backend.stage("ck")
    _write_file(new, "new") if old_is_dir else _write_dir(new, {"b": "new"})
    backend.commit(new, "ck", {})
    if old_is_dir:
        assert (tmp_path / "ck").read_text() == "new"
    else:
        assert _read_dir(tmp_path / "ck") == {"b": "new"}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("as_dir", [False, True])
def test_discard_leaves_nothing(tmp_path, as_dir):
    backend = LocalBackend(str(tmp_path))
    staged = backend.stage("w.npy")
    _write_dir(staged, {"x": "1", "y/z": "2"}) if as_dir else _write_file(staged, "partial")
    backend.discard(staged)
    backend.discard(staged)  # twice is fine
    assert _leftovers(tmp_path) == []
    assert not backend.exists("w.npy")


def test_committing_nothing_is_an_error_and_leaves_the_old_checkpoint(tmp_path):
    backend = LocalBackend(str(tmp_path))
    (tmp_path / "w.npy").write_text("old")
    with pytest.raises(FileNotFoundError, match="w.npy"):
        backend.commit(backend.stage("w.npy"), "w.npy", {})
    assert (tmp_path / "w.npy").read_text() == "old"


def test_put_copies_files_and_directories(tmp_path):
    src_dir = tmp_path / "src"
    _write_dir(str(src_dir / "tree"), {"a": "1", "b/c": "2"})
    _write_file(str(src_dir / "f.bin"), "f")
    backend = LocalBackend(str(tmp_path / "dst"))
    backend.put(str(src_dir / "tree"), "runs/tree", {})
    backend.put(str(src_dir / "f.bin"), "runs/f.bin", {})
    assert _read_dir(tmp_path / "dst" / "runs" / "tree") == {"a": "1", "b/c": "2"}
    assert (tmp_path / "dst" / "runs" / "f.bin").read_text() == "f"
    assert (src_dir / "f.bin").exists(), "put copies, the source stays"
    with pytest.raises(FileNotFoundError):
        backend.put(str(src_dir / "missing"), "runs/missing", {})
    assert _leftovers(tmp_path) == []


def test_delete(tmp_path):
    backend = LocalBackend(str(tmp_path))
    _write_dir(str(tmp_path / "d"), {"x": "1"})
    _write_file(str(tmp_path / "f"), "1")
    backend.delete("d")
    backend.delete("f")
    backend.delete("never-existed")
    assert visible(tmp_path) == [] and _leftovers(tmp_path) == []


def test_write_bytes_is_atomic(tmp_path):
    backend = LocalBackend(str(tmp_path / "root"))
    with pytest.raises(FileNotFoundError):
        backend.read_bytes(MANIFEST_NAME)
    backend.write_bytes(MANIFEST_NAME, b"v1")
    backend.write_bytes(MANIFEST_NAME, b"v2")
    assert backend.read_bytes(MANIFEST_NAME) == b"v2"
    with pytest.raises(TypeError):
        backend.write_bytes(MANIFEST_NAME, "not bytes")  # type: ignore[arg-type]
    assert backend.read_bytes(MANIFEST_NAME) == b"v2", "a failed write leaves the old file"
    assert _leftovers(tmp_path) == []
    atomic_write_bytes(str(tmp_path / "new" / "deep" / "x"), b"1")
    assert (tmp_path / "new" / "deep" / "x").read_bytes() == b"1"


def test_root_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = LocalBackend("")
    staged = here.stage("w.npy")
    _write_file(staged, "x")
    here.commit(staged, "w.npy", {})
    assert (tmp_path / "w.npy").read_text() == "x"
    assert LocalBackend("file://" + str(tmp_path)).root == str(tmp_path)
    assert LocalBackend(str(tmp_path)).locate("a/b.npy") == str(tmp_path / "a" / "b.npy")
    assert LocalBackend.can_delete and LocalBackend.keeps_manifest and LocalBackend.name == "local"


def test_delete_drops_emptied_template_directories_but_nothing_else(tmp_path):
    backend = LocalBackend(str(tmp_path / "root"))
    for rel in ("e1/model/v.npy", "e2/model/v.npy", "e2/notes.txt"):
        full = tmp_path / "root" / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text("x")
    backend.delete("e1/model")
    backend.delete("e2/model")
    assert visible(tmp_path / "root") == ["e2"]
    assert os.listdir(tmp_path / "root" / "e2") == ["notes.txt"]
    backend.delete("e2/notes.txt")
    assert visible(tmp_path / "root") == []
    assert (tmp_path / "root").is_dir(), "the root itself stays"


def test_discard_also_removes_what_a_suffix_adding_writer_left(tmp_path):
    import numpy as np

    backend = LocalBackend(str(tmp_path))
    (tmp_path / "w.bin.npy").write_text("a user's file, not ours")
    staged = backend.stage("w.bin")
    np.save(staged, np.zeros(2))  # writes staged + ".npy"
    assert not os.path.exists(staged)
    backend.discard(staged)
    assert _leftovers(tmp_path) == []
    assert visible(tmp_path) == ["w.bin.npy"]


def test_opening_a_root_removes_only_stale_saves_and_only_in_staging(tmp_path):
    import time as _time

    import numpy as np

    from ckptcore import Checkpointer
    from ckptcore.backends.local import STALE_AFTER_SECONDS

    staging = tmp_path.joinpath(*STAGING_DIR.split("/"))
    old_slot, fresh_slot = staging / "0123456789abcdef", staging / "aaaaaaaaaaaaaaaa"
    (old_slot / "export").mkdir(parents=True)
    (old_slot / "export" / "saved_model.pb").write_bytes(b"partial")
    fresh_slot.mkdir()
    (fresh_slot / "m-2.keras").write_bytes(b"being written")
    # Names that look temporary but are outside .ckptcore are the user's: never touched.
    outside = tmp_path / ".ckpt-tmp-0123456789ab-m-1.keras"
    outside.write_bytes(b"not ours")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("keep me")
    past = _time.time() - STALE_AFTER_SECONDS - 60
    for path in (old_slot / "export" / "saved_model.pb", old_slot / "export", old_slot, outside, foreign):
        os.utime(path, (past, past))

    def write(path):
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(2))

    Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=write).close()
    assert not old_slot.exists()
    assert fresh_slot.exists() and outside.exists() and foreign.read_text() == "keep me"


def test_a_stale_save_that_cannot_be_removed_is_a_warning_not_a_crash(tmp_path, caplog, monkeypatch):
    import logging
    import time as _time

    from ckptcore import Checkpointer
    from ckptcore.backends.local import STALE_AFTER_SECONDS

    slot = tmp_path.joinpath(*STAGING_DIR.split("/"), "0123456789abcdef")
    slot.mkdir(parents=True)
    (slot / "m-1.npy").write_bytes(b"partial")
    past = _time.time() - STALE_AFTER_SECONDS - 60
    os.utime(slot / "m-1.npy", (past, past))
    os.utime(slot, (past, past))
    import shutil

    real_rmtree = shutil.rmtree

    def refuse(path, *args, **kwargs):  # a read-only file system (or file) under the slot
        if str(slot) in str(path):
            raise PermissionError(13, "Read-only file system", str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with caplog.at_level(logging.WARNING, logger="ckptcore"):
        Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=lambda p: open(p, "wb").close()).close()
    assert (slot / "m-1.npy").exists()
    assert any("cannot remove" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("root", ["", "/"])
def test_the_sweep_of_a_cwd_or_filesystem_root_looks_only_in_its_staging(tmp_path, monkeypatch, root):
    import time as _time

    from ckptcore.backends.local import STALE_AFTER_SECONDS

    monkeypatch.chdir(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    stale = deep / ".ckpt-tmp-0123456789ab-x.keras"
    stale.write_bytes(b"someone's")
    past = _time.time() - STALE_AFTER_SECONDS - 60
    os.utime(stale, (past, past))
    walked = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: (walked.append(top), real_walk(top, *a, **k))[1])
    LocalBackend(root).remove_stale_temporaries()
    assert stale.exists()
    assert all(DIR in str(top) for top in walked), walked


def test_a_delete_is_gone_at_once_and_freed_by_the_reaper(tmp_path, monkeypatch):
    from ckptcore.backends import local_reaper

    backend = LocalBackend(str(tmp_path))
    staged = backend.stage("w.npy")
    _write_file(staged, "data")
    backend.commit(staged, "w.npy", {})
    handed: list[str] = []
    monkeypatch.setattr(local_reaper.REAPER, "submit", lambda path, root="": handed.append(path))
    backend.delete("w.npy")
    assert not (tmp_path / "w.npy").exists(), "the final name goes with the delete"
    [slot] = handed
    assert (Path(slot) / "w.npy").read_text() == "data"
    monkeypatch.undo()
    local_reaper.REAPER.submit(slot)
    local_reaper.REAPER.submit(str(tmp_path / "already-gone"))  # a missing path is no error
    assert local_reaper.REAPER.drain(timeout=30)
    assert _leftovers(tmp_path) == []


def test_a_swapped_out_directory_left_to_the_reaper_never_comes_back(tmp_path, monkeypatch):
    """A kill before the reaper freed the old copy of a replaced directory: the next open must
    not put it back, even where the final name was deleted since."""
    from ckptcore.backends import local_reaper

    handed: list[str] = []
    monkeypatch.setattr(local_reaper.REAPER, "submit", lambda path, root="": handed.append(path))  # the reaper never runs
    backend = LocalBackend(str(tmp_path))
    for version in ("v1", "v2"):
        staged = backend.stage("model")
        _write_dir(staged, {"saved_model.pb": version})
        backend.commit(staged, "model", {})
    backend.delete("model")
    monkeypatch.undo()
    done = LocalBackend(str(tmp_path)).prepare()  # the next process opens the root
    assert not (tmp_path / "model").exists(), f"a deleted checkpoint came back: {done}"
    assert not any(os.path.exists(slot) for slot in handed)
    assert _leftovers(tmp_path) == []


def test_no_room_for_the_trash_slot_still_commits(tmp_path, monkeypatch):
    import errno

    from ckptcore.backends import local

    backend = LocalBackend(str(tmp_path))
    for text in ("one", "two"):
        staged = backend.stage("w.npy")
        _write_file(staged, text)
        if text == "two":
            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(local, "new_slot", full)
        backend.commit(staged, "w.npy", {})
    assert (tmp_path / "w.npy").read_text() == "two"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_idle_reaper(tmp_path, monkeypatch):
    import time

    from ckptcore.backends import local_reaper

    real_rmtree = local_reaper.shutil.rmtree
    monkeypatch.setattr(local_reaper.shutil, "rmtree", lambda path: (time.sleep(1.5), real_rmtree(path)))
    slot = tmp_path / "slot"
    slot.mkdir()
    local_reaper.REAPER.submit(str(slot))  # busy for 1.5 s
    pid = os.fork()
    if pid == 0:  # the child has no reaper thread: it must not wait for the parent's work
        os._exit(0 if local_reaper.REAPER.drain(timeout=0.5) else 1)
    deadline = time.monotonic() + 20
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if waited == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in the reaper")
    assert os.waitstatus_to_exitcode(waited[1]) == 0, "the child waited for its parent's reaper"
    assert local_reaper.REAPER.drain(timeout=30) and not slot.exists()


def test_closing_or_opening_a_root_waits_for_its_own_removals_only(tmp_path, monkeypatch):
    """The reaper is shared by every root of the process; a root's close and next open wait for
    the slots of that root, not for a slow removal on another root."""
    import threading
    import time

    from ckptcore.backends import local_reaper

    release = threading.Event()
    real_rmtree = local_reaper.shutil.rmtree

    def slow_for_a(path):
        if "root-a" in path:
            release.wait(30)
        real_rmtree(path)

    monkeypatch.setattr(local_reaper.shutil, "rmtree", slow_for_a)
    backends = {}
    for name in ("root-a", "root-b"):
        backend = backends[name] = LocalBackend(str(tmp_path / name))
        backend.prepare()
        for text in ("one", "two"):  # the second commit hands the first copy to the reaper
            staged = backend.stage("w.npy")
            _write_file(staged, text)
            backend.commit(staged, "w.npy", {})
    try:
        start = time.monotonic()
        backends["root-b"].close()
        LocalBackend(str(tmp_path / "root-b")).prepare()  # another backend object, the same root
        assert time.monotonic() - start < 5, "root-b waited for root-a's removal"
        assert not local_reaper.REAPER.drain(timeout=0.2, root=os.path.realpath(tmp_path / "root-a"))
    finally:
        release.set()
    backends["root-a"].close()
    assert _leftovers(tmp_path / "root-a") == [] and _leftovers(tmp_path / "root-b") == []
