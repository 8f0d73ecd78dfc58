"""ckptcore's EarlyStopping beyond Keras: restoring from a ModelCheckpoint, one direction rule."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from keras_helpers import assert_same_weights

from ckptcore import ConfigError, ManifestError
from ckptcore.adapters.keras import EarlyStopping, ModelCheckpoint


def _same(expected: list, actual: list) -> None:
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a, b)


def _loop(model, data, callbacks, val_losses, after_epoch=None):
    """A CallbackList loop with real training steps and the given val_loss per epoch.

    Returns the model's weights at the end of each epoch that ran.
    """
    x, y = data
    cbs = keras.callbacks.CallbackList(callbacks, model=model, epochs=len(val_losses), steps=5)
    model.stop_training = False
    cbs.on_train_begin()
    weights = []
    for epoch, val_loss in enumerate(val_losses):
        cbs.on_epoch_begin(epoch)
        for step in range(5):
            logs = model.train_on_batch(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8], return_dict=True)
            cbs.on_train_batch_end(step, logs)
        weights.append(model.get_weights())
        cbs.on_epoch_end(epoch, {**logs, "val_loss": val_loss})
        if after_epoch is not None:
            after_epoch(epoch)
        if model.stop_training:
            break
    cbs.on_train_end()
    return weights


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("m-{epoch:02d}.keras", {}), ("best.weights.h5", {"save_weights_only": True}),
     ("m-{epoch:02d}.hdf5", {"async_save": False})],
)
@pytest.mark.parametrize("order", ["stopper-first", "checkpoint-first"])
def test_restores_the_best_epoch_from_the_checkpoint_on_storage(tmp_path, data, make_model, capsys, name, kwargs,
                                                                order):
    model = make_model()
    checkpoint = ModelCheckpoint(str(tmp_path / name), monitor="val_loss", save_best_only=True, **kwargs)
    stopper = EarlyStopping(monitor="val_loss", patience=2, verbose=1, restore_best_weights=checkpoint)
    callbacks = [stopper, checkpoint] if order == "stopper-first" else [checkpoint, stopper]
    weights = _loop(model, data, callbacks, [0.5, 0.3, 0.4, 0.45, 0.2, 0.1])
    assert len(weights) == 4 and stopper.stopped_epoch == 3  # two epochs without improvement
    _same(weights[1], model.get_weights())  # the end of epoch 2, the best
    assert stopper.best_weights is None  # nothing held in memory
    out = capsys.readouterr().out
    assert "Epoch 4: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_in_memory_and_from_storage_restore_the_same_weights(tmp_path, data, make_model):
    in_memory = EarlyStopping(patience=1, restore_best_weights=True)
    first = make_model()
    _loop(first, data, [in_memory], [0.5, 0.4, 0.45, 0.41, 0.3])
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), save_best_only=True)
    second = make_model()
    _loop(second, data, [checkpoint, EarlyStopping(patience=1, restore_best_weights=checkpoint)],
          [0.5, 0.4, 0.45, 0.41, 0.3])
    assert in_memory.best_epoch == 1
    assert_same_weights(first, second)


def test_under_fit_the_final_weights_are_the_best_epochs_file(tmp_path, data, make_model):
    x, y = data
    model = make_model(lr=0.2)
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras"), monitor="val_loss", save_best_only=True)
    stopper = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=checkpoint)
    model.fit(x, y, batch_size=8, epochs=12, validation_split=0.25, callbacks=[checkpoint, stopper], verbose=0)
    best_file = tmp_path / f"m-{stopper.best_epoch + 1:02d}.keras"
    assert checkpoint.checkpointer.best() == str(best_file)
    assert_same_weights(keras.saving.load_model(best_file), model)


def test_a_changed_best_file_is_refused(tmp_path, data, make_model):
    model = make_model()
    checkpoint = ModelCheckpoint(str(tmp_path / "best.keras"), save_best_only=True)

    class Tamper(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            with open(tmp_path / "best.keras", "ab") as fh:
                fh.write(b"x")

    stopper = EarlyStopping(patience=1, restore_best_weights=checkpoint)
    with pytest.raises(ManifestError, match=r"best\.keras: size or digest differs from the manifest"):
        _loop(model, data, [checkpoint, Tamper(), stopper], [0.5, 0.6, 0.7])


def test_a_best_epoch_the_checkpoint_did_not_save_keeps_the_last_weights(tmp_path, data, make_model):
    model = make_model()
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), every_n_epochs=2)
    stopper = EarlyStopping(patience=1, restore_best_weights=checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        weights = _loop(model, data, [checkpoint, stopper], [0.5, 0.6, 0.7])
    [warning] = [w for w in caught if "best epoch 1" in str(w.message)]
    assert warning.filename == __file__
    _same(weights[-1], model.get_weights())


def test_direction_agrees_with_model_checkpoint_through_the_metric_object(tmp_path, data, make_model):
    # "quality" is in no name table: only the AUC object's direction says it is maximised.
    x, y = data
    model = make_model(metrics=[keras.metrics.AUC(name="quality")])
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="val_quality", save_best_only=True)
    stopper = EarlyStopping(monitor="val_quality", patience=5, restore_best_weights=checkpoint)
    model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, callbacks=[checkpoint, stopper], verbose=0)
    assert checkpoint.checkpointer.mode == "max" == stopper.direction
    assert stopper.monitor_op is keras.ops.greater


def test_an_explicit_checkpoint_mode_decides_for_auto(tmp_path, make_model):
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="score_x", mode="max")
    stopper = EarlyStopping(monitor="score_x", restore_best_weights=checkpoint)
    stopper.set_model(make_model())
    stopper.on_train_begin()
    stopper.on_epoch_end(0, {"score_x": 1.0})
    assert stopper.direction == "max"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"patience": -1}, r"patience: got -1 \(int\); allowed: an int >= 0"),
        ({"patience": 1.5}, r"patience: got 1.5"),
        ({"start_from_epoch": -2}, r"start_from_epoch: got -2"),
        ({"mode": "maximum"}, r"EarlyStopping mode: got 'maximum'; allowed: 'auto', 'min', 'max'"),
        ({"baseline": "low"}, r"baseline: got 'low'; allowed: a number or None"),
        ({"min_delta": float("nan")}, r"min_delta: got nan"),
        ({"monitor": ""}, r"monitor: got ''"),
        ({"restore_best_weights": "yes"}, r"restore_best_weights: got 'yes' \(str\); allowed: True, False, or a ckptcore"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        EarlyStopping(**kwargs)


def test_a_checkpoint_that_cannot_hold_the_best_epoch_is_refused(tmp_path):
    other = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="val_accuracy", save_best_only=True)
    with pytest.raises(ConfigError, match=r"saves only the best 'val_accuracy' epochs.*monitors 'val_loss'"):
        EarlyStopping(monitor="val_loss", restore_best_weights=other)
    opposite = ModelCheckpoint(str(tmp_path / "n-{epoch}.keras"), monitor="val_loss", mode="min")
    with pytest.raises(ConfigError, match=r"mode: got 'max'.*mode='min'"):
        EarlyStopping(monitor="val_loss", mode="max", restore_best_weights=opposite)


def test_negative_min_delta_is_taken_as_its_size_as_keras_does():
    assert EarlyStopping(min_delta=-0.1).min_delta == 0.1
