"""Resume in the core: what a run continues from, for an embedding tool and for any root."""

from __future__ import annotations

import logging

import pytest

import ckptcore
from ckptcore import Checkpointer, latest_checkpoint


def _epochs(ck, losses, start=0):
    for epoch, loss in enumerate(losses, start):
        ck.on_epoch_begin(epoch)
        for batch in range(4):
            ck.on_train_batch_end(batch, {"val_loss": loss})
        ck.on_epoch_end(epoch, {"val_loss": loss})


def test_latest_checkpoint_is_exported_and_reads_any_root(tmp_path, npwrite, memory_url):
    assert "latest_checkpoint" in ckptcore.__all__ and "ResumePoint" in ckptcore.__all__
    for root in (str(tmp_path), memory_url):
        assert latest_checkpoint(root) is None, "no manifest: nothing to continue from"
        with Checkpointer(root + "/w-{epoch}.npy", write=npwrite) as ck:
            _epochs(ck, [0.5, 0.4, 0.6])
        point = latest_checkpoint(root)
        assert point.location == root + "/w-3.npy" and point.path == "w-3.npy"
        assert (point.epoch, point.global_step, point.initial_epoch, point.initial_step) == (3, 12, 3, 12)
        assert not point.mid_epoch and point.entry.digest


def test_latest_checkpoint_of_one_template_in_a_shared_root(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite) as every:
        _epochs(every, [0.5, 0.4])
    with Checkpointer(str(tmp_path / "best.npy"), write=npwrite, save_best_only=True) as best:
        _epochs(best, [0.5])
    assert latest_checkpoint(tmp_path).path == "best.npy"
    assert latest_checkpoint(tmp_path, filepath=str(tmp_path / "m-{epoch}.npy")).path == "m-2.npy"


def test_resume_point_tells_an_embedding_tool_what_to_load_and_where_to_continue(tmp_path, npwrite):
    filepath = str(tmp_path / "w-{epoch}.npy")
    with Checkpointer(filepath, write=npwrite, async_save=True) as first:
        assert first.resume_point() is None, "no resume asked"
        _epochs(first, [0.5, 0.4, 0.45])
    again = Checkpointer(filepath, write=npwrite, resume=True)
    point = again.resume_point()
    assert point.location == str(tmp_path / "w-3.npy")
    assert (point.initial_epoch, point.initial_step) == (3, 12)
    assert again.schedule.batches_run == 12 and again.tracker.best == 0.4
    again.close()


def test_resume_on_an_empty_root_starts_fresh_and_logs_it(tmp_path, npwrite, caplog):
    with caplog.at_level(logging.INFO, logger="ckptcore"):
        ck = Checkpointer(str(tmp_path / "new" / "w-{epoch}.npy"), write=npwrite, resume=True)
    assert ck.resume_point() is None and ck.tracker.best is None
    assert any("training starts fresh" in r.getMessage() for r in caplog.records)
    _epochs(ck, [0.3])
    ck.close()
    assert latest_checkpoint(tmp_path / "new").epoch == 1


def test_a_mid_epoch_checkpoint_continues_at_its_epochs_start(tmp_path, npwrite):
    filepath = str(tmp_path / "w-{epoch}-{batch}.npy")
    with Checkpointer(filepath, write=npwrite, save_freq=3, monitor="loss") as first:
        for epoch in range(2):
            first.on_epoch_begin(epoch)
            for batch in range(4):
                first.on_train_batch_end(batch, {"loss": 1.0})
    # saves after batches 3 and 6 (epoch 2, its 2nd batch); 8 batches ran in all
    state = Checkpointer(filepath, write=npwrite, save_freq=3, monitor="loss", resume="state")
    assert state.schedule.batches_run == 8, "resume='state' keeps the stored count as it is"
    state.close()
    again = Checkpointer(filepath, write=npwrite, save_freq=3, monitor="loss", resume=True)
    point = again.resume_point()
    assert (point.epoch, point.batch, point.mid_epoch) == (2, 2, True)
    assert (point.initial_epoch, point.initial_step) == (1, 4), "epoch 2 runs again from batch 5"
    assert again.schedule.batches_run == 4
    again.close()


def test_the_resumed_best_is_the_best_checkpoints_value_on_storage(tmp_path, npwrite):
    from ckptcore.backends.local import LocalBackend
    from ckptcore.commit import load_manifest
    from ckptcore.manifest import MANIFEST_NAME

    filepath = str(tmp_path / "best.npy")
    with Checkpointer(filepath, write=npwrite, save_best_only=True) as first:
        _epochs(first, [0.5, 0.3])
    # A stored state ahead of storage (a process killed between a state and its checkpoint):
    manifest = load_manifest(LocalBackend(str(tmp_path)))
    for state in manifest.states.values():
        state["tracker"]["best"] = 0.1
    manifest.tracker["best"] = 0.1
    (tmp_path / MANIFEST_NAME).write_text(manifest.to_json())
    again = Checkpointer(filepath, write=npwrite, save_best_only=True, resume=True)
    assert again.tracker.best == pytest.approx(0.3), "the value of best.npy, not the state's"
    again.close()


def test_a_final_checkpoint_on_a_signal_mid_epoch_is_marked_partial(tmp_path, npwrite):
    import signal

    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, save_on_preemption=True)
        _epochs(ck, [0.5])
        ck.on_epoch_begin(1)
        signal.raise_signal(signal.SIGTERM)
        ck.close()
    finally:
        signal.signal(signal.SIGTERM, before)
    point = latest_checkpoint(tmp_path)
    assert point.path == "w-2.npy" and point.mid_epoch and point.initial_epoch == 1
