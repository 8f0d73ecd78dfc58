"""Committing one checkpoint: write into staging, commit to every backend, record, prune.

The order is what keeps a reader safe: the primary backend makes the checkpoint visible under
its final name only when it is complete; secondary backends copy the committed checkpoint; the
manifest is written after the files it lists; files that retention prunes are deleted only after
a manifest without them has been written. A checkpoint that replaces one under the same name
(a fixed file name) is first withdrawn from the manifest, so a crash between the replace and the
next manifest write never leaves the manifest vouching for bytes that are gone.

Backend calls are retried on transient faults (:mod:`ckptcore.retry`). A backend that still
fails is skipped for the rest of that save; each secondary backend's manifest lists only the
checkpoints that backend holds.

Several runs may share a root (a fixed ``best.keras`` callback beside an ``m-{epoch}.keras``
one): each manifest write re-reads the stored manifest and merges
(:func:`ckptcore.manifest.merge_manifests`), this run's entries from memory, other runs' from
the stored copy, under a per-location lock within the process. Across processes two writers
that read before either writes each lack the other's newest entry until that run's next write.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from ckptcore.digest import written_digest
from ckptcore.errors import CheckpointSaveError, ForeignManifestError, ManifestError, StorageError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry, merge_manifests
from ckptcore.modes import Direction
from ckptcore.retention import RetentionPolicy
from ckptcore.retry import BackendRetries, RetryPolicy

__all__ = ["Committer", "live_runs", "load_manifest", "validate_manifest"]

log = logging.getLogger("ckptcore")
_LOCATION_LOCKS: dict[str, threading.Lock] = {}
_LOCATION_LOCKS_GUARD = threading.Lock()
_LIVE_RUNS: dict[str, set[str]] = {}  # manifest location -> run ids of open Committers


def live_runs(location: str) -> set[str]:
    """Run ids of the open Committers of this process on the manifest at ``location``."""
    with _LOCATION_LOCKS_GUARD:
        return set(_LIVE_RUNS.get(location, ()))


def _location_lock(location: str) -> threading.Lock:
    """The lock serialising read-merge-write of the manifest at ``location`` in this process."""
    with _LOCATION_LOCKS_GUARD:
        return _LOCATION_LOCKS.setdefault(location, threading.Lock())


def _discard(backend: Any, staged: str) -> None:
    """Remove a staged copy, best effort: a failure here must not hide the save's outcome."""
    try:
        backend.discard(staged)
    except OSError as exc:
        log.warning("could not remove the staged copy %r: %s", staged, exc)


def load_manifest(backend: Any, retry: RetryPolicy | None = None) -> Manifest | None:
    """Read and validate the manifest of ``backend``; None when there is none.

    Args:
        backend: The backend whose root holds the manifest.
        retry: How transient faults are retried (default: no retries).

    Raises:
        ManifestError: The stored manifest does not parse or validate.
        StorageError: It could not be read (the storage is unreachable, say); names where.
    """
    location = backend.locate(MANIFEST_NAME)
    policy = retry or RetryPolicy(retries=0)
    try:
        data = policy.call(f"reading {location}", backend.read_bytes, MANIFEST_NAME)
    except (FileNotFoundError, NotADirectoryError):  # no root yet, or a file where it would be
        return None
    except Exception as exc:  # noqa: BLE001 - a client's own errors (botocore) are not OSErrors
        raise StorageError(f"cannot read {location}: {type(exc).__name__}: {exc}") from exc
    return Manifest.from_json(data, source=location)


