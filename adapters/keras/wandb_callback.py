"""``WandbModelCheckpoint``: ``ModelCheckpoint`` that also logs every checkpoint to W&B."""

from __future__ import annotations

from typing import Any

from ckptcore.adapters.keras.callback import ModelCheckpoint

__all__ = ["WandbModelCheckpoint"]


class WandbModelCheckpoint(ModelCheckpoint):
    """Placeholder until the W&B backend lands."""
