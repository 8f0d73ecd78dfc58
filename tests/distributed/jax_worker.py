"""One process of a JAX job: ``jax.distributed`` on 127.0.0.1 with gloo, Keras DataParallel.

Usage: ``WORKER_ID=i python jax_worker.py ROOT_URL PORT [STORAGE_OPTIONS_JSON]``. Each process feeds
its own shard of the data (``auto_shard_dataset=False``); every process runs the same
ModelCheckpoint, whose role comes from ``jax.process_index()``. With ``RESUME=1`` the callback
has ``resume=True`` and ``fit`` asks for ``EPOCHS`` epochs (default 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
ROOT, PORT, RANK = sys.argv[1], int(sys.argv[2]), int(os.environ["WORKER_ID"])
OPTIONS = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=RANK,
                           initialization_timeout=120)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from launch import write_report  # noqa: E402

from ckptcore.adapters.keras import ModelCheckpoint, load_best, load_latest  # noqa: E402


def weights_digest(model: keras.Model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


class Record(keras.callbacks.Callback):
    """The logs each epoch ends with and the weights then, on this worker."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: list[dict] = []
        self.digests: list[str] = []
        self.epochs: list[int] = []
        self.begin = ""

    def on_train_begin(self, logs=None):
        self.begin = weights_digest(self.model)  # after a resume: the restored weights

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append({k: float(v) for k, v in (logs or {}).items()})
        self.epochs.append(epoch + 1)
        self.digests.append(weights_digest(self.model))


def main() -> None:
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32").reshape(-1, 1)
    xs, ys = x[RANK::2], y[RANK::2]  # this process's shard
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    checkpoint = ModelCheckpoint(ROOT + "/m-{epoch:02d}-{val_loss:.4f}.keras", monitor="val_loss",
                                 keep_best=2, storage_options=OPTIONS, resume=os.environ.get("RESUME") == "1")
    record = Record()
    model.fit(xs[:48], ys[:48], batch_size=8, epochs=int(os.environ.get("EPOCHS", "4")), validation_data=(xs[48:], ys[48:]),
              callbacks=[checkpoint, record], verbose=0)
    engine = checkpoint.checkpointer
    report = dict(rank=RANK, chief=engine.is_chief, logs=record.logs, digests=record.digests,
                  epochs=record.epochs, begin=record.begin,
                  kept=[(e.path, e.epoch) for e in engine.manifest.entries], final=weights_digest(model))
    keras.distribution.set_distribution(None)  # load on this process alone
    if engine.is_chief:
        best = engine.manifest.best(engine.run_id)
        report["best_epoch"] = best.epoch
        report["loaded_best"] = weights_digest(load_best(ROOT, storage_options=OPTIONS) if OPTIONS
                                               else load_best(ROOT))
        report["loaded_latest"] = weights_digest(load_latest(ROOT, storage_options=OPTIONS) if OPTIONS
                                                 else load_latest(ROOT))
    write_report(**report)


if __name__ == "__main__":
    main()