class Committer:
    """Owns the manifest and runs the commit pipeline; safe to call from the writer thread.

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
        # Paths whose entry (or absence) this run decides even if another run wrote them:
        # one being replaced (withdrawn), or another run's entry put back after a failed replace.
        self._owned: set[str] = set()
        # (backend name, path) of pruned checkpoints not deleted yet: retried at later saves.
        self._undeleted: list[tuple[str, str]] = []
        # Per backend, the paths its manifest listed when this run last wrote it.
        self._stored: dict[str, set[str]] = {}
        self._location = self.primary.locate(MANIFEST_NAME)
        with _LOCATION_LOCKS_GUARD:
            _LIVE_RUNS.setdefault(self._location, set()).add(run_id)

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

    def save(self, relpath: str, write: Callable[[str], object], entry: ManifestEntry) -> ManifestEntry:
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
        withdrawn, down = None, set()
        try:
            written = write(staged)
            if not os.path.exists(staged):
                # A bug of the write function, not a storage fault: never just a warning.
                raise ValueError(
                    f"the write function wrote nothing to {staged!r}; it must write to exactly "
                    "the path it is given (np.save, for one, appends '.npy' to other names)"
                )
            entry.size, entry.sha256 = written_digest(written, staged)
            withdrawn, down = self._withdraw(relpath)
            location = self._commit_primary(staged, relpath, entry)
        except BaseException as exc:
            _discard(primary, staged)
            if withdrawn is not None:
                self._restore(*withdrawn)
            if isinstance(exc, CheckpointSaveError) or not isinstance(exc, Exception):
                raise
            raise CheckpointSaveError(relpath, f"{type(exc).__name__}: {exc}") from exc
        entry.backends = [primary.name]
        # A remote primary uploads and leaves the staged copy: the others copy that local file,
        # not the URL. A local primary moved it to ``location``.
        source = staged if os.path.lexists(staged) else location
        try:
            failures = [f"{name} (manifest not writable)" for name in sorted(down)]
            failures += self._replicate(source, relpath, entry, down)
        finally:
            _discard(primary, staged)
        failures += [f"{name} (manifest not writable)" for name in sorted(self._record(entry, down))]
        if failures:
            raise CheckpointSaveError(
                relpath,
                "committed to " + ", ".join(entry.backends) + " but failed on " + "; ".join(failures),
                partial=True,
            )
        return entry

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
        return self._calls.call(primary.name, f"committing {relpath!r} on {primary.name}", primary.commit,
                                staged, relpath, info, policy=policy)

    def _withdraw(self, relpath: str) -> tuple[tuple[int, ManifestEntry] | None, set[str]]:
        """Drop the entry about to be replaced and write the manifest before the replace.

        Returns:
            ``(index, entry)`` to restore if the commit fails (None when nothing was listed),
            and the secondary backends whose manifest could not be written.
        """
        with self.lock:
            old = self.manifest.get(relpath)
            if old is None:
                return None, set()
            index = self.manifest.entries.index(old)
            self.manifest.remove(relpath)
            self._owned.add(relpath)
            down = self.write_manifest()
            if self.primary.name in down:
                self.manifest.entries.insert(index, old)
                self._owned.discard(relpath)
                raise StorageError(f"could not update the manifest on {self.primary.name} before replacing {relpath!r}")
        return (index, old), down

    def _restore(self, index: int, old: ManifestEntry) -> None:
        """Put back an entry withdrawn for a commit that failed: its files are untouched."""
        with self.lock:
            if self.manifest.get(old.path) is None:
                self.manifest.entries.insert(min(index, len(self.manifest.entries)), old)
            if not self.write_manifest() and old.run_id != self.run_id:
                self._owned.discard(old.path)  # stored again: the other run's copy rules it now

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
                log.error("checkpoint %r: backend %s failed: %s", relpath, backend.name, exc)
                failures.append(f"{backend.name} ({type(exc).__name__}: {exc})")
                down.add(backend.name)
        return failures

    def _record(self, entry: ManifestEntry, down: set[str]) -> set[str]:
        """Add ``entry``, write the manifest, prune; return where the manifest was not written."""
        with self.lock:
            self.manifest.add(entry)
            self._owned.discard(entry.path)
            # A checkpoint keep_best cannot rank (no finite monitored value) is not pruned by
            # its own save: it stays until the next one.
            scored = entry.monitor_value is not None and math.isfinite(entry.monitor_value)
            pruned = self.retention.select_deletions(
                self.manifest.entries, self.mode, {self.run_id},
                self.protected if scored else self.protected | {entry.path},
            )
            for old in pruned:
                self.manifest.remove(old.path)
                self._undeleted.extend((name, old.path) for name in old.backends)
            failed = self.write_manifest(skip=down)
        self._delete_pruned(down | failed)
        return failed

    def _delete_pruned(self, unsafe: set[str]) -> None:
        """Delete pruned checkpoints from each backend whose stored manifest no longer lists them.

        A backend in ``unsafe`` (failed in this save, or its manifest not written) waits for a
        later save, or :meth:`close`, whose manifest write there succeeds.
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
        with self.lock:
            self._undeleted.extend(left)

    def write_manifest(self, skip: Sequence[str] = ()) -> set[str]:
        """Store the tracker/schedule state and merge the manifest into every backend keeping one.

        The primary's manifest is the engine's full record; a secondary backend's lists only
        the checkpoints that reached it. Each write re-reads the stored manifest and keeps
        other runs' entries (see :func:`ckptcore.manifest.merge_manifests`).

        A stored manifest that cannot be read or validated is never silently replaced: it is
        logged as an error and copied aside to ``manifest.json.unreadable-<time>`` first, then
        this run's manifest is written (other runs' entries it held are then in that copy
        only). If the copy cannot be made, nothing is written and the backend counts as failed.

        Args:
            skip: Names of backends not to write to (they failed in this save).

        Returns:
            The names of the backends the manifest could not be written to.
        """
        with self.lock:
            self.manifest.tracker, self.manifest.schedule = self._state()
            failed = set()
            for backend in self.backends:
                if not getattr(backend, "keeps_manifest", False) or backend.name in skip:
                    continue
                view = self.manifest if backend is self.primary else self._view(backend.name)
                try:
                    self._merge_into(backend, view)
                except Exception as exc:  # noqa: BLE001 - one backend must not lose the others
                    log.error("could not write the manifest to %s: %s", backend.name, exc)
                    failed.add(backend.name)
        return failed

    def _merge_into(self, backend: Any, view: Manifest) -> None:
        """Read the manifest stored on ``backend``, merge ``view`` into it and write it back."""
        with _location_lock(backend.locate(MANIFEST_NAME)):
            stored = self._read_stored(backend)
            merged = merge_manifests(view, stored, self.run_id, self._owned)
            self._calls.call(backend.name, f"writing the manifest to {backend.name}", backend.write_bytes,
                             MANIFEST_NAME, merged.to_json().encode())
            self._stored[backend.name] = {e.path for e in merged.entries}
        if backend is self.primary:
            # Another run's newer entry now names a path this run wrote: those bytes are not
            # ours any more, so retention must not delete them.
            kept = {e.path for e in merged.entries}
            for entry in [e for e in self.manifest.entries if e.run_id == self.run_id and e.path not in kept]:
                self.manifest.remove(entry.path)

    def _read_stored(self, backend: Any) -> Manifest | None:
        """The stored manifest; an unreadable one is copied aside first (see write_manifest)."""
        try:
            data = self._calls.call(backend.name, f"reading the manifest of {backend.name}",
                                    backend.read_bytes, MANIFEST_NAME)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return Manifest.from_json(data, source=backend.locate(MANIFEST_NAME))
        except ForeignManifestError:
            raise  # another tool's file: this backend's manifest is not written, nothing moved
        except ManifestError as exc:
            aside = f"{MANIFEST_NAME}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
            log.error("%s; keeping it as %s before writing this run's manifest", exc, backend.locate(aside))
            backend.write_bytes(aside, data)
            return None

    def _view(self, name: str) -> Manifest:
        """The manifest as backend ``name`` holds it: only the entries that reached it."""
        view = self.manifest.model_copy()
        view.entries = [e for e in self.manifest.entries if name in e.backends]
        return view

    def close(self) -> None:
        """Delete what retention could not delete before, where now safe; close every backend."""
        if self._undeleted:
            self._delete_pruned(self.write_manifest())
            for name, path in self._undeleted:
                log.warning("left %r on %s: retention could not delete it", path, name)
        with _LOCATION_LOCKS_GUARD:
            _LIVE_RUNS.get(self._location, set()).discard(self.run_id)
        for backend in self.backends:
            backend.close()


def validate_manifest(manifest: Manifest | None, source: str) -> Manifest:
    """Return ``manifest`` or raise a clear error when there is none."""
    if manifest is None:
        raise ManifestError(f"{source}: no manifest.json found; nothing to resume from")
    return manifest
