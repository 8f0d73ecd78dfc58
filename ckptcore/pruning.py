"""What ``ckptcore prune`` deletes from a root that several runs may share."""

from __future__ import annotations

from ckptcore.manifest import Manifest, ManifestEntry
from ckptcore.modes import resolve_mode
from ckptcore.retention import RetentionPolicy

__all__ = ["run_direction", "select_deletions"]


def select_deletions(policy: RetentionPolicy, manifest: Manifest, mode: str | None) -> list[ManifestEntry]:
    """What ``policy`` deletes: ``--keep-last`` over the whole root, ``--keep-best`` per run.

    Runs sharing a root may monitor different metrics, so each run's checkpoints are ranked
    by that run's own monitor and direction.
    """
    entries = manifest.entries
    runs = list(dict.fromkeys(e.run_id for e in entries))
    keep: set[str] = set()
    if policy.keep_last is not None:
        last = RetentionPolicy(keep_last=policy.keep_last)
        doomed = {e.path for e in last.select_deletions(entries, "min", runs)}
        keep.update(e.path for e in entries if e.path not in doomed)
    if policy.keep_best is not None:
        best = RetentionPolicy(keep_best=policy.keep_best)
        for run in runs:
            own = [e for e in entries if e.run_id == run]
            doomed = {e.path for e in best.select_deletions(own, run_direction(manifest, run, mode), {run})}
            keep.update(e.path for e in own if e.path not in doomed)
    return [e for e in entries if e.path not in keep]


def run_direction(manifest: Manifest, run: str, mode: str | None) -> str:
    """The direction of ``run``'s monitor: ``--mode``, the recorded one, else by its name."""
    if mode is not None:
        return mode
    recorded = (manifest.states.get(run) or {}).get("tracker")
    latest = manifest.latest()
    if recorded is None and latest is not None and latest.run_id == run:
        recorded = manifest.tracker  # a manifest from before per-run states: the latest run's
    if isinstance(recorded, dict) and recorded.get("mode") in ("min", "max"):
        return recorded["mode"]
    monitors = [e.monitor for e in manifest.entries if e.run_id == run and e.monitor]
    return resolve_mode(monitors[-1], "auto") if monitors else "min"
