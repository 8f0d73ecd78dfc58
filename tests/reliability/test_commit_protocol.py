"""The commit protocol under SIGKILL: at every instant every file under a final name is
accounted for by the manifest, and opening the root settles what a kill left.

Each child process is real and is killed (SIGKILL, by itself) at one exact point of a save or
a delete: the kill points are set by wrapping ``os.replace`` in the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ckptcore import Checkpointer
from ckptcore.audit import unaccounted
from ckptcore.backends import LocalBackend
from ckptcore.commit import load_manifest
from ckptcore.layout import STAGING_DIR
from ckptcore.store import load_settled
from ckptcore.digest import bytes_digest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ckptcore import Checkpointer

    root, scenario = sys.argv[1], sys.argv[2]
    real_replace = os.replace
    armed = {"on": False}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *args, **kwargs):
        src, dst = os.fspath(src), os.fspath(dst)
        if armed["on"]:
            into_final = os.path.dirname(dst) == root
            out_of_final = os.path.dirname(src) == root
            if scenario == "file-before-rename" and into_final:
                die()
            if scenario == "prune-before-delete" and out_of_final:
                die()
            real_replace(src, dst, *args, **kwargs)
            if scenario == "file-after-rename" and into_final:
                die()
            if scenario in ("dir-between-renames", "prune-after-trash") and out_of_final:
                die()
            return
        real_replace(src, dst, *args, **kwargs)

    os.replace = replace

    def write_array(value):
        def write(path):
            if scenario.startswith("dir"):
                os.makedirs(path)
                np.save(os.path.join(path, "v.npy"), np.full(3, value))
            else:
                with open(path, "wb") as fh:
                    np.save(fh, np.full(3, value))
        return write

    if scenario.startswith("prune"):
        name, options = "m-{epoch}.npy", {"keep_last": 1}
    else:
        name, options = ("best" if scenario.startswith("dir") else "best.npy"), {"save_best_only": True}
    ck = Checkpointer(os.path.join(root, name), write=write_array(0.5), monitor="val_loss", **options)
    ck.on_epoch_end(0, {"val_loss": 0.5})
    armed["on"] = True
    ck._write = write_array(0.4)
    ck.on_epoch_end(1, {"val_loss": 0.4})
    print("not killed", flush=True)
    """
)


def _kill_at(tmp_path, scenario: str):
    root = tmp_path / "root"
    root.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(root), scenario], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr[-3000:]
    return root


def _value(path) -> float:
    path = str(path)
    if os.path.isdir(path):
        path = os.path.join(path, "v.npy")
    return float(np.load(path)[0])


def _sha(path) -> str:
    return bytes_digest(open(path, "rb").read())


def _reopen(root, name: str, **options) -> Checkpointer:
    return Checkpointer(str(root / name), write=lambda p: np.save(p, np.zeros(3)), monitor="val_loss",
                        resume=True, **options)


@pytest.mark.parametrize(("scenario", "kept"), [("file-before-rename", 0.5), ("file-after-rename", 0.4)])
def test_a_kill_mid_replace_of_a_fixed_best_never_loses_it(tmp_path, scenario, kept):
    root = _kill_at(tmp_path, scenario)
    assert unaccounted(root) == [], "at the kill, the manifest accounts for best.npy"
    assert _value(root / "best.npy") == kept
    # A reader (load_best, ckptcore best) before any run opens the root again sees it too.
    seen = load_settled(LocalBackend(str(root)))
    assert seen.best().path == "best.npy" and seen.best().digest == _sha(root / "best.npy")
    ck = _reopen(root, "best.npy", save_best_only=True)
    assert ck.best() == str(root / "best.npy"), "best() finds it"
    entry = ck.manifest.get("best.npy")
    assert entry.digest == _sha(root / "best.npy") and entry.monitor_value == kept
    assert ck.tracker.best == kept, "the stored best is that of the checkpoint really there"
    ck.close()
    stored = load_manifest(LocalBackend(str(root)))
    assert stored.pending == [] and stored.best().digest == _sha(root / "best.npy")


def test_a_kill_between_the_renames_of_a_directory_replace_puts_the_old_copy_back(tmp_path):
    root = _kill_at(tmp_path, "dir-between-renames")
    staging = root.joinpath(*STAGING_DIR.split("/"))
    assert not (root / "best").exists(), "killed with the old copy moved aside"
    assert any((slot / "best").is_dir() for slot in staging.iterdir()), "the only copy, in staging"
    ck = _reopen(root, "best", save_best_only=True)
    assert _value(root / "best") == 0.5, "opening the root put it back"
    # What is left is the killed save's own staged copy (swept once stale), not the aside one.
    assert not any((slot / "aside").exists() or (slot / "best" / "v.npy").exists() and _value(slot / "best") == 0.5
                   for slot in staging.iterdir())
    assert ck.best() == str(root / "best") and ck.tracker.best == 0.5
    ck.close()
    assert unaccounted(root) == []


def test_a_kill_after_the_trash_rename_of_a_prune_leaves_nothing_half_deleted(tmp_path):
    root = _kill_at(tmp_path, "prune-after-trash")
    assert sorted(n for n in os.listdir(root) if not n.startswith(".")) == ["m-2.npy"]
    assert unaccounted(root) == []
    staging = root.joinpath(*STAGING_DIR.split("/"))
    assert list(staging.iterdir()), "the trash of the interrupted delete"
    _reopen(root, "m-{epoch}.npy", keep_last=1).close()
    assert list(staging.iterdir()) == []
    assert [e.path for e in load_manifest(LocalBackend(str(root))).entries] == ["m-2.npy"]


def test_a_pruned_checkpoint_a_kill_left_undeleted_is_removed_at_the_next_open(tmp_path):
    root = _kill_at(tmp_path, "prune-before-delete")
    assert (root / "m-1.npy").exists() and (root / "m-2.npy").exists()
    assert unaccounted(root) == [], "m-1 is held by its delete record, m-2 by its write record"
    stored = load_manifest(LocalBackend(str(root)))
    assert "m-1.npy" not in {e.path for e in stored.entries}
    _reopen(root, "m-{epoch}.npy", keep_last=1).close()
    assert not (root / "m-1.npy").exists()
    stored = load_manifest(LocalBackend(str(root)))
    assert [e.path for e in stored.entries] == ["m-2.npy"] and stored.pending == []
