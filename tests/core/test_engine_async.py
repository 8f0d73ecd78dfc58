"""``Checkpointer(async_save=True)``: background commits, close, errors, back-pressure, exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from ckptcore import CheckpointSaveError, Checkpointer, Manifest

from ckptcore.manifest import MANIFEST_NAME
from layout_helpers import leftovers

HANG_GUARD = 30  # seconds; reached only when the code under test is broken


def _manifest(root) -> Manifest:
    return Manifest.from_json((root / MANIFEST_NAME).read_text())


class Snapshots:
    """``snapshot()`` copies the "model" on the calling thread; the returned write saves the copy."""

    def __init__(self) -> None:
        self.model = np.zeros(4)
        self.taken_on: list[str] = []
        self.written_on: list[str] = []
        self.gate: threading.Event | None = None
        self.fail_with: BaseException | None = None

    def __call__(self):
        self.taken_on.append(threading.current_thread().name)
        copy = self.model.copy()
        gate, fail = self.gate, self.fail_with

        def write(path: str) -> None:
            if gate is not None:
                assert gate.wait(HANG_GUARD)
            self.written_on.append(threading.current_thread().name)
            if fail is not None:
                raise fail
            np.save(path, copy)

        return write


def test_saves_commit_in_the_background(tmp_path, helpers):
    snaps = Snapshots()
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True, max_pending=2)
    for epoch in range(3):
        snaps.model[:] = epoch  # the training thread moves on; the snapshot keeps its copy
        ck.on_epoch_end(epoch, {"val_loss": 1.0 - epoch / 10})
    snaps.model[:] = 99
    ck.close()
    main = threading.current_thread().name
    assert snaps.taken_on == [main] * 3
    assert snaps.written_on == ["ckptcore-writer"] * 3
    for epoch in range(3):
        assert np.load(tmp_path / f"w-{epoch + 1}.npy")[0] == epoch
    manifest = _manifest(tmp_path)
    assert [e.path for e in manifest.entries] == ["w-1.npy", "w-2.npy", "w-3.npy"]
    for entry in manifest.entries:
        assert entry.digest == helpers.digest(str(tmp_path / entry.path))
    assert manifest.best().path == "w-3.npy"


def test_async_without_snapshot_runs_write_in_the_background(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, async_save=True)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.wait()
    assert npwrite.threads == ["ckptcore-writer"]
    assert (tmp_path / "w-1.npy").exists()
    ck.close()


def test_close_finishes_pending_saves(tmp_path):
    snaps = Snapshots()
    snaps.gate = threading.Event()
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True, keep_last=5)
    assert ck.on_epoch_end(0, {"val_loss": 1.0}) == "w-1.npy"
    assert ck.writer.pending == 1
    assert not (tmp_path / "w-1.npy").exists(), "the hook returned before the write ran"
    snaps.gate.set()
    ck.close()
    assert (tmp_path / "w-1.npy").exists()
    assert [e.path for e in _manifest(tmp_path).entries] == ["w-1.npy"]


def test_a_background_error_surfaces_on_the_next_hook_naming_the_checkpoint(tmp_path):
    snaps = Snapshots()
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True,
                      save_best_only=True)
    ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.wait()
    snaps.fail_with = ValueError("layer 3 cannot be serialised")
    ck.on_epoch_end(1, {"val_loss": 0.4})  # improves; fails in the background
    snaps.fail_with = None
    with pytest.raises(CheckpointSaveError) as info:
        ck.on_epoch_end(2, {"val_loss": 0.3})  # waits for its slot, then reports the failure
    assert "'w-2.npy'" in str(info.value) and "cannot be serialised" in str(info.value)
    assert ck.tracker.best == 0.5, "the best rolls back to the last committed checkpoint"
    assert not (tmp_path / "w-2.npy").exists()
    assert not (tmp_path / "w-3.npy").exists(), "no save is queued behind a failure"
    ck.on_epoch_end(3, {"val_loss": 0.45})  # better than the committed best: saved
    ck.close()
    manifest = _manifest(tmp_path)
    assert [e.path for e in manifest.entries] == ["w-1.npy", "w-4.npy"]
    assert manifest.best().path == "w-4.npy"
    assert helpers_no_temp(tmp_path)


def helpers_no_temp(root) -> bool:
    return leftovers(root) == []


def test_a_background_error_surfaces_at_close(tmp_path):
    snaps = Snapshots()
    snaps.fail_with = RuntimeError("serialisation failed")
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True)
    ck.on_epoch_end(0, {"val_loss": 0.5})
    with pytest.raises(CheckpointSaveError, match="'w-1.npy'.*serialisation failed"):
        ck.close()
    assert not (tmp_path / "w-1.npy").exists()


def test_a_background_error_is_reported_once(tmp_path):
    snaps = Snapshots()
    snaps.fail_with = RuntimeError("boom")
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True,
                      every_n_epochs=5)
    ck.on_epoch_end(4, {"val_loss": 0.5})
    with pytest.raises(CheckpointSaveError, match="'w-5.npy'"):
        ck.wait()
    ck.on_epoch_end(5, {"val_loss": 0.5})  # reported once, not again
    ck.close()


def test_back_pressure_the_second_save_waits_for_the_first(tmp_path):
    order: list[str] = []
    second_started, second_returned = threading.Event(), threading.Event()
    observed: list[bool] = []
    calls = iter(range(2))

    def snapshot():
        n = next(calls) + 1

        def write(path: str) -> None:
            if n == 1:
                assert second_started.wait(HANG_GUARD)
                # Back-pressure: the second hook cannot return while this save runs.
                observed.append(second_returned.wait(0.3))
            np.save(path, np.zeros(2))
            order.append(f"save {n} finished")

        return write

    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snapshot, async_save=True, max_pending=1)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    order.append("hook 1 returned")

    def second_hook() -> None:
        second_started.set()
        ck.on_epoch_end(1, {"val_loss": 0.9})
        order.append("hook 2 returned")
        second_returned.set()

    helper = threading.Thread(target=second_hook)
    helper.start()
    helper.join(HANG_GUARD)
    ck.close()
    assert observed == [False]
    assert order.index("save 1 finished") < order.index("hook 2 returned")
    assert (tmp_path / "w-2.npy").exists()


EXIT_SCRIPT = """
import atexit, sys, threading
import numpy as np
from ckptcore import Checkpointer

