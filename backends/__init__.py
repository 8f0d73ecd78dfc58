"""Storage backends: the protocol, the registry and the built-in backends.

``LocalBackend`` is always available. ``FsspecBackend`` (any fsspec URL) and ``WandbBackend``
(W&B Artifacts) are attributes loaded on first access, and import fsspec or the W&B SDK only
when they are used, so ``import ckptcore.backends`` stays light.
"""

from __future__ import annotations

from typing import Any

from ckptcore.backends.base import Backend, BaseBackend, CommitInfo
from ckptcore.backends.local import LocalBackend
from ckptcore.backends.registry import (
    ENTRY_POINT_GROUP,
    available_backends,
    get_backend_class,
    register_backend,
    resolve_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BaseBackend",
    "CommitInfo",
    "FsspecBackend",
    "LocalBackend",
    "WandbBackend",
    "available_backends",
    "get_backend_class",
    "register_backend",
    "resolve_backend",
]

_LAZY = {"FsspecBackend": "fsspec", "WandbBackend": "wandb"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return get_backend_class(_LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
