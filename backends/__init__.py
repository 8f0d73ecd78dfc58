"""Storage backends: the protocol, the registry and the built-in local backend.

Optional backends (fsspec URLs, W&B Artifacts) are imported only when first used.
"""

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
    "LocalBackend",
    "available_backends",
    "get_backend_class",
    "register_backend",
    "resolve_backend",
]
