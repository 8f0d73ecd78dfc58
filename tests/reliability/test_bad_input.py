"""Bad arguments and bad runtime values: a clear error naming the argument, or one warning.

Each construction row must raise a ``ValueError`` subclass from ckptcore (not a pydantic,
``os`` or ``string`` error from deep inside) whose message names the argument and the value
given, and must leave the directory untouched. Each runtime row must raise a clear error or
warn once, and nothing may be written outside the checkpoint root.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest

from ckptcore.manifest import MANIFEST_NAME

from ckptcore import (
    Checkpointer,
    CkptcoreError,
    ConfigError,
    MissingKeyError,
    MonitorError,
    TemplateError,
)
from ckptcore.names import LEGACY_MANIFEST, RESERVED_DIR, TEMP_MARK

BAD_ARGUMENTS = [
    # (arguments, the argument named, a fragment of the value or rule shown)
    ({"mode": "minimum"}, "mode", "'minimum'"),
    ({"mode": None}, "mode", "None"),
    ({"save_freq": 0}, "save_freq", "0"),
    ({"save_freq": -5}, "save_freq", "-5"),
    ({"save_freq": 2.5}, "save_freq", "2.5"),
    ({"save_freq": "batch"}, "save_freq", "'batch'"),
    ({"save_freq": True}, "save_freq", "True"),
    ({"filepath": "w-{epoch.npy"}, "filepath", "w-{epoch.npy"),
    ({"filepath": "w-{}.npy"}, "filepath", "positional"),
    ({"filepath": "w-{0}.npy"}, "filepath", "positional"),
    ({"filepath": "w-{epoch!r}.npy"}, "filepath", "conversion"),
    ({"filepath": "w-{logs.loss}.npy"}, "filepath", "attribute"),
    ({"filepath": "w-{epoch:{width}}.npy"}, "filepath", "nests"),
    ({"filepath": "w-{epoch:100000d}.npy"}, "filepath", "width or precision"),
    ({"filepath": "sub/{epoch}/../../x.npy"}, "filepath", "'..'"),
    ({"filepath": "w\x00.npy"}, "filepath", "NUL"),
    ({"filepath": "s3://{epoch}.npy"}, "filepath", "no fixed bucket"),
    ({"filepath": ""}, "filepath", "''"),
    ({"filepath": 42}, "filepath", "42"),
    ({"initial_value_threshold": "0.5"}, "initial_value_threshold", "'0.5'"),
    ({"initial_value_threshold": float("nan")}, "initial_value_threshold", "nan"),
    ({"verbose": "1"}, "verbose", "'1'"),
    ({"verbose": -1}, "verbose", "-1"),
    ({"verbose": 1.5}, "verbose", "1.5"),
    ({"keep_last": 0}, "keep_last", "0"),
    ({"keep_best": -1}, "keep_best", "-1"),
    ({"keep_every_n_epochs": 0}, "keep_every_n_epochs", "0"),
    ({"keep_last": 2.0}, "keep_last", "2.0"),
    ({"monitor": ""}, "monitor", "''"),
    ({"monitor": None}, "monitor", "None"),
    ({"monitor": ["loss"]}, "monitor", "['loss']"),
    ({"min_delta": -0.1}, "min_delta", "-0.1"),
    ({"min_delta": "small"}, "min_delta", "'small'"),
    ({"every_seconds": 0}, "every_seconds", "0"),
    ({"every_n_epochs": 0}, "every_n_epochs", "0"),
    ({"save_best_only": "yes"}, "save_best_only", "'yes'"),
    ({"async_save": 1}, "async_save", "1"),
    ({"max_pending": 0}, "max_pending", "0"),
    ({"on_save_error": "ignore"}, "on_save_error", "'ignore'"),
    ({"retries": -1}, "retries", "-1"),
    ({"retries": 1.5}, "retries", "1.5"),
    ({"retry_backoff": -1}, "retry_backoff", "-1"),
    ({"retry_backoff": float("inf")}, "retry_backoff", "inf"),
    ({"save_on_preemption": "true"}, "save_on_preemption", "'true'"),
    ({"resume": 3}, "resume", "3"),
    ({"keep_lst": 3}, "keep_lst", "unknown argument"),
    ({"filepath": "w-{epoch:q}.npy"}, "filepath", "the format spec 'q' of {epoch}"),
    ({"filepath": "w-{epoch}-{batch:s}.npy"}, "filepath", "the format spec 's' of {batch}"),
    ({"filepath": "ck/" + "n" * 256 + ".npy"}, "filepath", "260 bytes long; allowed: names of at most 255"),
    ({"filepath": "ck/" + "n" * 256 + "-{epoch}.npy"}, "filepath", "the fixed text of the name"),
    ({"filepath": f"ck/{RESERVED_DIR}/m-{{epoch}}.npy"}, "filepath", "ckptcore's own directory"),
    ({"filepath": f"{RESERVED_DIR}/m.npy"}, "filepath", "ckptcore's own directory"),
    ({"filepath": f"ck/{TEMP_MARK}m-{{epoch}}.npy"}, "filepath", "temporary files"),
    ({"filepath": f"ck/{LEGACY_MANIFEST}"}, "filepath", "older versions keep the manifest"),
    ({"filepath": LEGACY_MANIFEST}, "filepath", "older versions keep the manifest"),
    ({"initial_value_threshold": 10**400}, "initial_value_threshold", "too large for a float"),
    ({"min_delta": 10**400}, "min_delta", "too large for a float"),
]


def _ids(rows):
    return [f"{name}={list(args.values())[0]!r}"[:40] for args, name, _ in rows]


def _everything_under(path) -> set[str]:
    found = set()
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(dirpath, name), path))
    return found


@pytest.mark.parametrize(("arguments", "name", "shown"), BAD_ARGUMENTS, ids=_ids(BAD_ARGUMENTS))
def test_bad_constructor_arguments_name_the_argument(tmp_path, arguments, name, shown):
    arguments = dict(arguments)
    filepath = arguments.pop("filepath", "w-{epoch}.npy")
    if isinstance(filepath, str) and filepath and "://" not in filepath:
        filepath = str(tmp_path / "root" / filepath)
    with pytest.raises(ValueError) as info:
        Checkpointer(filepath, write=lambda path: None, **arguments)
    error = info.value
    assert isinstance(error, (ConfigError, TemplateError)), f"{type(error).__module__}.{type(error).__name__}"
    assert name in str(error) and shown in str(error), str(error)
    assert "allowed" in str(error) or "unknown" in str(error), "the message says what is allowed"
    assert _everything_under(tmp_path) == set(), "nothing is written for a refused configuration"


def test_a_filepath_that_is_an_existing_directory_is_refused_at_construction(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    with pytest.raises(ConfigError, match=r"filepath: .*runs'.* existing directory") as info:
        Checkpointer(str(folder), write=lambda path: None)
    assert "allowed" in str(info.value)
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert {p for p in _everything_under(tmp_path) if not p.startswith(".ckptcore")} == {"runs", "runs/notes.txt"}
    from ckptcore.commit import live_runs
    from ckptcore.manifest import MANIFEST_NAME

    assert live_runs(str(tmp_path / MANIFEST_NAME)) == set(), "the refused run holds no run id"


def test_a_templated_name_that_renders_to_a_foreign_directory_is_not_replaced(tmp_path):
    root = tmp_path / "root"
    (root / "w-2.npy").mkdir(parents=True)
    (root / "w-2.npy" / "keep.txt").write_text("not a checkpoint")
    ck = Checkpointer(str(root / "w-{epoch}.npy"), write=lambda path: np.save(path, np.zeros(2)))
    ck.on_epoch_end(0, {"val_loss": 1.0})
    with pytest.warns(UserWarning, match=r"'w-2.npy' was not saved.*existing directory"):
        assert ck.on_epoch_end(1, {"val_loss": 0.5}) is None
    ck.on_epoch_end(2, {"val_loss": 0.4})
    ck.close()
    assert (root / "w-2.npy" / "keep.txt").read_text() == "not a checkpoint"
    listed = [e["path"] for e in json.loads((root / MANIFEST_NAME).read_text())["entries"]]
    assert listed == ["w-1.npy", "w-3.npy"]


# -- runtime values -------------------------------------------------------------------------------

def _writer(path: str) -> None:
    np.save(path, np.arange(3.0))


def _strict_json(path) -> dict:
    def refuse(token):
        raise AssertionError(f"manifest holds the non-JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_missing_monitor_warns_once_and_saves_nothing(tmp_path):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "best.npy"), write=_writer, monitor="val_acc", save_best_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(4):
            ck.on_epoch_end(epoch, {"val_loss": 0.5, "loss": 0.4})
    ck.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "val_acc" in messages[0] and "loss, val_loss" in messages[0]
    assert not (root / "best.npy").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.zeros(3), "shape (3,)"),
        ([0.1, 0.2], "expected a real number"),
        ("0.5", "str '0.5'"),
        (True, "bool"),
        (1 + 2j, "complex"),
    ],
    ids=["array", "list", "string", "bool", "complex"],  # None counts as missing, as in Keras
)
def test_a_non_scalar_monitor_value_names_the_monitor(tmp_path, value, fragment):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "best.npy"), write=_writer, monitor="val_loss", save_best_only=True)
    with pytest.raises(MonitorError) as info:
        ck.on_epoch_end(0, {"val_loss": value})
    ck.close()
    assert "'val_loss'" in str(info.value) and fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, CkptcoreError)
    assert not (root / "best.npy").exists()


def test_nan_and_inf_are_never_best_and_the_manifest_stays_json(tmp_path):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "w-{epoch}-{val_loss:.3f}.npy"), write=_writer, monitor="val_loss")
    for epoch, value in enumerate([float("nan"), 0.5, float("inf"), float("-inf"), np.float32("nan")]):
        ck.on_epoch_end(epoch, {"val_loss": value})
    ck.close()
    manifest = _strict_json(root / MANIFEST_NAME)
    names = [e["path"] for e in manifest["entries"]]
    assert names == ["w-1-nan.npy", "w-2-0.500.npy", "w-3-inf.npy", "w-4--inf.npy", "w-5-nan.npy"]
    assert [e["path"] for e in manifest["entries"] if e["is_best"]] == ["w-2-0.500.npy"]
    assert manifest["tracker"]["best"] == 0.5
    assert all(e["monitor_value"] is None or math.isfinite(e["monitor_value"]) for e in manifest["entries"])


@pytest.mark.parametrize("value", ["../../escape", "/etc/passwd", "a/../../b", "..", "\\..\\x", "sub/dir"])
def test_template_values_cannot_write_outside_the_root(tmp_path, value):
    root = tmp_path / "deep" / "root"
    ck = Checkpointer(str(root / "m-{tag}.npy"), write=_writer, monitor="loss")
    relpath = ck.on_epoch_end(0, {"tag": value, "loss": 1.0})
    ck.close()
    assert relpath is not None and "/" not in relpath and ".." not in relpath
    outside = {p for p in _everything_under(tmp_path) - {"deep", "deep/root"}
               if not p.startswith("deep/root/")}
    assert outside == set(), f"written outside the root: {outside}"
    assert sorted(n for n in os.listdir(root) if n != ".ckptcore") == [relpath]


def test_a_missing_template_key_names_it_and_the_keys_present(tmp_path):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "m-{val_acc:.2f}.npy"), write=_writer)
    with pytest.raises(MissingKeyError) as info:
        ck.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.9})
    ck.close()
    assert "{val_acc}" in str(info.value) and "epoch, loss, val_loss" in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert {p for p in _everything_under(tmp_path) if not p.startswith("root/.ckptcore")} <= {"root"}


def test_a_value_that_does_not_fit_its_format_spec_is_a_template_error(tmp_path):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "m-{tag:.3f}.npy"), write=_writer)
    with pytest.raises(TemplateError, match=r"cannot format tag='abc' with spec '\.3f'"):
        ck.on_epoch_end(0, {"tag": "abc", "val_loss": 1.0})
    with pytest.raises(TemplateError, match="longer than 255 bytes"):
        Checkpointer(str(root / "m-{tag}.npy"), write=_writer).on_epoch_end(0, {"tag": "x" * 300})
    ck.close()
    assert not any(name.endswith(".npy") for name in _everything_under(tmp_path))


# -- the Keras callback -----------------------------------------------------------------------------

KERAS_ROWS = [
    ({"filepath": "m.txt"}, "filepath", "must end in `.keras`"),
    ({"filepath": "m.keras", "save_weights_only": True}, "filepath", "must end in `.weights.h5`"),
    ({"filepath": "m.weights.h5"}, "filepath", "save_weights_only=False"),
    ({"save_weights_only": "yes"}, "save_weights_only", "'yes'"),
    ({"filepath": "w-{}.keras"}, "filepath", "positional"),
    ({"mode": "minimum"}, "mode", "'minimum'"),
    ({"save_freq": 0}, "save_freq", "0"),
    ({"initial_value_threshold": "low"}, "initial_value_threshold", "'low'"),
    ({"verbose": "loud"}, "verbose", "'loud'"),
    ({"keep_last": 0}, "keep_last", "0"),
    ({"monitor": None}, "monitor", "None"),
    ({"on_save_error": "ignore"}, "on_save_error", "'ignore'"),
    ({"retries": -2}, "retries", "-2"),
    ({"keep_lst": 1}, "keep_lst", "unknown"),
]


@pytest.mark.parametrize(("arguments", "name", "shown"), KERAS_ROWS, ids=_ids(KERAS_ROWS))
def test_bad_keras_callback_arguments_name_the_argument(tmp_path, arguments, name, shown):
    keras_adapter = pytest.importorskip("ckptcore.adapters.keras")
    arguments = dict(arguments)
    filepath = str(tmp_path / arguments.pop("filepath", "m-{epoch}.keras"))
    with pytest.raises(ValueError) as info:
        keras_adapter.ModelCheckpoint(filepath, **arguments)
    assert isinstance(info.value, ConfigError), type(info.value)
    assert name in str(info.value) and shown in str(info.value), str(info.value)
    assert _everything_under(tmp_path) == set()


def test_keras_refuses_to_replace_a_directory_it_did_not_write(tmp_path):
    keras = pytest.importorskip("keras")
    from ckptcore.adapters.keras import ModelCheckpoint

    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    target = folder if keras.backend.backend() == "tensorflow" else folder / "m.keras"
    if target != folder:
        (folder / "m.keras").mkdir()
        (folder / "m.keras" / "keep.txt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=r"filepath: .* existing directory"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=2, verbose=0,
                  callbacks=[ModelCheckpoint(str(target), monitor="loss")])
    assert (folder / "notes.txt").read_text() == "the user's own file"
