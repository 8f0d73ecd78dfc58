"""ModelCheckpoint under model.fit: Keras's observable behaviour, and the anchor defects fixed."""

from __future__ import annotations

import math
import os
import warnings

import keras
import pytest
from keras_helpers import BACKEND, assert_same_weights, files, manifest_entries

from ckptcore.adapters.keras import ModelCheckpoint


def test_int_save_freq_counts_batches_across_epochs(tmp_path, data, make_model):
    x, y = data  # 40 samples, batches of 8: 5 batches per epoch
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "f-{epoch:02d}.weights.h5"), save_weights_only=True, save_freq=15)
    model.fit(x, y, batch_size=8, epochs=9, callbacks=[cb], verbose=0)
    assert files(tmp_path) == ["f-03.weights.h5", "f-06.weights.h5", "f-09.weights.h5"]
    assert [e["global_step"] for e in manifest_entries(tmp_path)] == [15, 30, 45]


@pytest.mark.skipif(BACKEND == "torch", reason="Keras's torch backend requires steps_per_execution=1")
def test_no_drift_with_steps_per_execution(tmp_path, data, make_model):
    x, y = data
    # 10 batches of 4 per epoch, run 3 at a time: Keras reports batches 2, 5, 8, 9.
    model = make_model(steps_per_execution=3)
    cb = ModelCheckpoint(str(tmp_path / "s-{epoch}-{batch}.weights.h5"), save_weights_only=True, save_freq=5)
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[cb], verbose=0)
    # A save whenever the running total of batches crosses a multiple of 5: 6, 10, 16, 20.
    assert [e["global_step"] for e in manifest_entries(tmp_path)] == [6, 10, 16, 20]
    assert files(tmp_path) == sorted(["s-1-6.weights.h5", "s-1-10.weights.h5", "s-2-6.weights.h5", "s-2-10.weights.h5"])


def test_int_save_freq_with_save_best_only_does_not_crash(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "b-{epoch}-{batch}.keras"), monitor="loss", save_best_only=True, save_freq=2)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[cb], verbose=0)  # Keras 3 raises here
    entries = manifest_entries(tmp_path)
    assert entries, "the first batch save is always an improvement"
    values = [e["monitor_value"] for e in entries]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert cb.best == values[-1]


def test_missing_monitor_skips_with_one_warning(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "v-{epoch}.keras"), monitor="val_loss", save_best_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, epochs=4, validation_split=0.2, validation_freq=2, callbacks=[cb], verbose=0)
    ours = [w for w in caught if "val_loss" in str(w.message) and "skipping" in str(w.message)]
    assert len(ours) == 1
    assert "Keys present in the logs: accuracy, loss" in str(ours[0].message)
    # Epochs 1 and 3 have no val_loss: skipped, not saved blindly as Keras does.
    assert [e["epoch"] for e in manifest_entries(tmp_path)][0] == 2
    assert "v-1.keras" not in files(tmp_path) and "v-3.keras" not in files(tmp_path)


@pytest.mark.parametrize(
    ("monitor", "metrics", "expected"),
    [
        ("val_loss", lambda: ["accuracy"], "min"),
        ("val_accuracy", lambda: ["accuracy"], "max"),  # the classic acc rule
        ("val_auc", lambda: [keras.metrics.AUC(name="auc")], "max"),  # the name table
        ("val_fit_quality", lambda: [keras.metrics.R2Score(name="fit_quality")], "max"),  # its direction
        ("val_spread", lambda: [keras.metrics.MeanAbsoluteError(name="spread")], "min"),
        ("val_tp", lambda: [keras.metrics.TruePositives(name="tp")], "max"),  # no direction: its class
    ],
)
def test_mode_auto(tmp_path, data, make_model, monitor, metrics, expected):
    x, y = data
    model = make_model(metrics=metrics())
    cb = ModelCheckpoint(str(tmp_path / "m.weights.h5"), monitor=monitor, save_weights_only=True, save_best_only=True)
    model.fit(x, y, batch_size=8, epochs=1, validation_split=0.2, callbacks=[cb], verbose=0)
    assert cb.checkpointer.mode == expected


def test_initial_value_threshold_blocks_worse_values(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "t-{epoch}.keras"), monitor="loss", save_best_only=True,
                         initial_value_threshold=1e-6)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    assert files(tmp_path) == []
    assert cb.best == 1e-6


def test_verbose_messages_as_keras(tmp_path, data, make_model, capsys):
    x, y = data
    model = make_model()
    path = tmp_path / "m.keras"
    # "finished saving" is printed once the file is written: right away with a synchronous save.
    cb = ModelCheckpoint(str(path), monitor="loss", save_best_only=True, verbose=1, initial_value_threshold=100.0,
                         async_save=False)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    out = capsys.readouterr().out
    assert f"Epoch 1: loss improved from 100.00000 to {cb.best:.5f}, saving model to {path}" in out
    assert f"Epoch 1: finished saving model to {path}" in out
    cb = ModelCheckpoint(str(path), monitor="loss", save_best_only=True, verbose=1, initial_value_threshold=1e-9)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    assert "Epoch 1: loss did not improve from 0.00000" in capsys.readouterr().out


