"""One script for the first run and every restart: ``ModelCheckpoint(resume=True)``.

Run it, stop it (Ctrl-C, a kill, a preempted machine), run it again: it restores the weights and
the optimizer state of the latest checkpoint and continues at the next epoch::

    python docs/examples/resume_keras.py --epochs 4 --out ckpt
    python docs/examples/resume_keras.py --epochs 8 --out ckpt    # runs epochs 5-8
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ckptcore.adapters.keras import ModelCheckpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="ckpt")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])

    checkpoint = ModelCheckpoint(
        os.path.join(args.out, "model-{epoch:02d}.keras"),
        monitor="val_loss",
        keep_last=2,               # retention continues across restarts
        resume=True,               # restore the latest checkpoint, continue at the next epoch
        save_on_preemption=True,   # SIGTERM writes a final checkpoint first
        verbose=1,
    )
    history = model.fit(x, y, validation_split=0.25, epochs=args.epochs, batch_size=32,
                        callbacks=[checkpoint], verbose=0)
    ran = [epoch + 1 for epoch in history.epoch]
    print(f"epochs run: {ran}; optimizer iterations: {int(model.optimizer.iterations)}")


if __name__ == "__main__":
    main()
