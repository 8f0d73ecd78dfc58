"""Errors raised by ckptcore.

Every error subclasses a builtin, so ``except ValueError`` or ``except OSError`` keeps working::

    CkptcoreError                      (mixin, catch-all for this library)
    ├── ConfigError(ValueError)        a bad argument, raised at construction
    ├── TemplateError(ValueError)      a malformed filepath template, or a bad value for it
    │   └── MissingKeyError(TemplateError, KeyError)
    │                                  the template names a key the logs do not hold
    ├── MonitorError(ValueError)       a monitored value that is not a real scalar
    ├── ManifestError(ValueError)      a manifest that does not parse or validate
    │   └── ForeignManifestError       another tool's file where ckptcore keeps its manifest
    │                                  (never read or replaced)
    ├── BackendNotFoundError(LookupError)
    │                                  an unknown backend name or URL scheme
    ├── MissingDependencyError(ImportError)
    │                                  an optional dependency is not installed (with install hint)
    └── StorageError(OSError)          a backend failed to commit, read or delete
        ├── BucketNotFoundError(FileNotFoundError)
        │                              a URL's bucket does not exist (raised at construction)
        ├── CheckpointSaveError        a save failed; names the checkpoint
        ├── StorageTimeoutError(TimeoutError)
        │                              storage did not answer within ``storage_timeout``
        └── UnsafePathError            a path below a local root passes through a symbolic link

    CheckpointSaveWarning(UserWarning) a save failed and training goes on
                                       (``on_save_error="warn"``); names the checkpoint
"""

from __future__ import annotations

__all__ = [
    "BackendNotFoundError",
    "BucketNotFoundError",
    "CheckpointSaveError",
    "CheckpointSaveWarning",
    "CkptcoreError",
    "ConfigError",
    "ForeignManifestError",
    "ManifestError",
    "MissingDependencyError",
    "MissingKeyError",
    "MonitorError",
    "StorageError",
    "StorageTimeoutError",
    "TemplateError",
    "UnsafePathError",
]


class CkptcoreError(Exception):
    """Base mixin of every ckptcore error."""


class ConfigError(CkptcoreError, ValueError):
    """An argument is invalid; the message names it, what was given and what is allowed."""


class TemplateError(CkptcoreError, ValueError):
    """A filepath template is malformed or cannot be rendered with the given values."""


class MissingKeyError(TemplateError, KeyError):
    """The template names a key that the logs do not hold.

    Attributes:
        key: The missing key.
        available: The keys that were available.
    """

    def __init__(self, key: str, available: list[str]) -> None:
        self.key = key
        self.available = sorted(available)
        shown = ", ".join(self.available) or "(none)"
        super().__init__(
            f"filepath template needs {{{key}}} but it is not in the logs; available keys: {shown}"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MonitorError(CkptcoreError, ValueError):
    """The monitored value is not a real scalar."""


class ManifestError(CkptcoreError, ValueError):
    """A manifest does not parse or does not validate."""


class ForeignManifestError(ManifestError):
    """Another tool's file where ckptcore keeps its manifest (``.ckptcore/state/manifest.json``):
    ckptcore neither reads nor replaces it. Another tool's ``manifest.json`` directly in the root
    is no concern of ckptcore's (its own files are under ``.ckptcore/``)."""


class BackendNotFoundError(CkptcoreError, LookupError):
    """No backend is registered under a name or URL scheme."""


class MissingDependencyError(CkptcoreError, ImportError):
    """An optional dependency is missing; the message gives the install command."""


class StorageError(CkptcoreError, OSError):
    """A storage backend failed."""


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket (or container) of a URL root does not exist; ckptcore creates none."""


class StorageTimeoutError(StorageError, TimeoutError):
    """Storage did not answer within ``storage_timeout`` seconds (see :mod:`ckptcore.deadline`)."""


class CheckpointSaveError(StorageError):
    """Saving one checkpoint failed.

    Attributes:
        checkpoint: The checkpoint's relative path.
        partial: True when some backends committed it and others did not.
    """

    def __init__(self, checkpoint: str, message: str, *, partial: bool = False) -> None:
        self.checkpoint = checkpoint
        self.partial = partial
        outcome = "was only partly saved" if partial else "was not saved"
        super().__init__(f"checkpoint {checkpoint!r} {outcome}: {message}")

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointSaveWarning(UserWarning):
    """A save failed and training goes on (``on_save_error="warn"``).

    The message names the checkpoint and says why; what other backends committed is kept.
    """


class UnsafePathError(StorageError):
    """A path below a local root passes through (or is) a symbolic link: never followed.

    ``errno`` is ``ELOOP``; ``filename`` is the link found.
    """
