"""Bad input that used to pass construction: long names, reserved names, int format specs, huge
monitor values, ``local://`` URLs."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from ckptcore import Checkpointer, ConfigError, MonitorError, TemplateError
from ckptcore.backends import resolve_backend
from ckptcore.commit import load_manifest
from ckptcore.names import LEGACY_MANIFEST, NAME_MAX, RESERVED_DIR, TEMP_MARK


def _writer(path: str) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.arange(3.0))


def _files(path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), path) for d, dirs, files in os.walk(path) for n in [*dirs, *files]}


@pytest.mark.parametrize("size", [240, NAME_MAX])
def test_names_up_to_the_limit_save_and_load(tmp_path, size):
    name = "n" * (size - len(".npy")) + ".npy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Checkpointer(str(tmp_path / name), write=_writer, monitor="loss") as ck:
            ck.on_epoch_end(0, {"loss": 1.0})
            ck.on_epoch_end(1, {"loss": 0.5})
    assert np.array_equal(np.load(tmp_path / name), np.arange(3.0))
    assert load_manifest(resolve_backend("local", str(tmp_path))).latest().name == name


def test_a_fixed_name_over_the_limit_is_refused_at_construction(tmp_path):
    name = "n" * (NAME_MAX - 3) + ".npy"
    with pytest.raises(ConfigError, match=f"{NAME_MAX + 1} bytes long; allowed: names of at most {NAME_MAX} bytes"):
        Checkpointer(str(tmp_path / name), write=_writer)
    assert _files(tmp_path) == set()


def test_a_rendered_name_over_the_limit_names_the_name_and_the_limit(tmp_path):
    ck = Checkpointer(str(tmp_path / "m-{tag}.npy"), write=_writer, monitor="loss")
    with pytest.raises(TemplateError) as info:
        ck.on_epoch_end(0, {"tag": "x" * 250, "loss": 1.0})
    ck.close()
    assert f"'m-{'x' * 250}.npy' ({256} bytes)" in str(info.value)
    assert f"longer than {NAME_MAX} bytes" in str(info.value)


@pytest.mark.parametrize(("value", "fragment"), [
    (f"{RESERVED_DIR}/x", "ckptcore's own directory"),
    (f"{TEMP_MARK}abc", "temporary files"),
    (f"x/{RESERVED_DIR}", "ckptcore's own directory"),
])
def test_a_rendered_reserved_name_is_refused(tmp_path, value, fragment):
    ck = Checkpointer(str(tmp_path / "{a}" / "{b}" / "m.npy"), write=_writer, monitor="loss")
    a, b = value.split("/") if "/" in value else (value, "y")
    with pytest.raises(TemplateError, match=fragment):
        ck.on_epoch_end(0, {"a": a, "b": b, "loss": 1.0})
    ck.close()
    # ckptcore's own directory is there (made at open); nothing was written into or beside it.
    assert not (tmp_path / a).exists() or sorted(os.listdir(tmp_path / a)) == ["staging", "state"]
    assert not (tmp_path / a / b).exists() and not (tmp_path / a / "y").exists()


def test_a_rendered_legacy_manifest_name_is_refused(tmp_path):
    ck = Checkpointer(str(tmp_path / "{tag}"), write=_writer, monitor="loss")
    with pytest.raises(TemplateError, match="older versions keep the manifest"):
        ck.on_epoch_end(0, {"tag": LEGACY_MANIFEST, "loss": 1.0})
    ck.close()


def test_an_int_format_spec_that_cannot_format_an_int_fails_at_keras_construction(tmp_path):
    keras_adapter = pytest.importorskip("ckptcore.adapters.keras")
    with pytest.raises(ConfigError, match=r"format spec 'q' of \{epoch\}"):
        keras_adapter.ModelCheckpoint(str(tmp_path / "m-{epoch:q}.keras"))
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("huge", [10**400, -(10**5000)], ids=["1e400", "-1e5000"])
def test_a_monitor_value_too_large_for_a_float(tmp_path, huge):
    ck = Checkpointer(str(tmp_path / "best.npy"), write=_writer, monitor="val_loss", save_best_only=True)
    with pytest.raises(MonitorError, match="'val_loss'.*too large for a float"):
        ck.on_epoch_end(0, {"val_loss": huge})
    ck.close()
    # Only annotating the checkpoint: saved without a monitored value, with one warning.
    with Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=_writer, monitor="val_loss") as ck:
        with pytest.warns(UserWarning, match="too large for a float"):
            assert ck.on_epoch_end(0, {"val_loss": huge}) == "m-1.npy"
    entry = load_manifest(resolve_backend("local", str(tmp_path))).latest()
    assert entry.monitor_value is None and entry.metrics["val_loss"] is None  # as inf is: null
    with Checkpointer(str(tmp_path / "v-{val_loss:.3f}.npy"), write=_writer, monitor="loss") as ck:
        with pytest.raises(TemplateError, match="cannot format val_loss"):
            ck.on_epoch_end(0, {"val_loss": huge, "loss": 1.0})


@pytest.mark.parametrize("scheme", ["local", "file"])
def test_a_local_url_means_the_local_path(tmp_path, monkeypatch, scheme):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "data" / "x"
    url = f"{scheme}://{target}/m-{{epoch}}.npy"
    assert resolve_backend(f"{scheme}://{target}").root == str(target)
    with Checkpointer(url, write=_writer, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 1.0})
        assert ck.latest() == str(target / "m-1.npy")
    assert (target / "m-1.npy").exists()
    assert not any(name.startswith(f"{scheme}:") for name in os.listdir(tmp_path))
