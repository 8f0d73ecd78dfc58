"""Host snapshots of Keras models: the files they write are the files Keras writes.

Each test compares a snapshot's file with the one ``model.save`` / ``model.save_weights``
writes for the same state, under the Keras backend of the run (``make test-keras`` runs all
three), and checks that state changed after the snapshot never reaches its file.
"""

from __future__ import annotations

import json
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

from ckptcore.adapters.keras import _saving_internals as internals
from ckptcore.adapters.keras.snapshot import HostBuffers, KerasSnapshot, host_array

pytestmark = pytest.mark.keras


@keras.saving.register_keras_serializable(package="ckptcore_tests")
class Vocab(keras.layers.Layer):
    """A layer with an asset file (like StringLookup's vocabulary), on every backend."""

    def __init__(self, words=("a", "b"), **kwargs):
        super().__init__(**kwargs)
        self.words = list(words)

    def call(self, x):
        return x

    def save_assets(self, dir_path):
        with open(os.path.join(dir_path, "vocab.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(self.words))

    def load_assets(self, dir_path):
        with open(os.path.join(dir_path, "vocab.txt"), encoding="utf-8") as fh:
            self.words = fh.read().split("\n")

    def get_config(self):
        return {**super().get_config(), "words": self.words}


def _model(with_assets: bool = False) -> keras.Model:
    keras.utils.set_random_seed(1)
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
              keras.layers.BatchNormalization(), keras.layers.Dropout(0.1), keras.layers.Dense(1)]
    if with_assets:
        layers.insert(1, Vocab(["alpha", "beta", "gamma"]))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])
    return model


