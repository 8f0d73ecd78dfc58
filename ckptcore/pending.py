"""Pending records: a change to a checkpoint is written to the manifest before it is made.

One manifest write per save, made before the checkpoint's rename (or upload), holds the new
checkpoint's digest as a :class:`~ckptcore.manifest.PendingRecord`; checkpoints that retention
prunes move from the entries to delete records in that same write, before they are removed.
So at every instant each file under a final name is *accounted for*: listed by an entry with
its real sha256, or by a pending record for that path holding its sha256 (as ``sha256`` or as
``replaces``), and no entry names a file that is gone.

A record is *settled* by what is really under its path: the new bytes promote its entry; the
old bytes keep the entry they belong to (a kill before the rename of a fixed-name
``best.keras`` keeps the old best listed); nothing drops it. The writing run settles its own
records from what it knows at its next manifest write; the records of a run that is no longer
open are settled when the root is next opened. A delete record whose bytes are still there is
a pruned checkpoint whose removal was interrupted: the settling removes it.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from ckptcore.manifest import Manifest, ManifestEntry, PendingRecord

__all__ = ["Found", "accounted", "delete_record", "settle", "write_record"]

log = logging.getLogger("ckptcore")
#: ``found(path)``: the sha256 under ``path``, None when nothing is there; raises OSError
#: (or any error) when it cannot be told now.
Found = Callable[[str], Optional[str]]


def write_record(entry: ManifestEntry, previous: ManifestEntry | None, best_before: float | None) -> PendingRecord:
    """The record of a save about to be committed under ``entry.path``."""
    return PendingRecord(
        path=entry.path, sha256=entry.sha256, size=entry.size,
        replaces=None if previous is None else previous.sha256, run_id=entry.run_id,
        entry=entry.model_copy(), previous=None if previous is None else previous.model_copy(),
        best_before=best_before,
    )


def delete_record(entry: ManifestEntry, run_id: str) -> PendingRecord:
    """The record of a pruned checkpoint about to be removed."""
    return PendingRecord(path=entry.path, sha256=None, size=entry.size, replaces=entry.sha256,
                         run_id=run_id, previous=entry.model_copy())


def accounted(manifest: Manifest, path: str, sha256: str | None) -> bool:
    """Whether the file under ``path`` with ``sha256`` is accounted for by ``manifest``."""
    if sha256 is None:
        return False
    entry = manifest.get(path)
    if entry is not None and entry.sha256 == sha256:
        return True
    return any(r.path == path and sha256 in (r.sha256, r.replaces) for r in manifest.pending)


def _restore_best(manifest: Manifest, record: PendingRecord) -> None:
    """A dropped best save: the run's stored best goes back to what it was before it."""
    if record.entry is None or not record.entry.is_best:
        return
    for state in (manifest.states.get(record.run_id, {}).get("tracker"), manifest.tracker):
        if isinstance(state, dict) and state.get("best") == record.entry.monitor_value:
            state["best"] = record.best_before


def _apply(manifest: Manifest, record: PendingRecord, sha: str | None) -> bool:
    """Settle one write record by the sha256 found; return whether it was settled."""
    if sha is not None and sha == record.sha256 and record.entry is not None:
        manifest.add(record.entry.model_copy())
        return True
    if sha is not None and sha == record.replaces:
        if record.previous is not None and manifest.get(record.path) is None:
            manifest.add(record.previous.model_copy())
    else:
        listed = manifest.get(record.path)
        if listed is not None and listed.sha256 != sha:
            manifest.remove(record.path)  # the listed bytes are gone
        if sha is not None:
            log.warning("%r holds bytes no manifest record names (sha256 %s); not listed", record.path, sha[:12])
    _restore_best(manifest, record)
    return True


def settle(manifest: Manifest, found: Found, settle_run: Callable[[str], bool]) -> tuple[bool, list[PendingRecord]]:
    """Settle the pending records of the runs ``settle_run`` accepts (runs no longer open).

    Args:
        manifest: Changed in place.
        found: Tells the sha256 under a path (see :data:`Found`).
        settle_run: Whether the records of a run id may be settled here.

    Returns:
        ``(changed, deletions)``: whether ``manifest`` changed, and the delete records whose
        bytes are still there (the caller removes them, then drops the records). A record whose
        path cannot be checked now stays.
    """
    changed, deletions, kept = False, [], []
    for record in manifest.pending:
        if not settle_run(record.run_id):
            kept.append(record)
            continue
        try:
            sha = found(record.path)
        except Exception as exc:  # noqa: BLE001 - unknown for now: the record stays pending
            log.warning("pending record of %r cannot be settled now: %s", record.path, exc)
            kept.append(record)
            continue
        if record.sha256 is None:  # a delete
            if sha is not None and sha == record.replaces and manifest.get(record.path) is None:
                deletions.append(record)
                kept.append(record)
                continue
        else:
            _apply(manifest, record, sha)
        changed = True
    manifest.pending = kept
    return changed or bool(deletions), deletions
