"""``resume=True`` brings a Keras run back: weights, optimizer state, epoch, best value.

Each "restart" builds a fresh model and callback, as a rerun of the same script would.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
from keras_helpers import build_model

import ckptcore
from ckptcore.adapters.keras import CheckpointMismatchError, ModelCheckpoint, load_latest

STEPS = 5  # 40 samples, batches of 8


class Probe(keras.callbacks.Callback):
    """Records what the model holds when training begins, and which epochs run."""

    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]
        self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


class Script(keras.callbacks.Callback):
    """Replaces ``val_loss`` with scripted values, so the test decides what improves."""

    def __init__(self, values):
        super().__init__()
        self.values = dict(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def _fit(root, data, epochs, name="m-{epoch}.keras", probe=None, extra=(), **kwargs):
    model = build_model()
    kwargs.setdefault("resume", True)
    checkpoint = ModelCheckpoint(str(root / name), **kwargs)
    probe = probe or Probe()
    history = model.fit(*data, epochs=epochs, batch_size=8, verbose=0,
                        callbacks=[*extra, checkpoint, probe])
    return model, checkpoint, probe, history


def test_a_second_fit_continues_where_the_first_stopped(tmp_path, data):
    first, _, _, h1 = _fit(tmp_path, data, 4, monitor="loss")
    assert h1.epoch == [0, 1, 2, 3]
    saved = load_latest(tmp_path)
    model, checkpoint, probe, h2 = _fit(tmp_path, data, 8, monitor="loss")
    assert h2.epoch == [4, 5, 6, 7], "epochs 5-8 run"
    for want, got in zip(saved.get_weights(), probe.weights):
        np.testing.assert_array_equal(want, got)
    assert probe.iterations == 4 * STEPS, "the optimizer's iteration counter continues"
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8 * STEPS
    assert h2.history["loss"][0] < h1.history["loss"][0], "the first loss continues from the restored weights"
    assert checkpoint.initial_epoch == 4 and checkpoint.restored.optimizer
    assert ckptcore.latest_checkpoint(tmp_path).epoch == 8
    assert model._initial_epoch is None, "a later fit without resume starts where it is told"


def test_nothing_to_restore_starts_fresh_and_says_so(tmp_path, data, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="ckptcore"):
        _, checkpoint, probe, history = _fit(tmp_path / "empty", data, 2, verbose=1)
    assert history.epoch == [0, 1] and checkpoint.restored is None
    assert "nothing to resume from" in capsys.readouterr().out
    assert any("training starts fresh" in r.getMessage() for r in caplog.records if r.name == "ckptcore")


def test_weights_h5_restores_the_weights(tmp_path, data):
    name = "w-{epoch}.weights.h5"
    _fit(tmp_path, data, 2, name=name, save_weights_only=True, monitor="loss")
    model, checkpoint, probe, history = _fit(tmp_path, data, 3, name=name, save_weights_only=True, monitor="loss")
    assert history.epoch == [2]
    assert probe.iterations == 2 * STEPS, "Keras 3 writes the optimizer variables into .weights.h5 too"


def test_a_legacy_h5_checkpoint_says_once_that_the_optimizer_starts_fresh(tmp_path, data, caplog, capsys):
    _fit(tmp_path, data, 2, name="m-{epoch}.h5", monitor="loss", async_save=False)
    with caplog.at_level(logging.INFO, logger="ckptcore"):
        _, checkpoint, probe, history = _fit(tmp_path, data, 3, name="m-{epoch}.h5", monitor="loss", verbose=1)
    assert history.epoch == [2] and probe.iterations == 0
    assert not checkpoint.restored.optimizer
    fresh = [r for r in caplog.records if "optimizer starts fresh" in r.getMessage()]
    assert len(fresh) == 1 and "m-2.h5" in fresh[0].getMessage()
    assert capsys.readouterr().out.count("optimizer starts fresh") == 1


def test_checkpoints_of_another_architecture_are_a_clear_error_before_any_epoch(tmp_path, data):
    _fit(tmp_path, data, 1, monitor="loss")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7), keras.layers.Dense(1)])
    other.compile(optimizer="adam", loss="mse")
    probe = Probe()
    with pytest.raises(CheckpointMismatchError, match="m-1.keras"):
        other.fit(*data, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"),
                                                                          resume=True), probe])
    assert not hasattr(probe, "epochs"), "no epoch ran"


def test_resume_state_restores_the_tracker_only(tmp_path, data):
    _fit(tmp_path, data, 2, monitor="loss")
    best = ckptcore.latest_checkpoint(tmp_path).entry.monitor_value
    model, checkpoint, probe, history = _fit(tmp_path, data, 1, monitor="loss", resume="state")
    assert history.epoch == [0] and probe.iterations == 0
    fresh = build_model()
    for want, got in zip(fresh.get_weights(), probe.weights):
        np.testing.assert_array_equal(want, got)
    assert checkpoint.checkpointer.tracker.best <= best


def test_a_mid_epoch_checkpoint_repeats_its_epoch_once(tmp_path, data):
    name = "m-{epoch}-{batch}.keras"
    _fit(tmp_path, data, 2, name=name, monitor="loss", save_freq=3)  # saves after batches 3, 6, 9
    point = ckptcore.latest_checkpoint(tmp_path)
    assert (point.epoch, point.batch, point.mid_epoch) == (2, 4, True)
    _, checkpoint, probe, history = _fit(tmp_path, data, 3, name=name, monitor="loss", save_freq=3)
    assert history.epoch == [1, 2], "epoch 2 runs again from its start"
    assert probe.iterations == 9
    assert checkpoint.checkpointer.schedule.batches_run == 15, "5 batches before epoch 2, 10 since"


def test_the_best_is_never_replaced_by_a_worse_epoch_after_a_restart(tmp_path, data):
    name = "best.keras"
    _fit(tmp_path, data, 3, name=name, save_best_only=True, extra=[Script({0: 0.5, 1: 0.3, 2: 0.4})])
    kept = (tmp_path / name).read_bytes()
    _, checkpoint, probe, history = _fit(tmp_path, data, 5, name=name, save_best_only=True,
                                         extra=[Script({2: 0.35, 3: 0.32, 4: 0.31})])
    assert history.epoch == [2, 3, 4], "continues after the best checkpoint, epoch 2"
    assert checkpoint.best == pytest.approx(0.3)
    assert (tmp_path / name).read_bytes() == kept
    assert ckptcore.latest_checkpoint(tmp_path).entry.monitor_value == pytest.approx(0.3)


def test_a_second_fit_of_the_same_callback_after_an_exception_finishes_its_saves(tmp_path, data):
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("boom")

    model = build_model()
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", resume=True, max_pending=2)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(*data, epochs=6, batch_size=8, verbose=0, callbacks=[checkpoint, Boom()])
    history = model.fit(*data, epochs=6, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert history.epoch == [3, 4, 5], "the epoch-3 save was finished and restored"


def test_a_custom_loop_resumes_through_a_callback_list(tmp_path, data):
    x, y = data

    def run(epochs):
        model = build_model()
        model.build((None, 4))
        checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", resume=True)
        callbacks = keras.callbacks.CallbackList([checkpoint], model=model)
        callbacks.on_train_begin()
        ran = list(range(checkpoint.initial_epoch, epochs))
        for epoch in ran:
            callbacks.on_epoch_begin(epoch)
            loss = model.train_on_batch(x, y)
            callbacks.on_epoch_end(epoch, {"loss": float(np.asarray(loss).ravel()[0])})
        callbacks.on_train_end()
        return ran, model

    assert run(2)[0] == [0, 1]
    ran, model = run(4)
    assert ran == [2, 3]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4


def test_resume_with_a_saved_model_export_is_refused_at_construction(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("SavedModel exports need the TensorFlow backend")
    from ckptcore import ConfigError

    with pytest.raises(ConfigError, match="resume='state'"):
        ModelCheckpoint(str(tmp_path / "export-{epoch}"), resume=True)
    assert ModelCheckpoint(str(tmp_path / "export-{epoch}"), resume="state").format == "saved_model"
