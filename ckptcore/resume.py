"""Bringing a run back: which checkpoint a run continues from, and where training continues.

Framework-free. A resume picks the latest checkpoint that the run's filepath template could
have named (other runs sharing the root keep theirs) and describes it as a :class:`ResumePoint`:
where it is, the epoch and global step it was saved at, and the 0-based epoch training
continues at. A checkpoint saved before its epoch ended (an int ``save_freq``, or the final
checkpoint on ``SIGTERM``) continues at the start of that epoch, which then runs once more.

``resume`` takes:

* ``True``: continue the latest run (an adapter also restores the model from its checkpoint);
* :data:`RESUME_STATE` (``"state"``): restore only the tracker and schedule state of the run
  (the best value, the batch count), never the model;
* the path or URL of another root's manifest (or of that root): continue from its latest
  checkpoint; the source is only read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ckptcore.manifest import Manifest, ManifestEntry
from ckptcore.schedule import SaveSchedule
from ckptcore.template import FilepathTemplate
from ckptcore.tracker import BestTracker

__all__ = [
    "RESUME_STATE",
    "ResumePoint",
    "align_state",
    "latest_checkpoint",
    "pick_entry",
    "resume_source",
]

#: ``resume=RESUME_STATE`` restores the tracker and schedule state only, never the model.
RESUME_STATE = "state"


def resume_source(resume: bool | str) -> str | None:
    """The other root a ``resume`` value names, or None (no resume, or this root).

    A manifest path (``.../manifest.json``) names its directory. ``"state"`` names no root:
    write ``"./state"`` for a directory of that name.
    """
    if not isinstance(resume, str) or resume == RESUME_STATE:
        return None
    if resume.endswith(".json"):  # ROOT/.ckptcore/state/manifest.json, or an old ROOT/manifest.json
        from ckptcore.store import root_of_manifest

        return root_of_manifest(resume)
    return resume


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from, and where training continues.

    Attributes:
        location: Full path or URL of the checkpoint (what to load).
        path: Its path relative to the root.
        root: The checkpoint root (a path or URL).
        epoch: The 1-based epoch it was saved in (as in its file name).
        batch: The 1-based batch it was saved after, for a mid-epoch save; else None.
        global_step: Batches run since training began, when it was saved.
        mid_epoch: Whether it was saved before its epoch ended.
        run_id: The engine session that wrote it.
        entry: Its manifest entry (metrics, monitor value, size, digest, ...).
    """

    location: str
    path: str
    root: str
    epoch: int
    batch: int | None
    global_step: int
    mid_epoch: bool
    run_id: str
    entry: ManifestEntry

    @property
    def initial_epoch(self) -> int:
        """The 0-based epoch training continues at (Keras's ``initial_epoch``).

        The epoch after the checkpoint's, or the checkpoint's own epoch when it was saved
        mid-epoch: that epoch then runs again from its start.
        """
        return max(self.epoch - 1, 0) if self.mid_epoch else self.epoch

    @property
    def initial_step(self) -> int:
        """Batches run before :attr:`initial_epoch` began (the global step to continue at)."""
        if self.mid_epoch:
            return max(self.global_step - (self.batch or 0), 0)
        return self.global_step

    @classmethod
    def of(cls, backend: Any, entry: ManifestEntry) -> "ResumePoint":
        """The resume point of ``entry``, stored on ``backend``."""
        return cls(
            location=backend.locate(entry.path), path=entry.path, root=backend.root,
            epoch=entry.epoch or 0, batch=entry.batch, global_step=entry.global_step,
            mid_epoch=entry.batch is not None or entry.partial, run_id=entry.run_id, entry=entry,
        )


def pick_entry(manifest: Manifest, template: FilepathTemplate | None, *,
               other_root: bool = False) -> ManifestEntry | None:
    """The latest entry ``template`` could have named (any latest entry without a template).

    Args:
        manifest: The root's manifest.
        template: The run's filepath template, or None for the root's latest checkpoint.
        other_root: The manifest is another root's (a run to continue from elsewhere): when
            no entry has this template's names, its latest entry.
    """
    if template is None:
        return manifest.latest()
    latest = next((e for e in reversed(manifest.entries) if template.matches(e.path)), None)
    if latest is None and other_root:
        latest = manifest.latest()
    return latest


def align_state(tracker: BestTracker, schedule: SaveSchedule, manifest: Manifest,
                point: ResumePoint) -> None:
    """Make the restored state that of the checkpoint training continues from.

    The best becomes the monitor value of the run's best checkpoint on storage (a stored
    state can be ahead of it, or behind, when the process died between a save and the next
    manifest write). The batch count becomes the global step at which training continues:
    batches run after the checkpoint are run again.
    """
    best = manifest.best(point.run_id)
    if best is not None and best.monitor_value is not None and best.monitor in (None, tracker.monitor):
        tracker.best = float(best.monitor_value)
    steps = point.initial_step
    windows = steps // schedule.save_freq if isinstance(schedule.save_freq, int) else 0
    schedule.load_state_dict({"save_freq": schedule.save_freq, "batches_run": steps,
                              "consumed_batch_windows": windows})


def latest_checkpoint(root: Any, *, filepath: str | None = None,
                      storage_options: dict[str, Any] | None = None) -> ResumePoint | None:
    """Where a run stored in ``root`` continues: its latest checkpoint, or None.

    Example::

        point = ckptcore.latest_checkpoint("s3://bucket/run-1", storage_options=opts)
        if point is not None:
            state = load(point.location)          # what to load
            start_epoch = point.initial_epoch     # where to continue

    Args:
        root: The checkpoint root: a directory or any fsspec URL.
        filepath: The run's filepath template, to pick that run's checkpoints in a root
            several runs share; None picks the root's latest checkpoint.
        storage_options: For a URL: passed to the fsspec file system.

    Returns:
        The latest checkpoint, or None when the root has no manifest or no checkpoint.

    Raises:
        ManifestError: The root's manifest does not parse or validate.
        StorageError: The manifest could not be read.
    """
    from ckptcore.backends import resolve_backend  # the registry imports plug-ins lazily
    from ckptcore.store import load_settled

    root = os.fspath(root)
    backend = resolve_backend(root if "://" in root else "local", root, **(storage_options or {}))
    try:
        manifest = load_settled(backend)  # a kill's pending records resolved by what is there
        if manifest is None:
            return None
        template = None if filepath is None else FilepathTemplate(os.fspath(filepath))
        entry = pick_entry(manifest, template)
        return None if entry is None else ResumePoint.of(backend, entry)
    finally:
        backend.close()
