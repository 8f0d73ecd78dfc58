"""Helpers shared by the Keras adapter tests."""

from __future__ import annotations

import json
import os

import keras
import numpy as np

__all__ = ["BACKEND", "N_SAMPLES", "assert_same_weights", "build_model", "files", "manifest_entries"]

BACKEND = keras.backend.backend()
N_SAMPLES = 40  # 5 batches of 8


def build_model(metrics=("accuracy",), steps_per_execution: int = 1, lr: float = 0.05) -> keras.Model:
    """A compiled two-layer model, seeded, so each test starts from the same weights."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="binary_crossentropy",
        metrics=list(metrics),
        steps_per_execution=steps_per_execution,
    )
    return model


def assert_same_weights(expected: keras.Model, actual: keras.Model) -> None:
    """Every weight array is identical."""
    want, got = expected.get_weights(), actual.get_weights()
    assert len(want) == len(got)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def manifest_entries(root) -> list[dict]:
    """The entries of the manifest under ``root``, in commit order."""
    from ckptcore.manifest import MANIFEST_NAME

    with open(os.path.join(root, *MANIFEST_NAME.split("/")), encoding="utf-8") as fh:
        return json.load(fh)["entries"]


def files(root) -> list[str]:
    """Visible names under ``root`` (ckptcore's own directory left out)."""
    return sorted(n for n in os.listdir(root) if n != ".ckptcore")
