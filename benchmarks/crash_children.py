"""The processes the crash harness kills: training loops that save, and ``ckptcore prune``.

Each target takes ``(root, ready, seed)``, sets ``ready`` once the moment worth killing has
come (its first checkpoints are written, or the prune is about to start) and runs until killed.
Every root below ``root`` is one checkpoint root; :data:`BEST_NAMES` lists the fixed names of
best checkpoints, which the check also watches for a lost best.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

__all__ = ["BEST_NAMES", "CORE_SIZE", "TARGETS", "keras_model", "run"]

CORE_SIZE = 1 << 18  # float64 values per NumPy checkpoint (2 MiB)
BEST_NAMES = ("best.npy", "best_dir", "best.keras")
PRUNE_CHECKPOINTS = 24  # per prune root: files, and directories of PRUNE_FILES files
PRUNE_FILES = 6


def _resumable(root: str) -> bool:
    """Whether ``root`` holds a manifest to resume from (a fresh root starts a new run)."""
    from benchmarks.crash_check import manifest_of

    try:
        return manifest_of(root) is not None
    except ValueError:  # an unreadable manifest: resuming reports it
        return True


def _loss(rng: Any, epoch: int) -> float:
    return (1.0 + 0.5 * rng.random()) / (1 + epoch)


def _writers(weights: Any, directory: bool) -> tuple[Callable[[str], None], Callable[[], Callable[[str], None]]]:
    """``write(path)`` saving ``weights`` (a file, or a directory of two files), and ``snapshot()``."""
    import numpy as np

    def save(state: Any, path: str) -> None:
        if not directory:
            np.save(path, state)
            return
        os.makedirs(path)
        half = len(state) // 2
        np.save(os.path.join(path, "a.npy"), state[:half])
        np.save(os.path.join(path, "b.npy"), state[half:])

    def snapshot() -> Callable[[str], None]:
        copy = weights.copy()
        return lambda path: save(copy, path)

    return (lambda path: save(weights, path)), snapshot


def _core(root: str, ready: Any, seed: int, *, async_save: bool, directory: bool) -> None:
    import numpy as np

    from ckptcore import Checkpointer

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=CORE_SIZE)
    write, snapshot = _writers(weights, directory)
    io: dict[str, Any] = {"snapshot": snapshot} if async_save else {"write": write}
    best_name, every_name = ("best_dir", "d-{epoch:05d}") if directory else ("best.npy", "w-{epoch:05d}.npy")
    common = {"monitor": "loss", "async_save": async_save, **io}
    best = Checkpointer(os.path.join(root, "best", best_name), save_best_only=True,
                        resume=_resumable(os.path.join(root, "best")), **common)
    every = Checkpointer(os.path.join(root, "every", every_name), keep_last=3,
                         resume=_resumable(os.path.join(root, "every")), **common)
    latest = every.manifest.latest(every.run_id)
    start = latest.epoch if latest is not None else 0  # resumed: the epoch after the last saved
    for epoch in range(start, 10**9):
        weights += rng.normal(scale=0.01, size=CORE_SIZE)
        logs = {"loss": _loss(rng, epoch)}
        best.on_epoch_end(epoch, logs)
        every.on_epoch_end(epoch, logs)
        if epoch == start + 1:
            best.wait()
            every.wait()
            ready.set()


def _prune(root: str, ready: Any, seed: int) -> None:
    import numpy as np

    from ckptcore import Checkpointer
    from ckptcore.cli import app

    rng = np.random.default_rng(seed)
    state = rng.normal(size=1 << 12)
    roots = []
    for sub, name, directory in (("files", "w-{epoch:05d}.npy", False), ("dirs", "d-{epoch:05d}", True)):
        def write(path: str, directory: bool = directory) -> None:
            if not directory:
                np.save(path, state)
                return
            os.makedirs(path)
            for i in range(PRUNE_FILES):
                np.save(os.path.join(path, f"part-{i}.npy"), state)

        ck = Checkpointer(os.path.join(root, sub, name), write=write, monitor="loss")
        for epoch in range(PRUNE_CHECKPOINTS):
            ck.on_epoch_end(epoch, {"loss": _loss(rng, epoch)})
        ck.close()
        roots.append(os.path.join(root, sub))
    rng.shuffle(roots)
    sys.stdout = open(os.devnull, "w")  # prune prints each deletion
    ready.set()
    for sub in roots:
        app(["prune", sub, "--keep-last", "1"], standalone_mode=False)
    ready.clear()  # done before the kill: the parent counts it
    while True:
        os.sched_yield()


def keras_model(seed: int) -> Any:
    """The small Keras model the Keras targets train (and the check loads weights into)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    return model


def _keras(root: str, ready: Any, seed: int, *, mode: str) -> None:
    import keras
    import numpy as np

    model = keras_model(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = x[:, :1] * 2.0 + 0.1 * rng.normal(size=(256, 1)).astype("float32")
    best = os.path.join(root, "best", "best.keras")
    every = os.path.join(root, "every", "w-{epoch:04d}.weights.h5")
    if mode == "native":
        for sub in ("best", "every"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True),
            keras.callbacks.ModelCheckpoint(every, monitor="loss", save_weights_only=True),
        ]
    else:
        from ckptcore.adapters.keras import ModelCheckpoint

        async_save = mode == "async"
        callbacks = [
            ModelCheckpoint(best, monitor="loss", save_best_only=True, async_save=async_save,
                            resume=_resumable(os.path.dirname(best))),
            ModelCheckpoint(every, monitor="loss", save_weights_only=True, keep_last=3, async_save=async_save),
        ]

    class Ready(keras.callbacks.Callback):
        ended = 0  # epochs this process ran: a resumed fit starts past epoch 0

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.ended += 1
            if self.ended == 2:
                for cb in callbacks:
                    if getattr(cb, "checkpointer", None) is not None:
                        cb.checkpointer.wait()
                ready.set()

    model.fit(x, y, batch_size=64, epochs=10**6, verbose=0, callbacks=[*callbacks, Ready()])


#: scenario -> (target, keyword arguments, needs Keras)
TARGETS: dict[str, tuple[Callable[..., None], dict[str, Any], bool]] = {
    "file-sync": (_core, {"async_save": False, "directory": False}, False),
    "file-async": (_core, {"async_save": True, "directory": False}, False),
    "dir-sync": (_core, {"async_save": False, "directory": True}, False),
    "dir-async": (_core, {"async_save": True, "directory": True}, False),
    "prune": (_prune, {}, False),
    "keras-sync": (_keras, {"mode": "sync"}, True),
    "keras-async": (_keras, {"mode": "async"}, True),
    "keras-native": (_keras, {"mode": "native"}, True),
}


def run(scenario: str, root: str, ready: Any, seed: int) -> None:
    """Run ``scenario``'s target in this (child) process until it is killed."""
    target, kwargs, _ = TARGETS[scenario]
    target(root, ready, seed, **kwargs)
