"""With non-blocking saves, uploads to S3 and W&B run on the writer thread, not in ``fit``.

S3 is s3fs against moto's server on loopback; W&B is the real SDK in offline mode. The
backends are the real ones, subclassed only to note which thread ran each upload.
"""

from __future__ import annotations

import os
import threading
import uuid

import keras
import numpy as np
import pytest
from s3_server import running_s3

from ckptcore.adapters.keras import ModelCheckpoint

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def s3_options():
    """storage_options for a moto S3 server on loopback (dummy credentials)."""
    with pytest.MonkeyPatch.context() as patch, running_s3(patch) as server:
        yield server.options


def _noting_threads(cls: type) -> type:
    class Noted(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.threads: list[str] = []

        def put(self, src, relpath, info):
            self.threads.append(threading.current_thread().name)
            return super().put(src, relpath, info)

    return Noted


def _fit(callback, data, make_model) -> keras.Model:
    x, y = data
    model = make_model()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    return model


def test_s3_uploads_run_on_the_writer_thread(tmp_path, data, make_model, s3_options):
    import s3fs

    from ckptcore.backends.fsspec import FsspecBackend

    bucket = f"ckpt-{uuid.uuid4().hex[:12]}"
    client = s3fs.S3FileSystem(**s3_options)
    client.mkdir(bucket)
    mirror = _noting_threads(FsspecBackend)(f"s3://{bucket}/run", storage_options=s3_options)
    callback = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", backends=[mirror])
    model = _fit(callback, data, make_model)

    assert mirror.threads == ["ckptcore-writer", "ckptcore-writer"]
    assert threading.current_thread().name not in mirror.threads
    client.get_file(f"{bucket}/run/m-2.keras", str(tmp_path / "back.keras"))
    for got, want in zip(keras.saving.load_model(tmp_path / "back.keras").get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_wandb_artifacts_are_logged_on_the_writer_thread(tmp_path, data, make_model, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from ckptcore.backends.wandb import WandbBackend

    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="ckptcore-tests", dir=str(tmp_path / "WANDB_DIR"))
    try:
        mirror = _noting_threads(WandbBackend)(str(tmp_path), run=run)
        callback = ModelCheckpoint(str(tmp_path / "ck" / "m-{epoch}.keras"), monitor="loss", backends=[mirror])
        _fit(callback, data, make_model)
    finally:
        run.finish()
    assert mirror.threads == ["ckptcore-writer", "ckptcore-writer"]
    entries = callback.checkpointer.manifest.entries
    assert [e.backends for e in entries] == [["local", "wandb"], ["local", "wandb"]]
    assert os.path.exists(tmp_path / "ck" / "m-2.keras")
