"""One worker of a tf.distribute.MultiWorkerMirroredStrategy job (TF_CONFIG on 127.0.0.1).

Keras 3's ``fit`` fails under this strategy before any callback runs, so the job trains with a
custom loop (``strategy.run`` per step) that drives the callbacks through
``keras.callbacks.CallbackList``. Each worker feeds its own shard; the losses in the logs are
reduced over every replica (``strategy.reduce``), so every worker sees the same values.

A second checkpoint in ROOT2 saves through Keras's own ``save_weights`` (``async_save=False``),
best only: every worker calls it, the chief's copy alone is committed.

Usage: ``TF_CONFIG=... python tf_worker.py ROOT ROOT2``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT, ROOT2 = sys.argv[1], sys.argv[2]
INDEX = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
EPOCHS, STEPS, BATCH = 3, 4, 8  # per worker; the global batch is 2 * BATCH
strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
from launch import write_report  # noqa: E402

from ckptcore.adapters.keras import ModelCheckpoint, load_best, load_latest  # noqa: E402
from ckptcore.adapters.keras.distributed import detect_role  # noqa: E402


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32").reshape(-1, 1)
    return x[INDEX::2], y[INDEX::2]  # this worker's shard


def main() -> None:
    x, y = data()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        optimizer = keras.optimizers.Adam(0.05)
        optimizer.build(model.trainable_variables)
        role = detect_role()
        checkpoint = ModelCheckpoint(ROOT + "/m-{epoch:02d}-{val_loss:.4f}.keras", monitor="val_loss",
                                     keep_best=2)
        weights = ModelCheckpoint(ROOT2 + "/w-{epoch:02d}.weights.h5", monitor="val_loss",
                                  save_best_only=True, save_weights_only=True, async_save=False)
    global_batch = BATCH * strategy.num_replicas_in_sync

    def per_replica_loss(xb, yb, training):
        pred = model(xb, training=training)
        return tf.reduce_sum(keras.losses.binary_crossentropy(yb, pred)) / global_batch

    @tf.function
    def train_step(xb, yb):
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = per_replica_loss(xb, yb, True)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(step, args=(xb, yb)), axis=None)

    @tf.function
    def val_step(xb, yb):
        losses = strategy.run(per_replica_loss, args=(xb, yb, False))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    record = []
    callbacks = keras.callbacks.CallbackList([checkpoint, weights], model=model, epochs=EPOCHS, steps=STEPS)
    callbacks.on_train_begin()
    for epoch in range(EPOCHS):
        callbacks.on_epoch_begin(epoch)
        for step in range(STEPS):
            callbacks.on_train_batch_begin(step)
            s = slice(step * BATCH, (step + 1) * BATCH)
            loss = float(train_step(tf.constant(x[s]), tf.constant(y[s])))
            callbacks.on_train_batch_end(step, {"loss": loss})
        val = float(val_step(tf.constant(x[48:56]), tf.constant(y[48:56])))
        logs = {"loss": loss, "val_loss": val}
        callbacks.on_epoch_end(epoch, logs)
        record.append((logs, weights_digest(model)))
    callbacks.on_train_end()
    engine = checkpoint.checkpointer
    report = dict(index=INDEX, chief=engine.is_chief, source=role.source if role else None,
                  logs=[r[0] for r in record], digests=[r[1] for r in record],
                  kept=[(e.path, e.epoch) for e in engine.manifest.entries], final=weights_digest(model),
                  weights_kept=[(e.path, e.epoch) for e in weights.checkpointer.manifest.entries])
    if engine.is_chief:
        report["best_epoch"] = engine.manifest.best(engine.run_id).epoch
        report["loaded_best"] = weights_digest(load_best(ROOT, compile=False))
        report["loaded_latest"] = weights_digest(load_latest(ROOT, compile=False))
        keras.utils.set_random_seed(1)  # a fresh model outside the strategy, other weights
        fresh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        report["weights_best"] = weights_digest(load_best(ROOT2, model=fresh))
    write_report(**report)


if __name__ == "__main__":
    main()
