"""The S3 snippets of the docs (quickstart.md, backends.md) run as printed, against a real S3 API
(moto's server on 127.0.0.1), with only the endpoint changed to the test server's."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from s3_server import running_s3

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_ENDPOINT = "http://127.0.0.1:9000"


def python_blocks(page: str, needle: str) -> list[str]:
    """The ```python blocks of a docs page that contain ``needle``."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    found = [b for b in blocks if needle in b]
    assert found, f"{page} has no python block with {needle!r}"
    return found


@pytest.fixture
def s3(monkeypatch):
    with running_s3(monkeypatch) as server:
        import s3fs

        s3fs.S3FileSystem(**server.options).mkdir("my-bucket")  # the bucket the docs name
        yield server


def _data():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model, x, y


def _weights(model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_the_s3_snippets_save_and_load_back_the_best_model(s3, tmp_path):
    import s3fs

    model, x, y = _data()
    (quickstart,) = python_blocks("quickstart.md", 'load_best("s3://')
    namespace = {"model": model, "x": x, "y": y}
    exec(quickstart.replace(DOC_ENDPOINT, s3.endpoint), namespace)  # noqa: S102 - the docs' code

    best_url = namespace["checkpoint"].checkpointer.best()
    assert best_url.startswith("s3://my-bucket/runs/a/model-")
    fs = s3fs.S3FileSystem(**s3.options)
    local = str(tmp_path / "best.keras")
    fs.get_file(best_url.removeprefix("s3://"), local)
    expected = _weights(keras.saving.load_model(local))
    for got, want in zip(_weights(namespace["best"]), expected, strict=True):
        np.testing.assert_array_equal(got, want)

    (backends,) = python_blocks("backends.md", 'load_best("s3://')
    loaded: dict = {}
    exec(backends.replace(DOC_ENDPOINT, s3.endpoint), loaded)  # noqa: S102
    for got, want in zip(_weights(loaded["model"]), expected, strict=True):
        np.testing.assert_array_equal(got, want)
