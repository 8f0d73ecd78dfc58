"""The ``ckptcore`` command: list, find, verify and prune the checkpoints under a root.

A root is a local directory or any fsspec URL (``s3://bucket/run``, ``memory://run``) holding a
``manifest.json``. Storage is reached through :func:`ckptcore.backends.resolve_backend`, so
optional packages (fsspec, s3fs) are imported only for a URL that needs them::

    ckptcore ls runs/a            # a table of every checkpoint
    ckptcore ls runs/a --json     # the same, as JSON
    ckptcore best runs/a          # the best checkpoint's path or URL
    ckptcore verify runs/a        # sha256 of every file against the manifest
    ckptcore prune runs/a --keep-last 3 --keep-best 2 --dry-run

Exit status: 0 on success, 1 when ``verify`` finds a bad or missing file (or ``best`` finds no
best checkpoint), 2 for a missing root, a root without a manifest or a bad argument.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Optional, Sequence

import typer
from rich.console import Console

from ckptcore.digest import digest, stream_digest, tree_digest
from ckptcore.table import age_seconds, checkpoint_table, human_age, human_size
from ckptcore.errors import CkptcoreError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ckptcore.pending import accounted
from ckptcore.store import delete_checkpoints, load_settled, root_of_manifest
from ckptcore.modes import resolve_mode
from ckptcore.retention import RetentionPolicy

__all__ = ["Root", "app", "checkpoint_table", "human_age", "human_size", "main", "open_root"]

_URL_MARK = "://"

app = typer.Typer(
    name="ckptcore",
    help="Inspect and maintain ckptcore checkpoint roots (a local directory or an fsspec URL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RootArg = Annotated[str, typer.Argument(help="Checkpoint root: a directory or URL holding manifest.json.")]
OptionsOpt = Annotated[
    Optional[str],
    typer.Option("--storage-options", help='JSON object for the storage backend, e.g. \'{"anon": true}\'.'),
]


# -- opening a root -------------------------------------------------------------------------------
@dataclass
class Root:
    """An opened checkpoint root: its backend and validated manifest."""

    location: str
    backend: Any
    manifest: Manifest

    @property
    def is_local(self) -> bool:
        """Whether the checkpoints are local files (checked with :func:`ckptcore.digest.digest`)."""
        from ckptcore.backends.local import LocalBackend

        return isinstance(self.backend, LocalBackend)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"ckptcore: error: {message}", err=True)
    return typer.Exit(code)


def _parse_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise _fail(f"--storage-options: got {text!r}, which is not JSON ({exc})") from exc
    if not isinstance(options, dict):
        raise _fail(f"--storage-options: got {text!r}; allowed: a JSON object")
    return options


def open_root(root: str, storage_options: dict[str, Any] | None = None) -> Root:
    """Open ``root`` and read its manifest.

    Args:
        root: A directory, a URL, or the path/URL of a ``manifest.json`` itself.
        storage_options: Passed to the backend's constructor.

    Raises:
        typer.Exit: With status 2 and a one-line message when the root or its manifest is
            missing, unreadable or invalid.
    """
    from ckptcore.backends import resolve_backend

    if root.rstrip("/").endswith(".json"):
        root = root_of_manifest(root) or "."
    is_url = _URL_MARK in root
    if not is_url and not os.path.isdir(root):
        what = "is not a directory" if os.path.exists(root) else "does not exist"
        raise _fail(f"{root}: {what}")
    try:
        # A bare local name ("runs") must not be taken for a backend name: say "local".
        backend = resolve_backend(root if is_url else "local", root, **(storage_options or {}))
        manifest = load_settled(backend)  # pending records resolved by what is stored (read only)
    except (CkptcoreError, OSError, ValueError, ImportError) as exc:
        raise _fail(f"{root}: {_one_line(exc)}") from exc
    if manifest is None:
        raise _fail(f"{root}: no ckptcore manifest here ({MANIFEST_NAME}); not a ckptcore checkpoint root")
    return Root(root, backend, manifest)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _console() -> Console:
    # Piped output gets a wide console so that names are never cut; a terminal keeps its width.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


# -- verifying ------------------------------------------------------------------------------------
def _remote_digest(backend: Any, relpath: str) -> tuple[int, str] | None:
    """Stream a remote checkpoint (file or directory) through the backend; None when missing."""
    fs = getattr(backend, "fs", None)
    url = backend.locate(relpath)
    if fs is None:  # a backend without a file system object: read the file through the protocol
        if not backend.exists(relpath):
            return None
        data = backend.read_bytes(relpath)
        return len(data), hashlib.sha256(data).hexdigest()
    if not fs.exists(url):
        return None
    if not fs.isdir(url):
        return stream_digest(lambda: fs.open(url, "rb"))
    base = fs._strip_protocol(url).rstrip("/")
    pairs = []
    for found in fs.find(url):
        path = fs._strip_protocol(found)
        rel = path[len(base) :].lstrip("/")
        pairs.append((rel, lambda p=path: fs.open(p, "rb")))
    return tree_digest(pairs)


def _check(root: Root, entry: ManifestEntry) -> tuple[str, str]:
    """Return ``(status, detail)`` with status ``ok``, ``BAD``, ``MISSING`` or ``UNCHECKED``."""
    try:
        if root.is_local:
            location = root.backend.locate(entry.path)
            found = digest(location) if os.path.exists(location) else None
        else:
            found = _remote_digest(root.backend, entry.path)
    except OSError as exc:
        return "BAD", f"cannot be read: {_one_line(exc)}"
    if found is None:
        return "MISSING", "listed in the manifest but not found"
    size, sha = found
    if entry.sha256 is None:
        return "UNCHECKED", "the manifest records no sha256"
    if sha != entry.sha256 and accounted(root.manifest, entry.path, sha):
        return "ok", f"{human_size(size)} (a save in progress: its pending record holds this sha256)"
    if sha != entry.sha256:
        return "BAD", f"sha256 {sha[:12]}… != manifest {entry.sha256[:12]}… ({size} vs {entry.size} bytes)"
    return "ok", human_size(size)


# -- commands -------------------------------------------------------------------------------------
@app.command("ls")
def ls_command(
    root: RootArg,
    as_json: bool = typer.Option(False, "--json", help="Print the entries as a JSON array."),
    storage_options: OptionsOpt = None,
) -> None:
    """List every checkpoint in the manifest (oldest first)."""
    opened = open_root(root, _parse_options(storage_options))
    if as_json:
        now = datetime.now(timezone.utc)
        rows = []
        for entry in opened.manifest.entries:
            row = json.loads(Manifest(entries=[entry]).to_json())["entries"][0]
            row["location"] = opened.backend.locate(entry.path)
            row["age_seconds"] = age_seconds(entry.created_at, now)
            rows.append(row)
        typer.echo(json.dumps(rows, indent=2))
        return
    if not opened.manifest.entries:
        typer.echo(f"{root}: the manifest lists no checkpoints")
        return
    _console().print(checkpoint_table(opened.manifest, title=opened.location))


@app.command("best")
def best_command(root: RootArg, storage_options: OptionsOpt = None) -> None:
    """Print the path or URL of the best checkpoint."""
    opened = open_root(root, _parse_options(storage_options))
    entry = opened.manifest.best()
    if entry is None:
        raise _fail(f"{root}: no checkpoint is marked best (was a monitor value logged?)", code=1)
    typer.echo(opened.backend.locate(entry.path))


@app.command("verify")
def verify_command(root: RootArg, storage_options: OptionsOpt = None) -> None:
    """Check every checkpoint against the manifest's sha256; exit 1 if any is bad or missing."""
    opened = open_root(root, _parse_options(storage_options))
    counts: dict[str, int] = {}
    for entry in opened.manifest.entries:
        status, detail = _check(opened, entry)
        counts[status] = counts.get(status, 0) + 1
        typer.echo(f"{status:<9} {entry.path}  {detail}", err=status in ("BAD", "MISSING"))
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no checkpoints"
    failed = counts.get("BAD", 0) + counts.get("MISSING", 0)
    typer.echo(f"{root}: {summary}")
    if failed:
        raise typer.Exit(1)


