"""``BackupAndRestore`` on a worker that is not the chief of a distributed job: it deletes
nothing under the shared backup directory when its ``fit`` ends (the chief's backup stays)."""

from __future__ import annotations

import os

import keras
import numpy as np

from ckptcore.adapters.keras import BackupAndRestore


def _fit(backup_dir: str, epochs: int, **options) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, epochs=epochs, verbose=0, callbacks=[BackupAndRestore(backup_dir, **options)])


def _tree(path: str) -> dict[str, bytes]:
    found = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                found[os.path.relpath(full, path)] = fh.read()
    return found


def test_a_worker_that_is_not_the_chief_leaves_the_backup_alone(tmp_path, monkeypatch):
    backup_dir = str(tmp_path / "backup")
    for name in ("TF_CONFIG", "RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    _fit(backup_dir, epochs=2, delete_checkpoint=False)  # the chief's backup, as a killed run left it
    before = _tree(backup_dir)
    assert any(name.endswith(".weights.h5") for name in before)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _fit(backup_dir, epochs=3)  # delete_checkpoint=True: only the chief deletes the backup
    assert _tree(backup_dir) == before
