"""ModelCheckpoint's arguments: the seeds' signature, and every bad argument fails at construction."""

from __future__ import annotations

import inspect

import keras
import pytest
from keras_helpers import BACKEND

from ckptcore.adapters.keras import EXTRAS, ModelCheckpoint, WandbModelCheckpoint
from ckptcore.errors import BackendNotFoundError, ConfigError

SEED_SIGNATURE = [
    ("filepath", inspect.Parameter.empty),
    ("monitor", "val_loss"),
    ("verbose", 0),
    ("save_best_only", False),
    ("save_weights_only", False),
    ("mode", "auto"),
    ("save_freq", "epoch"),
    ("options", None),
    ("initial_value_threshold", None),
]


@pytest.mark.parametrize("cls", [ModelCheckpoint, WandbModelCheckpoint])
def test_signature_is_the_seeds(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params[:-1]] == SEED_SIGNATURE
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert issubclass(cls, keras.callbacks.Callback)


def test_extras_are_the_engine_options():
    for name in ("keep_last", "keep_best", "min_delta", "every_n_epochs", "every_seconds", "backends",
                 "storage_options", "resume", "async_save", "max_pending"):
        assert name in EXTRAS


def test_attributes_mirror_keras(tmp_path):
    cb = ModelCheckpoint(tmp_path / "m-{epoch:02d}.keras", monitor="accuracy", verbose=1,
                         save_best_only=True, mode="max", save_freq=4, initial_value_threshold=0.5)
    assert cb.filepath == str(tmp_path / "m-{epoch:02d}.keras")  # PathLike accepted
    assert (cb.monitor, cb.verbose, cb.save_best_only, cb.mode, cb.save_freq) == ("accuracy", 1, True, "max", 4)
    assert cb.save_weights_only is False and cb.best == 0.5 and cb.format == "keras"


@pytest.mark.parametrize(
    ("filepath", "weights_only", "fmt"),
    [("m.keras", False, "keras"), ("m-{epoch}.h5", False, "h5"),
     ("w-{epoch:02d}-{val_loss:.2f}.weights.h5", True, "weights.h5")],
)
def test_format_follows_the_suffix(tmp_path, filepath, weights_only, fmt):
    assert ModelCheckpoint(str(tmp_path / filepath), save_weights_only=weights_only).format == fmt


@pytest.mark.parametrize(
    ("filepath", "weights_only", "message"),
    [
        ("m.keras", True, "must end in `.weights.h5`"),  # Keras's own check and message
        ("m.h5", True, "must end in `.weights.h5`"),
        ("m", True, "must end in `.weights.h5`"),
        ("m.pt", False, "must end in `.keras`"),
        ("m-{epoch}.hdf5", False, "must end in `.keras`"),
        ("m.weights.h5", False, "save_weights_only=False"),  # Keras would write a full model there
    ],
)
def test_keras_extension_checks_raise_at_construction(tmp_path, filepath, weights_only, message):
    with pytest.raises(ValueError, match=message) as info:
        ModelCheckpoint(str(tmp_path / filepath), save_weights_only=weights_only)
    assert isinstance(info.value, ConfigError)
    assert "filepath" in str(info.value)


def test_saved_model_needs_tensorflow(tmp_path):
    if BACKEND == "tensorflow":
        assert ModelCheckpoint(str(tmp_path / "export-{epoch}")).format == "saved_model"
    else:
        with pytest.raises(ConfigError, match="KERAS_BACKEND=tensorflow"):
            ModelCheckpoint(str(tmp_path / "export-{epoch}"))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"save_freq": 0}, "save_freq"),
        ({"save_freq": "batch"}, "save_freq"),
        ({"save_freq": 2.5}, "save_freq"),
        ({"mode": "maximum"}, "mode"),
        ({"monitor": ""}, "monitor"),
        ({"save_best_only": "yes"}, "save_best_only"),
        ({"save_weights_only": 1}, "save_weights_only"),
        ({"initial_value_threshold": "low"}, "initial_value_threshold"),
        ({"keep_last": 0}, "keep_last"),
        ({"min_delta": -1}, "min_delta"),
        ({"every_seconds": 0}, "every_seconds"),
        ({"max_pending": 0}, "max_pending"),
        ({"options": {"zipped": False}}, "options"),
        ({"perod": 2}, "perod"),
        ({"write": print}, "write"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, argument):
    with pytest.raises(ConfigError) as info:
        ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), **kwargs)
    assert argument in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_keras3_positional_threshold_is_pointed_at_its_keyword(tmp_path):
    # Keras 3's signature has no `options`: its 8th positional argument is the threshold.
    with pytest.raises(ConfigError, match=r"options: got 0\.3.*initial_value_threshold=0\.3"):
        ModelCheckpoint(str(tmp_path / "m.keras"), "val_loss", 0, True, False, "auto", "epoch", 0.3)


def test_a_foreign_manifest_in_the_root_is_left_alone(tmp_path):
    # A web app's manifest.json: Keras's callback does not care, and neither does ckptcore.
    (tmp_path / "manifest.json").write_text('{"name": "my-dataset"}')
    ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"))
    assert (tmp_path / "manifest.json").read_text() == '{"name": "my-dataset"}'


def test_batch_placeholder_needs_a_batch_schedule(tmp_path):
    with pytest.raises(ConfigError, match=r"\{batch\}"):
        ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"))
    ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=3)


def test_unknown_backend_fails_at_construction(tmp_path):
    with pytest.raises(BackendNotFoundError, match="no-such-store"):
        ModelCheckpoint(str(tmp_path / "m.keras"), backends=["no-such-store"])


def test_batch_hook_only_with_a_batch_schedule(tmp_path):
    epochly = ModelCheckpoint(str(tmp_path / "a.keras"))
    batchly = ModelCheckpoint(str(tmp_path / "b.keras"), save_freq=3)
    timely = ModelCheckpoint(str(tmp_path / "c.keras"), every_seconds=60)
    # Keras decides on asynchronous batch dispatch from this mark (callback_list.py).
    assert getattr(epochly.on_train_batch_end, "_is_default", False) is True
    assert getattr(batchly.on_train_batch_end, "_is_default", False) is False
    assert getattr(timely.on_train_batch_end, "_is_default", False) is False
    from keras.src import backend

    assert keras.callbacks.CallbackList([epochly])._async_train is bool(backend.IS_THREAD_SAFE)
    assert keras.callbacks.CallbackList([batchly])._async_train is False
