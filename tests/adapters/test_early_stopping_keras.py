"""Keras 3's own ``early_stopping_test.py``, ported to ckptcore's ``EarlyStopping``.

Each test follows Keras's (``keras/src/callbacks/early_stopping_test.py``) with
``callbacks.EarlyStopping`` replaced by ours. Deviations, each marked ``DEVIATION`` below:

- ``monitor="unknown"`` with ``mode="auto"``: Keras 3 raises ``ValueError`` (it cannot place the
  metric); ckptcore's rule, shared with ``ModelCheckpoint``, places an unknown name as ``min``
  (as Keras 2 did), and the missing value is reported with Keras's warning.
"""

from __future__ import annotations

import warnings

import numpy as np
from keras import layers, metrics, models, ops

from ckptcore.adapters.keras import EarlyStopping


def _model():
    return models.Sequential((layers.Dense(1, activation="relu"), layers.Dense(1, activation="relu")))


def test_early_stopping():
    x_train = np.random.random((10, 5))
    y_train = np.random.random((10, 1))
    x_test = np.random.random((10, 5))
    y_test = np.random.random((10, 1))
    model = _model()
    model.compile(
        loss="mae",
        optimizer="adam",
        metrics=["mse", "acc", "accuracy", "hinge", metrics.F1Score(name="f1_score")],
    )
    cases = [
        ("max", "val_mse", "max"),
        ("min", "val_loss", "min"),
        ("auto", "val_mse", "min"),
        ("auto", "loss", "min"),
        ("auto", "acc", "max"),
        ("auto", "val_accuracy", "max"),
        ("auto", "hinge", "min"),
        ("auto", "f1_score", "max"),
    ]
    for mode, monitor, expected_mode in cases:
        cbks = [EarlyStopping(patience=0, monitor=monitor, mode=mode)]
        model.fit(x_train, y_train, batch_size=5, validation_data=(x_test, y_test), callbacks=cbks,
                  epochs=2, verbose=0)
        monitor_op = ops.greater if expected_mode == "max" else ops.less
        assert cbks[0].monitor_op == monitor_op, (mode, monitor)

    # DEVIATION: no ValueError; "unknown" counts as min and its absence is reported each epoch.
    cbks = [EarlyStopping(patience=0, monitor="unknown")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x_train, y_train, batch_size=5, validation_data=(x_test, y_test), callbacks=cbks,
                            epochs=2, verbose=0)
    assert cbks[0].monitor_op == ops.less
    assert len(history.epoch) == 2  # nothing to stop on
    assert any("Early stopping conditioned on metric `unknown` which is not available" in str(w.message)
               for w in caught)


def test_early_stopping_patience():
    cases = [0, 1, 2, 3]
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    for patience in cases:
        stopper = EarlyStopping(monitor="loss", patience=patience)
        stopper.set_model(models.Sequential())
        stopper.model.compile(loss="mse", optimizer="sgd")
        stopper.on_train_begin()
        for epoch, loss in enumerate(losses):
            stopper.on_epoch_end(epoch=epoch, logs={"loss": loss})
            if stopper.model.stop_training:
                break
        assert stopper.stopped_epoch == max(patience, 1) + 2


def test_early_stopping_reuse():
    patience = 3
    data = np.random.random((100, 1))
    labels = np.where(data > 0.5, 1, 0)
    model = _model()
    model.compile(optimizer="sgd", loss="mae", metrics=["mse"])
    stopper = EarlyStopping(monitor="mse", patience=patience)
    history1 = model.fit(data, labels, callbacks=[stopper], verbose=0, epochs=20)
    assert len(history1.epoch) >= patience
    history2 = model.fit(data, labels, callbacks=[stopper], verbose=0, epochs=20)
    assert len(history2.epoch) >= patience


def test_state_reset_across_fit_calls():
    # keras-team/keras#20256: a stale best from a previous fit must not stop the next one early.
    stopper = EarlyStopping(monitor="loss", patience=3)
    stopper.set_model(models.Sequential())
    stopper.on_train_begin()
    stopper.best = 0.1
    stopper.wait = 3
    stopper.stopped_epoch = 5
    stopper.best_epoch = 5
    stopper.best_weights = object()
    stopper.on_train_begin()
    assert stopper.best is None
    assert stopper.wait == 0
    assert stopper.stopped_epoch == 0
    assert stopper.best_epoch == 0
    assert stopper.best_weights is None


def test_early_stopping_with_baseline():
    baseline = 0.6
    x_train = np.random.random((10, 5))
    y_train = np.random.random((10, 1))
    model = _model()
    model.compile(optimizer="sgd", loss="mae", metrics=["mse"])
    patience = 3
    stopper = EarlyStopping(monitor="mse", patience=patience, baseline=baseline)
    hist = model.fit(x_train, y_train, callbacks=[stopper], verbose=0, epochs=20)
    assert len(hist.epoch) >= patience


class DummyModel:
    def __init__(self):
        self.stop_training = False
        self.weights = -1

    def get_weights(self):
        return self.weights

    def set_weights(self, weights):
        self.weights = weights

    def set_weight_to_epoch(self, epoch):
        self.weights = epoch


def _drive(early_stop, losses, stop_at=None):
    early_stop.set_model(DummyModel())
    epochs_trained = 0
    early_stop.on_train_begin()
    for epoch in range(len(losses)):
        epochs_trained += 1
        early_stop.model.set_weight_to_epoch(epoch=epoch)
        early_stop.on_epoch_end(epoch, logs={"val_loss": losses[epoch]})
        if epoch == stop_at:
            early_stop.model.stop_training = True
        if early_stop.model.stop_training:
            break
    early_stop.on_train_end()
    return epochs_trained


def test_early_stopping_final_weights_when_restoring_model_weights():
    # The best configuration is in epoch 2 (loss 0.1); with patience 2 the best weights return.
    early_stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    _drive(early_stop, [0.2, 0.15, 0.1, 0.11, 0.12])
    assert early_stop.model.get_weights() == 2

    # No epoch beats the baseline: train for patience (5) epochs and restore the best of them.
    early_stop = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    epochs_trained = _drive(early_stop, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73])
    assert epochs_trained == 5
    assert early_stop.model.get_weights() == 2

    # Another callback asks for the stop: the best weights still return.
    early_stop = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    epochs_trained = _drive(early_stop, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], stop_at=3)
    assert epochs_trained == 4
    assert early_stop.model.get_weights() == 2


def test_early_stopping_with_start_from_epoch():
    x_train = np.random.random((10, 5))
    y_train = np.random.random((10, 1))
    model = _model()
    model.compile(optimizer="sgd", loss="mae", metrics=["mse"])
    start_from_epoch = 2
    patience = 3
    stopper = EarlyStopping(monitor="mse", patience=patience, start_from_epoch=start_from_epoch)
    history = model.fit(x_train, y_train, callbacks=[stopper], verbose=0, epochs=20)
    assert len(history.epoch) >= patience + start_from_epoch

    patience = 0
    stopper = EarlyStopping(monitor="mse", patience=patience, start_from_epoch=start_from_epoch)
    history = model.fit(x_train, y_train, callbacks=[stopper], verbose=0, epochs=20)
    assert len(history.epoch) >= start_from_epoch
