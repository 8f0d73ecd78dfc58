"""Embed the ckptcore engine in a training loop without Keras: linear regression in NumPy.

The loop fits ``y = X @ w + b`` by gradient descent and hands ckptcore a function that writes
the parameters. ckptcore decides when to save, names the file, commits it atomically, keeps
the best two and the latest one, and records everything in its manifest (``.ckptcore/state/manifest.json``)::

    python docs/examples/numpy_loop.py --epochs 30 --out checkpoints/numpy
    ckptcore ls checkpoints/numpy
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ckptcore import Checkpointer


def make_data(n: int, features: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A noisy linear problem, split 80/20 into training and validation sets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    true_w = rng.normal(size=features)
    y = x @ true_w + 0.5 + 0.1 * rng.normal(size=n)
    cut = int(n * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def mse(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    return float(np.mean((x @ w + b - y) ** 2))


def main(argv: list[str] | None = None) -> str | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EXAMPLE_EPOCHS", 30)))
    parser.add_argument("--samples", type=int, default=int(os.environ.get("EXAMPLE_SAMPLES", 500)))
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default="checkpoints/numpy")
    args = parser.parse_args(argv)

    x_train, y_train, x_val, y_val = make_data(args.samples, features=5)
    w = np.zeros(x_train.shape[1])
    b = 0.0

    def write(path: str) -> None:
        # ckptcore passes a staging path; the file only appears under its final name once complete.
        with open(path, "wb") as fh:
            np.savez(fh, w=w, b=b)

    with Checkpointer(
        os.path.join(args.out, "linreg-{epoch:03d}-{val_loss:.4f}.npz"),
        write=write,
        monitor="val_loss",   # "loss" names resolve to mode "min"
        keep_best=2,          # the two best checkpoints ...
        keep_last=1,          # ... and the latest one survive retention
    ) as ck:
        for epoch in range(args.epochs):
            error = x_train @ w + b - y_train
            w = w - args.lr * 2 * x_train.T @ error / len(y_train)
            b = b - args.lr * 2 * float(error.mean())
            logs = {"loss": mse(x_train, y_train, w, b), "val_loss": mse(x_val, y_val, w, b)}
            saved = ck.on_epoch_end(epoch, logs)  # epoch is 0-based; file names are 1-based
            print(f"epoch {epoch + 1:3d}  loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}"
                  f"  saved {saved}")

    best = ck.best()
    print(f"\nkept {len(ck.manifest.entries)} checkpoints; best: {best}")
    if best is not None:
        with np.load(best) as saved:
            print(f"restored val_loss: {mse(x_val, y_val, saved['w'], float(saved['b'])):.4f}")
    return best


if __name__ == "__main__":
    main()
