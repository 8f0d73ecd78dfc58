"""A disk that fills up during a real Keras ``fit``, in every file format, sync and async.

h5py writing straight to a full disk can crash the process (SIGSEGV when HDF5 closes a file
whose writes failed). Each fit runs in a process of its own, bounded in time: it must exit
normally, report the save that did not fit, and save again once space is freed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from test_storage_faults import _tmpfs

from ckptcore.backends.local import LocalBackend
from ckptcore.commit import load_manifest

CHILD = textwrap.dedent(
    """
    import json, os, sys, time, warnings
    import numpy as np
    import keras
    from ckptcore.adapters.keras import ModelCheckpoint

    root, fmt, mode = sys.argv[1:4]
    weights_only = fmt == "weights.h5"

    def fill(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            for size in (1 << 16, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def idle(ck):
        writer = ck.checkpointer.writer
        deadline = time.monotonic() + 60
        while writer is not None and writer.pending and time.monotonic() < deadline:
            time.sleep(0.01)

    class Disk(keras.callbacks.Callback):
        def __init__(self, ck):
            super().__init__()
            self.ck = ck

        def on_epoch_end(self, epoch, logs=None):
            idle(self.ck)  # the save of this epoch has finished (or failed)
            if epoch == 0:
                # Room for HDF5 to start writing, not for the whole checkpoint.
                fill(os.path.join(root, "filler"))
                os.truncate(os.path.join(root, "filler"), os.path.getsize(os.path.join(root, "filler")) - 100_000)
            elif epoch == 1:
                os.remove(os.path.join(root, "filler"))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 64)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(192, activation="relu"),
                              keras.layers.Dense(192), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    ck = ModelCheckpoint(root + "/m-{epoch}." + fmt, monitor="loss", save_weights_only=weights_only,
                         async_save=mode == "async")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[ck, Disk(ck)])
    loaded = []
    for epoch in (1, 3):
        path = f"{root}/m-{epoch}.{fmt}"
        if weights_only:
            model.load_weights(path)
        else:
            keras.saving.load_model(path, compile=False)
        loaded.append(os.path.basename(path))
    print(json.dumps({"reported": [str(w.message) for w in caught if "not saved" in str(w.message)],
                      "loaded": loaded, "files": sorted(os.listdir(root))}))
    """
)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 4 MiB tmpfs: a few checkpoints of the test's model fit in it."""
    yield from _tmpfs(tmp_path / "disk", "size=4m", "the file size limit test covers a full disk")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fmt", ["keras", "h5", "weights.h5"])
def test_a_fit_survives_a_full_disk_and_saves_again_once_there_is_room(tmp_path, tiny_tmpfs, fmt, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = subprocess.run([sys.executable, str(script), str(tiny_tmpfs), fmt, mode],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-3000:]}"
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(outcome["reported"]) == 1, outcome
    assert f"'m-2.{fmt}' was not saved" in outcome["reported"][0]
    assert "No space left on device" in outcome["reported"][0]
    assert outcome["loaded"] == [f"m-1.{fmt}", f"m-3.{fmt}"]
    assert f"m-2.{fmt}" not in outcome["files"]
    manifest = load_manifest(LocalBackend(str(tiny_tmpfs)))
    assert [e.path for e in manifest.entries] == [f"m-1.{fmt}", f"m-3.{fmt}"]
