"""Pending records: a change to a checkpoint is written to the manifest before it is made.

One manifest write per save, made before the checkpoint's rename (or upload), holds the new
checkpoint's digest as a :class:`~ckptcore.manifest.PendingRecord`; checkpoints that retention
prunes move from the entries to delete records in that same write, before they are removed.
So at every instant each file under a final name is *accounted for*: listed by an entry with
its real digest, or by a pending record for that path holding its digest (as ``digest`` or as
``replaces``), and no entry names a file that is gone. Digests name their algorithm (see
:mod:`ckptcore.digest`); the bytes are compared in the algorithm of each digest they are
compared with, so a root kept from SHA-256 days settles like any other.

A record is *settled* by what is really under its path: the new bytes promote its entry; the
old bytes keep the entry they belong to (a kill before the rename of a fixed-name
``best.keras`` keeps the old best listed); nothing drops it. The writing run settles its own
records from what it knows at its next manifest write; the records of a run that is no longer
open are settled when the root is next opened. A delete record whose bytes are still there is
a pruned checkpoint whose removal was interrupted: the settling removes it.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from ckptcore.digest import DEFAULT, algorithm_of
from ckptcore.manifest import Manifest, ManifestEntry, PendingRecord

__all__ = ["Found", "Under", "accounted", "delete_record", "settle", "write_record"]

log = logging.getLogger("ckptcore")
#: ``found(path, algorithm)``: the digest in ``algorithm`` of what is under ``path``, None when
#: nothing is there; raises OSError (or any error) when it cannot be told now.
Found = Callable[[str, str], Optional[str]]


class Under:
    """What is stored under one path, hashed once in each algorithm a comparison will need.

    Args:
        found: See :data:`Found`; called here, so its errors come from the constructor.
        path: The relative path.
        compared: The digests the bytes will be compared with (None ones are skipped).
    """

    def __init__(self, found: Found, path: str, compared: Iterable[Optional[str]]) -> None:
        algorithms = {algorithm_of(d) for d in compared if d is not None} or {DEFAULT}
        self.digests = {algorithm: found(path, algorithm) for algorithm in sorted(algorithms)}

    @property
    def present(self) -> bool:
        """Whether anything is under the path."""
        return any(d is not None for d in self.digests.values())

    def holds(self, expected: Optional[str]) -> bool:
        """Whether the bytes there have digest ``expected`` (never for None)."""
        return expected is not None and self.digests.get(algorithm_of(expected)) == expected

    def shown(self) -> str:
        """One of the digests, shortened, for a log line."""
        value = next((d for d in self.digests.values() if d is not None), "nothing")
        return value[:19]


def write_record(entry: ManifestEntry, previous: ManifestEntry | None, best_before: float | None) -> PendingRecord:
    """The record of a save about to be committed under ``entry.path``."""
    return PendingRecord(
        path=entry.path, digest=entry.digest, size=entry.size,
        replaces=None if previous is None else previous.digest, run_id=entry.run_id,
        entry=entry.model_copy(), previous=None if previous is None else previous.model_copy(),
        best_before=best_before,
    )


def delete_record(entry: ManifestEntry, run_id: str) -> PendingRecord:
    """The record of a pruned checkpoint about to be removed."""
    return PendingRecord(path=entry.path, digest=None, size=entry.size, replaces=entry.digest,
                         run_id=run_id, previous=entry.model_copy())


def accounted(manifest: Manifest, path: str, digest_of: Callable[[str], Optional[str]]) -> bool:
    """Whether what is under ``path`` is accounted for by ``manifest``.

    Args:
        manifest: The manifest.
        path: A relative path that holds something.
        digest_of: ``digest_of(algorithm)``, the digest of the bytes under ``path``.
    """
    entry = manifest.get(path)
    named = [entry.digest] if entry is not None else []
    named += [d for r in manifest.pending if r.path == path for d in (r.digest, r.replaces)]
    return any(d is not None and digest_of(algorithm_of(d)) == d for d in named)


def _restore_best(manifest: Manifest, record: PendingRecord) -> None:
    """A dropped best save: the run's stored best goes back to what it was before it."""
    if record.entry is None or not record.entry.is_best:
        return
    for state in (manifest.states.get(record.run_id, {}).get("tracker"), manifest.tracker):
        if isinstance(state, dict) and state.get("best") == record.entry.monitor_value:
            state["best"] = record.best_before


def _apply(manifest: Manifest, record: PendingRecord, under: Under) -> bool:
    """Settle one write record by what is under its path; return whether it was settled."""
    if under.holds(record.digest) and record.entry is not None:
        manifest.add(record.entry.model_copy())
        return True
    if under.holds(record.replaces):
        if record.previous is not None and manifest.get(record.path) is None:
            manifest.add(record.previous.model_copy())
    else:
        listed = manifest.get(record.path)
        if listed is not None:
            # An entry with no digest matches nothing being there, as two unknowns are equal.
            kept = under.holds(listed.digest) if listed.digest is not None else not under.present
            if not kept:
                manifest.remove(record.path)  # the listed bytes are gone
        if under.present:
            log.warning("%r holds bytes no manifest record names (%s); not listed", record.path, under.shown())
    _restore_best(manifest, record)
    return True


def settle(manifest: Manifest, found: Found, settle_run: Callable[[str], bool]) -> tuple[bool, list[PendingRecord]]:
    """Settle the pending records of the runs ``settle_run`` accepts (runs no longer open).

    Args:
        manifest: Changed in place.
        found: Tells the digest of what is under a path (see :data:`Found`).
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
        listed = manifest.get(record.path)
        try:
            under = Under(found, record.path, (record.digest, record.replaces, listed and listed.digest))
        except Exception as exc:  # noqa: BLE001 - unknown for now: the record stays pending
            log.warning("pending record of %r cannot be settled now: %s", record.path, exc)
            kept.append(record)
            continue
        if record.digest is None:  # a delete
            if under.holds(record.replaces) and manifest.get(record.path) is None:
                deletions.append(record)
                kept.append(record)
                continue
        else:
            _apply(manifest, record, under)
        changed = True
    manifest.pending = kept
    return changed or bool(deletions), deletions
