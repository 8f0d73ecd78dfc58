"""The Keras 3 adapter: drop-in ``ModelCheckpoint`` and ``WandbModelCheckpoint`` callbacks.

Works with the TensorFlow, JAX and PyTorch backends of Keras 3::

    from ckptcore.adapters.keras import ModelCheckpoint

    model.fit(x, y, validation_split=0.2, callbacks=[
        ModelCheckpoint("ckpt/model-{epoch:02d}.keras", save_best_only=True, keep_last=3),
    ])
"""

from __future__ import annotations

try:
    import keras as _keras  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without keras installed
    from ckptcore.errors import MissingDependencyError

    raise MissingDependencyError(
        f"ckptcore.adapters.keras needs Keras 3 ({exc.name or exc} is not installed); "
        'install it with: pip install "ckptcore[keras]"'
    ) from exc

from ckptcore.adapters.keras.backup import BackupAndRestore
from ckptcore.adapters.keras.callback import EXTRAS, ModelCheckpoint
from ckptcore.adapters.keras.formats import FORMATS
from ckptcore.adapters.keras.loading import load_best, load_latest
from ckptcore.adapters.keras.resume import CheckpointMismatchError, Restored, restore_weights
from ckptcore.adapters.keras.wandb_callback import WandbModelCheckpoint

__all__ = [
    "EXTRAS", "FORMATS", "BackupAndRestore", "CheckpointMismatchError", "ModelCheckpoint", "Restored", "WandbModelCheckpoint",
    "load_best", "load_latest", "restore_weights",
]
