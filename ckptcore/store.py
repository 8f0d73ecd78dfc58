"""Reading, migrating, settling and writing the manifest of one backend.

Every read-merge-write of a stored manifest runs under a lock: within the process one lock per
manifest location, across processes the backend's optional ``lock()`` hook (a local root's
``.ckptcore/state/lock``). Object stores have no such lock (see ``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Iterator

from ckptcore.errors import ForeignManifestError, ManifestError, StorageError
from ckptcore.layout import LEGACY_MANIFEST_NAME, MANIFEST_NAME
from ckptcore.manifest import MANIFEST_FORMAT, Manifest
from ckptcore.pending import delete_record, settle
from ckptcore.retry import RetryPolicy

__all__ = [
    "claim_run", "delete_checkpoints", "forget_lost", "live_runs", "load_manifest", "load_settled",
    "locked", "merge_write", "migrate_legacy", "read_for_merge", "register_run",
    "root_of_manifest", "settle_root", "unregister_run", "validate_manifest",
]

log = logging.getLogger("ckptcore")
_LOCATION_LOCKS: dict[str, threading.RLock] = {}
_GUARD = threading.Lock()
_LIVE_RUNS: dict[str, set[str]] = {}  # manifest location -> run ids of open Committers


def live_runs(location: str) -> set[str]:
    """Run ids of the open Committers of this process on the manifest at ``location``."""
    with _GUARD:
        return set(_LIVE_RUNS.get(location, ()))


def register_run(location: str, run_id: str) -> None:
    """Count ``run_id`` as open on the manifest at ``location`` (see :func:`live_runs`)."""
    with _GUARD:
        _LIVE_RUNS.setdefault(location, set()).add(run_id)


def claim_run(backend: Any, run_id: str) -> Any:
    """Mark ``run_id`` open on ``backend`` (its optional ``claim_run`` hook); the claim, or None."""
    claim = getattr(backend, "claim_run", None)
    if claim is None:
        return None
    try:
        return claim(run_id)
    except Exception as exc:  # noqa: BLE001 - liveness is an aid to settling, not required
        log.warning("could not mark run %s as open on %s: %s", run_id, backend.name, exc)
        return None


def forget_lost(backend: Any, manifest: Manifest) -> set[str]:
    """A local root deleted while in use (the backend set ``recreated``): drop the entries and
    records of the checkpoints that are gone from ``manifest``; return their paths."""
    if not getattr(backend, "recreated", False):
        return set()
    backend.recreated = False
    gone = {e.path for e in manifest.entries if not backend.exists(e.path)}
    for path in gone:
        manifest.remove(path)
    manifest.pending = [r for r in manifest.pending if r.digest is not None or r.path not in gone]
    return gone


def unregister_run(location: str, run_id: str) -> None:
    """Undo :func:`register_run`."""
    with _GUARD:
        _LIVE_RUNS.get(location, set()).discard(run_id)


@contextlib.contextmanager
def locked(backend: Any) -> Iterator[None]:
    """Hold the lock of ``backend``'s manifest: this process's, then the backend's own hook."""
    location = backend.locate(MANIFEST_NAME)
    with _GUARD:
        lock = _LOCATION_LOCKS.setdefault(location, threading.RLock())
    hook: Callable[[], ContextManager[None]] | None = getattr(backend, "lock", None)
    with lock, (hook() if hook is not None else contextlib.nullcontext()):
        yield


def load_manifest(backend: Any, retry: RetryPolicy | None = None) -> Manifest | None:
    """Read and validate the manifest of ``backend``; None when there is none.

    A root that still holds ckptcore's manifest at its old place (``ROOT/manifest.json``) is
    read from there (:func:`migrate_legacy` moves it).

    Raises:
        ManifestError: The stored manifest does not parse or validate.
        StorageError: It could not be read (the storage is unreachable, say); names where.
    """
    policy = retry or RetryPolicy(retries=0)
    for name in (MANIFEST_NAME, LEGACY_MANIFEST_NAME):
        location = backend.locate(name)
        try:
            data = policy.call(f"reading {location}", backend.read_bytes, name)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue  # no root yet, or a file where it would be
        except Exception as exc:  # noqa: BLE001 - a client's own errors (botocore) are not OSErrors
            raise StorageError(f"cannot read {location}: {type(exc).__name__}: {exc}") from exc
        if name == LEGACY_MANIFEST_NAME and not _ours(data):
            return None  # another tool's manifest.json in the root: not ours, left alone
        return Manifest.from_json(data, source=location)
    return None


