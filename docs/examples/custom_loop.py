"""A custom training loop that drives ckptcore's ``ModelCheckpoint`` through ``CallbackList``.

The loop runs batches with ``model.train_on_batch`` (works on the TensorFlow, JAX and PyTorch
backends of Keras 3) and calls the hooks itself, the way ``model.fit`` would. It needs Keras
with a backend, scikit-learn (for its digits) and, to look at the result, the ``cli`` extra::

    pip install ".[keras,jax,cli]" scikit-learn
    KERAS_BACKEND=jax python docs/examples/custom_loop.py --epochs 5 --out checkpoints/custom
    ckptcore ls checkpoints/custom
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # quiet start-up; no effect on tiny models

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from ckptcore.adapters.keras import ModelCheckpoint  # noqa: E402


def load(samples: int) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8x8 digits (shipped with the package), scaled and split 80/20."""
    x, y = load_digits(return_X_y=True)
    x, y = (x[:samples] / 16.0).astype("float32"), y[:samples]
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> str | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EXAMPLE_EPOCHS", 5)))
    parser.add_argument("--samples", type=int, default=int(os.environ.get("EXAMPLE_SAMPLES", 1797)))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="checkpoints/custom")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    x_train, y_train, x_val, y_val = load(args.samples)
    model = build_model()
    steps = -(-len(x_train) // args.batch_size)

    checkpoint = ModelCheckpoint(
        os.path.join(args.out, "digits-{epoch:02d}-{val_accuracy:.3f}.keras"),
        monitor="val_accuracy",   # "accuracy" resolves to mode "max"
        save_best_only=True,
        keep_last=2,              # of the improvements, keep the latest two
    )
    callbacks = keras.callbacks.CallbackList(
        [checkpoint], model=model, add_history=True, epochs=args.epochs, steps=steps, verbose=0
    )

    callbacks.on_train_begin()
    for epoch in range(args.epochs):
        callbacks.on_epoch_begin(epoch)
        order = np.random.default_rng(epoch).permutation(len(x_train))
        for step in range(steps):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            callbacks.on_train_batch_begin(step)
            logs = model.train_on_batch(x_train[idx], y_train[idx], return_dict=True)
            callbacks.on_train_batch_end(step, logs)
        val = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
        logs = {**logs, **{f"val_{name}": value for name, value in val.items()}}
        callbacks.on_epoch_end(epoch, logs)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {logs['loss']:.4f}  "
              f"val_accuracy {logs['val_accuracy']:.4f}")
    callbacks.on_train_end()   # finishes pending saves and writes the manifest

    best = checkpoint.checkpointer.best()
    print(f"\nbest checkpoint: {best}")
    if best is not None:
        restored = keras.saving.load_model(best)
        _, accuracy = restored.evaluate(x_val, y_val, verbose=0)
        print(f"restored model's val_accuracy: {accuracy:.4f}")
    return best


if __name__ == "__main__":
    main()
