"""What a checkpoint may be called: one place for the path rules and the reserved names.

A checkpoint's path is relative to its root, ``/``-separated, and every component is a real name
(not empty, not ``.`` or ``..``, no ``\\`` or NUL, at most :data:`NAME_MAX` bytes). Some names
belong to ckptcore itself and are never given to a checkpoint (:data:`RESERVED_DIR`,
:data:`TEMP_MARK`, :data:`LEGACY_MANIFEST`); :func:`reserved_reason` says why a path is refused.
"""

from __future__ import annotations

__all__ = [
    "LEGACY_MANIFEST",
    "NAME_MAX",
    "RESERVED_DIR",
    "TEMP_MARK",
    "component_problem",
    "is_reserved_dir",
    "name_bytes",
    "path_problem",
    "reserved_reason",
]

#: The longest file or directory name most file systems accept, in bytes.
NAME_MAX = 255
#: ckptcore's own directory at the top of a root (its manifest, lock and staging live there).
RESERVED_DIR = ".ckptcore"
#: The mark of the temporary names older versions staged beside the target: refused as a
#: checkpoint name (files an old version left with it are left alone).
TEMP_MARK = ".ckpt-tmp-"
#: Where older versions kept the manifest, directly under the root (migrated when opened).
LEGACY_MANIFEST = "manifest.json"


def name_bytes(name: str) -> int:
    """The length of ``name`` in bytes, as the file system counts it (UTF-8)."""
    return len(name.encode("utf-8", "surrogatepass"))


def component_problem(name: str) -> str | None:
    """Why ``name`` cannot be one path component, or None when it can.

    Args:
        name: One file or directory name.
    """
    if name in ("", ".", ".."):
        return f"{name!r} is not a name (empty, '.' or '..')"
    if "/" in name or "\\" in name:
        return f"{name!r} holds a path separator"
    if "\x00" in name:
        return f"{name!r} holds a NUL character"
    if name_bytes(name) > NAME_MAX:
        return f"{name[:40]!r}... is {name_bytes(name)} bytes long, over the limit of {NAME_MAX} bytes"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a relative path below a root, or None when it is.

    Args:
        path: A ``/``-separated path relative to a checkpoint root.
    """
    if "\\" in path:
        return f"{path!r} holds a backslash"
    if path.startswith("/"):
        return f"{path!r} is absolute"
    for part in path.split("/"):
        problem = component_problem(part)
        if problem is not None:
            return f"{path!r} has a bad component: {problem}"
    return None


def is_reserved_dir(name: str) -> bool:
    """Whether ``name`` is :data:`RESERVED_DIR` in any case (one file on a case-insensitive
    file system)."""
    return name.casefold() == RESERVED_DIR


def reserved_reason(path: str) -> str | None:
    """Why ``path`` (relative to the root) is reserved for ckptcore, or None when it is free.

    Args:
        path: A ``/``-separated path relative to a checkpoint root.
    """
    parts = path.split("/")
    # Compared case-insensitively: on macOS's and Windows' default file systems
    # ".CKPTCORE" and "Manifest.json" are ckptcore's own files.
    if is_reserved_dir(parts[0]):
        return f"{RESERVED_DIR!r} at the top of a root is ckptcore's own directory"
    if any(part.startswith(TEMP_MARK) for part in parts):
        return f"names starting with {TEMP_MARK!r} are temporary files, which are swept"
    if path.casefold() == LEGACY_MANIFEST:
        return f"{LEGACY_MANIFEST!r} directly under the root is where older versions keep the manifest"
    return None