def test_nan_and_inf_are_never_best(tmp_path, make_model):
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "n-{epoch}.keras"), monitor="val_loss", save_best_only=True)
    callbacks = keras.callbacks.CallbackList([cb], model=model)
    callbacks.on_train_begin()
    for epoch, value in enumerate([math.nan, 0.5, -math.inf, math.nan, 0.4]):
        callbacks.on_epoch_begin(epoch)
        callbacks.on_epoch_end(epoch, {"val_loss": value})
    callbacks.on_train_end()
    assert files(tmp_path) == ["n-2.keras", "n-5.keras"]
    assert cb.best == 0.4


def test_callback_is_reusable_across_fit_calls(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    cb = ModelCheckpoint(str(tmp_path / "e-{epoch}.keras"), monitor="loss", keep_last=2)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    first_engine, first_best = cb.checkpointer, cb.best
    seen = {}
    probe = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: seen.setdefault("best", cb.best))
    model.fit(x, y, batch_size=8, epochs=5, initial_epoch=2, callbacks=[cb, probe], verbose=0)
    assert seen["best"] == first_best  # the best carries over, as Keras's callback keeps self.best
    assert cb.checkpointer is not first_engine and cb.checkpointer.run_id == first_engine.run_id
    # keep_last=2 spans both fits: the first fit's checkpoints were pruned by the second.
    assert files(tmp_path) == ["e-4.keras", "e-5.keras"]
    assert [e["path"] for e in manifest_entries(tmp_path)] == ["e-4.keras", "e-5.keras"]


def test_custom_loop_through_callback_list(tmp_path, data, make_model):
    x, y = data
    model = make_model(metrics=["accuracy", keras.metrics.R2Score(name="fit_quality")])
    by_batch = ModelCheckpoint(str(tmp_path / "b-{epoch}-{batch}.weights.h5"), save_weights_only=True, save_freq=4)
    by_epoch = ModelCheckpoint(str(tmp_path / "e-{epoch}.keras"), monitor="val_loss")
    best = ModelCheckpoint(str(tmp_path / "q.weights.h5"), monitor="val_fit_quality", save_weights_only=True,
                           save_best_only=True)
    callbacks = keras.callbacks.CallbackList([by_batch, by_epoch, best], model=model, add_history=True,
                                             epochs=2, steps=5)
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
        for step in range(5):
            callbacks.on_train_batch_begin(step)
            logs = model.train_on_batch(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8], return_dict=True)
            callbacks.on_train_batch_end(step, logs)
        val = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        callbacks.on_epoch_end(epoch, {**logs, **{f"val_{k}": v for k, v in val.items()}})
    callbacks.on_train_end()

    # save_freq=4 counts the 10 batches across epochs: totals 4 and 8.
    assert [n for n in files(tmp_path) if n.startswith("b-")] == ["b-1-4.weights.h5", "b-2-3.weights.h5"]
    assert [n for n in files(tmp_path) if n.startswith("e-")] == ["e-1.keras", "e-2.keras"]
    assert_same_weights(model, keras.saving.load_model(tmp_path / "e-2.keras"))
    # The direction of R2Score ("up") is read once the first step has built the metrics.
    assert best.checkpointer.mode == "max"
    assert len(model.history.history["val_loss"]) == 2


@pytest.mark.parametrize("epoch_begin", [True, False], ids=["with-epoch-begin", "without-epoch-begin"])
def test_custom_loop_running_more_batches_than_its_steps_counts_them_all(tmp_path, data, make_model, epoch_begin):
    # CallbackList(steps=3) although 5 batches run per epoch (a miscounted last batch, say).
    x, y = data
    model = make_model()
    ck = ModelCheckpoint(str(tmp_path / "w-{epoch}-{batch}.weights.h5"), save_weights_only=True, save_freq=3)
    callbacks = keras.callbacks.CallbackList([ck], model=model, epochs=2, steps=3)
    callbacks.on_train_begin()
    for epoch in range(2):
        if epoch_begin:
            callbacks.on_epoch_begin(epoch)
        for step in range(5):
            logs = model.train_on_batch(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8], return_dict=True)
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end()
    # As keras.callbacks.ModelCheckpoint names them: totals 3, 6, 9 of 10 batches.
    assert [n for n in files(tmp_path) if n.startswith("w-")] == [
        "w-1-3.weights.h5", "w-2-1.weights.h5", "w-2-4.weights.h5"]
    assert [e["global_step"] for e in manifest_entries(tmp_path)] == [3, 6, 9]


def test_wait_makes_a_non_blocking_save_visible(tmp_path, data, make_model):
    x, y = data
    seen = []

    class Reader(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ck.wait()
            seen.append(os.path.exists(tmp_path / f"m-{epoch + 1}.keras"))

    ck = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss")
    assert ck.checkpointer is None
    ck.wait()  # before training: nothing to wait for
    make_model().fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[ck, Reader()])
    assert ck.checkpointer.writer is not None, "saves were non-blocking"
    assert seen == [True, True]


def test_save_best_only_on_a_val_metric_at_batch_ends_warns_at_construction(tmp_path):
    with pytest.warns(UserWarning, match=r"'val_loss' is never there"):
        ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True, save_freq=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelCheckpoint(str(tmp_path / "m.keras"), monitor="loss", save_best_only=True, save_freq=4)
