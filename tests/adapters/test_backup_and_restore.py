"""``BackupAndRestore``: Keras 3's own test cases (keras/src/callbacks/backup_and_restore_test.py),
ported to ckptcore's callback, plus what the engine adds (URLs, atomic backups, beside
ModelCheckpoint, a second fit after an exception).

Deviations from the Keras file: no assertions on Keras's private attributes
(``_current_epoch``, ``_weights_path``, ...); the same facts are read from the training
history, the canary counter and the manifest. The corruption case damages the latest backup
file named by ``ckptcore.latest_checkpoint`` instead of ``cbk._weights_path``.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import ckptcore
from ckptcore.adapters.keras import BackupAndRestore, ModelCheckpoint, restore_weights


class InterruptingCallback(keras.callbacks.Callback):
    """Raises after ``steps_int`` batches or ``epoch_int`` epochs (as in Keras's test)."""

    def __init__(self, steps_int=None, epoch_int=None):
        super().__init__()
        self.batch_count = 0
        self.epoch_count = 0
        self.steps_int = steps_int
        self.epoch_int = epoch_int

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_count += 1
        if self.epoch_int is not None and self.epoch_count == self.epoch_int:
            raise RuntimeError("EpochInterruption")

    def on_train_batch_end(self, batch, logs=None):
        self.batch_count += 1
        if self.steps_int is not None and self.batch_count == self.steps_int:
            raise RuntimeError("StepsInterruption")


class CanaryLayer(keras.layers.Layer):
    """Counts the batches it has seen, in a weight that the backup holds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counter = self.add_weight(shape=(), initializer="zeros", dtype="float32", trainable=False)

    def call(self, x):
        self.counter.assign_add(1)
        return x


def make_model():
    model = keras.Sequential([keras.Input((3,)), CanaryLayer(), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd", metrics=["mse"])
    return model


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    return rng.random((10, 3)).astype("float32"), rng.random((10, 1)).astype("float32")


def _counter(model) -> int:
    return int(keras.ops.convert_to_numpy(model.layers[0].counter))


def test_save_freq_unknown_error():
    with pytest.raises(ValueError, match="Invalid value"):
        BackupAndRestore(backup_dir="backup_dir", save_freq="batch")
    with pytest.raises(ValueError, match="Invalid value"):
        BackupAndRestore(backup_dir="backup_dir", save_freq=0.15)


@pytest.mark.parametrize("backup_dir", ["", None])
def test_backup_dir_empty_error(backup_dir):
    with pytest.raises(ValueError, match="Empty `backup_dir` argument passed"):
        BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")


def test_best_case_step(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    cbk = BackupAndRestore(backup_dir, save_freq=1)
    with pytest.raises(RuntimeError, match="StepsInterruption"):
        model.fit(*xy, batch_size=4, epochs=2, verbose=0,
                  callbacks=[cbk, InterruptingCallback(steps_int=2)])
    assert backup_dir.exists()
    assert _counter(model) == 2
    hist = model.fit(*xy, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    # The backup after batch 2 of epoch 1 is restored (counter 2); epoch 1 runs again: 5 x 3 more.
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert _counter(model) == 17


def test_best_case_epoch(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    cbk = BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(*xy, batch_size=4, epochs=6, verbose=0, callbacks=[cbk, InterruptingCallback(epoch_int=2)])
    assert backup_dir.exists()
    assert _counter(model) == 6
    cbk.wait()  # saves are non-blocking: the epoch-2 backup may still be in flight
    assert ckptcore.latest_checkpoint(backup_dir).initial_epoch == 2
    hist = model.fit(*xy, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert hist.epoch == [2, 3, 4]
    assert _counter(model) == 5 * 3
    assert not backup_dir.exists(), "deleted after the fit that finished"


def test_backup_corrupted(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    cbk = BackupAndRestore(backup_dir=backup_dir, save_freq="epoch", double_checkpoint=True)
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(*xy, batch_size=4, epochs=6, verbose=0, callbacks=[cbk, InterruptingCallback(epoch_int=2)])
    cbk.wait()
    latest = ckptcore.latest_checkpoint(backup_dir)
    names = sorted(p.name for p in backup_dir.iterdir() if not p.name.startswith("."))
    assert len([n for n in names if n.endswith(".weights.h5")]) == 2, names
    with open(latest.location, "w") as fh:  # corrupt the latest backup
        fh.write("0")
    hist = model.fit(*xy, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    # The epoch-1 backup (counter 3) is restored: epochs 2..5 run, 4 x 3 batches.
    assert hist.epoch == [1, 2, 3, 4]
    assert _counter(model) == 5 * 3


def test_a_corrupted_backup_without_a_previous_one_is_a_clear_error(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    cbk = BackupAndRestore(backup_dir)
    with pytest.raises(RuntimeError):
        model.fit(*xy, batch_size=4, epochs=6, verbose=0, callbacks=[cbk, InterruptingCallback(epoch_int=2)])
    cbk.wait()
    latest = ckptcore.latest_checkpoint(backup_dir)
    with open(latest.location, "w") as fh:
        fh.write("0")
    with pytest.raises(ValueError, match="digest") as info:
        model.fit(*xy, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert os.path.basename(latest.location) in str(info.value)


def test_model_deleted_case_epoch(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    model.fit(*xy, batch_size=4, callbacks=[BackupAndRestore(backup_dir, save_freq="epoch")], epochs=2, verbose=0)
    assert not backup_dir.exists()


def test_delete_checkpoint_false_keeps_the_backup(tmp_path, xy):
    backup_dir = tmp_path / "subdir"
    model = make_model()
    model.fit(*xy, batch_size=4, callbacks=[BackupAndRestore(backup_dir, delete_checkpoint=False)],
              epochs=2, verbose=0)
    assert ckptcore.latest_checkpoint(backup_dir).epoch == 2
    again = make_model()
    hist = again.fit(*xy, batch_size=4, callbacks=[BackupAndRestore(backup_dir)], epochs=3, verbose=0)
    assert hist.epoch == [2] and _counter(again) == 9


def test_an_unbuilt_model_starts_fresh_and_restoring_into_one_names_the_backup(tmp_path, xy):
    # Keras raises for a model that is not built even when there is nothing to restore.
    model = keras.Sequential([CanaryLayer(), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    cbk = BackupAndRestore(tmp_path / "b")
    with pytest.raises(RuntimeError):
        model.fit(*xy, batch_size=4, epochs=4, verbose=0, callbacks=[cbk, InterruptingCallback(epoch_int=1)])
    cbk.wait()
    unbuilt = keras.Sequential([CanaryLayer(), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not built") as info:
        restore_weights(unbuilt, tmp_path / "b")
    assert "backup-000001.weights.h5" in str(info.value)


def test_beside_model_checkpoint_on_a_url(tmp_path, xy, memory_url):
    model = make_model()
    cbk = BackupAndRestore(memory_url + "/backup")
    best = ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", save_best_only=True)
    with pytest.raises(RuntimeError):
        model.fit(*xy, batch_size=4, epochs=5, verbose=0, callbacks=[cbk, best, InterruptingCallback(epoch_int=3)])
    cbk.wait()
    assert ckptcore.latest_checkpoint(memory_url + "/backup").epoch == 3
    hist = model.fit(*xy, batch_size=4, epochs=5, verbose=0, callbacks=[cbk, best])
    assert hist.epoch == [3, 4] and _counter(model) == 15
    assert ckptcore.latest_checkpoint(memory_url + "/backup") is None, "deleted at the end"
    assert (tmp_path / "best.keras").exists()
