"""Restoring by directory listing, as users write it (the keras.io guides and many scripts).

``max([d + "/" + n for n in os.listdir(d)], key=os.path.getctime)`` (the guides' "Checkpointing
models" and "Using callbacks to ensure fault tolerance"), the same by ``getmtime``, and
``sorted(os.listdir(d))[-1]`` must pick a complete checkpoint after every save, after close, and
after a SIGKILL mid-save; nothing visible may be there but checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ckptcore import Checkpointer

#: The three ways users pick "the latest" checkpoint, exactly as written in the wild.
PICKS = {
    "newest by ctime": lambda d: max([d + "/" + n for n in os.listdir(d)], key=os.path.getctime),
    "newest by mtime": lambda d: max([d + "/" + n for n in os.listdir(d)], key=os.path.getmtime),
    "last by name": lambda d: d + "/" + sorted(os.listdir(d))[-1],
}

FORMATS = {
    "fixed file": ("best.npy", {"save_best_only": True}),
    "templated files": ("m-{epoch:02d}.npy", {"keep_last": 2}),
    "templated directories": ("model-{epoch:02d}", {"keep_last": 2}),
}


def _write(value: float):
    def write(path: str) -> None:
        if path.endswith(".npy"):
            with open(path, "wb") as fh:
                np.save(fh, np.full(3, value))
        else:
            os.makedirs(path)
            np.save(os.path.join(path, "v.npy"), np.full(3, value))
    return write


def _load(path: str) -> float:
    return float(np.load(os.path.join(path, "v.npy") if os.path.isdir(path) else path)[0])


def _assert_listing_finds_a_checkpoint(d: str, latest: float | None = None) -> None:
    for name, pick in PICKS.items():
        picked = pick(d)
        assert not os.path.basename(picked).startswith("."), f"{name} picked {picked}"
        value = _load(picked)  # complete: it loads
        if latest is not None and name != "last by name":
            assert value == latest, f"{name} picked {picked}, not the latest checkpoint"
    for entry in os.listdir(d):
        if not entry.startswith("."):
            _load(os.path.join(d, entry))  # nothing visible but checkpoints


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_listing_picks_a_complete_checkpoint_after_every_save_and_close(tmp_path, fmt):
    name, options = FORMATS[fmt]
    d = str(tmp_path / "ckpt")
    ck = Checkpointer(f"{d}/{name}", write=_write(0.0), monitor="val_loss", **options)
    for epoch, loss in enumerate([0.9, 0.7, 0.8, 0.5, 0.6]):
        ck._write = _write(float(epoch + 1))
        if ck.on_epoch_end(epoch, {"val_loss": loss}) is not None:
            saved = float(epoch + 1)
        _assert_listing_finds_a_checkpoint(d, saved)
    ck.close()
    _assert_listing_finds_a_checkpoint(d, saved)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ckptcore import Checkpointer

    d, name, fixed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

    def write(value, kill):
        def run(path):
            data = np.full(100_000, value).tobytes()
            if not path.endswith(".npy"):
                os.makedirs(path)
                path = os.path.join(path, "v.npy")
            with open(path, "wb") as fh:
                np.lib.format.write_array(fh, np.full(3, value))
                if kill:
                    fh.write(data[:1000]); fh.flush()
                    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write
        return run

    options = {"save_best_only": True} if fixed else {"keep_last": 2}
    ck = Checkpointer(os.path.join(d, name), write=write(1.0, False), monitor="val_loss", **options)
    for epoch in range(4):
        ck._write = write(float(epoch + 1), epoch == 3)
        ck.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
    """
)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_listing_picks_a_complete_checkpoint_after_a_kill_mid_save(tmp_path, fmt):
    name = FORMATS[fmt][0]
    d = str(tmp_path / "ckpt")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), d, name, "1" if fmt == "fixed file" else "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    _assert_listing_finds_a_checkpoint(d, 3.0)  # the next run not started yet


@pytest.mark.keras
def test_keras_io_bare_model_checkpoint_beside_a_web_apps_manifest(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    from ckptcore.adapters.keras import ModelCheckpoint

    monkeypatch.chdir(tmp_path)
    web_manifest = '{"name": "My App", "short_name": "app", "start_url": "."}'
    (tmp_path / "manifest.json").write_text(web_manifest)
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.random.default_rng(1).normal(size=(32, 1))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    # As in the keras.io guide: a bare filename, saved in the working directory.
    model.fit(x, y, epochs=3, verbose=0, callbacks=[ModelCheckpoint("save_at_{epoch}.keras")])
    assert (tmp_path / "manifest.json").read_text() == web_manifest, "another tool's file is left alone"
    visible = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
    assert visible == ["manifest.json", "save_at_1.keras", "save_at_2.keras", "save_at_3.keras"]
    d = str(tmp_path)
    picks = {name: pick(d) for name, pick in PICKS.items()}
    assert {os.path.basename(p) for p in picks.values()} == {"save_at_3.keras"}
    for picked in picks.values():
        restored = keras.saving.load_model(picked)
        for a, b in zip(restored.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
