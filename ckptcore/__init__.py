"""ckptcore: a framework-agnostic checkpoint engine for training runs.

The core is pure Python (standard library and pydantic). Framework adapters live in
``ckptcore.adapters`` and storage backends in ``ckptcore.backends``; neither is imported here.
"""

from ckptcore.config import CheckpointConfig
from ckptcore.distributed import Role, is_chief, role_from_env
from ckptcore.engine import Checkpointer
from ckptcore.errors import (
    BackendNotFoundError,
    BucketNotFoundError,
    CheckpointSaveError,
    CheckpointSaveWarning,
    CkptcoreError,
    ConfigError,
    ForeignManifestError,
    ManifestError,
    MissingDependencyError,
    MissingKeyError,
    MonitorError,
    StorageError,
    StorageTimeoutError,
    TemplateError,
    UnsafePathError,
)
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ckptcore.modes import MAX_NAMES, MIN_NAMES, resolve_mode
from ckptcore.resume import RESUME_STATE, ResumePoint, latest_checkpoint
from ckptcore.retention import RetentionPolicy
from ckptcore.schedule import SaveSchedule
from ckptcore.template import FilepathTemplate, split_root
from ckptcore.tracker import BestTracker
from ckptcore.writer import BackgroundWriter

__version__ = "0.1.0"

__all__ = [
    "MANIFEST_NAME",
    "MAX_NAMES",
    "MIN_NAMES",
    "RESUME_STATE",
    "BackendNotFoundError",
    "BackgroundWriter",
    "BucketNotFoundError",
    "BestTracker",
    "CheckpointConfig",
    "CheckpointSaveError",
    "CheckpointSaveWarning",
    "Checkpointer",
    "CkptcoreError",
    "ConfigError",
    "FilepathTemplate",
    "ForeignManifestError",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "MissingDependencyError",
    "MissingKeyError",
    "MonitorError",
    "ResumePoint",
    "RetentionPolicy",
    "Role",
    "SaveSchedule",
    "StorageError",
    "StorageTimeoutError",
    "TemplateError",
    "UnsafePathError",
    "__version__",
    "is_chief",
    "latest_checkpoint",
    "resolve_mode",
    "role_from_env",
    "split_root",
]
