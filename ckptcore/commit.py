"""Committing one checkpoint: write into staging, commit to every backend, record, prune.

The order is what keeps a reader safe: the primary backend makes the checkpoint visible under
its final name only when it is complete; secondary backends copy the committed checkpoint; the
manifest is written after the files it lists; files that retention prunes are deleted only after
a manifest without them has been written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any, Callable, Sequence

from ckptcore.errors import CheckpointSaveError, ManifestError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ckptcore.modes import Direction
from ckptcore.retention import RetentionPolicy

__all__ = ["Committer", "digest"]

log = logging.getLogger("ckptcore")
_CHUNK = 1 << 20


def digest(path: str) -> tuple[int, str]:
    """Return ``(size, sha256)`` of a file, or of every file under a directory (by name order)."""
    sha = hashlib.sha256()
    if not os.path.isdir(path):
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
        return size, sha.hexdigest()
    total = 0
    for dirpath, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            size, file_sha = digest(full)
            sha.update(f"{rel}\0{size}\0{file_sha}\n".encode())
            total += size
    return total, sha.hexdigest()


def load_manifest(backend: Any) -> Manifest | None:
    """Read and validate the manifest of ``backend``; None when there is none."""
    try:
        data = backend.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        return None
    return Manifest.from_json(data, source=backend.locate(MANIFEST_NAME))


class Committer:
    """Owns the manifest and runs the commit pipeline; safe to call from the writer thread.

    Args:
        backends: Primary backend first, then secondary ones.
        retention: The retention policy.
        mode: Resolved monitor direction.
        run_id: This engine session's id.
        state: Returns the tracker and schedule state to store in the manifest.
        manifest: The existing manifest to extend, if any.
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
    ) -> None:
        self.backends = list(backends)
        self.retention = retention
        self.mode = mode
        self.run_id = run_id
        self._state = state
        self.protected = set(protected)
        self.manifest = manifest or Manifest()
        if run_id not in self.manifest.runs:
            self.manifest.runs.append(run_id)
        self.lock = threading.RLock()

    @property
    def primary(self) -> Any:
        """The backend that stages and commits first."""
        return self.backends[0]

    def save(self, relpath: str, write: Callable[[str], None], entry: ManifestEntry) -> ManifestEntry:
        """Write one checkpoint through ``write(path)`` and commit it everywhere.

        Raises:
            CheckpointSaveError: The writer or the primary backend failed; nothing was committed.
        """
        primary = self.primary
        try:
            staged = primary.stage(relpath)
        except OSError as exc:
            raise CheckpointSaveError(relpath, f"cannot stage at {primary!r}: {exc}") from exc
        try:
            write(staged)
            if not os.path.exists(staged):
                # A bug of the write function, not a storage fault: never just a warning.
                raise ValueError(
                    f"the write function wrote nothing to {staged!r}; it must write to exactly "
                    "the path it is given (np.save, for one, appends '.npy' to other names)"
                )
            entry.size, entry.sha256 = digest(staged)
            location = primary.commit(staged, relpath, dict(entry.model_dump()))
        except BaseException as exc:
            primary.discard(staged)
            if isinstance(exc, CheckpointSaveError) or not isinstance(exc, Exception):
                raise
            raise CheckpointSaveError(relpath, f"{type(exc).__name__}: {exc}") from exc
        entry.backends = [primary.name]
        failures = self._replicate(location, relpath, entry)
        self._record(entry)
        if failures:
            raise CheckpointSaveError(
                relpath,
                "committed to " + ", ".join(entry.backends) + " but failed on " + "; ".join(failures),
            )
        return entry

    def _replicate(self, location: str, relpath: str, entry: ManifestEntry) -> list[str]:
        failures = []
        for backend in self.backends[1:]:
            try:
                backend.put(location, relpath, dict(entry.model_dump()))
                entry.backends.append(backend.name)
            except Exception as exc:  # noqa: BLE001 - one backend must not lose the others
                log.error("checkpoint %r: backend %s failed: %s", relpath, backend.name, exc)
                failures.append(f"{backend.name} ({type(exc).__name__}: {exc})")
        return failures

    def _record(self, entry: ManifestEntry) -> None:
        with self.lock:
            self.manifest.add(entry)
            pruned = self.retention.select_deletions(
                self.manifest.entries, self.mode, {self.run_id}, self.protected
            )
            for old in pruned:
                self.manifest.remove(old.path)
            self.write_manifest()
        for old in pruned:
            for backend in self.backends:
                if getattr(backend, "can_delete", False) and backend.name in old.backends:
                    try:
                        backend.delete(old.path)
                    except Exception as exc:  # noqa: BLE001 - pruning is best effort
                        log.warning("could not delete %r from %s: %s", old.path, backend.name, exc)

    def write_manifest(self) -> None:
        """Store the tracker/schedule state and write the manifest to every backend keeping one."""
        with self.lock:
            self.manifest.tracker, self.manifest.schedule = self._state()
            data = self.manifest.to_json().encode()
        for backend in self.backends:
            if getattr(backend, "keeps_manifest", False):
                try:
                    backend.write_bytes(MANIFEST_NAME, data)
                except Exception as exc:  # noqa: BLE001
                    log.error("could not write the manifest to %s: %s", backend.name, exc)

    def close(self) -> None:
        """Close every backend."""
        for backend in self.backends:
            backend.close()


def validate_manifest(manifest: Manifest | None, source: str) -> Manifest:
    """Return ``manifest`` or raise a clear error when there is none."""
    if manifest is None:
        raise ManifestError(f"{source}: no manifest.json found; nothing to resume from")
    return manifest
