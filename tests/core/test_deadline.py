"""``storage_timeout``: a write that never returns costs training a bounded time per save.

The storage here is a write function that blocks on an ``Event`` until the test releases it,
the way a call to a store that never answers blocks.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from ckptcore import CheckpointSaveError, CheckpointSaveWarning, Checkpointer, ConfigError, Manifest
from ckptcore.commit import load_manifest
from ckptcore.deadline import AUTO_LOCAL_SECONDS, AUTO_REMOTE_SECONDS, resolve_timeout

HANG_GUARD = 30.0  # the blocked write gives up after this; reached only when the code is broken
TIMEOUT = 0.3
STATE = 1 << 20  # float64 values in the "model": 8 MiB, so a held snapshot shows in tracemalloc


class BlockingStore:
    """A model and its ``write``/``snapshot``; the ``block``-th write blocks until released."""

    def __init__(self, block: int = 2) -> None:
        self.model = np.zeros(STATE)
        self.block = block
        self.release = threading.Event()
        self.writes = 0
        self.snapshots = 0

    def write_state(self, state: np.ndarray, path: str) -> None:
        self.writes += 1
        if self.writes == self.block:
            assert self.release.wait(HANG_GUARD), "the test never released the blocked write"
        np.save(path, state)

    def write(self, path: str) -> None:
        self.write_state(self.model, path)

    def snapshot(self):
        self.snapshots += 1
        copy = self.model.copy()
        return lambda path: self.write_state(copy, path)


def _train(ck: Checkpointer, store: BlockingStore, epochs: range) -> list[str]:
    """Run epochs, returning the messages of the save warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointSaveWarning)
        for epoch in epochs:
            store.model += 1.0
            ck.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
    return [str(w.message) for w in caught if issubclass(w.category, CheckpointSaveWarning)]


def _until_idle(ck: Checkpointer) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while ck.writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)


def _listed(root) -> list[str]:
    manifest = load_manifest(_local(root))
    return sorted(e.path for e in manifest.entries) if manifest else []


def _local(root):
    from ckptcore.backends.local import LocalBackend

    return LocalBackend(str(root))


def test_async_saves_past_a_hung_write_are_skipped_without_a_snapshot(tmp_path):
    store = BlockingStore(block=2)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=store.snapshot, async_save=True,
                      storage_timeout=TIMEOUT)
    start = time.monotonic()
    tracemalloc.start()
    try:
        messages = _train(ck, store, range(12))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hung_for = time.monotonic() - start
    # One deadline for the first skipped save, the others at once.
    assert hung_for < TIMEOUT + 5.0
    assert store.snapshots == 2, "no snapshot is taken for a skipped save"
    assert peak < 4 * STATE * 8, f"{peak} bytes traced: snapshots piled up"
    skipped = [f"w-{n}.npy" for n in range(3, 13)]
    assert len(messages) == len(skipped)
    for name, message in zip(skipped, messages):
        assert f"'{name}' was not saved" in message and "storage_timeout=0.3s" in message
        assert "'w-2.npy'" in message  # names the save that holds the writer
    assert ck.writer.stuck == "w-2.npy"

    store.release.set()  # storage answers again: the writer goes on
    _until_idle(ck)
    assert _train(ck, store, range(12, 14)) == []
    ck.close()
    assert _listed(tmp_path) == ["w-1.npy", "w-13.npy", "w-14.npy", "w-2.npy"]


def test_async_close_gives_up_on_a_hung_save_and_reports_it_and_the_queued_ones(tmp_path):
    store = BlockingStore(block=1)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=store.snapshot, async_save=True,
                      max_pending=2, storage_timeout=TIMEOUT)
    assert _train(ck, store, range(2)) == []  # the second waits in the queue
    start = time.monotonic()
    with pytest.warns(CheckpointSaveWarning) as caught:
        ck.close()
    assert time.monotonic() - start < TIMEOUT + 5.0
    text = "\n".join(str(w.message) for w in caught)
    assert "'w-1.npy' was not saved: not finished at close" in text
    assert "not saved either, queued behind it and dropped: 'w-2.npy'" in text
    store.release.set()
    ck.writer._thread.join(HANG_GUARD)
    assert store.writes == 1, "a save dropped at close is never run later"


