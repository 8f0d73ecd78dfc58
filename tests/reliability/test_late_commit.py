"""A synchronous save given up on at ``storage_timeout`` that completes afterwards.

The store here is a real fsspec in-memory file system whose uploads wait until the test lets
them go, the way an upload to a slow store outlasts the deadline and then lands.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings

import numpy as np
import pytest

from ckptcore import CheckpointSaveWarning, Checkpointer
from ckptcore.commit import load_manifest

HANG_GUARD = 30.0  # the held upload goes ahead after this; reached only when the test is broken


@pytest.fixture
def slow_fs():
    """``(root URL, gate)``: the ``slowmem://`` uploads wait while ``gate.held`` is set."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    gate = threading.Event()
    gate.held = False  # type: ignore[attr-defined]
    gate.waiting = threading.Event()  # type: ignore[attr-defined]

    class SlowMemoryFileSystem(MemoryFileSystem):
        protocol = "slowmem"
        store: dict = {}
        pseudo_dirs = [""]
        cachable = False

        @classmethod
        def _strip_protocol(cls, path):
            if isinstance(path, str) and path.startswith("slowmem://"):
                path = "memory://" + path[len("slowmem://"):]
            return MemoryFileSystem._strip_protocol.__func__(cls, path)

        def put_file(self, lpath, rpath, **kwargs):
            if gate.held:
                gate.waiting.set()
                assert gate.wait(HANG_GUARD), "the test never let the upload go"
            return super().put_file(lpath, rpath, **kwargs)

    fsspec.register_implementation("slowmem", SlowMemoryFileSystem, clobber=True)
    url = f"slowmem://bucket-{uuid.uuid4().hex[:8]}/run"
    SlowMemoryFileSystem().mkdir(url.split("://", 1)[1].split("/")[0])
    yield url, gate
    gate.set()
    SlowMemoryFileSystem.store.clear()


def test_a_best_that_lands_after_its_deadline_is_not_overwritten_by_a_worse_one(slow_fs, caplog):
    url, gate = slow_fs
    caplog.set_level("INFO", logger="ckptcore")
    model = {"value": 0.0}

    def write(path: str) -> None:
        with open(path, "wb") as fh:
            np.save(fh, np.array([model["value"]]))

    ck = Checkpointer(f"{url}/best.npy", write=write, monitor="val_loss", save_best_only=True,
                      storage_timeout=0.3, retries=0)

    def epoch(index: int, loss: float) -> list[str]:
        model["value"] = loss
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CheckpointSaveWarning)
            ck.on_epoch_end(index, {"val_loss": loss})
        return [str(w.message) for w in caught if issubclass(w.category, CheckpointSaveWarning)]

    assert epoch(0, 0.5) == []
    gate.held = True
    missed = epoch(1, 0.4)  # the upload outlasts the deadline: reported, goes on in the background
    assert len(missed) == 1 and "storage_timeout" in missed[0]
    assert gate.waiting.is_set()
    gate.held = False
    gate.set()  # it lands now, and is recorded
    deadline = time.monotonic() + HANG_GUARD
    while ck.deadline.stuck is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ck.best() is not None and ck.manifest.best().monitor_value == pytest.approx(0.4)
    assert "'best.npy' finished after storage_timeout=0.3s and is recorded" in caplog.text
    assert epoch(2, 0.45) == []  # worse than the best that landed: not saved over it
    ck.close()
    import fsspec

    fs, path = fsspec.core.url_to_fs(f"{url}/best.npy")
    with fs.open(path, "rb") as fh:
        assert np.load(fh)[0] == pytest.approx(0.4)
    manifest = load_manifest(ck.committer.primary)
    assert manifest.best().monitor_value == pytest.approx(0.4)
    assert manifest.tracker["best"] == pytest.approx(0.4)


def test_a_best_whose_late_commit_fails_is_undone(slow_fs, monkeypatch):
    url, gate = slow_fs
    saves = {"n": 0}

    def write(path: str) -> None:
        saves["n"] += 1
        np.save(path, np.full(3, float(saves["n"])))  # other bytes at each save

    ck = Checkpointer(f"{url}/best.npy", write=write, monitor="val_loss", save_best_only=True,
                      storage_timeout=0.3, retries=0)
    ck.on_epoch_end(0, {"val_loss": 0.5})
    primary = ck.committer.primary
    put = primary.fs.put_file

    def put_file(*args, **kwargs):
        assert gate.wait(HANG_GUARD), "the test never let the upload go"
        raise OSError("the store dropped the upload")  # nothing landed

    monkeypatch.setattr(primary.fs, "put_file", put_file)
    gate.held = True
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ck.on_epoch_end(1, {"val_loss": 0.4})
    gate.held = False
    gate.set()
    deadline = time.monotonic() + HANG_GUARD
    while ck.deadline.stuck is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert ck.tracker.best == pytest.approx(0.5)  # the best that reached storage
    monkeypatch.setattr(primary.fs, "put_file", put)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck.on_epoch_end(2, {"val_loss": 0.45})  # an improvement over what storage holds
    assert ck.manifest.best().monitor_value == pytest.approx(0.45)
    messages = [str(w.message) for w in caught]
    assert any("dropped the upload" in m for m in messages), messages  # the late failure is reported
    ck.close()
