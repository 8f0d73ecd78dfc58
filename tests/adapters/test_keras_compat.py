"""Scripts written for Keras 2 and for subclasses of Keras's ModelCheckpoint keep working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import h5py
import keras
import pytest
from keras_helpers import assert_same_weights, files

from ckptcore import ConfigError
from ckptcore.adapters.keras import ModelCheckpoint
from ckptcore.backends.local import LocalBackend
from ckptcore.commit import load_manifest


def _entries(root):
    return load_manifest(LocalBackend(str(root))).entries


def test_subclass_calling_save_model_saves_outside_the_schedule(tmp_path, data, make_model):
    class EveryOtherEpoch(ModelCheckpoint):  # a pattern of public scripts
        def on_epoch_end(self, epoch, logs=None):
            if epoch % 2 == 1:
                self._save_model(epoch=epoch, batch=None, logs=logs)

    x, y = data
    cb = EveryOtherEpoch(str(tmp_path / "m-{epoch}.keras"), monitor="loss")
    make_model().fit(x, y, batch_size=8, epochs=4, callbacks=[cb], verbose=0)
    assert files(tmp_path) == ["m-2.keras", "m-4.keras"]
    assert [e.epoch for e in _entries(tmp_path)] == [2, 4]


def test_save_model_honours_save_best_only_and_updates_best(tmp_path, make_model):
    cb = ModelCheckpoint(str(tmp_path / "b-{epoch}.keras"), monitor="loss", save_best_only=True)
    cb.set_model(make_model())
    cb.on_train_begin()
    for epoch, loss in enumerate([0.5, 0.7, 0.4]):
        cb._save_model(epoch=epoch, batch=None, logs={"loss": loss})
    cb.on_train_end()
    assert files(tmp_path) == ["b-1.keras", "b-3.keras"]
    assert cb.best == 0.4


@pytest.mark.parametrize("save_freq", ["epoch", 3])
def test_overridden_save_model_is_called_by_the_hooks_with_keras_arguments(tmp_path, data, make_model, save_freq):
    calls = []

    class Recording(ModelCheckpoint):
        def _save_model(self, epoch, batch, logs):
            calls.append((epoch, batch, sorted(logs)))
            super()._save_model(epoch=epoch, batch=batch, logs=logs)

    x, y = data
    name = "m-{epoch}.keras" if save_freq == "epoch" else "m-{epoch}-{batch}.keras"
    cb = Recording(str(tmp_path / name), monitor="loss", save_freq=save_freq)
    make_model().fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    if save_freq == "epoch":
        assert [c[:2] for c in calls] == [(0, None), (1, None)]
        assert "loss" in calls[0][2]
        assert files(tmp_path) == ["m-1.keras", "m-2.keras"]
    else:  # every 3 batches of 5 per epoch: after batches 3, 6, 9 (0-based index 2, 0, 3)
        assert [c[:2] for c in calls] == [(0, 2), (1, 0), (1, 3)]
        assert files(tmp_path) == ["m-1-3.keras", "m-2-1.keras", "m-2-4.keras"]


def test_overridden_should_save_on_batch_turns_batch_saves_on(tmp_path, data, make_model):
    class AtBatchTwo(ModelCheckpoint):
        def _should_save_on_batch(self, batch):
            super()._should_save_on_batch(batch)  # keeps the batch count
            return batch == 1

    x, y = data
    cb = AtBatchTwo(str(tmp_path / "m-{step:02d}.weights.h5"), save_weights_only=True, monitor="loss")
    make_model().fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    # The batch saves the override asked for, and the epoch saves of save_freq="epoch".
    assert [(e.epoch, e.batch) for e in _entries(tmp_path)] == [(1, 2), (1, None), (2, 2), (2, None)]
    assert files(tmp_path) == ["m-02.weights.h5", "m-05.weights.h5", "m-07.weights.h5", "m-10.weights.h5"]


def test_should_save_on_batch_counts_as_keras_does(tmp_path, make_model):
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=4, monitor="loss")
    cb.set_model(make_model())
    cb.on_train_begin()
    answers = [cb._should_save_on_batch(b) for b in range(10)]
    cb.on_train_end()
    assert answers == [False, False, False, True, False, False, False, True, False, False]


def test_overridden_get_file_path_names_the_checkpoint(tmp_path, data, make_model):
    class Named(ModelCheckpoint):
        def _get_file_path(self, epoch, batch, logs):
            return os.path.join(str(tmp_path), f"run-a-epoch{epoch + 1}.keras")

    x, y = data
    cb = Named(str(tmp_path / "m-{epoch}.keras"), monitor="loss")
    model = make_model()
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    assert files(tmp_path) == ["run-a-epoch1.keras", "run-a-epoch2.keras"]
    assert_same_weights(model, keras.saving.load_model(tmp_path / "run-a-epoch2.keras"))


def test_get_file_path_outside_the_root_is_refused(tmp_path, make_model):
    class Elsewhere(ModelCheckpoint):
        def _get_file_path(self, epoch, batch, logs):
            return str(tmp_path.parent / "elsewhere.keras")

    cb = Elsewhere(str(tmp_path / "ck" / "m-{epoch}.keras"), monitor="loss")
    cb.set_model(make_model())
    cb.on_train_begin()
    with pytest.raises(ConfigError, match=r"_get_file_path: got .*elsewhere\.keras.*below the checkpoint root"):
        cb._save_model(epoch=0, batch=None, logs={"loss": 1.0})
    cb.on_train_end()


def test_get_file_path_and_its_keras_key_error(tmp_path, make_model):
    template = str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.keras")
    cb = ModelCheckpoint(template)
    cb.set_model(make_model())
    cb.on_train_begin()
    assert cb._get_file_path(2, None, {"val_loss": 0.25}) == str(tmp_path / "m-03-0.25.keras")
    with pytest.raises(KeyError, match=r'^Failed to format this callback filepath: ".*m-\{epoch:02d\}'):
        cb._get_file_path(0, None, {"loss": 1.0})
    with pytest.raises(KeyError, match=r"Failed to format this callback filepath.*needs \{val_loss\}"):
        cb._save_model(epoch=0, batch=None, logs={"loss": 1.0})
    cb.on_train_end()


def test_best_and_monitor_op_as_keras_scripts_use_them(tmp_path, data, make_model):
    cb = ModelCheckpoint(str(tmp_path / "b.keras"), monitor="loss", save_best_only=True)
    assert cb.monitor_op is keras.ops.less  # known before training (Keras 3: None until then)
    assert ModelCheckpoint(str(tmp_path / "a.keras"), monitor="val_accuracy").monitor_op is keras.ops.greater
    assert cb._is_improvement(0.4, 0.5) and not cb._is_improvement(0.6, 0.5) and cb._is_improvement(1.0, None)
    cb.best = 0.0001  # a hand-resumed run: only a loss below this is saved
    x, y = data
    make_model().fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    assert files(tmp_path) == []
    assert cb.best == 0.0001


def test_hdf5_paths_are_written_as_legacy_hdf5_and_load_with_keras(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    path = tmp_path / "weights-improvement-{epoch:02d}-{val_accuracy:.2f}.hdf5"  # the tutorials' pattern
    cb = ModelCheckpoint(str(path), monitor="val_accuracy", save_best_only=True, mode="max")
    model.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, callbacks=[cb], verbose=0)
    [saved] = files(tmp_path)
    assert saved.startswith("weights-improvement-01-") and saved.endswith(".hdf5")
    assert h5py.is_hdf5(tmp_path / saved)
    with h5py.File(tmp_path / saved, "r") as fh:
        assert "model_config" in fh.attrs and "model_weights" in fh  # Keras's legacy H5 layout
    assert_same_weights(model, keras.saving.load_model(tmp_path / saved))


def test_period_is_every_n_epochs_with_a_deprecation_warning(tmp_path, data, make_model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", period=2)
    [warning] = [w for w in caught if issubclass(w.category, DeprecationWarning) and "period" in str(w.message)]
    assert warning.filename == __file__  # points at the user's call
    assert "every_n_epochs=2" in str(warning.message)
    x, y = data
    make_model().fit(x, y, batch_size=8, epochs=4, callbacks=[cb], verbose=0)
    assert files(tmp_path) == ["m-2.keras", "m-4.keras"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"period": 0}, r"period: got 0 \(int\); allowed: an int >= 1"),
        ({"period": "2"}, r"period: got '2' \(str\)"),
        ({"period": 2, "every_n_epochs": 3}, r"period: got 2 beside every_n_epochs=3; allowed: one of them"),
    ],
)
def test_period_is_validated(tmp_path, kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), **kwargs)


def test_period_deprecation_is_shown_to_a_script_by_default(tmp_path):
    # Python shows a DeprecationWarning only when it points at __main__: a real script, default filters.
    script = (
        "from ckptcore.adapters.keras import ModelCheckpoint\n"
        f"ModelCheckpoint({str(tmp_path / 'm-{epoch}.keras')!r}, period=3)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    assert "<string>:2: DeprecationWarning: ModelCheckpoint: `period` is deprecated" in done.stderr


def test_a_warning_during_fit_points_at_the_fit_call(tmp_path, data, make_model):
    x, y = data
    cb = ModelCheckpoint(str(tmp_path / "b.keras"), monitor="val_nothing", save_best_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_model().fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    [warning] = [w for w in caught if "val_nothing" in str(w.message)]
    assert warning.filename == __file__, (warning.filename, warning.lineno)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a SavedModel export needs TensorFlow")
def test_wandb_directory_checkpoint_has_wandb_layout_and_loads_from_the_artifact_root(tmp_path, data, make_model,
                                                                                      monkeypatch):
    import numpy as np
    import tensorflow as tf
    from wandb_log import finish_and_read

    wandb = pytest.importorskip("wandb")
    from ckptcore.adapters.keras import WandbModelCheckpoint

    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "wandb-dir").mkdir()
    run = wandb.init(project="ckptcore-tests", dir=str(tmp_path / "wandb-dir"))
    try:
        x, y = data
        model = make_model()
        cb = WandbModelCheckpoint(str(tmp_path / "models"), monitor="loss")  # W&B's docs: a SavedModel dir
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    finally:
        logged = finish_and_read(run)
    [artifact] = logged
    assert artifact.metadata["path"] == "models"
    assert "saved_model.pb" in artifact.files, sorted(artifact.files)  # at the root, not under models/
    assert not any(name.startswith("models/") for name in artifact.files)
    # What artifact.download() would give: the files at their artifact paths, in one directory.
    downloaded = tmp_path / "download"
    for name, entry in artifact.files.items():
        target = downloaded / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(open(entry.local_path, "rb").read())
    restored = tf.saved_model.load(str(downloaded))
    np.testing.assert_allclose(restored.serve(x).numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_step_names_and_every_n_steps_under_fit(tmp_path, data, make_model):
    x, y = data  # 5 batches per epoch
    by_epoch = ModelCheckpoint(str(tmp_path / "e" / "m-{step:03d}.weights.h5"), save_weights_only=True, monitor="loss")
    by_step = ModelCheckpoint(str(tmp_path / "s" / "m-{step:03d}.weights.h5"), save_weights_only=True, monitor="loss",
                              every_n_steps=4)
    make_model().fit(x, y, batch_size=8, epochs=2, callbacks=[by_epoch, by_step], verbose=0)
    assert files(tmp_path / "e") == ["m-005.weights.h5", "m-010.weights.h5"]
    assert files(tmp_path / "s") == ["m-004.weights.h5", "m-008.weights.h5"]
    assert by_step.save_freq == 4


def test_keras_messages_at_verbose_1(tmp_path, data, make_model, capsys):
    x, y = data
    path = tmp_path / "m-{epoch}.keras"
    cb = ModelCheckpoint(str(path), monitor="loss", verbose=1, keep_last=1)  # non-blocking by default
    make_model().fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    out = capsys.readouterr().out
    assert f"Epoch 1: saving model to {tmp_path / 'm-1.keras'}" in out  # Keras's wording
    assert re.search(rf"Epoch 1: finished saving model to {re.escape(str(tmp_path / 'm-1.keras'))} "
                     r"\([\d.]+ kB in \d+\.\d\d s, [\d.]+ [kMG]?B/s\)", out), out
    assert f"Epoch 2: deleted {tmp_path / 'm-1.keras'} (retention: keep_last=1)" in out


def test_unrecognized_save_freq_is_keras_message(tmp_path):
    with pytest.raises(ValueError, match=r"^Unrecognized save_freq: invalid\. Expected save_freq are 'epoch' or integer values"):
        ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="invalid")


def test_get_file_path_naming_ckptcore_s_own_files_is_refused(tmp_path, make_model):
    class Sneaky(ModelCheckpoint):
        def _get_file_path(self, epoch, batch, logs):
            return str(tmp_path / ".ckptcore" / "m.keras")

    cb = Sneaky(str(tmp_path / "m-{epoch}.keras"), monitor="loss")
    cb.set_model(make_model())
    cb.on_train_begin()
    with pytest.raises(ConfigError, match=r"_get_file_path: got .*ckptcore's own directory"):
        cb._save_model(epoch=0, batch=None, logs={"loss": 1.0})
    cb.on_train_end()


def test_step_is_counted_for_a_dataset_of_unknown_length(tmp_path, data, make_model):
    x, y = data

    def batches():  # a generator: Keras knows no steps per epoch
        for i in range(5):
            yield x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]

    cb = ModelCheckpoint(str(tmp_path / "m-{step}.weights.h5"), save_weights_only=True, monitor="loss")
    model = make_model()
    for _ in range(2):
        model.fit(batches(), epochs=1, callbacks=[cb], verbose=0)
    assert files(tmp_path) == ["m-10.weights.h5", "m-5.weights.h5"]
