"""``make demo``: train a small Keras model on scikit-learn's digits with ckptcore checkpoints.

Every epoch is saved to local disk and logged to an offline W&B run (``WANDB_MODE=offline``
unless set); retention keeps the three best by validation accuracy. At the end the demo prints
the checkpoint table (the one ``ckptcore ls`` shows), restores the best checkpoint, reports its
accuracy on a held-out test set and prints the ``ckptcore`` commands to look further::

    pip install ".[demo]"          # Keras on JAX, W&B, scikit-learn, the ckptcore command
    KERAS_BACKEND=jax python docs/examples/demo.py [--epochs 8] [--out DIR]

Any Keras backend works (``make demo`` uses JAX, the smallest to install).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # quiet start-up; no effect on tiny models

import keras  # noqa: E402
import wandb  # noqa: E402
from rich.console import Console  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from ckptcore.adapters.keras import WandbModelCheckpoint  # noqa: E402
from ckptcore.cli import checkpoint_table  # noqa: E402


def load(samples: int | None) -> tuple:
    """The 1,797 8x8 digits that ship with scikit-learn: 60% train, 20% validation, 20% test."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    if samples:
        x, y = x[:samples], y[:samples]
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=0, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0)
    return x_train, y_train, x_val, y_val, x_test, y_test


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=None, help="use only the first N digits")
    parser.add_argument("--out", default=None, help="output directory (default: a new temporary one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse(argv)
    out = args.out or tempfile.mkdtemp(prefix="ckptcore-demo-")
    os.makedirs(out, exist_ok=True)
    console = Console(soft_wrap=True)  # long paths stay on one line
    started = time.monotonic()
    keras.utils.set_random_seed(0)
    x_train, y_train, x_val, y_val, x_test, y_test = load(args.samples)
    console.print(f"[bold]digits[/]: {len(x_train)} train, {len(x_val)} validation, {len(x_test)} test "
                  f"samples; Keras backend {keras.backend.backend()}; output in {out}")

    run = wandb.init(project="ckptcore-demo", dir=out, config={"epochs": args.epochs})
    checkpoint = WandbModelCheckpoint(
        os.path.join(out, "checkpoints", "digits-{epoch:02d}-{val_accuracy:.3f}.keras"),
        monitor="val_accuracy",   # resolves to mode "max"
        keep_best=3,              # every epoch is saved; retention keeps the three best
    )
    model = build_model()
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
              batch_size=32, callbacks=[checkpoint], verbose=2)
    artifact = checkpoint.artifact_name  # run_<id>_model of the active run
    run.finish()

    engine = checkpoint.checkpointer
    console.print()
    console.print(checkpoint_table(engine.manifest, title=f"checkpoints in {engine.template.root}"))
    run_dir = os.path.dirname(run.dir)
    console.print(f"W&B run {run.id} ({os.environ['WANDB_MODE']}): {args.epochs} versions of artifact "
                  f"{artifact!r}, aliased latest, epoch_N and best on improvement; "
                  f"upload later with: wandb sync {run_dir}")

    best = engine.best()
    restored = keras.saving.load_model(best)
    _, accuracy = restored.evaluate(x_test, y_test, verbose=0)
    console.print(f"\nrestored the best checkpoint [bold]{os.path.basename(best)}[/]: "
                  f"test accuracy [bold]{accuracy:.3f}[/] ({time.monotonic() - started:.1f}s)")
    command, root = cli_command(), shlex.quote(engine.template.root)
    console.print(f"try: {command} ls {root}  |  {command} verify {root}")
    return float(accuracy)


def cli_command() -> str:
    """How to run ``ckptcore`` from a fresh shell in this directory: the bare name when it is on
    PATH, else the console script next to this Python (``.venv/bin/ckptcore`` after
    ``make demo``), else ``python -m ckptcore``."""
    here = os.path.join(os.path.dirname(sys.executable), "ckptcore")
    found = shutil.which("ckptcore")
    if found and os.path.exists(here) and os.path.samefile(found, here):
        return "ckptcore"
    if os.path.exists(here):
        relative = os.path.relpath(here)
        return shlex.quote(relative if not relative.startswith("..") else here)
    return f"{shlex.quote(sys.executable)} -m ckptcore"


if __name__ == "__main__":
    main()