def test_async_wait_is_bounded_and_raises_under_on_save_error_raise(tmp_path):
    store = BlockingStore(block=1)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=store.snapshot, async_save=True,
                      storage_timeout=TIMEOUT, on_save_error="raise")
    ck.on_epoch_end(0, {"val_loss": 1.0})
    start = time.monotonic()
    with pytest.raises(CheckpointSaveError, match="'w-1.npy' was not saved: not finished yet"):
        ck.wait()
    with pytest.raises(CheckpointSaveError, match="'w-2.npy' was not saved: skipped"):
        ck.on_epoch_end(1, {"val_loss": 1.0})
    assert time.monotonic() - start < 2 * TIMEOUT + 5.0
    store.release.set()
    _until_idle(ck)
    ck.close()
    assert _listed(tmp_path) == ["w-1.npy"]


def test_sync_saves_wait_one_deadline_then_skip_without_piling_up_threads(tmp_path):
    store = BlockingStore(block=2)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=store.write, storage_timeout=TIMEOUT)
    threads_before = threading.active_count()
    start = time.monotonic()
    messages = _train(ck, store, range(10))
    assert time.monotonic() - start < TIMEOUT + 5.0
    assert threading.active_count() <= threads_before + 1, "one stuck worker at most"
    assert store.writes == 2, "no save starts while one is stuck"
    assert "'w-2.npy' was not saved: storage did not answer within storage_timeout=0.3s" in messages[0]
    assert all("skipped: the save of 'w-2.npy' has not finished" in m for m in messages[1:])
    assert len(messages) == 9

    store.release.set()  # the stuck write returns, after training went on: never committed
    deadline = time.monotonic() + HANG_GUARD
    while ck.deadline.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    late = _train(ck, store, range(10, 11))
    assert any("'w-2.npy' was not saved: the write function ran past storage_timeout" in m for m in late)
    ck.close()
    assert _listed(tmp_path) == ["w-1.npy", "w-11.npy"]
    assert not (tmp_path / "w-2.npy").exists()


def test_sync_close_is_bounded_while_a_save_is_stuck(tmp_path):
    store = BlockingStore(block=2)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=store.write, storage_timeout=TIMEOUT)
    _train(ck, store, range(2))
    start = time.monotonic()
    with pytest.warns(CheckpointSaveWarning, match="'w-2.npy' was not saved: still not finished at close"):
        ck.close()
    assert time.monotonic() - start < 2 * TIMEOUT + 5.0
    store.release.set()
    # w-1's one manifest write held it as pending (close wrote nothing more): a reader, and the
    # next open, find it listed.
    from ckptcore.store import load_settled

    assert Manifest.from_json(_local(tmp_path).read_bytes(_manifest_name())).pending[0].path == "w-1.npy"
    assert load_settled(_local(tmp_path)).entries[0].path == "w-1.npy"


def _manifest_name() -> str:
    from ckptcore.manifest import MANIFEST_NAME

    return MANIFEST_NAME


def test_no_deadline_keeps_the_old_blocking_behaviour(tmp_path):
    store = BlockingStore(block=2)
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=store.write, storage_timeout=None)
    assert ck.deadline.seconds is None
    threading.Timer(TIMEOUT * 2, store.release.set).start()
    start = time.monotonic()
    assert _train(ck, store, range(2)) == []
    assert time.monotonic() - start >= TIMEOUT * 2
    ck.close()
    assert _listed(tmp_path) == ["w-1.npy", "w-2.npy"]


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "soon", True, [1]])
def test_a_bad_storage_timeout_is_refused_at_construction(tmp_path, value):
    with pytest.raises(ConfigError, match=r"storage_timeout: got .*allowed: 'auto', a finite number of seconds > 0, or None"):
        Checkpointer(str(tmp_path / "w.npy"), write=np.save, storage_timeout=value)


def test_auto_is_longer_for_local_disks_than_for_remote_stores(tmp_path):
    class Remote:
        name = "s3"

    local = _local(tmp_path)
    assert resolve_timeout("auto", [local]) == AUTO_LOCAL_SECONDS
    assert resolve_timeout("auto", [local, Remote()]) == AUTO_REMOTE_SECONDS
    assert resolve_timeout(2.5, [Remote()]) == 2.5
    assert Checkpointer(str(tmp_path / "w.npy"), write=np.save).deadline.seconds == AUTO_LOCAL_SECONDS
