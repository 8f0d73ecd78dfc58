"""What the manifest says after saves whose outcome is not what the call reported: a best
still in flight, a root deleted while in use, an upload that landed but reported a failure."""

from __future__ import annotations

import io
import logging
import shutil
import threading
import warnings

import numpy as np
import pytest

from ckptcore import Checkpointer
from ckptcore.audit import unaccounted
from ckptcore.backends import LocalBackend
from ckptcore.commit import load_manifest
from ckptcore.digest import bytes_digest

HANG_GUARD = 30


def test_the_stored_best_is_a_committed_checkpoints_with_non_blocking_saves(tmp_path):
    gate, writing = threading.Event(), threading.Event()

    def snapshot():
        value = snapshot.value

        def write(path):
            if value == 0.4:
                writing.set()
                assert gate.wait(HANG_GUARD)
            with open(path, "wb") as fh:
                np.save(fh, np.full(3, value))
        return write

    root = tmp_path / "run"
    ck = Checkpointer(str(root / "best.npy"), snapshot=snapshot, async_save=True, save_best_only=True,
                      monitor="val_loss")
    snapshot.value = 0.5
    ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.wait()
    snapshot.value = 0.4
    ck.on_epoch_end(1, {"val_loss": 0.4})  # the tracker's best is 0.4 now; its save is in flight
    assert writing.wait(HANG_GUARD)
    ck.committer.write_manifest()  # any manifest write meanwhile (another save's, a close's)
    # A kill now: the root as it is on disk.
    shutil.copytree(root, tmp_path / "killed")
    gate.set()
    ck.close()
    assert load_manifest(LocalBackend(str(root))).tracker["best"] == 0.4
    stored = load_manifest(LocalBackend(str(tmp_path / "killed")))
    assert stored.tracker["best"] == 0.5, "best.npy holds 0.5: the stored best is that"
    resumed = Checkpointer(str(tmp_path / "killed" / "best.npy"), write=lambda p: np.save(p, np.zeros(3)),
                           save_best_only=True, monitor="val_loss", resume=True)
    assert resumed.tracker.best == 0.5
    assert resumed.on_epoch_end(2, {"val_loss": 0.45}) == "best.npy", "a real improvement is saved"
    resumed.close()


def test_a_root_deleted_mid_run_is_reported_and_never_listed_as_holding_what_is_gone(tmp_path, caplog):
    root = tmp_path / "run"
    ck = Checkpointer(str(root / "m-{epoch}.npy"), write=lambda p: np.save(p, np.zeros(3)))
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.on_epoch_end(1, {"val_loss": 0.9})
    shutil.rmtree(root)
    with caplog.at_level(logging.WARNING, logger="ckptcore"):
        assert ck.on_epoch_end(2, {"val_loss": 0.8}) == "m-3.npy"
    assert "was deleted while in use" in caplog.text
    ck.close()
    stored = load_manifest(LocalBackend(str(root)))
    assert [e.path for e in stored.entries] == ["m-3.npy"], "m-1 and m-2 are gone: not listed"
    assert unaccounted(root) == []


@pytest.fixture
def landed_fs():
    """``landedmem://``: an in-memory fsspec store whose uploads land, then report a timeout
    (the reply was lost), the first ``fail`` times."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class LandedFileSystem(MemoryFileSystem):
        protocol = "landedmem"
        store: dict = {}
        pseudo_dirs = [""]
        cachable = False
        fail = 0

        @classmethod
        def _strip_protocol(cls, path):
            if isinstance(path, str) and path.startswith("landedmem://"):
                path = "memory://" + path[len("landedmem://"):]
            return MemoryFileSystem._strip_protocol.__func__(cls, path)

        def put_file(self, lpath, rpath, **kwargs):
            super().put_file(lpath, rpath, **kwargs)
            if type(self).fail > 0:
                type(self).fail -= 1
                raise TimeoutError("read timed out waiting for the reply")

    fsspec.register_implementation("landedmem", LandedFileSystem, clobber=True)
    yield LandedFileSystem
    LandedFileSystem.store.clear()


@pytest.mark.parametrize("primary", [False, True], ids=["secondary", "primary"])
def test_an_upload_that_landed_but_reported_a_failure_counts_as_saved(tmp_path, landed_fs, primary):
    url = "landedmem://bucket/run"
    values = iter([1.0, 2.0])
    write = lambda p: np.save(p, np.full(3, next(values)))  # noqa: E731
    if primary:
        ck = Checkpointer(f"{url}/best.npy", write=write, retries=0)
    else:
        ck = Checkpointer(str(tmp_path / "best.npy"), write=write, backends=[url], retries=0)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    landed_fs.fail = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "was not saved" report
        ck.on_epoch_end(1, {"val_loss": 0.5})
    ck.close()
    fs = landed_fs()
    remote = fs.cat_file("bucket/run/best.npy")
    assert np.load(io.BytesIO(remote))[0] == 2.0
    from ckptcore.backends.fsspec import FsspecBackend

    held = load_manifest(FsspecBackend(url))
    assert held.get("best.npy").digest == bytes_digest(remote), "no wrong digest listed"
    if not primary:
        assert load_manifest(LocalBackend(str(tmp_path))).get("best.npy").backends == ["local", "landedmem"]
