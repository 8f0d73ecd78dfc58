"""Non-blocking saves through ``ModelCheckpoint`` in ``model.fit``.

The files hold the state of the epoch that saved them, at most ``max_pending`` snapshots exist
at once, background failures surface on the next hook naming the checkpoint, and a save still
pending when ``fit`` raises is finished, also when the exception ends the interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import keras
import numpy as np
import pytest
from keras_helpers import manifest_entries

from ckptcore.adapters.keras import ModelCheckpoint
from ckptcore.backends import LocalBackend
from ckptcore.errors import CheckpointSaveError

pytestmark = pytest.mark.keras


class SlowDisk(LocalBackend):
    """A local mirror that takes ``delay`` seconds per checkpoint, or fails with ``fail``."""

    name = "slowdisk"

    def __init__(self, root: str, delay: float = 0.0, fail: str | None = None) -> None:
        super().__init__(root)
        self.delay, self.fail = delay, fail
        self.threads: list[str] = []

    def put(self, src, relpath, info):
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise OSError(self.fail)
        return super().put(src, relpath, info)


class Record(keras.callbacks.Callback):
    """Keeps the model and optimizer state at each epoch end, and how many snapshots exist."""

    def __init__(self, checkpoint: ModelCheckpoint | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.states: list[list[np.ndarray]] = []
        self.buffer_sets: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        self.states.append([np.array(v) for v in model.weights])
        if self.checkpoint is not None and self.checkpoint._snapshot is not None:
            self.buffer_sets.append(self.checkpoint._snapshot.buffer_sets)


class RaiseAt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"stop at epoch {epoch + 1}")


def _checkpoints(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n != ".ckptcore")


def _load_weights(path: str, fmt: str, template: keras.Model) -> list[np.ndarray]:
    if fmt == "weights.h5":
        template.optimizer.build(template.trainable_variables)
        template.load_weights(path)
        return template.get_weights()
    return keras.saving.load_model(path, compile=fmt == "keras").get_weights()


@pytest.mark.parametrize("fmt", ["keras", "weights.h5", "h5"])
def test_each_file_holds_the_state_of_its_epoch(tmp_path, data, make_model, fmt):
    x, y = data
    model = make_model()
    ck = ModelCheckpoint(str(tmp_path / f"m-{{epoch:02d}}.{fmt}"), monitor="loss",
                         save_weights_only=fmt == "weights.h5", async_save=True)
    record = Record()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ck, record])

    assert ck.checkpointer.writer is not None
    assert ck._snapshot.replays == (fmt != "h5")
    assert [e["name"] for e in manifest_entries(tmp_path)] == [f"m-0{i}.{fmt}" for i in (1, 2, 3)]
    for epoch, state in enumerate(record.states, start=1):
        got = _load_weights(str(tmp_path / f"m-{epoch:02d}.{fmt}"), fmt, make_model())
        assert len(got) == len(state)
        for a, b in zip(got, state):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("max_pending", [1, 2])
def test_at_most_one_snapshot_per_pending_save(tmp_path, data, make_model, max_pending):
    x, y = data
    mirror = SlowDisk(str(tmp_path / "mirror"), delay=0.3)
    ck = ModelCheckpoint(str(tmp_path / "ck" / "m-{epoch}.keras"), monitor="loss", async_save=True,
                         max_pending=max_pending, backends=[mirror])
    record = Record(ck)
    model = make_model()
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[ck, record])

    # The writer was busy (each mirror copy takes 0.3 s) at every later save, yet no more host
    # snapshots existed than saves allowed in flight.
    assert 1 <= max(record.buffer_sets) <= max_pending
    assert _checkpoints(tmp_path / "mirror") == [f"m-{i}.keras" for i in range(1, 6)]
    assert ck._snapshot.buffer_sets == 0  # released at on_train_end
    assert set(mirror.threads) == {"ckptcore-writer"}  # the copy ran off the training thread


@keras.saving.register_keras_serializable(package="ckptcore_tests")
class Unwritable(keras.layers.Layer):
    """A layer whose saved state HDF5 cannot hold: its save fails, as Keras's own would."""

    def call(self, x):
        return x

    def save_own_variables(self, store):
        store["table"] = np.array([{"not": "an array"}], dtype=object)


