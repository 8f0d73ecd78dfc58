"""Restoring never unpickles; ``.keras`` files load with Keras's ``safe_mode``.

The source scan keeps pickle-based loaders out of the library; the load helpers are checked on
real saved models: a ``Lambda`` layer's code is refused, a changed file is refused before Keras
opens it.
"""

from __future__ import annotations

import io
import json
import os
import re
import tokenize

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = ("ckptcore", "adapters", "backends")

#: Ways to run code while reading data; none may appear in the library's code.
UNSAFE = {
    r"\bimport\s+(c?pickle|dill|cloudpickle|joblib|marshal|shelve)\b": "a pickle-style module",
    r"\bfrom\s+(c?pickle|dill|cloudpickle|joblib|marshal|shelve)\b": "a pickle-style module",
    r"\bpickle\.loads?\b": "pickle.load",
    r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True)",
    r"safe_mode\s*=\s*False": "keras safe_mode=False",
    r"\btorch\.load\(": "torch.load (unpickles unless weights_only=True)",
    r"\byaml\.(unsafe_)?load\(": "yaml.load",
    r"\beval\(|\bexec\(": "eval/exec",
}


def _library_sources():
    for package in LIBRARY:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(dirpath, name)


def _code_only(path: str) -> str:
    """The file's code without comments and docstrings/strings (they may name what is banned)."""
    with open(path, "rb") as fh:
        tokens = list(tokenize.tokenize(fh.readline))
    kept = [t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING)]
    return " ".join(kept)


def test_the_scan_finds_what_it_looks_for():
    sample = "import pickle\nx = np.load(p, allow_pickle=True)  # bad\nkeras.saving.load_model(p, safe_mode=False)\n"
    code = " ".join(t.string for t in tokenize.tokenize(io.BytesIO(sample.encode()).readline)
                    if t.type not in (tokenize.COMMENT, tokenize.STRING))
    found = {why for pattern, why in UNSAFE.items() if re.search(pattern, code)}
    assert found == {"a pickle-style module", "np.load(allow_pickle=True)", "keras safe_mode=False"}


def test_no_library_code_unpickles_or_turns_safe_mode_off():
    sources = list(_library_sources())
    assert len(sources) > 20, "the scan sees the library"
    problems = []
    for path in sources:
        code = _code_only(path)
        for pattern, why in UNSAFE.items():
            if re.search(pattern, code):
                problems.append(f"{os.path.relpath(path, ROOT)}: {why}")
    assert problems == []


def test_the_manifest_reader_is_json():
    from ckptcore import Manifest, ManifestError

    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94.")  # a pickle


# -- the Keras load helpers ---------------------------------------------------------------------

keras = pytest.importorskip("keras")
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.adapters.keras import ModelCheckpoint, load_best, load_latest  # noqa: E402
from ckptcore.errors import ConfigError, ManifestError  # noqa: E402
from ckptcore.digest import bytes_digest


def _model(with_lambda: bool = False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,)), keras.layers.Dense(3)]
    if with_lambda:
        layers.append(keras.layers.Lambda(lambda t: t * 2.0))
    model = keras.Sequential([*layers, keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _fit(model, filepath, **options):
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = x[:, :1]
    model.fit(x, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[ModelCheckpoint(str(filepath), monitor="loss", **options)])
    return model


def _same_weights(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_load_best_and_latest_read_what_the_manifest_records(tmp_path):
    model = _fit(_model(), tmp_path / "m-{epoch}.keras")
    entries = json.loads((tmp_path / MANIFEST_NAME).read_text())["entries"]
    best = next(e["path"] for e in entries if e["is_best"])
    assert _same_weights(load_best(tmp_path), keras.saving.load_model(tmp_path / best))
    assert _same_weights(load_latest(tmp_path), model)


def test_weights_load_into_the_model_given(tmp_path):
    trained = _fit(_model(), tmp_path / "w-{epoch}.weights.h5", save_weights_only=True)
    fresh = _model()
    assert not _same_weights(fresh, trained)
    assert load_latest(tmp_path, model=fresh) is fresh and _same_weights(fresh, trained)
    with pytest.raises(ConfigError, match="model: .*weights only"):
        load_latest(tmp_path)


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    _fit(_model(with_lambda=True), tmp_path / "m.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        load_latest(tmp_path)


def test_a_changed_file_is_refused_before_keras_opens_it(tmp_path):
    _fit(_model(), tmp_path / "m.keras")
    path = tmp_path / "m.keras"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert bytes_digest(bytes(data)) not in (tmp_path / MANIFEST_NAME).read_text()
    with pytest.raises(ManifestError, match="digest differs from the manifest"):
        load_best(tmp_path)


def test_no_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="no manifest found"):
        load_best(tmp_path)
