"""A crafted remote manifest cannot make ``load_best``/``load_latest`` write outside their own
temporary directory: names are validated when the manifest is read, and the download goes under
a name ckptcore chooses, checked (size and digest) before Keras opens it.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

from ckptcore.errors import ManifestError
from ckptcore.manifest import MANIFEST_FORMAT, MANIFEST_NAME

keras = pytest.importorskip("keras")
from ckptcore.adapters.keras import load_best, load_latest  # noqa: E402
from ckptcore.digest import bytes_digest


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return path.read_bytes()


def _crafted(name: str, data: bytes) -> bytes:
    entry = {"name": name, "path": "m.keras", "size": len(data), "digest": bytes_digest(data),
             "is_best": True, "run_id": "r"}
    return json.dumps({"format": MANIFEST_FORMAT, "entries": [entry]}).encode()


def _names(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    target = tmp_path / "pwned.keras"
    return deep, [(str(target), target), ("../../x.keras", tmp_path / "a" / "x.keras")]


def _everything(directory) -> set[str]:
    return {os.path.join(d, n) for d, dirs, files in os.walk(directory) for n in [*dirs, *files]}


@pytest.mark.parametrize("load", [load_best, load_latest])
def test_a_crafted_memory_manifest_writes_nothing_outside(memory_url, model_bytes, tmp_path, monkeypatch, load):
    import fsspec

    fs = fsspec.filesystem("memory")
    deep, cases = _names(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # a download's directory: tmp_path/a/b/...
    fs.pipe(f"{memory_url}/m.keras", model_bytes)
    for name, target in cases:
        fs.pipe(f"{memory_url}/{MANIFEST_NAME}", _crafted(name, model_bytes))
        before = _everything(tmp_path)
        with pytest.raises(ManifestError, match="name must be one file or directory name"):
            load(memory_url)
        assert not target.exists()
        assert _everything(tmp_path) == before


def test_a_crafted_s3_manifest_writes_nothing_outside(s3, model_bytes, tmp_path, monkeypatch):
    import s3fs

    fs = s3fs.S3FileSystem(**s3.options)
    root = f"s3://{s3.bucket}/run"
    deep, cases = _names(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    fs.pipe(f"{root}/m.keras", model_bytes)
    for name, target in cases:
        fs.pipe(f"{root}/{MANIFEST_NAME}", _crafted(name, model_bytes))
        before = _everything(tmp_path)
        with pytest.raises(ManifestError, match="name must be one file or directory name"):
            load_best(root, storage_options=s3.options)
        assert not target.exists()
        assert _everything(tmp_path) == before


def test_a_remote_download_is_checked_then_loaded_from_a_private_directory(memory_url, model_bytes, tmp_path,
                                                                             monkeypatch):
    import fsspec

    fs = fsspec.filesystem("memory")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fs.pipe(f"{memory_url}/m.keras", model_bytes)
    fs.pipe(f"{memory_url}/{MANIFEST_NAME}", _crafted("m.keras", model_bytes))
    model = load_best(memory_url)
    assert model.layers[0].get_weights()[0].shape == (3, 2)
    assert list(tmp_path.iterdir()) == []  # the private directory is gone
    fs.pipe(f"{memory_url}/m.keras", model_bytes[:-1] + bytes([model_bytes[-1] ^ 1]))
    with pytest.raises(ManifestError, match="digest differs"):
        load_best(memory_url)
    assert list(tmp_path.iterdir()) == []
    assert np.isfinite(model.layers[0].get_weights()[0]).all()


def test_a_local_best_behind_a_link_is_not_loaded(tmp_path, model_bytes):
    from ckptcore.backends.local import LocalBackend

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "m.keras").write_bytes(model_bytes)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("../outside", root / "link")
    crafted = json.loads(_crafted("m.keras", model_bytes))
    crafted["entries"][0]["path"] = "link/m.keras"
    LocalBackend(str(root)).write_bytes(MANIFEST_NAME, json.dumps(crafted).encode())
    with pytest.raises(ManifestError, match="symbolic link"):
        load_best(root)


def test_a_remote_file_larger_than_the_manifest_says_stops_the_download(memory_url, model_bytes, tmp_path,
                                                                          monkeypatch):
    import fsspec

    fs = fsspec.filesystem("memory")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fs.pipe(f"{memory_url}/m.keras", model_bytes + b"\0" * (3 << 20))
    fs.pipe(f"{memory_url}/{MANIFEST_NAME}", _crafted("m.keras", model_bytes))
    with pytest.raises(ManifestError, match=f"larger than the {len(model_bytes)} bytes the manifest records"):
        load_latest(memory_url)
    assert list(tmp_path.iterdir()) == []
