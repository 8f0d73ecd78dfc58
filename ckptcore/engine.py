"""``Checkpointer``: the glue between a training loop, the save policies and the storage.

It decides (schedule, tracker), names (template), hands the write to the commit pipeline
(synchronously or through the background writer) and nothing more.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from ckptcore.commit import Committer
from ckptcore.config import CheckpointConfig
from ckptcore.deadline import BoundedLock, SaveDeadline, resolve_timeout, skipped
from ckptcore.distributed import WorkerCommitter, is_chief
from ckptcore.errors import CheckpointSaveError, CheckpointSaveWarning, ConfigError, StorageTimeoutError
from ckptcore.manifest import Manifest, ManifestEntry
from ckptcore.modes import resolve_mode
from ckptcore.monitor import Monitor
from ckptcore.opening import make_backends, open_root
from ckptcore.preemption import PreemptionGuard, final_save
from ckptcore.reporting import Reporter
from ckptcore.resume import ResumePoint
from ckptcore.retention import RetentionPolicy
from ckptcore.retry import RetryPolicy, is_transient
from ckptcore.schedule import SaveSchedule
from ckptcore.template import FilepathTemplate
from ckptcore.tracker import BestTracker, PendingBests
from ckptcore.warn import warn
from ckptcore.writer import BackgroundWriter

__all__ = ["Checkpointer"]

log = logging.getLogger("ckptcore")
WriteFn = Callable[[str], None]


class Checkpointer:
    """Save checkpoints from any training loop.

    Example::

        ck = Checkpointer("runs/a/w-{epoch:02d}-{loss:.3f}.bin", write=save_fn,
                          monitor="loss", save_best_only=True, keep_last=3)
        for epoch in range(10):
            ...
            ck.on_epoch_end(epoch, {"loss": loss})
        ck.close()

    Args:
        filepath: Template of checkpoint paths or URLs (see :class:`FilepathTemplate`).
        write: ``write(path)`` writes one checkpoint to the local path it is given.
        snapshot: For ``async_save``: called on the training thread, returns a ``write(path)``
            function bound to a copy of the state, which the background thread then runs.
        printer: Where verbose messages go (default ``print``).
        noun: What messages call a checkpoint (``"saving checkpoint to ..."``); the Keras
            callbacks pass ``"model"``, as Keras words it.
        run_id: Continue an earlier engine session (such as a previous ``fit`` of the same
            callback): retention then treats that session's checkpoints as this one's own.
        **options: Every other argument of :class:`CheckpointConfig` (``monitor``, ``mode``,
            ``save_best_only``, ``save_freq``, ``initial_value_threshold``, ``min_delta``,
            ``keep_last``, ``keep_best``, ``async_save``, ``backends``, ``resume``, ``is_chief``, ...).

    Raises:
        ConfigError: An argument is invalid (raised here, before training starts).
    """

    def __init__(
        self,
        filepath: Any,
        write: WriteFn | None = None,
        *,
        snapshot: Callable[[], WriteFn] | None = None,
        printer: Callable[[str], None] = print,
        noun: str = "checkpoint",
        run_id: str | None = None,
        **options: Any,
    ) -> None:
        self.config = CheckpointConfig.build(filepath=filepath, **options)
        cfg = self.config
        if write is not None and not callable(write):
            raise ConfigError(f"write: got {write!r}; allowed: a callable write(path)")
        if snapshot is not None and not callable(snapshot):
            raise ConfigError(f"snapshot: got {snapshot!r}; allowed: a callable returning write(path)")
        self._write = write
        self._snapshot = snapshot
        self.reporter = Reporter(printer, cfg.verbose, noun)
        self.template = FilepathTemplate(cfg.filepath)
        self.mode = resolve_mode(cfg.monitor, cfg.mode, cfg.mode_hint)
        self.tracker = BestTracker(self.mode, cfg.min_delta, cfg.initial_value_threshold, monitor=cfg.monitor)
        self.schedule = SaveSchedule(cfg.save_freq, cfg.every_n_epochs, cfg.every_seconds)
        self.retention = RetentionPolicy(cfg.keep_last, cfg.keep_best, cfg.keep_every_n_epochs)
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ConfigError(f"run_id: got {run_id!r}; allowed: a non-empty string or None")
        self.epoch = 0
        self._epoch_ended = False  # on_epoch_end ran and no on_epoch_begin since
        # Saves depend on the value with save_best_only, and retention ranks by it with keep_best.
        self._monitor = Monitor(cfg.monitor, required=cfg.save_best_only or cfg.keep_best is not None)
        self._closed = False
        self.is_chief = is_chief(cfg.is_chief)  # only the chief commits (ckptcore.distributed)
        backends = make_backends(self.template, cfg, self.is_chief)
        opened = open_root(backends[0], self.template, cfg, self.tracker, self.schedule, run_id, self.is_chief)
        self.run_id = opened.run_id
        # A resume source in another root: its backend and manifest, for latest()/best().
        self._source, self._point = opened.source, opened.point
        self.committer = (Committer if self.is_chief else WorkerCommitter)(
            backends, self.retention, self.mode, self.run_id,
            state=lambda: (self.tracker.state_dict(), self.schedule.state_dict()),
            manifest=opened.manifest, protected=opened.protected,
            retry=RetryPolicy(retries=cfg.retries, backoff=cfg.retry_backoff),
        )
        self.committer.on_deleted = lambda _name, where: self.reporter.deleted(self.epoch + 1, where, self.retention)
        self.deadline = SaveDeadline(resolve_timeout(cfg.storage_timeout, backends))
        # The committer's lock also guards the tracker state it writes into the manifest;
        # a hung storage call may hold it, so training waits for it within the deadline.
        self.bests = PendingBests(self.tracker, BoundedLock(
            self.committer.lock, lambda: self.deadline.lock_timeout(self.writer), limit=self.deadline.seconds))
        if self.template.is_fixed and (problem := self.committer.foreign_directory(self.template.render())):
            self.committer.close()  # releases the backends and this run's id
            raise ConfigError(f"filepath: {problem}")
        self.writer = BackgroundWriter(cfg.max_pending, self.deadline.seconds) if cfg.async_save else None
        self._last: tuple[int, int | None, dict[str, Any]] | None = None  # for a final save
        self._guard = PreemptionGuard(self._save_on_preemption)
        if cfg.save_on_preemption:
            self._guard.install()

    # -- hooks --------------------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Mark the start of 0-based ``epoch``."""
        self.epoch = epoch
        self._epoch_ended = False
        self.schedule.start_epoch()
        self._check_background()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None, *,
                           steps: int | None = None) -> str | None:
        """Report that batches up to 0-based index ``batch`` of this epoch have run (``logs``: its
        metrics; ``steps``: batches per epoch, when known, see :meth:`SaveSchedule.advance`);
        save when the schedule says so and return the relative path saved, or None."""
        counted, due = self.batch_end_due(batch, logs, steps=steps)
        return self._maybe_save(self.epoch, counted, logs) if due else None

    def batch_end_due(self, batch: int, logs: Mapping[str, Any] | None = None, *,
                      steps: int | None = None) -> tuple[int, bool]:
        """Count batches up to index ``batch``; return the index counted (bounded by ``steps``)
        and whether a save is due (then marked handled). Saves nothing itself."""
        if self._epoch_ended:
            # A loop that calls no on_epoch_begin: this batch starts the next epoch.
            self.on_epoch_begin(self.epoch + 1)
        batch = self.schedule.advance(batch, steps)
        self._last = (self.epoch, batch, dict(logs or {}))
        return batch, self._due(self.schedule.batch_due())

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> str | None:
        """Report the end of 0-based ``epoch``; save when the schedule says so (return its path)."""
        return self._maybe_save(epoch, None, logs) if self.epoch_end_due(epoch, logs) else None

    def epoch_end_due(self, epoch: int, logs: Mapping[str, Any] | None = None) -> bool:
        """Record the end of 0-based ``epoch``; whether a save is due (then marked handled)."""
        self.epoch = epoch
        self._epoch_ended = True
        self._last = (epoch, None, dict(logs or {}))
        return self._due(self.schedule.epoch_due(epoch))

    def _due(self, scheduled: bool) -> bool:
        if not (scheduled or self.schedule.time_due()):
            self._check_background()
            return False
        self.schedule.consume()
        return True

    def save(self, epoch: int | None = None, batch: int | None = None,
             logs: Mapping[str, Any] | None = None, *, name: str | None = None) -> str | None:
        """Save now, outside the schedule (still honouring ``save_best_only``), under the
        template's name or ``name`` (a path relative to the root)."""
        return self._maybe_save(self.epoch if epoch is None else epoch, batch, logs, name)

    # -- the decision -------------------------------------------------------------------------
    def _maybe_save(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None,
                    name: str | None = None) -> str | None:
        with self._guard.deferred():  # a SIGTERM now waits until this save is handed over
            return self._decide(epoch, batch, logs, name)

    def _decide(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None,
                name: str | None = None) -> str | None:
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; create a new Checkpointer (resume=True continues this run)"
            )
        self._check_background()
        logs = dict(logs or {})
        monitor = self.config.monitor
        value = self._monitor.read(logs)
        improved = value is not None and self.tracker.is_improvement(value)
        best = self.reporter.best_text(self.tracker.best, self.mode)
        if self.config.save_best_only:
            if value is None:
                self._monitor.warn_missing(logs)
                return None
            if not improved:
                self.reporter.not_improved(epoch, monitor, best)
                return None
        relpath = name or self.template.render(epoch, batch, logs, step=self.schedule.batches_run)
        self.reporter.saving(epoch, self.template.join(relpath),
                             (monitor, best, value) if improved and self.config.save_best_only else None)
        try:
            previous = self.bests.record(value, improved)
        except StorageTimeoutError as exc:
            self._save_failed(skipped(relpath, f"skipped: {exc}"))
            return None
        entry = self._entry(relpath, epoch, batch, logs, monitor_value=value, is_best=improved)
        try:
            self._dispatch(relpath, entry, previous)
        except BaseException as exc:
            # Neither committed nor queued (say, an earlier background failure was reported
            # instead): the best stays the last one that reached storage.
            if entry.is_best and not entry.backends:
                self.deadline.undo(self.bests, previous)
            if not isinstance(exc, CheckpointSaveError):
                raise
            self._save_failed(exc)
            return relpath if entry.backends else None
        return relpath

    def _dispatch(self, relpath: str, entry: ManifestEntry, previous: dict[str, Any]) -> None:
        if self.writer is None:
            write = self._require_write()
            self.deadline.run(relpath, lambda guard: self._commit(relpath, guard(write), entry, previous),
                              report=self._save_failed)
            return
        # An earlier save's failure is reported (self._save_failed) and this save goes ahead.
        if self._snapshot is None:
            write = self._require_write()
            self.writer.submit(relpath, lambda: self._commit(relpath, write, entry, previous),
                               report=self._save_failed)
            return
        # The snapshot is taken once a writer slot is free, so at most max_pending are held.
        self.writer.submit(relpath, prepare=lambda: self._snapshot_job(relpath, entry, previous),
                           report=self._save_failed)

    def _snapshot_job(self, relpath: str, entry: ManifestEntry, previous: dict[str, Any]) -> Callable[[], None]:
        """Take the snapshot on the training thread; return the job that writes and commits it."""
        try:
            write = self._snapshot()  # type: ignore[misc]
        except BaseException as exc:
            self.bests.undo(previous)
            if not isinstance(exc, Exception):
                raise
            raise CheckpointSaveError(relpath, f"taking the snapshot failed: {type(exc).__name__}: {exc}") from exc
        return lambda: self._commit(relpath, write, entry, previous)

    def _commit(self, relpath: str, write: WriteFn, entry: ManifestEntry, previous: dict[str, Any]) -> None:
        try:
            if problem := self.committer.foreign_directory(relpath):
                raise CheckpointSaveError(relpath, problem) from IsADirectoryError(problem)
            with self.reporter.progress(entry.epoch, self.template.join(relpath), size=lambda: entry.size):
                self.committer.save(relpath, write, entry)
        except BaseException:
            if entry.is_best and not entry.backends:  # nothing was committed anywhere
                self.bests.undo(previous)
            raise
        finally:
            if entry.backends:  # committed: this best no longer needs undoing
                self.bests.settle(previous)

    def _entry(self, relpath: str, epoch: int, batch: int | None, logs: dict[str, Any], **fields: Any) -> ManifestEntry:
        """The manifest entry of a checkpoint about to be saved (epoch and batch 1-based)."""
        return ManifestEntry(
            name=relpath.rsplit("/", 1)[-1], path=relpath, epoch=epoch + 1,
            batch=None if batch is None else batch + 1, global_step=self.schedule.batches_run,
            metrics=logs, monitor=self.config.monitor, run_id=self.run_id, **fields,
        )

    def _require_write(self) -> WriteFn:
        if self._write is None:
            raise ConfigError("write: no write function was given; pass write=callable(path)")
        return self._write

    # -- helpers ------------------------------------------------------------------------------
    def _check_background(self) -> None:
        if self.writer is not None:
            try:
                with self._guard.deferred():  # the signal handler needs the writer's lock
                    self.writer.check()
            except CheckpointSaveError as exc:
                self._save_failed(exc)

    def _save_failed(self, exc: CheckpointSaveError) -> None:
        """Raise ``exc``, or report it when ``on_save_error="warn"`` and storage failed.

        A failure whose cause is neither an ``OSError`` nor a transient fault (a bug in the
        write function, a model that cannot be serialised) is raised either way: retrying next
        epoch cannot fix it.
        """
        cause = exc.__cause__
        storage = cause is None or isinstance(cause, OSError) or is_transient(cause)
        if self.config.on_save_error == "raise" or not storage:
            raise exc
        warn(f"{exc}; training goes on", CheckpointSaveWarning)

    # -- preemption ---------------------------------------------------------------------------
    def _save_on_preemption(self, exiting: bool) -> None:
        """The final save on SIGTERM (see :func:`ckptcore.preemption.final_save`)."""
        final_save(self, exiting)

    # -- results ------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The manifest as this engine knows it."""
        return self.committer.manifest

    def resume_point(self) -> ResumePoint | None:
        """With ``resume``: what to load and where to continue (None: training starts fresh)."""
        return self._point

    def latest(self) -> str | None:
        """Path or URL of this run's most recent checkpoint, or None.

        Other runs sharing the root do not count. After resuming from another root, and
        before saving here, the source's latest.
        """
        return self._locate(Manifest.latest)

    def best(self) -> str | None:
        """Path or URL of this run's best checkpoint, or None.

        Other runs sharing the root do not count (they may monitor other metrics). After
        resuming from another root, and until a checkpoint here beats it, the source's best.
        """
        return self._locate(Manifest.best)

    def _locate(self, pick: Callable[[Manifest, str | None], ManifestEntry | None]) -> str | None:
        entry = pick(self.manifest, self.run_id)
        if entry is not None:
            return self.committer.primary.locate(entry.path)
        if self._source is not None:
            backend, manifest = self._source
            entry = pick(manifest, None)
            if entry is not None:
                return backend.locate(entry.path)
        return None

    def wait(self) -> None:
        """Block until pending saves are committed and stored in the manifest; re-raise failures."""
        try:
            if self.writer is not None:
                with self._guard.deferred():
                    self.writer.wait()
            self.deadline.run("the manifest", lambda guard: self.committer.flush(), report=self._save_failed)
        except CheckpointSaveError as exc:
            self._save_failed(exc)

    def close(self) -> None:
        """Finish pending saves, write the final manifest state and release the backends."""
        if self._closed:
            return
        self._closed = True
        self._guard.uninstall()
        try:
            if self.writer is not None:
                try:
                    self.writer.close()
                except CheckpointSaveError as exc:
                    self._save_failed(exc)
        finally:
            self.deadline.release(self.committer, self.writer, self._save_failed)
            if self._source is not None:
                self._source[0].close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        # The body's exception is what the caller must see; a save failure is logged beside it.
        try:
            self.close()
        except CheckpointSaveError as failure:
            if exc_type is None:
                raise
            log.error("while leaving the Checkpointer after %s: %s", exc_type.__name__, failure)

    def __repr__(self) -> str:
        return f"Checkpointer({self.config.filepath!r}, monitor={self.config.monitor!r}, mode={self.mode!r})"
