"""Opening a checkpoint root: the backends, the existing manifest and what ``resume`` restores."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ckptcore.commit import live_runs, load_manifest
from ckptcore.store import validate_manifest
from ckptcore.store import root_of_manifest, settle_root
from ckptcore.config import CheckpointConfig
from ckptcore.errors import ConfigError, ForeignManifestError, ManifestError
from ckptcore.manifest import MANIFEST_NAME, Manifest
from ckptcore.resume import RESUME_STATE, ResumePoint, align_state, pick_entry, resume_source
from ckptcore.retry import RetryPolicy
from ckptcore.schedule import SaveSchedule
from ckptcore.template import FilepathTemplate
from ckptcore.tracker import BestTracker

__all__ = ["Opened", "make_backends", "new_run_id", "open_root"]

log = logging.getLogger("ckptcore")


def new_run_id() -> str:
    """A fresh, sortable engine-session id."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _same_location(a: str, b: str) -> bool:
    """Whether two paths or URLs name the same file (local paths compared absolute)."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def _distinct_names(backends: list[Any]) -> list[Any]:
    """Give each backend a distinct ``name``: the manifest records checkpoints by it.

    A later backend whose name is taken gets its root appended (``local:/mnt/backup``).

    Raises:
        ConfigError: The same storage is listed twice.
    """
    seen: set[str] = set()
    for index, backend in enumerate(backends):
        if any(backend is earlier for earlier in backends[:index]):
            raise ConfigError(f"backends: {backend!r} is listed twice; allowed: each backend once")
        if backend.name in seen:
            label = f"{backend.name}:{getattr(backend, 'root', '')}"
            if label in seen or label == f"{backend.name}:":
                raise ConfigError(
                    f"backends: {backend!r} repeats the storage of another backend named "
                    f"{backend.name!r}; allowed: each storage once"
                )
            backend.name = label
        seen.add(backend.name)
    return backends


def _location_backend(location: str, config: CheckpointConfig) -> Any:
    from ckptcore.backends import resolve_backend  # the registry imports plug-ins lazily

    # A root is a location, never a backend name: "ckpt/w.keras" has the root "ckpt".
    spec = location if "://" in location else "local"
    return resolve_backend(spec, location, **config.storage_options)


def make_backends(template: FilepathTemplate, config: CheckpointConfig, chief: bool = True) -> list[Any]:
    """The primary backend (from the template's root) followed by ``config.backends``.

    A worker that is not the chief (see :mod:`ckptcore.distributed`) only reads the root: it
    gets the primary alone, and sweeps nothing (a temporary there may be the chief's save).
    """
    from ckptcore.backends import resolve_backend

    root = template.root
    primary = _location_backend(root, config)
    if not chief:
        return [primary]
    extra = [resolve_backend(spec, root, **config.storage_options) for spec in config.backends]
    backends = _distinct_names([primary, *extra])
    for backend in backends:
        prepare = getattr(backend, "prepare", None)  # optional: make the layout, recover, sweep
        for line in prepare() if prepare is not None else ():
            log.info("%s: %s", backend.name, line)
    for backend in backends[1:]:
        _refuse_foreign(backend)
    return backends


def _refuse_foreign(backend: Any) -> None:
    """Raise ``ForeignManifestError`` when another tool's manifest.json is where this backend
    keeps one (the primary's is read by :func:`open_root`); a backend that cannot be read now
    is left to report its failure at the first save."""
    if not getattr(backend, "keeps_manifest", False):
        return
    try:
        load_manifest(backend)
    except ForeignManifestError:
        raise
    except (ManifestError, OSError) as exc:
        log.warning("the manifest of %s cannot be read now: %s", backend.name, exc)


def _restore(target: BestTracker | SaveSchedule, state: Any, where: str) -> None:
    """Load a stored state into ``target``; a state that does not fit is a manifest error.

    Raises:
        ConfigError: The stored state belongs to another monitor or mode (a choice to make).
        ManifestError: The stored state is not one ckptcore wrote (names the manifest).
    """
    kind = type(target).__name__
    try:
        if not isinstance(state, dict):
            raise TypeError(f"expected an object, got {type(state).__name__}")
        target.load_state_dict(state)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: the stored {kind} state cannot be restored: {exc}") from exc


@dataclass
class Opened:
    """What opening a root found.

    Attributes:
        manifest: The primary root's manifest, if it has one.
        run_id: The run to continue (the resumed run's id, or the given/new one).
        protected: Paths never to prune (the checkpoint resumed from).
        source: The backend and manifest of a resume source in another root, if any.
        point: The checkpoint the run continues from, if any.
    """

    manifest: Manifest | None
    run_id: str
    protected: list[str] = field(default_factory=list)
    source: tuple[Any, Manifest] | None = None
    point: ResumePoint | None = None


def open_root(
    primary: Any,
    template: FilepathTemplate,
    config: CheckpointConfig,
    tracker: BestTracker,
    schedule: SaveSchedule,
    run_id: str | None,
    settle: bool = True,
) -> Opened:
    """Read the primary's manifest; with ``resume``, restore the state it (or the source) holds.

    Resuming from the same root continues the run that wrote the latest checkpoint, so
    retention keeps counting its checkpoints, and protects that checkpoint. A source in
    another root is only read: its checkpoints are not in this root's manifest, so they are
    never pruned.
    """
    retry = RetryPolicy(retries=config.retries, backoff=config.retry_backoff)
    # The manifest as a killed run left it, settled: its pending records resolved by what is
    # really stored (see ckptcore.pending).
    # A worker that is not the chief only reads (settle=False).
    live = live_runs(primary.locate(MANIFEST_NAME))
    own = settle_root(primary, retry, live) if settle else load_manifest(primary, retry)
    opened = Opened(own, run_id or new_run_id())
    if not config.resume:
        return opened
    source, manifest = primary, own
    if (location := resume_source(config.resume)) is not None:
        source = _location_backend(location, config)
        if _same_location(source.locate(MANIFEST_NAME), primary.locate(MANIFEST_NAME)):
            source = primary
        else:
            manifest = validate_manifest(load_manifest(source, retry), config.resume)  # named: must exist
    where = source.locate(MANIFEST_NAME)
    # Several checkpointers may share a root: continue the run that wrote the latest
    # checkpoint this template could have named, with that run's own stored state.
    latest = None if manifest is None else pick_entry(manifest, template, other_root=source is not primary)
    if manifest is not None and (latest is not None or not manifest.states):
        state = manifest.states.get(latest.run_id, {}) if latest is not None else {}
        _restore(tracker, state.get("tracker", manifest.tracker), where)
        _restore(schedule, state.get("schedule", manifest.schedule), where)
    # else: no checkpoint here has this template's names (a callback added on a resume, say):
    # it starts fresh, as a run of its own.
    if latest is None:
        log.info("resume: no checkpoint of %s in %s; training starts fresh", template.filepath, source.root or ".")
        return opened
    opened.point = ResumePoint.of(source, latest)
    if config.resume != RESUME_STATE:
        align_state(tracker, schedule, manifest, opened.point)
    log.info("resume: continuing from %s (epoch %d, global step %d)",
             opened.point.location, opened.point.epoch, opened.point.global_step)
    if source is not primary:
        opened.source = (source, manifest)
    else:
        opened.protected.append(latest.path)
        live = live_runs(primary.locate(MANIFEST_NAME))
        if run_id is None and latest.run_id and latest.run_id not in live:
            # A run another open checkpointer of this process continues is not taken twice.
            opened.run_id = latest.run_id
    return opened
