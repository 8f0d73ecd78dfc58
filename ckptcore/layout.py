"""Where ckptcore keeps its own files under a checkpoint root.

Everything ckptcore writes besides the checkpoints lives under one hidden directory, made once
when a root is first opened::

    ROOT/<checkpoints>                        the only visible entries
    ROOT/.ckptcore/                           made once, never changed after
    ROOT/.ckptcore/state/manifest.json        the manifest (:data:`MANIFEST_NAME`)
    ROOT/.ckptcore/state/lock                 the cross-process lock of a local root
    ROOT/.ckptcore/staging/<id>/<final name>  a save being written, a copy moved aside during a
                                              directory replace, or the trash of a delete

Only ``state/`` and ``staging/`` change as checkpoints are saved, so ``.ckptcore`` itself keeps
the time it was made: the newest entry of the root (by ctime or mtime), and the last by name,
is a checkpoint, as the keras.io restore recipes expect. Paths here are ``/``-separated and
relative to the root, like checkpoint paths.
"""

from __future__ import annotations

__all__ = [
    "DIR", "LEGACY_MANIFEST_NAME", "LOCK_NAME", "MANIFEST_NAME", "STAGING_DIR", "STATE_DIR",
    "TMP_MARK", "is_reserved",
]

#: The hidden directory holding everything that is not a checkpoint.
DIR = ".ckptcore"
#: The manifest, the lock and the manifest's temporary files.
STATE_DIR = f"{DIR}/state"
#: Saves being written, moved-aside copies, deletes in progress.
STAGING_DIR = f"{DIR}/staging"
#: The manifest, relative to the root (every backend keeping one uses this name).
MANIFEST_NAME = f"{STATE_DIR}/manifest.json"
#: The lock serialising manifest updates across processes on a local root.
LOCK_NAME = f"{STATE_DIR}/lock"
#: Where ckptcore kept its manifest before this layout; migrated when a root is opened.
LEGACY_MANIFEST_NAME = "manifest.json"
#: The prefix of temporary files (the manifest's, in ``state/``).
TMP_MARK = ".ckpt-tmp-"


def is_reserved(relpath: str) -> bool:
    """Whether ``relpath`` names ckptcore's own directory (or something in it)."""
    return relpath.split("/", 1)[0] == DIR
