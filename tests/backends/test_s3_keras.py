"""Keras checkpoints on S3 (s3fs against the loopback moto server) load back into Keras.

Runs once, on the default Keras backend (TensorFlow); the adapter's own tests cover the others.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
pytest.importorskip("s3fs")

from ckptcore.adapters.keras import ModelCheckpoint  # noqa: E402

pytestmark = pytest.mark.keras


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def _weights(model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("name", ["m-{epoch:02d}.keras", "m-{epoch:02d}.weights.h5"])
def test_a_checkpoint_on_s3_round_trips_into_keras(tmp_path, s3_bucket, s3_options, name):
    import s3fs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = _model()
    url = f"s3://{s3_bucket}/run"
    callback = ModelCheckpoint(f"{url}/{name}", monitor="loss", save_weights_only=name.endswith(".weights.h5"),
                               storage_options=s3_options, keep_last=1)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[callback], verbose=0)

    last = name.format(epoch=2)
    assert callback.checkpointer.latest() == f"{url}/{last}"
    client = s3fs.S3FileSystem(**s3_options)
    assert sorted(p.rsplit("/", 1)[-1] for p in client.find(f"{s3_bucket}/run")) == sorted(["manifest.json", last])
    local = str(tmp_path / last)
    client.get_file(f"{s3_bucket}/run/{last}", local)
    if last.endswith(".weights.h5"):
        restored = _model()
        restored.load_weights(local)
    else:
        restored = keras.saving.load_model(local)
    for got, want in zip(_weights(restored), _weights(model), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_a_missing_bucket_fails_at_construction_not_after_training(s3_options):
    from ckptcore import BucketNotFoundError

    with pytest.raises(BucketNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        ModelCheckpoint("s3://no-such-bucket/run/m-{epoch}.keras", storage_options=s3_options)
