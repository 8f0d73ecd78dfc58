"""``load_best``/``load_latest`` on checkpoints a manifest lists that are not plain ``.keras``
files: a FIFO planted under a local root, a legacy ``.hdf5`` model on a remote root."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from ckptcore.errors import ManifestError
from ckptcore.manifest import MANIFEST_FORMAT, MANIFEST_NAME

keras = pytest.importorskip("keras")
from ckptcore.adapters.keras import load_best  # noqa: E402
from ckptcore.digest import bytes_digest

BOUND = 20.0  # seconds load_best may take here; a blocked open is unblocked after it


def _manifest(name: str, data: bytes) -> bytes:
    entry = {"name": name, "path": name, "size": len(data), "digest": bytes_digest(data),
             "is_best": True, "run_id": "r"}
    return json.dumps({"format": MANIFEST_FORMAT, "entries": [entry]}).encode()


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return model


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_under_a_local_root_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "best.keras"
    os.mkfifo(fifo)
    (tmp_path / MANIFEST_NAME).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / MANIFEST_NAME).write_bytes(_manifest("best.keras", b"x" * 10))
    outcome: dict = {}

    def load() -> None:
        try:
            load_best(str(tmp_path), verify=False)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():  # blocked opening the FIFO: let it go, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(BOUND)
        pytest.fail("load_best blocked on a FIFO the manifest lists")
    assert isinstance(outcome.get("error"), ManifestError)
    assert "not a regular file" in str(outcome["error"]) and str(fifo) in str(outcome["error"])


def test_a_legacy_hdf5_model_loads_from_a_remote_root(memory_url, tmp_path):
    import fsspec

    model = _model()
    local = tmp_path / "weights-improvement-01-0.50.hdf5"
    model.save(local)
    data = local.read_bytes()
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_url}/{local.name}", data)
    fs.pipe(f"{memory_url}/{MANIFEST_NAME}", _manifest(local.name, data))
    loaded = load_best(memory_url)
    x = np.ones((1, 3), dtype="float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