root, how = sys.argv[1], sys.argv[2]
gate = threading.Event()

def snapshot():
    data = np.arange(5.0)
    def write(path):
        assert gate.wait(30)
        np.save(path, data)
    return write

ck = Checkpointer(root + "/w-{epoch}.npy", snapshot=snapshot, async_save=True)
ck.on_epoch_end(0, {"val_loss": 0.5})
assert ck.writer.pending == 1
# Exit hooks run last-registered first: this one releases the save, then the writer's own
# hook must finish it. close() is never called.
atexit.register(gate.set)
if how == "crash":
    raise RuntimeError("training crashed")
"""


@pytest.mark.parametrize("how", ["return", "crash"])
def test_a_pending_save_is_finished_at_interpreter_exit(tmp_path, how):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    root = tmp_path / "ck"
    result = subprocess.run(
        [sys.executable, str(script), str(root), how], capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )
    if how == "return":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and "training crashed" in result.stderr
    assert np.array_equal(np.load(root / "w-1.npy"), np.arange(5.0))
    # close() never ran: the save's one manifest write holds it as pending; the next open
    # finds its bytes there and lists it.
    assert [r.path for r in _manifest(root).pending] == ["w-1.npy"]
    from ckptcore.backends import LocalBackend
    from ckptcore.store import settle_root

    assert [e.path for e in settle_root(LocalBackend(str(root))).entries] == ["w-1.npy"]
    assert [e.path for e in _manifest(root).entries] == ["w-1.npy"] and _manifest(root).pending == []


@pytest.mark.parametrize("later_fails", [False, True])
def test_failed_bests_in_flight_roll_back_to_the_last_committed_one(tmp_path, later_fails, caplog):
    gate = threading.Event()
    outcomes = iter([None, ValueError("first failure"), ValueError("second failure") if later_fails else None])

    def snapshot():
        fail = next(outcomes)

        def write(path: str) -> None:
            assert gate.wait(HANG_GUARD)
            if fail is not None:
                raise fail
            np.save(path, np.zeros(2))

        return write

    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snapshot, async_save=True,
                      max_pending=3, save_best_only=True)
    for epoch, value in enumerate([0.5, 0.4, 0.3]):
        ck.on_epoch_end(epoch, {"val_loss": value})  # three improvements in flight at once
    assert ck.tracker.best == 0.3
    gate.set()
    with pytest.raises(CheckpointSaveError, match="'w-2.npy'.*first failure"):
        ck.wait()
    ck.close()
    manifest = _manifest(tmp_path)
    if later_fails:
        assert ck.tracker.best == 0.5
        assert [e.path for e in manifest.entries] == ["w-1.npy"]
        assert "second failure" in caplog.text
    else:
        assert ck.tracker.best == 0.3
        assert manifest.best().path == "w-3.npy"
    assert manifest.tracker["best"] == ck.tracker.best


def test_a_background_error_surfaces_on_the_next_batch_hook(tmp_path):
    snaps = Snapshots()
    snaps.fail_with = RuntimeError("boom")
    ck = Checkpointer(str(tmp_path / "w-{epoch}-{batch}.npy"), snapshot=snaps, async_save=True,
                      save_freq=2)
    ck.on_epoch_begin(0)
    ck.on_train_batch_end(0, {"loss": 1.0})
    assert ck.on_train_batch_end(1, {"loss": 1.0}) == "w-1-2.npy"
    for _ in range(HANG_GUARD * 100):  # let the save run and fail (polls until it is done)
        if not ck.writer.pending:
            break
        threading.Event().wait(0.01)
    with pytest.raises(CheckpointSaveError, match="'w-1-2.npy'.*boom"):
        ck.on_train_batch_end(2, {"loss": 1.0})  # not a save: still reports the failure
    ck.close()


def test_a_failing_snapshot_is_taken_once_and_reported_once(tmp_path):
    calls: list[int] = []

    def snapshot():
        calls.append(1)
        raise OSError(12, "Cannot allocate memory")

    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snapshot, async_save=True, max_pending=2)
    with pytest.warns(UserWarning) as caught:
        assert ck.on_epoch_end(0, {"val_loss": 1.0}) is None
    ck.close()
    assert calls == [1]
    messages = [str(w.message) for w in caught if "w-1.npy" in str(w.message)]
    assert len(messages) == 1 and "Cannot allocate memory" in messages[0]
    assert ck.tracker.best is None  # the best that reached no storage was undone


def test_the_body_exception_is_not_hidden_by_a_failed_background_save(tmp_path, caplog):
    snaps = Snapshots()
    snaps.fail_with = RuntimeError("serialisation failed")
    with pytest.raises(KeyError, match="the loop's own error"):
        with Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True) as ck:
            ck.on_epoch_end(0, {"val_loss": 1.0})
            raise KeyError("the loop's own error")
    assert "'w-1.npy'" in caplog.text and "serialisation failed" in caplog.text
    assert ck.writer.pending == 0


def test_without_a_body_exception_the_context_manager_raises_the_save_failure(tmp_path):
    snaps = Snapshots()
    snaps.fail_with = RuntimeError("serialisation failed")
    with pytest.raises(CheckpointSaveError, match="'w-1.npy'"):
        with Checkpointer(str(tmp_path / "w-{epoch}.npy"), snapshot=snaps, async_save=True) as ck:
            ck.on_epoch_end(0, {"val_loss": 1.0})
