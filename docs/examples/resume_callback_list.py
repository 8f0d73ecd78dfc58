"""A custom loop resumes through ``keras.callbacks.CallbackList``.

``on_train_begin`` restores the latest checkpoint into the model; ``callback.initial_epoch``
is where the loop continues::

    python docs/examples/resume_callback_list.py --epochs 3 --out ckpt-loop
    python docs/examples/resume_callback_list.py --epochs 6 --out ckpt-loop   # epochs 4-6
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
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="ckpt-loop")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    y = x[:, :1] * 2.0
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")

    checkpoint = ModelCheckpoint(os.path.join(args.out, "step-{epoch}.keras"), monitor="loss", resume=True)
    steps = 4
    callbacks = keras.callbacks.CallbackList([checkpoint], model=model, epochs=args.epochs, steps=steps)
    callbacks.on_train_begin()                         # restores the latest checkpoint, if any
    for epoch in range(checkpoint.initial_epoch, args.epochs):
        callbacks.on_epoch_begin(epoch)
        for batch, (xb, yb) in enumerate(zip(np.split(x, steps), np.split(y, steps))):
            callbacks.on_train_batch_begin(batch)
            loss = float(np.asarray(model.train_on_batch(xb, yb)).ravel()[0])
            callbacks.on_train_batch_end(batch, {"loss": loss})
        callbacks.on_epoch_end(epoch, {"loss": loss})
        print(f"epoch {epoch + 1}: loss {loss:.4f}")
    callbacks.on_train_end()                           # finishes the saves
    print(f"optimizer iterations: {int(model.optimizer.iterations)}")


if __name__ == "__main__":
    main()
