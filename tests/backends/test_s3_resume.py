"""Resume on an S3 root (s3fs against the loopback moto server): ModelCheckpoint and
BackupAndRestore continue a Keras run from checkpoints in a bucket.

Runs once, on the default Keras backend; tests/adapters covers resume on every backend.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
pytest.importorskip("s3fs")

import ckptcore  # noqa: E402
from ckptcore.adapters.keras import BackupAndRestore, ModelCheckpoint  # noqa: E402

pytestmark = pytest.mark.keras


class Stop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("stopped")


def _fit(callbacks, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    history = model.fit(x, x[:, :1], batch_size=8, epochs=epochs, callbacks=callbacks, verbose=0)
    return model, history


def test_model_checkpoint_resumes_from_a_bucket(s3_bucket, s3_options):
    url = f"s3://{s3_bucket}/run"
    make = lambda: ModelCheckpoint(url + "/m-{epoch}.keras", monitor="loss", resume=True,  # noqa: E731
                                   storage_options=s3_options)
    _fit([make()], 2)
    point = ckptcore.latest_checkpoint(url, storage_options=s3_options)
    assert (point.location, point.initial_epoch) == (url + "/m-2.keras", 2)
    model, history = _fit([make()], 4)
    assert history.epoch == [2, 3]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 16


def test_backup_and_restore_in_a_bucket(s3_bucket, s3_options):
    url = f"s3://{s3_bucket}/backup"
    backup = BackupAndRestore(url, storage_options=s3_options)
    with pytest.raises(RuntimeError, match="stopped"):
        _fit([backup, Stop()], 5)
    backup.wait()
    assert ckptcore.latest_checkpoint(url, storage_options=s3_options).epoch == 2
    _model, history = _fit([BackupAndRestore(url, storage_options=s3_options)], 5)
    assert history.epoch == [2, 3, 4]
    assert ckptcore.latest_checkpoint(url, storage_options=s3_options) is None, "deleted after the fit"
