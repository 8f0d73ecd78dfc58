"""One process of a JAX job with keras.distribution.ModelParallel: a kernel sharded across processes.

Usage: ``WORKER_ID=i python jax_model_parallel_worker.py ROOT PORT``. First a checkpoint that
would go through Keras's own save (``async_save=False``) is refused before the first epoch;
then the non-blocking snapshot gathers the sharded kernel from both processes, the chief
commits it, and both processes load it back into the same layout.
"""

from __future__ import annotations

import hashlib
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
ROOT, PORT, RANK = sys.argv[1], int(sys.argv[2]), int(os.environ["WORKER_ID"])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=RANK,
                           initialization_timeout=120)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from launch import write_report  # noqa: E402

from ckptcore.adapters.keras import ModelCheckpoint, load_latest  # noqa: E402
from ckptcore.adapters.keras.snapshot import host_array  # noqa: E402
from ckptcore.errors import ConfigError  # noqa: E402


def full_digest(model) -> str:
    """sha256 of every variable's whole value (sharded ones gathered: a collective)."""
    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(host_array(v)[0]).tobytes())
    return h.hexdigest()


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="d1"),
                              keras.layers.Dense(1, activation="sigmoid", name="d2")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model


def main() -> None:
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices=jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*d1.*kernel"] = (None, "model")  # keys are regexes
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32").reshape(-1, 1)
    model = build()
    kernel = model.get_layer("d1").kernel.value
    sharded = not kernel.is_fully_addressable and not kernel.is_fully_replicated
    refused, epochs_run = None, []
    track = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    try:
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[
            ModelCheckpoint(ROOT + "/sync-{epoch}.keras", monitor="loss", async_save=False), track])
    except ConfigError as exc:
        refused = str(exc)
    checkpoint = ModelCheckpoint(ROOT + "/m-{epoch}.keras", monitor="loss", keep_last=1)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[checkpoint])
    trained = full_digest(model)
    multihost_utils.sync_global_devices("checkpoint committed")
    loaded = load_latest(ROOT)
    lk = loaded.get_layer("d1").kernel.value
    write_report(rank=RANK, chief=checkpoint.checkpointer.is_chief, sharded=sharded, refused=refused,
                 epochs_before_refusal=epochs_run, trained=trained, loaded=full_digest(loaded),
                 loaded_sharded=not lk.is_fully_addressable and not lk.is_fully_replicated,
                 kept=[e.path for e in checkpoint.checkpointer.manifest.entries])


if __name__ == "__main__":
    main()
