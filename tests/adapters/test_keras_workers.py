"""The Keras callbacks on a worker that is not the chief: the saves run, nothing is committed.

The multi-process jobs (JAX, tf.distribute) are in tests/distributed; these run in one process
with the role given explicitly or through the environment, on every Keras backend.
"""

from __future__ import annotations

import pytest
from wandb_log import recorded_artifacts

from ckptcore.adapters.keras import ModelCheckpoint, WandbModelCheckpoint
from ckptcore.errors import ConfigError


def test_a_worker_saves_nothing_under_the_root(tmp_path, data, make_model):
    x, y = data
    root = tmp_path / "ckpt"
    checkpoint = ModelCheckpoint(str(root / "m-{epoch}.keras"), monitor="loss", keep_last=2, is_chief=False)
    make_model().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[checkpoint])
    # The engine took the chief's decisions (and kept them in memory) but wrote nothing.
    assert [e.path for e in checkpoint.checkpointer.manifest.entries] == ["m-2.keras", "m-3.keras"]
    assert checkpoint.checkpointer.latest() == str(root / "m-3.keras")
    assert not root.exists() or not any(root.rglob("*"))


def test_the_rank_in_the_environment_makes_a_worker(tmp_path, data, make_model, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    x, y = data
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss")
    make_model().fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert checkpoint.checkpointer.is_chief is False
    assert list(tmp_path.iterdir()) == []


def test_the_argument_beats_the_environment(tmp_path, data, make_model, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    x, y = data
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", is_chief=True)
    make_model().fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert (tmp_path / "m-1.keras").exists()


def test_is_chief_is_checked_at_construction(tmp_path):
    with pytest.raises(ConfigError, match=r"is_chief: got 1 \(int\)"):
        ModelCheckpoint(str(tmp_path / "m.keras"), is_chief=1)


def test_a_wandb_worker_needs_no_run_and_logs_nothing(tmp_path, data, make_model, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    assert wandb.run is None
    x, y = data
    worker = WandbModelCheckpoint(str(tmp_path / "w" / "m-{epoch}.keras"), monitor="loss", is_chief=False)
    run = wandb.init(project="ckptcore-tests", dir=str(tmp_path), mode="offline")
    try:
        make_model().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[worker])
        sync_file = run.settings.sync_file
    finally:
        wandb.finish()
    assert recorded_artifacts(sync_file) == []
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*"))


@pytest.mark.parametrize("filename", ["m-{epoch}.keras", "m-{epoch}.h5"])
def test_a_workers_snapshot_is_taken_then_dropped_unwritten(tmp_path, data, make_model, monkeypatch, filename):
    """The snapshot (this worker's part of the save) runs; no file is written from it."""
    from ckptcore.adapters.keras import _saving_internals as internals
    from ckptcore.adapters.keras import snapshot as snapshots

    taken, written = [], []
    real_record, real_archive = internals.record, internals.write_keras_archive
    monkeypatch.setattr(internals, "record", lambda *a, **k: taken.append(1) or real_record(*a, **k))
    monkeypatch.setattr(internals, "write_keras_archive",
                        lambda *a, **k: written.append(1) or real_archive(*a, **k))
    moved = []
    real_move = snapshots.shutil.move
    monkeypatch.setattr(snapshots.shutil, "move", lambda *a: moved.append(a) or real_move(*a))
    x, y = data
    checkpoint = ModelCheckpoint(str(tmp_path / "w" / filename), monitor="loss", is_chief=False)
    make_model().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[checkpoint])
    if filename.endswith(".keras"):
        assert len(taken) == 2 and written == []
    assert moved == []  # a synchronous .h5 save into a temporary directory, deleted unmoved
    assert checkpoint._snapshot.buffer_sets <= 1  # the buffers went back to the pool
    assert not (tmp_path / "w").exists()


def test_a_worker_resolves_no_extra_backend(tmp_path, data, make_model):
    """backends=["wandb"] on a worker: no W&B run needed, nothing committed anywhere."""
    pytest.importorskip("wandb")
    x, y = data
    checkpoint = ModelCheckpoint(str(tmp_path / "w" / "m-{epoch}.keras"), monitor="loss",
                                 backends=["wandb"], is_chief=False)
    make_model().fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert [b.name for b in checkpoint.checkpointer.committer.backends] == ["local"]
    assert not (tmp_path / "w").exists()
