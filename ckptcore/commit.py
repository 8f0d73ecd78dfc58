"""Committing one checkpoint: write into staging, record it as pending, commit, prune.

The order is what keeps the manifest true at every instant (see :mod:`ckptcore.pending`):

1. the checkpoint is written into the primary backend's staging and hashed;
2. one manifest write per backend, under the root's lock: the new checkpoint as a pending
   record (its digest, and the digest it replaces), the checkpoints retention prunes moved
   from the entries to delete records;
3. the primary commits (a rename on local disk, an upload elsewhere), then the secondary
   backends copy it; a call that failed is checked against what is really stored (an upload
   that landed counts as saved);
4. in memory the record becomes an entry; the pruned checkpoints are removed (local disk:
   moved into staging's trash first). The next manifest write (the next save, or close)
   stores that; a kill before it is settled when the root is next opened.

A save that reached no backend writes the manifest again without its record. Backend calls
are retried (:mod:`ckptcore.retry`); a secondary backend's manifest lists what it holds.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import replace
from typing import Any, Callable, Sequence

from ckptcore.audit import holds
from ckptcore.digest import written_digest
from ckptcore.errors import CheckpointSaveError, StorageError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry, PendingRecord, merge_manifests
from ckptcore.modes import Direction
from ckptcore.pending import delete_record, write_record
from ckptcore.retention import RetentionPolicy
from ckptcore.retry import BackendRetries, RetryPolicy
from ckptcore.store import (
    claim_run, forget_lost, live_runs, load_manifest, merge_write, register_run, unregister_run,
)

__all__ = ["Committer", "live_runs", "load_manifest"]

log = logging.getLogger("ckptcore")


def _discard(backend: Any, staged: str) -> None:
    """Remove a staged copy, best effort: a failure here must not hide the save's outcome."""
    try:
        backend.discard(staged)
    except OSError as exc:
        log.warning("could not remove the staged copy %r: %s", staged, exc)


