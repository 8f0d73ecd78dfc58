"""Fixtures for the Keras adapter tests: tiny real models and data, one Keras backend per run.

``make test-keras`` runs this folder once per ``KERAS_BACKEND`` (tensorflow, jax, torch).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras_helpers import N_SAMPLES, build_model  # noqa: E402


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    """A small, learnable binary task: 40 samples (5 batches of 8), 4 features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_SAMPLES, 4)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32").reshape(-1, 1)
    return x, y


@pytest.fixture
def make_model():
    """Factory of fresh compiled models (see :func:`keras_helpers.build_model`)."""
    return build_model
