"""Each format round-trips through Keras's own loaders to identical weights."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from keras_helpers import BACKEND, assert_same_weights, files, manifest_entries

from ckptcore.adapters.keras import ModelCheckpoint


def _fit(model, data, callback, epochs=2):
    x, y = data
    model.fit(x, y, batch_size=8, epochs=epochs, validation_split=0.2, callbacks=[callback], verbose=0)


def test_keras_format_loads_with_load_model(tmp_path, data, make_model):
    model = make_model()
    _fit(model, data, ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras")))
    assert files(tmp_path) == ["m-01.keras", "m-02.keras"]
    assert_same_weights(model, keras.saving.load_model(tmp_path / "m-02.keras"))


def test_weights_format_loads_with_load_weights(tmp_path, data, make_model):
    model = make_model()
    _fit(model, data, ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"), save_weights_only=True))
    fresh = make_model()
    fresh.optimizer.build(fresh.trainable_variables)  # so the optimizer state loads too
    fresh.load_weights(tmp_path / "w-2.weights.h5")
    assert_same_weights(model, fresh)
    for want, got in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(want), keras.ops.convert_to_numpy(got))


def test_legacy_h5_loads_with_load_model(tmp_path, data, make_model):
    model = make_model()
    _fit(model, data, ModelCheckpoint(str(tmp_path / "legacy.h5")))
    assert files(tmp_path) == ["legacy.h5"]
    assert_same_weights(model, keras.saving.load_model(tmp_path / "legacy.h5"))


def test_manifest_records_each_save(tmp_path, data, make_model):
    model = make_model()
    _fit(model, data, ModelCheckpoint(str(tmp_path / "m-{epoch}.keras")), epochs=3)
    entries = manifest_entries(tmp_path)
    assert [e["path"] for e in entries] == ["m-1.keras", "m-2.keras", "m-3.keras"]
    assert [e["epoch"] for e in entries] == [1, 2, 3]
    assert [e["global_step"] for e in entries] == [4, 8, 12]  # 32 training samples, batches of 8
    assert all(e["size"] == os.path.getsize(tmp_path / e["path"]) for e in entries)
    assert set(entries[0]["metrics"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a SavedModel export needs the TensorFlow backend")
def test_saved_model_export_with_options(tmp_path, data, make_model):
    import tensorflow as tf

    model = make_model()
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    _fit(model, data, ModelCheckpoint(str(tmp_path / "export-{epoch}"), options=options))
    assert files(tmp_path) == ["export-1", "export-2"]
    assert os.path.isfile(tmp_path / "export-2" / "saved_model.pb")
    x = data[0][:5]
    reloaded = tf.saved_model.load(str(tmp_path / "export-2"))
    np.testing.assert_allclose(reloaded.serve(x).numpy(), keras.ops.convert_to_numpy(model(x)), rtol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a SavedModel export needs the TensorFlow backend")
def test_saved_model_options_must_be_save_options(tmp_path):
    import tensorflow as tf

    with pytest.raises(ValueError, match="tf.saved_model.SaveOptions"):
        ModelCheckpoint(str(tmp_path / "export"), options=tf.train.CheckpointOptions())