def test_a_background_failure_surfaces_on_the_next_hook_naming_the_checkpoint(tmp_path, data, make_model):
    x, y = data
    model = make_model()
    model = keras.Sequential([Unwritable(), *model.layers])
    model.compile("adam", "binary_crossentropy")
    ck = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), monitor="loss", async_save=True)
    with pytest.raises(CheckpointSaveError, match=r"'m-1\.keras' was not saved: ValueError") as info:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ck])
    assert info.value.checkpoint == "m-1.keras"
    assert ck.checkpointer.epoch >= 1  # raised by a hook of a later epoch, not by the save itself
    assert not os.path.exists(tmp_path / "m-1.keras")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".keras")]


def test_a_save_pending_when_fit_raises_is_finished(tmp_path, data, make_model):
    x, y = data
    mirror = SlowDisk(str(tmp_path / "mirror"), delay=0.5)
    ck = ModelCheckpoint(str(tmp_path / "ck" / "m-{epoch}.keras"), monitor="loss", async_save=True,
                         backends=[mirror])
    record = Record()
    model = make_model()
    with pytest.raises(RuntimeError, match="stop at epoch 2"):
        model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[ck, record, RaiseAt(1)])
    ck.checkpointer.close()  # what the interpreter's exit does too (see the next test)

    assert _checkpoints(tmp_path / "mirror") == ["m-1.keras", "m-2.keras"]
    entries = manifest_entries(tmp_path / "ck")
    assert [(e["name"], e["backends"]) for e in entries] == [
        ("m-1.keras", ["local", "slowdisk"]), ("m-2.keras", ["local", "slowdisk"])]
    got = keras.saving.load_model(tmp_path / "mirror" / "m-2.keras").get_weights()
    for a, b in zip(got, record.states[1]):
        np.testing.assert_array_equal(a, b)


_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
import keras, numpy as np
from keras_helpers import build_model
from test_async_fit import RaiseAt, SlowDisk
from ckptcore.adapters.keras import ModelCheckpoint

root = {root!r}
x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
y = (x[:, :1] > 0).astype("float32")
mirror = SlowDisk(os.path.join(root, "mirror"), delay=1.0)
ck = ModelCheckpoint(os.path.join(root, "ck", "m-{{epoch}}.keras"), monitor="loss",
                     async_save=True, backends=[mirror])
build_model().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ck, RaiseAt(0)])
"""


def test_a_save_pending_at_interpreter_exit_is_finished(tmp_path):
    tests = os.path.dirname(os.path.abspath(__file__))
    script = textwrap.dedent(_SCRIPT.format(tests=tests, root=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 1 and "stop at epoch 1" in proc.stderr, proc.stderr[-2000:]
    # fit raised 1 s before the mirror copy could finish; the exit handler waited for it.
    assert _checkpoints(tmp_path / "mirror") == ["m-1.keras"]
    # on_train_end never ran: the save's one manifest write holds it as pending, and the next
    # open of the root lists it.
    from ckptcore.backends import LocalBackend
    from ckptcore.store import settle_root

    entry = settle_root(LocalBackend(str(tmp_path / "ck"))).entries[0]
    assert entry.name == "m-1.keras" and entry.backends == ["local"]
    assert keras.saving.load_model(tmp_path / "mirror" / "m-1.keras").get_weights()


def test_async_is_on_by_default_and_can_be_turned_off(tmp_path, data, make_model):
    x, y = data
    default = ModelCheckpoint(str(tmp_path / "a" / "m-{epoch}.keras"), monitor="loss")
    off = ModelCheckpoint(str(tmp_path / "b" / "m-{epoch}.keras"), monitor="loss", async_save=False)
    make_model().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[default, off])
    assert default.checkpointer.writer is not None and default._snapshot.replays
    assert off.checkpointer.writer is None and off._snapshot is None
    assert os.path.exists(tmp_path / "a" / "m-1.keras") and os.path.exists(tmp_path / "b" / "m-1.keras")
