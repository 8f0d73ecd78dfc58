"""What tests look at in a local root: the visible entries, the manifest, what staging holds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ckptcore.layout import DIR, MANIFEST_NAME, STAGING_DIR, STATE_DIR, TMP_MARK

__all__ = ["leftovers", "manifest_path", "read_manifest", "visible"]


def visible(path: Any) -> list[str]:
    """The sorted names in ``path`` that are not ckptcore's own directory."""
    return sorted(n for n in os.listdir(path) if n != DIR)


def manifest_path(root: Any) -> Path:
    """Where the manifest of the local ``root`` is."""
    return Path(root, *MANIFEST_NAME.split("/"))


def read_manifest(root: Any) -> dict[str, Any]:
    """The stored manifest of ``root`` as JSON."""
    return json.loads(manifest_path(root).read_text())


def leftovers(root: Any) -> list[str]:
    """What a save or delete left: anything in staging, temporary names anywhere.

    The copies a replace or delete handed to this process's reaper are freed first (that is
    deferred by design, not left behind).
    """
    from ckptcore.backends.local_reaper import REAPER

    assert REAPER.drain(timeout=60), "the reaper did not finish within 60 s"
    found = []
    staging = Path(root, *STAGING_DIR.split("/"))
    if staging.is_dir():
        found += [f"{STAGING_DIR}/{n}" for n in os.listdir(staging)]
    for dirpath, dirs, files in os.walk(root):
        if os.path.abspath(dirpath) == os.path.abspath(staging):
            dirs[:] = []
            continue
        found += [os.path.join(dirpath, n) for n in dirs + files if n.startswith(TMP_MARK)]
    state = Path(root, *STATE_DIR.split("/"))
    return sorted(found) if state.parent.is_dir() or found else []
