"""The hidden layout of a local root: staging, moved-aside copies, the trash of deletes.

Every save is written under ``ROOT/.ckptcore/staging/<id>/<final name>`` (same file system as
the final name, so a rename commits it; the final name stays the last component, so writers
that check the suffix accept it, and names up to 255 bytes work). Making or removing
``<id>`` changes only ``staging/``'s times; ``.ckptcore`` itself is made once (see
:mod:`ckptcore.layout`).

A staging directory may carry one marker file saying what it holds besides a save:

- ``aside``: the relative path of a directory checkpoint moved aside while its replacement is
  renamed in. A kill between the two renames leaves it; :func:`recover` puts it back when the
  final name is empty, or removes it when the replacement landed. It is never swept by age.
- ``trash``: a checkpoint being deleted (renamed here first, then removed, so a half-deleted
  directory never stays under a final name). :func:`recover` removes what is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
import uuid

from ckptcore.layout import DIR, STAGING_DIR, STATE_DIR, TMP_MARK

__all__ = ["ASIDE", "TRASH", "make_layout", "new_slot", "recover", "remove_tree", "sweep"]

log = logging.getLogger("ckptcore")
ASIDE = "aside"
TRASH = "trash"


def _join(root: str, relpath: str) -> str:
    return os.path.join(root or ".", *relpath.split("/"))


def make_layout(root: str) -> bool:
    """Make ``.ckptcore/state`` and ``.ckptcore/staging`` under ``root``, once.

    Returns:
        Whether ``.ckptcore`` had to be made (a new root, or one whose layout was removed).
    """
    made = not os.path.isdir(_join(root, DIR))
    for relpath in (STATE_DIR, STAGING_DIR):
        os.makedirs(_join(root, relpath), exist_ok=True)
    return made


def new_slot(root: str, marker: str | None = None, content: str = "", durable: bool = True) -> str:
    """Make a fresh ``staging/<id>`` directory (with a marker file); return its path.

    Args:
        root: The checkpoint root.
        marker: The marker's name (:data:`ASIDE`, :data:`TRASH`), if any.
        content: What the marker holds (the relative path of the checkpoint in the slot).
        durable: fsync the marker (a trash slot that only frees space needs not: lost in a
            crash, it is removed as a stale save).
    """
    staging = _join(root, STAGING_DIR)
    os.makedirs(staging, exist_ok=True)
    slot = os.path.join(staging, uuid.uuid4().hex[:16])
    os.mkdir(slot)
    if marker is not None:
        with open(os.path.join(slot, marker), "w", encoding="utf-8") as fh:
            fh.write(content)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    return slot


def remove_tree(path: str) -> None:
    """Remove a file or directory; a missing one is fine; errors are raised."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _marker(slot: str) -> tuple[str, str] | None:
    for name in (ASIDE, TRASH):
        path = os.path.join(slot, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                return name, fh.read()
    return None


def _try_remove(path: str, problems: list[str]) -> bool:
    try:
        remove_tree(path)
        return True
    except OSError as exc:
        problems.append(f"cannot remove {path!r}: {exc}")
        return False


def recover(root: str) -> tuple[list[str], list[str]]:
    """Finish what a killed save or delete left in staging: put moved-aside copies back,
    empty the trash. Call it with the root's lock held.

    Returns:
        ``(done, problems)``: one line per action taken and per thing that could not be done.
    """
    done: list[str] = []
    problems: list[str] = []
    staging = _join(root, STAGING_DIR)
    for name in sorted(os.listdir(staging)) if os.path.isdir(staging) else []:
        slot = os.path.join(staging, name)
        try:
            mark = _marker(slot) if os.path.isdir(slot) and not os.path.islink(slot) else None
        except OSError as exc:
            problems.append(f"cannot read {slot!r}: {exc}")
            continue
        if mark is None:
            continue
        kind, relpath = mark
        copy = os.path.join(slot, relpath.rsplit("/", 1)[-1]) if relpath else ""
        if kind == ASIDE and relpath and os.path.lexists(copy) and not os.path.lexists(_join(root, relpath)):
            try:
                os.replace(copy, _join(root, relpath))
                done.append(f"put {relpath!r} back from {copy!r} (a replace was interrupted)")
            except OSError as exc:
                problems.append(f"cannot put {copy!r} back to {relpath!r}: {exc}")
                continue
        if _try_remove(slot, problems):
            done.append(f"removed {slot!r} ({'a finished replace' if kind == ASIDE else 'an interrupted delete'})")
    return done, problems


def _last_write(path: str) -> float:
    """The newest modification time of a file, or of anything under a directory."""
    try:
        found = os.lstat(path)
        newest = found.st_mtime
        if stat.S_ISDIR(found.st_mode):  # never through a link (os.walk would follow it)
            for dirpath, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
        return newest
    except OSError:
        return time.time()  # vanished or unreadable: treat as in use


def sweep(root: str, max_age: float) -> tuple[list[str], list[str]]:
    """Remove saves a killed writer left in ``staging/`` and stale temporary files in
    ``state/``, untouched for ``max_age`` seconds. Nothing outside ``.ckptcore`` is looked at;
    moved-aside copies are left to :func:`recover`.

    Returns:
        ``(removed, problems)``: the paths removed, and one line per path that could not be.
    """
    cutoff = time.time() - max_age
    removed: list[str] = []
    problems: list[str] = []
    candidates = []
    staging, state = _join(root, STAGING_DIR), _join(root, STATE_DIR)
    for folder, pick in ((staging, lambda n: True), (state, lambda n: n.startswith(TMP_MARK))):
        try:
            candidates += [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if pick(n)]
        except OSError:
            continue
    for path in candidates:
        try:
            if os.path.isdir(path) and _marker(path) is not None and _marker(path)[0] == ASIDE:  # type: ignore[index]
                continue
        except OSError:
            pass
        if _last_write(path) < cutoff and _try_remove(path, problems):
            removed.append(path)
    return removed, problems