class Committer:
    """Owns the manifest and runs the commit pipeline; safe to call from the writer thread.

    Attributes:
        claims_runs: Whether it marks its run open on the root (see :mod:`ckptcore.pending`).

    Args:
        backends: Primary backend first, then secondary ones.
        retention: The retention policy.
        mode: Resolved monitor direction.
        run_id: This engine session's id.
        state: Returns the tracker and schedule state to store in the manifest.
        manifest: The existing manifest to extend, if any.
        protected: Checkpoint paths retention must never delete.
        retry: How backend calls are retried on transient faults.
    """

    claims_runs = True

    def __init__(
        self,
        backends: Sequence[Any],
        retention: RetentionPolicy,
        mode: Direction,
        run_id: str,
        state: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
        manifest: Manifest | None = None,
        protected: Sequence[str] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.backends = list(backends)
        self._calls = BackendRetries(retry or RetryPolicy())
        self.retention = retention
        self.mode = mode
        self.run_id = run_id
        self._state = state
        self.protected = set(protected)
        self.manifest = manifest or Manifest()
        if run_id not in self.manifest.runs:
            self.manifest.runs.append(run_id)
        self.lock = threading.RLock()
        # The stored best is always a committed checkpoint's: the tracker may already hold
        # the value of a save still in flight.
        self._best = state()[0].get("best")
        # (backend name, path) of pruned checkpoints not deleted yet: retried at later saves.
        self._undeleted: list[tuple[str, str]] = []
        self.on_deleted: Callable[[str, str], None] = lambda name, path: None  # (backend, path) deleted
        # Per backend, the paths its manifest listed when this run last wrote it.
        self._stored: dict[str, set[str]] = {}
        self._dirty = False
        self._errors: dict[str, str] = {}  # per backend, why its last manifest write failed
        self._location = self.primary.locate(MANIFEST_NAME)
        register_run(self._location, run_id)
        self._claim = claim_run(self.primary, run_id) if self.claims_runs else None

    @property
    def retry(self) -> RetryPolicy:
        """How backend calls are retried on transient faults."""
        return self._calls.policy

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._calls.policy = policy

    @property
    def primary(self) -> Any:
        """The backend that stages and commits first."""
        return self.backends[0]

    def save(self, relpath: str, write: Callable[[str], Any], entry: ManifestEntry) -> ManifestEntry:
        """Write one checkpoint through ``write(path)`` and commit it everywhere.

        ``write`` may return the :class:`ckptcore.digest.Digest` it computed while writing;
        otherwise the staged file is read back for its digest.

        Raises:
            CheckpointSaveError: The writer or the primary backend failed (nothing was
                committed), or a secondary backend failed (the others keep the checkpoint and
                the manifest lists where it is).
        """
        primary = self.primary
        try:
            staged = self._calls.call(primary.name, f"staging {relpath!r} on {primary.name}",
                                      primary.stage, relpath, reaches_store=False)
        except OSError as exc:
            raise CheckpointSaveError(relpath, f"cannot stage at {primary!r}: {exc}") from exc
        planned: tuple[PendingRecord, list[ManifestEntry]] | None = None
        try:
            self._written(staged, write(staged), entry)
            planned, down = self._plan(entry)
            location = self._commit_primary(staged, relpath, entry)
        except BaseException as exc:
            _discard(primary, staged)
            entry.backends = []
            if planned is not None:
                with self.lock:  # reached no backend: withdraw the record, store that
                    self._withdraw(*planned)
                    self.write_manifest()
            if isinstance(exc, CheckpointSaveError) or not isinstance(exc, Exception):
                raise
            raise CheckpointSaveError(relpath, f"{type(exc).__name__}: {exc}") from exc
        entry.backends = [primary.name]
        # A remote primary uploads and leaves the staged copy: the others copy that local file,
        # not the URL. A local primary moved it to ``location``.
        source = staged if os.path.lexists(staged) else location
        try:
            failures = [f"{name} (manifest not writable) [{self._errors.get(name, '?')}]" for name in sorted(down)]
            failures += self._replicate(source, relpath, entry, down)
        finally:
            _discard(primary, staged)
        self._committed(entry, *planned, unsafe=down)
        if failures:
            raise CheckpointSaveError(
                relpath,
                "committed to " + ", ".join(entry.backends) + " but failed on " + "; ".join(failures),
                partial=True,
            )
        return entry

    @staticmethod
    def _written(staged: str, result: Any, entry: ManifestEntry) -> None:
        """Check what the write function left and record its size and digest in ``entry``."""
        if not os.path.lexists(staged):
            # A bug of the write function, not a storage fault: never just a warning.
            raise ValueError(
                f"the write function wrote nothing to {staged!r}; it must write to exactly "
                "the path it is given (np.save, for one, appends '.npy' to other names)"
            )
        entry.size, entry.digest = written_digest(result, staged)

    def foreign_directory(self, relpath: str) -> str | None:
        """Why ``relpath`` must not be written locally: a non-empty directory that is no checkpoint.

        Replacing it would delete files ckptcore did not write.
        """
        primary = self.primary
        if getattr(primary, "name", "") != "local" or self.manifest.get(relpath) is not None:
            return None
        path = primary.locate(relpath)
        if os.path.isdir(path) and os.listdir(path):
            return (f"{path!r} is an existing directory that holds files ckptcore did not write; "
                    "allowed: a file path (such as a name inside that directory), or a "
                    "directory this checkpointer wrote before")
        return None

    def _commit_primary(self, staged: str, relpath: str, entry: ManifestEntry) -> str:
        """Commit on the primary, retrying transient faults while the staged copy is there."""
        primary = self.primary
        policy = replace(self.retry, transient=lambda exc: self.retry.transient(exc) and os.path.lexists(staged))
        info = dict(entry.model_dump())
        try:
            return self._calls.call(primary.name, f"committing {relpath!r} on {primary.name}", primary.commit,
                                    staged, relpath, info, policy=policy)
        except Exception as exc:
            if "://" in primary.locate(relpath) and holds(primary, relpath, entry.digest):
                log.warning("committing %r on %s reported %s, but the checkpoint is there", relpath, primary.name, exc)
                return primary.locate(relpath)
            raise

    def _plan(self, entry: ManifestEntry) -> tuple[tuple[PendingRecord, list[ManifestEntry]], set[str]]:
        """Write the manifest before the commit: ``entry`` pending, what it prunes withdrawn.

        Returns:
            ``(record, pruned)`` for :meth:`_committed` or :meth:`_withdraw`, and the
            secondary backends whose manifest could not be written (skipped by this save).

        Raises:
            StorageError: The primary's manifest could not be written (nothing was changed).
        """
        with self.lock:
            previous = self.manifest.get(entry.path)
            entry.backends = [self.primary.name]  # what the record claims, settled on the primary
            record = write_record(entry, previous, self._best)
            candidates = [e for e in self.manifest.entries if e.path != entry.path] + [entry]
            # A checkpoint keep_best cannot rank (no finite monitored value) is not pruned by
            # its own save: it stays until the next one.
            scored = entry.monitor_value is not None and math.isfinite(entry.monitor_value)
            pruned = self.retention.select_deletions(
                candidates, self.mode, {self.run_id}, self.protected if scored else self.protected | {entry.path})
            # Pruned by its own save (keep_best, a worse one): committed, then deleted.
            older = [e for e in pruned if e is not entry]
            for old in older:
                self.manifest.remove(old.path)
            self.manifest.pending += [record, *(delete_record(old, self.run_id) for old in older)]
            down = self.write_manifest(best=entry.monitor_value if entry.is_best else self._best)
            if self.primary.name in down:
                self._withdraw(record, pruned)
                raise StorageError(f"could not write the manifest on {self.primary.name} before "
                                   f"committing {entry.path!r}: {self._errors.get(self.primary.name)}")
        return (record, pruned), down

    def _withdraw(self, record: PendingRecord, pruned: list[ManifestEntry]) -> None:
        """Undo :meth:`_plan` in memory: the save reached no backend."""
        pruned = [old for old in pruned if old.path != record.path]
        paths = {old.path for old in pruned}
        self.manifest.pending = [r for r in self.manifest.pending
                                 if r is not record and not (r.digest is None and r.path in paths)]
        for old in pruned:
            if self.manifest.get(old.path) is None:
                self.manifest.entries.append(old)
        self.manifest.entries.sort(key=lambda e: e.created_at)

    def _committed(self, entry: ManifestEntry, record: PendingRecord, pruned: list[ManifestEntry],
                   unsafe: set[str]) -> None:
        """The primary holds the checkpoint: list it, then remove what it pruned."""
        with self.lock:
            self.manifest.pending = [r for r in self.manifest.pending if r is not record]
            if all(old is not entry for old in pruned):
                self.manifest.add(entry)
            self._dirty = True  # stored as pending: the next write (or close) lists it
            if entry.is_best:
                self._best = entry.monitor_value
            self._undeleted.extend((name, old.path) for old in pruned for name in old.backends)
        self._delete_pruned(unsafe)  # where the manifest was not written, it still lists them

    def _replicate(self, location: str, relpath: str, entry: ManifestEntry, down: set[str]) -> list[str]:
        failures = []
        for backend in self.backends[1:]:
            if backend.name in down:
                continue
            try:
                self._calls.call(backend.name, f"copying {relpath!r} to {backend.name}", backend.put,
                                 location, relpath, dict(entry.model_dump()))
                entry.backends.append(backend.name)
            except Exception as exc:  # noqa: BLE001 - one backend must not lose the others
                if getattr(backend, "keeps_manifest", False) and holds(backend, relpath, entry.digest):
                    log.warning("copying %r to %s reported %s, but the checkpoint is there", relpath, backend.name, exc)
                    entry.backends.append(backend.name)
                    continue
                log.error("checkpoint %r: backend %s failed: %s", relpath, backend.name, exc)
                failures.append(f"{backend.name} ({type(exc).__name__}: {exc})")
                down.add(backend.name)
        return failures

    def _delete_pruned(self, unsafe: set[str]) -> None:
        """Delete pruned checkpoints; the stored manifests already hold them as delete records.

        A backend in ``unsafe`` (its manifest not written) waits for a later save, or
        :meth:`close`, whose manifest write there succeeds.
        """
        with self.lock:
            todo, self._undeleted = self._undeleted, []
        by_name = {b.name: b for b in self.backends if getattr(b, "can_delete", False)}
        left = []
        for name, path in todo:
            backend = by_name.get(name)
            if backend is None or self.manifest.get(path) is not None:
                continue  # nothing to delete there, or the path holds a newer checkpoint now
            if name in unsafe:
                log.warning("not deleting %r from %s now: its manifest still lists it", path, name)
                left.append((name, path))
                continue
            if path in self._stored.get(name, ()):
                continue  # the manifest just written there lists it: another run's checkpoint now
            try:
                self._calls.call(name, f"deleting {path!r} from {name}", backend.delete, path)
            except Exception as exc:  # noqa: BLE001 - pruning is best effort; tried again later
                log.warning("could not delete %r from %s: %s", path, name, exc)
                left.append((name, path))
            else:
                self.on_deleted(name, backend.locate(path))
        with self.lock:
            self._undeleted.extend(left)
            waiting = {path for _name, path in self._undeleted}
            self.manifest.pending = [r for r in self.manifest.pending if r.digest is not None or r.path in waiting]

    def write_manifest(self, skip: Sequence[str] = (), best: Any = "committed") -> set[str]:
        """Store the tracker/schedule state and merge the manifest into every backend keeping one.

        The primary's manifest is the engine's full record; a secondary backend's lists only
        the checkpoints that reached it. Each write re-reads the stored manifest under the
        root's lock and keeps other runs' entries (see :func:`ckptcore.manifest.merge_manifests`).

        Args:
            skip: Names of backends not to write to (they failed in this save).
            best: The best value to store (default: that of this run's last committed best).

        Returns:
            The names of the backends the manifest could not be written to.
        """
        with self.lock:
            tracker, self.manifest.schedule = self._state()
            self.manifest.tracker = {**tracker, "best": self._best if best == "committed" else best} \
                if "best" in tracker else tracker
            if gone := forget_lost(self.primary, self.manifest):
                self._undeleted = [(name, path) for name, path in self._undeleted if path not in gone]
            failed, self._dirty = set(), False
            for backend in self.backends:
                if not getattr(backend, "keeps_manifest", False) or backend.name in skip:
                    continue
                view = self.manifest if backend is self.primary else self._view(backend.name)
                try:
                    self._merge_into(backend, view)
                except Exception as exc:  # noqa: BLE001 - one backend must not lose the others
                    log.error("could not write the manifest to %s: %s", backend.name, exc)
                    failed.add(backend.name)
                    self._errors[backend.name] = f"{type(exc).__name__}: {exc}"
        return failed

    def _merge_into(self, backend: Any, view: Manifest) -> None:
        """Read the manifest stored on ``backend``, merge ``view`` into it and write it back."""
        call, what = self._calls.call, f"the manifest of {backend.name}"
        write = backend.write_bytes_if if getattr(backend, "conditional_writes", False) else backend.write_bytes
        merged = merge_write(
            backend, lambda stored: merge_manifests(view, stored, self.run_id, set()),
            read=lambda: call(backend.name, f"reading {what}", backend.read_bytes, MANIFEST_NAME),
            tag=lambda: call(backend.name, f"reading {what} (its version)", backend.tag, MANIFEST_NAME),
            write=lambda *data: call(backend.name, f"writing {what}", write, MANIFEST_NAME, *data))
        self._stored[backend.name] = {e.path for e in merged.entries}
        if backend is self.primary:
            # Another run's newer entry now names a path this run wrote: those bytes are not
            # ours any more, so retention must not delete them.
            kept = {e.path for e in merged.entries}
            for entry in [e for e in self.manifest.entries if e.run_id == self.run_id and e.path not in kept]:
                self.manifest.remove(entry.path)

    def _view(self, name: str) -> Manifest:
        """The manifest as backend ``name`` holds it: only the entries that reached it."""
        view = self.manifest.model_copy()
        view.entries = [e for e in self.manifest.entries if name in e.backends]
        view.pending = [r for r in self.manifest.pending if r.digest is not None or name in (r.previous.backends
                        if r.previous is not None else ())]
        return view

    def flush(self) -> None:
        """Store the manifest with this run's records settled (when a save changed it since the
        last write), then delete what retention could not delete before, where now safe."""
        if self._undeleted or self._dirty:
            self._delete_pruned(self.write_manifest())

    def close(self) -> None:
        """:meth:`flush`, then close every backend."""
        self.flush()
        if self._undeleted:
            for name, path in self._undeleted:
                log.warning("left %r on %s: retention could not delete it", path, name)
        unregister_run(self._location, self.run_id)
        if self._claim is not None:
            self._claim.release()
        for backend in self.backends:
            backend.close()