def _fit(model: keras.Model, epochs: int = 1, seed: int = 0) -> None:
    """Move every model and optimizer variable to new values, as training steps would."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(seed)
    for variable in list(model.weights) + list(model.optimizer.variables):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if "int" in dtype:
            value = rng.integers(1, 1000, size=variable.shape)
        else:
            value = rng.normal(size=variable.shape) * epochs
        variable.assign(np.asarray(value).astype(dtype))


def _state(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v) for v in model.weights] + [np.array(v) for v in model.optimizer.variables]


def _h5_tree(source) -> dict[str, tuple]:
    """Every group and dataset of an HDF5 file: name -> (attrs, dtype, shape, values)."""
    out: dict[str, tuple] = {}

    def visit(name, obj):
        attrs = {k: str(v) for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Dataset):
            out[name] = (attrs, str(obj.dtype), obj.shape, obj[()])
        else:
            out[name] = (attrs, None, None, None)

    with h5py.File(source, "r") as fh:
        fh.visititems(visit)
    return out


def _assert_same_h5(actual, expected) -> None:
    got, want = _h5_tree(actual), _h5_tree(expected)
    assert sorted(got) == sorted(want)
    for name, (attrs, dtype, shape, values) in want.items():
        assert got[name][:3] == (attrs, dtype, shape), name
        if values is not None:
            np.testing.assert_array_equal(got[name][3], values, err_msg=name)


def _weights_member(path) -> h5py.File:
    import io

    with zipfile.ZipFile(path) as zf:
        return io.BytesIO(zf.read("model.weights.h5"))


def _assert_same_state(want: list[np.ndarray], model: keras.Model) -> None:
    got = _state(model)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("with_assets", [False, True])
def test_keras_archive_is_what_model_save_writes(tmp_path, with_assets):
    model = _model(with_assets)
    _fit(model)
    snap = KerasSnapshot(lambda: model, "keras", sync_write=model.save)
    assert snap.replays
    snap()(str(tmp_path / "snap.keras"))
    model.save(tmp_path / "keras.keras")

    with zipfile.ZipFile(tmp_path / "snap.keras") as ours, zipfile.ZipFile(tmp_path / "keras.keras") as theirs:
        assert sorted(ours.namelist()) == sorted(theirs.namelist())
        assert json.loads(ours.read("config.json")) == json.loads(theirs.read("config.json"))
        assert json.loads(ours.read("metadata.json")).keys() == json.loads(theirs.read("metadata.json")).keys()
        if with_assets:
            assert ours.read("assets/layers/vocab/vocab.txt") == b"alpha\nbeta\ngamma"
    _assert_same_h5(_weights_member(tmp_path / "snap.keras"), _weights_member(tmp_path / "keras.keras"))

    loaded = keras.saving.load_model(tmp_path / "snap.keras")
    _assert_same_state(_state(model), loaded)
    if with_assets:
        assert loaded.layers[0].words == ["alpha", "beta", "gamma"]


def test_weights_file_is_what_save_weights_writes(tmp_path):
    model = _model()
    _fit(model)
    snap = KerasSnapshot(lambda: model, "weights.h5", sync_write=model.save_weights)
    snap()(str(tmp_path / "snap.weights.h5"))
    model.save_weights(tmp_path / "keras.weights.h5")
    _assert_same_h5(tmp_path / "snap.weights.h5", tmp_path / "keras.weights.h5")

    fresh = _model()
    _fit(fresh, seed=5)  # different values, same structure (optimizer built)
    fresh.load_weights(tmp_path / "snap.weights.h5")
    _assert_same_state(_state(model), fresh)


@pytest.mark.parametrize("fmt", ["keras", "weights.h5"])
def test_training_after_the_snapshot_does_not_reach_the_file(tmp_path, fmt):
    model = _model()
    _fit(model)
    sync = model.save if fmt == "keras" else model.save_weights
    snap = KerasSnapshot(lambda: model, fmt, sync_write=sync)
    at_snapshot = _state(model)
    write = snap()  # training thread: the copy is taken here
    _fit(model, epochs=2, seed=1)  # weights and optimizer slots move on
    model.layers[0].kernel.assign(np.zeros_like(at_snapshot[0]))
    after = _state(model)
    assert any(not np.array_equal(a, b) for a, b in zip(at_snapshot, after))

    path = str(tmp_path / f"ck.{fmt}")
    write(path)  # as the background writer would, later
    loaded = _model()
    _fit(loaded, seed=7)
    if fmt == "keras":
        loaded = keras.saving.load_model(path)
    else:
        loaded.load_weights(path)
    _assert_same_state(at_snapshot, loaded)


def test_host_buffers_are_reused_between_saves_and_not_shared_while_pending(tmp_path):
    model = _model()
    _fit(model)
    snap = KerasSnapshot(lambda: model, "weights.h5", sync_write=model.save_weights)

    first = snap()
    first_arrays = [a for _p, _m, values in first.record.groups for a in values.values()]
    first(str(tmp_path / "a.weights.h5"))
    second = snap()  # the first write finished: its buffers come back
    second_arrays = [a for _p, _m, values in second.record.groups for a in values.values()]
    assert len(first_arrays) == len(second_arrays) > 0
    assert all(np.shares_memory(a, b) for a, b in zip(first_arrays, second_arrays))

    old = _state(model)
    _fit(model, seed=3)
    new = _state(model)
    third = snap()  # `second` is still pending: a separate set of buffers
    third_arrays = [a for _p, _m, values in third.record.groups for a in values.values()]
    assert not any(np.shares_memory(a, b) for a, b in zip(second_arrays, third_arrays))
    assert snap.buffer_sets == 2
    second(str(tmp_path / "old.weights.h5"))
    third(str(tmp_path / "new.weights.h5"))
    for name, want in (("old", old), ("new", new)):
        check = _model()
        _fit(check, seed=9)
        check.load_weights(tmp_path / f"{name}.weights.h5")
        _assert_same_state(want, check)
    with pytest.raises(RuntimeError, match="already written"):
        third(str(tmp_path / "again.weights.h5"))


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_synchronous_fallback_writes_a_loadable_file(tmp_path, monkeypatch, fmt):
    model = _model()
    _fit(model)
    if fmt == "keras":  # an unknown Keras version: the snapshot must not rely on its internals
        monkeypatch.setattr(internals, "KERAS_RANGE", ((90, 0), (91, 0)))
        with pytest.warns(UserWarning, match="synchronously.*outside the versions"):
            snap = KerasSnapshot(lambda: model, fmt, sync_write=model.save)
    else:  # legacy HDF5: Keras writes it, on the training thread, into a temporary file
        snap = KerasSnapshot(lambda: model, fmt, sync_write=model.save)
    assert not snap.replays and snap.reason
    at_snapshot = _state(model)
    write = snap()
    _fit(model, seed=4)
    path = str(tmp_path / f"ck.{fmt}")
    write(path)
    if fmt == "keras":
        _assert_same_state(at_snapshot, keras.saving.load_model(path))
    else:  # legacy HDF5 cannot restore a compiled "mse" loss; compare the weights
        loaded = keras.saving.load_model(path, compile=False)
        for got, want in zip(loaded.get_weights(), at_snapshot):
            np.testing.assert_array_equal(got, want)


def test_bfloat16_variables_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, dtype="bfloat16")])
    snap = KerasSnapshot(lambda: model, "weights.h5", sync_write=model.save_weights)
    snap()(str(tmp_path / "snap.weights.h5"))
    model.save_weights(tmp_path / "keras.weights.h5")
    _assert_same_h5(tmp_path / "snap.weights.h5", tmp_path / "keras.weights.h5")


def test_host_array_copies_nothing_it_does_not_have_to():
    variable = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    array, fresh = host_array(variable)
    np.testing.assert_array_equal(array, np.arange(6).reshape(2, 3))
    assert not fresh  # a view of the variable's memory: the caller copies it at once
    buffers = HostBuffers()
    kept = buffers.capture(("layer", "0"), variable)
    variable.assign(np.zeros((2, 3), "float32"))
    np.testing.assert_array_equal(kept, np.arange(6).reshape(2, 3))
    assert buffers.nbytes == 24


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="fmt: got 'pt'"):
        KerasSnapshot(lambda: None, "pt", sync_write=print)
    with pytest.raises(TypeError, match="model: got"):
        KerasSnapshot("model", "keras", sync_write=print)
    with pytest.raises(TypeError, match="sync_write: got"):
        KerasSnapshot(lambda: None, "keras", sync_write=None)


def test_unbuilt_model_weights_snapshot_raises():
    model = keras.Sequential([keras.layers.Dense(2)])
    snap = KerasSnapshot(lambda: model, "weights.h5", sync_write=model.save_weights)
    with pytest.raises(ValueError, match="not yet been built"):
        snap()


def test_installed_keras_is_supported():
    assert internals.support_problem() is None