@app.command("prune")
def prune_command(
    root: RootArg,
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Keep the N most recent."),
    keep_best: Optional[int] = typer.Option(
        None, "--keep-best", help="Keep the K best of each run, by its own monitor (and its best)."
    ),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="min or max; default: the mode the run recorded, else by metric name."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted; delete nothing."),
    storage_options: OptionsOpt = None,
) -> None:
    """Delete checkpoints the manifest lists, beyond the ones kept; the manifest is updated first."""
    if keep_last is None and keep_best is None:
        raise _fail("prune: give --keep-last N and/or --keep-best K (nothing would be pruned)")
    try:
        policy = RetentionPolicy(keep_last=keep_last, keep_best=keep_best)
    except ValueError as exc:
        raise _fail(f"prune: --{_one_line(exc).replace('_', '-')}") from exc
    if mode not in (None, "min", "max"):
        raise _fail(f"prune: --mode: got {mode!r}; allowed: min, max")
    opened = open_root(root, _parse_options(storage_options))
    manifest = opened.manifest
    doomed = _select_deletions(policy, manifest, mode)
    verb = "would delete" if dry_run else "deleting"
    for entry in doomed:
        typer.echo(f"{verb} {opened.backend.locate(entry.path)}")
    kept = len(manifest.entries) - len(doomed)
    if dry_run or not doomed:
        typer.echo(f"{root}: {len(doomed)} to delete, {kept} kept" + (" (dry run)" if dry_run else ""))
        return
    _prune(opened, doomed)
    typer.echo(f"{root}: deleted {len(doomed)}, kept {kept}")


def _select_deletions(policy: RetentionPolicy, manifest: Manifest, mode: str | None) -> list[ManifestEntry]:
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
            doomed = {e.path for e in best.select_deletions(own, _direction(manifest, run, mode), {run})}
            keep.update(e.path for e in own if e.path not in doomed)
    return [e for e in entries if e.path not in keep]


def _direction(manifest: Manifest, run: str, mode: str | None) -> str:
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


def _prune(root: Root, doomed: Sequence[ManifestEntry]) -> None:
    """Record the deletions in the manifest first, then delete the files (see
    :func:`ckptcore.store.delete_checkpoints`)."""
    try:
        failed = delete_checkpoints(root.backend, [e.path for e in doomed])
    except OSError as exc:
        raise _fail(f"{root.location}: could not write the manifest, nothing deleted: {_one_line(exc)}") from exc
    for path, exc in failed:
        typer.echo(f"could not delete {path}: {_one_line(exc)}", err=True)
    if failed:
        raise typer.Exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (the ``ckptcore`` console script)."""
    app(args=list(argv) if argv is not None else None, prog_name="ckptcore")


if __name__ == "__main__":  # pragma: no cover
    main()