def validate_manifest(manifest: Manifest | None, source: str) -> Manifest:
    """Return ``manifest`` or raise a clear error when there is none."""
    if manifest is None:
        raise ManifestError(f"{source}: no manifest found; nothing to resume from")
    return manifest


def _ours(data: bytes) -> bool:
    """Whether ``ROOT/manifest.json`` holds a manifest an earlier ckptcore wrote there."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(parsed, dict) and parsed.get("format", MANIFEST_FORMAT if "entries" in parsed else None) \
        == MANIFEST_FORMAT


def root_of_manifest(location: str) -> str:
    """The root a manifest path or URL belongs to (``ROOT/.ckptcore/state/manifest.json``, or
    the old ``ROOT/manifest.json``); any other location is a root already."""
    trimmed = location.rstrip("/")
    for name in (MANIFEST_NAME, LEGACY_MANIFEST_NAME):
        if trimmed == name:
            return ""
        if trimmed.endswith("/" + name):
            return trimmed[: -len(name) - 1]
    if trimmed.endswith(".json"):
        return trimmed.rsplit("/", 1)[0] if "/" in trimmed else ""
    return location


def load_settled(backend: Any, retry: RetryPolicy | None = None) -> Manifest | None:
    """The manifest as a reader should see it: every pending record settled by what is really
    stored (in memory only; nothing is written). A save in flight shows as not there yet; one
    a kill left after its rename shows as listed.

    Raises:
        ManifestError, StorageError: As :func:`load_manifest`.
    """
    from ckptcore.audit import digest_under

    manifest = load_manifest(backend, retry)
    if manifest is not None and manifest.pending:
        settle(manifest, lambda path, algorithm: digest_under(backend, path, algorithm), lambda run: True)
    return manifest


def migrate_legacy(backend: Any) -> bool:
    """Move ckptcore's own ``ROOT/manifest.json`` to :data:`MANIFEST_NAME`; another tool's
    ``manifest.json`` stays untouched. Call it under :func:`locked`.

    Returns:
        Whether a manifest was moved.
    """
    try:
        data = backend.read_bytes(LEGACY_MANIFEST_NAME)
    except OSError:
        return False
    if not _ours(data):  # another tool's
        return False
    if not backend.exists(MANIFEST_NAME):
        backend.write_bytes(MANIFEST_NAME, data)
    backend.delete(LEGACY_MANIFEST_NAME)
    log.info("moved the manifest of %s to %s", backend.locate(LEGACY_MANIFEST_NAME), backend.locate(MANIFEST_NAME))
    return True


def read_for_merge(backend: Any, read: Callable[[], bytes]) -> Manifest | None:
    """The stored manifest before a merge; an unreadable one is copied aside first.

    A stored manifest that cannot be read or validated is never silently replaced: it is
    logged and copied to ``<MANIFEST_NAME>.unreadable-<time>``, and this run's manifest is then
    written (other runs' entries it held are in that copy only).

    Raises:
        ForeignManifestError: Another tool's file is where the manifest goes (not replaced).
    """
    try:
        data = read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return Manifest.from_json(data, source=backend.locate(MANIFEST_NAME))
    except ForeignManifestError:
        raise
    except ManifestError as exc:
        aside = f"{MANIFEST_NAME}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        log.error("%s; keeping it as %s before writing this run's manifest", exc, backend.locate(aside))
        backend.write_bytes(aside, data)
        return None


#: How often a conditional manifest write is merged again after another writer got in first.
CONFLICT_TRIES = 10


def merge_write(backend: Any, merge: Callable[[Manifest | None], Manifest], read: Callable[[], bytes],
                write: Callable[..., Any], tag: Callable[[], str | None] | None = None) -> Manifest:
    """Read ``backend``'s manifest, ``merge`` into it and write the result, under :func:`locked`.

    On a store with conditional writes (``conditional_writes``: S3) the write lands only if no
    other writer changed the manifest since it was read (``If-Match`` on its ETag); otherwise
    it is read and merged again. ``write(data)`` or, there, ``write(data, tag) -> bool``;
    ``tag()`` reads the version tag (default ``backend.tag(MANIFEST_NAME)``).

    Raises:
        StorageError: Other writers kept changing it (:data:`CONFLICT_TRIES` merges).
    """
    conditional = getattr(backend, "conditional_writes", False)
    with locked(backend):
        for _ in range(CONFLICT_TRIES):
            version = (tag() if tag is not None else backend.tag(MANIFEST_NAME)) if conditional else None
            merged = merge(read_for_merge(backend, read))
            data = merged.to_json().encode()
            if not conditional:
                write(data)
                return merged
            if write(data, version):
                return merged
            log.info("the manifest of %s changed while merging; merging again", backend.name)
    raise StorageError(f"{backend.locate(MANIFEST_NAME)}: other writers kept changing it; not written")


def _run_gone(backend: Any, live: set[str]) -> Callable[[str], bool]:
    alive = getattr(backend, "run_alive", None)
    return lambda run: run not in live and not (alive is not None and alive(run))


def settle_root(backend: Any, retry: RetryPolicy | None = None, live: set[str] = frozenset()) -> Manifest | None:
    """Open a root's manifest: migrate it from ``ROOT/manifest.json``, settle the pending
    records of runs no longer open (removing pruned checkpoints a killed run left), store the
    result; return it (None when the root has no manifest).

    Raises:
        ManifestError, StorageError: As :func:`load_manifest`.
    """
    from ckptcore.audit import digest_under

    with locked(backend):
        try:
            migrate_legacy(backend)
        except Exception as exc:  # noqa: BLE001 - unreachable now: load_manifest says so next
            log.warning("could not move the old manifest of %s: %s", backend.locate(LEGACY_MANIFEST_NAME), exc)
        manifest = load_manifest(backend, retry)
        if manifest is None or not manifest.pending:
            return manifest
        changed, deletions = settle(manifest, lambda path, algorithm: digest_under(backend, path, algorithm), _run_gone(backend, live))
        if not changed:
            return manifest
        _store(backend, manifest)
        if deletions and getattr(backend, "can_delete", False):
            _finish_deletions(backend, manifest, deletions)
    return manifest


def _store(backend: Any, manifest: Manifest) -> None:
    try:
        backend.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    except OSError as exc:
        log.warning("could not store the settled manifest of %s: %s", backend.locate(MANIFEST_NAME), exc)


def _finish_deletions(backend: Any, manifest: Manifest, deletions: list) -> None:
    done = []
    for record in deletions:
        try:
            backend.delete(record.path)
            done.append(record)
            log.info("removed %s: pruned, but its removal was interrupted", backend.locate(record.path))
        except OSError as exc:
            log.warning("could not remove the pruned %s: %s", backend.locate(record.path), exc)
    if done:
        manifest.pending = [r for r in manifest.pending if all(r is not d for d in done)]
        _store(backend, manifest)


def delete_checkpoints(backend: Any, paths: list[str], run_id: str = "") -> list[tuple[str, OSError]]:
    """Delete listed checkpoints (``ckptcore prune``) so that a kill never leaves one unlisted:
    under the lock, their entries become delete records; then each is deleted (a local
    backend moves it into staging's trash first); then the records are dropped. A kill in
    between leaves records that the next open settles (see :mod:`ckptcore.pending`).

    Returns:
        ``(path, error)`` for each checkpoint that could not be deleted (its record stays).

    Raises:
        OSError: The manifest could not be written first (nothing was deleted).
    """
    with locked(backend):
        manifest = load_manifest(backend) or Manifest()
        doomed = [e for e in manifest.entries if e.path in set(paths)]
        for entry in doomed:
            manifest.remove(entry.path)
            manifest.pending.append(delete_record(entry, run_id))
        backend.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    failed = []
    for entry in doomed:
        try:
            backend.delete(entry.path)
        except OSError as exc:
            failed.append((entry.path, exc))
    gone = {e.path for e in doomed} - {path for path, _exc in failed}
    with locked(backend):
        manifest = load_manifest(backend) or Manifest()
        manifest.pending = [r for r in manifest.pending if not (r.digest is None and r.path in gone)]
        _store(backend, manifest)
    return failed
