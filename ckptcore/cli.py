"""The ``ckptcore`` command: list, find, verify and prune the checkpoints under a root.

A root is a local directory or any fsspec URL (``s3://bucket/run``, ``memory://run``) holding a
``manifest.json``. Storage is reached through :func:`ckptcore.backends.resolve_backend`, so
optional packages (fsspec, s3fs) are imported only for a URL that needs them::

    ckptcore ls runs/a            # a table of every checkpoint
    ckptcore ls runs/a --json     # the same, as JSON (every command takes --json)
    ckptcore best runs/a          # the best checkpoint's path or URL, checked against its digest
    ckptcore latest runs/a        # the most recent one's
    ckptcore verify runs/a        # the digest of every file against the manifest
    ckptcore prune runs/a --keep-last 3 --keep-best 2 --dry-run
    ckptcore plot runs/a -o runs-a.png   # the monitored metric over the checkpoints

Exit status: 0 on success, 1 when ``verify`` finds a bad, missing or unverified (no digest)
file (or ``best``/``latest`` finds none, or finds it bad, missing or unverified), 2 for a missing root or
bucket, a root without a manifest or a bad argument.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Optional, Sequence

import typer
from rich.console import Console

from ckptcore.table import checkpoint_table, entry_row, human_age, human_size, printable
from ckptcore.errors import CkptcoreError
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ckptcore.store import delete_checkpoints, load_settled, root_of_manifest
from ckptcore.pruning import select_deletions
from ckptcore.retention import RetentionPolicy
from ckptcore.verification import check_entry, one_line as _one_line

__all__ = ["Root", "app", "checkpoint_table", "human_age", "human_size", "main", "open_root"]

_MIN_KEEP = 1

_URL_MARK = "://"

app = typer.Typer(
    name="ckptcore",
    help="Inspect and maintain ckptcore checkpoint roots (a local directory or an fsspec URL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RootArg = Annotated[str, typer.Argument(help="Checkpoint root: a directory or URL holding manifest.json.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoVerifyOpt = Annotated[
    bool, typer.Option("--no-verify", help="Do not check the file against the manifest's digest.")
]
OptionsOpt = Annotated[
    Optional[str],
    typer.Option("--storage-options", help='JSON object for the storage backend, e.g. \'{"anon": true}\'.'),
]


def _print_version(value: bool) -> None:
    if value:
        from ckptcore import __version__

        typer.echo(f"ckptcore {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Inspect and maintain ckptcore checkpoint roots (a local directory or an fsspec URL)."""


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
    typer.echo(f"ckptcore: error: {printable(message)}", err=True)
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
        message = _one_line(exc)  # a BucketNotFoundError names the root itself
        raise _fail(message if message.startswith(root) else f"{root}: {message}") from exc
    if manifest is None:
        raise _fail(f"{root}: no ckptcore manifest here ({MANIFEST_NAME}); not a ckptcore checkpoint root")
    return Root(root, backend, manifest)


#: The width of piped output: wider than any table (names are at most 255 bytes), so none is cut.
_PIPED_WIDTH = 10_000


def _console() -> tuple[Console, int | None]:
    """The console to print to and the width a table must fit (None: its natural width).

    A terminal (or ``COLUMNS``) keeps its width; piped output is never cut.
    """
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        console = Console(file=sys.stdout)
        return console, console.width
    return Console(file=sys.stdout, width=_PIPED_WIDTH), None


def _check(root: Root, entry: ManifestEntry) -> tuple[str, str]:
    return check_entry(root.backend, root.manifest, entry, local=root.is_local)


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
        rows = [entry_row(e, opened.backend.locate(e.path), now) for e in opened.manifest.entries]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not opened.manifest.entries:
        typer.echo(f"{root}: the manifest lists no checkpoints")
        return
    console, width = _console()
    # Never cropped: a table that cannot fit (its numbers are never cut) wraps instead.
    console.print(checkpoint_table(opened.manifest, title=opened.location, width=width), crop=False)


@app.command("best")
def best_command(root: RootArg, as_json: JsonOpt = False, no_verify: NoVerifyOpt = False,
                 storage_options: OptionsOpt = None) -> None:
    """Print the path or URL of the best checkpoint; exit 1 if it is missing, bad or unverified."""
    _show(root, "best", as_json, not no_verify, storage_options)


@app.command("latest")
def latest_command(root: RootArg, as_json: JsonOpt = False, no_verify: NoVerifyOpt = False,
                   storage_options: OptionsOpt = None) -> None:
    """Print the path or URL of the most recent checkpoint; exit 1 if it is missing, bad or unverified."""
    _show(root, "latest", as_json, not no_verify, storage_options)


#: Statuses that fail ``verify``, ``best`` and ``latest``: nothing vouches for these bytes.
_FAILED = ("BAD", "MISSING", "UNVERIFIED")
_NONE_FOUND = {"best": "no checkpoint is marked best (was a monitor value logged?)",
               "latest": "the manifest lists no checkpoints"}


def _show(root: str, which: str, as_json: bool, verify: bool, storage_options: str | None) -> None:
    """Print the ``which`` checkpoint's location (or its JSON row); exit 1 when there is none or
    it fails its check (as :func:`ckptcore.adapters.keras.load_best` would refuse it)."""
    opened = open_root(root, _parse_options(storage_options))
    entry = opened.manifest.best() if which == "best" else opened.manifest.latest()
    if entry is None:
        raise _fail(f"{root}: {_NONE_FOUND[which]}", code=1)
    status, detail = _check(opened, entry) if verify else ("UNCHECKED", "not checked (--no-verify)")
    failed = status in _FAILED
    location = opened.backend.locate(entry.path)
    if as_json:
        row = {**entry_row(entry, location), "status": status.lower(), "detail": detail}
        typer.echo(json.dumps(row, indent=2))
    elif not failed:  # a script reading the path gets none when the file is not fit to load
        typer.echo(printable(location))
    if failed:
        raise _fail(f"{opened.location}: the {which} checkpoint {entry.path} is {status}: {detail}", code=1)



@app.command("verify")
def verify_command(root: RootArg, as_json: JsonOpt = False, storage_options: OptionsOpt = None) -> None:
    """Check every checkpoint against the manifest's digest; exit 1 if any is bad, missing or
    has no digest to check against (unverified)."""
    opened = open_root(root, _parse_options(storage_options))
    counts: dict[str, int] = {}
    checked = []
    for entry in opened.manifest.entries:
        status, detail = _check(opened, entry)
        counts[status] = counts.get(status, 0) + 1
        checked.append({"path": entry.path, "location": opened.backend.locate(entry.path),
                        "status": status.lower(), "detail": detail})
        if not as_json:
            typer.echo(f"{status:<10} {printable(entry.path)}  {detail}", err=status in _FAILED)
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no checkpoints"
    failed = sum(counts.get(status, 0) for status in _FAILED)
    if as_json:
        counted = {s.lower(): n for s, n in counts.items()}
        report = {"root": root, "ok": not failed, "counts": counted, "checkpoints": checked}
        typer.echo(json.dumps(report, indent=2))
    else:
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
    as_json: JsonOpt = False,
    storage_options: OptionsOpt = None,
) -> None:
    """Delete checkpoints the manifest lists, beyond the ones kept; the manifest is updated first."""
    if keep_last is None and keep_best is None:
        raise _fail("prune: give --keep-last N and/or --keep-best K (nothing would be pruned)")
    policy = _policy("prune", keep_last, keep_best, mode)
    opened = open_root(root, _parse_options(storage_options))
    manifest = opened.manifest
    doomed = select_deletions(policy, manifest, mode)
    verb = "would delete" if dry_run else "deleting"
    for entry in doomed if not as_json else ():
        typer.echo(f"{verb} {printable(opened.backend.locate(entry.path))}")
    kept = len(manifest.entries) - len(doomed)
    report = {"root": root, "dry_run": dry_run, "deleted": [opened.backend.locate(e.path) for e in doomed],
              "kept": [e.path for e in manifest.entries if e.path not in {d.path for d in doomed}]}
    if dry_run or not doomed:
        done = f"{root}: {len(doomed)} to delete, {kept} kept" + (" (dry run)" if dry_run else "")
        typer.echo(json.dumps(report, indent=2) if as_json else done)
        return
    _prune(opened, doomed)
    typer.echo(json.dumps(report, indent=2) if as_json else f"{root}: deleted {len(doomed)}, kept {kept}")


def _policy(command: str, keep_last: int | None, keep_best: int | None, mode: str | None) -> RetentionPolicy:
    """The retention policy of ``--keep-last``/``--keep-best``; a bad value is a one-line error."""
    for option, value in (("--keep-last", keep_last), ("--keep-best", keep_best)):
        if value is not None and value < _MIN_KEEP:
            raise _fail(f"{command}: {option}: got {value}; {option} must be at least {_MIN_KEEP}")
    if mode not in (None, "min", "max"):
        raise _fail(f"{command}: --mode: got {mode!r}; allowed: min, max")
    try:
        return RetentionPolicy(keep_last=keep_last, keep_best=keep_best)
    except ValueError as exc:
        raise _fail(f"{command}: --{_one_line(exc).replace('_', '-')}") from exc


def _prune(root: Root, doomed: Sequence[ManifestEntry]) -> None:
    """Record the deletions in the manifest first, then delete the files (see
    :func:`ckptcore.store.delete_checkpoints`)."""
    try:
        failed = delete_checkpoints(root.backend, [e.path for e in doomed])
    except OSError as exc:
        raise _fail(f"{root.location}: could not write the manifest, nothing deleted: {_one_line(exc)}") from exc
    for path, exc in failed:
        typer.echo(f"could not delete {printable(path)}: {printable(_one_line(exc))}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("plot")
def plot_command(
    root: RootArg,
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="The PNG to write; default: <root's name>-checkpoints.png here."
    ),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Mark what prune --keep-last N keeps."),
    keep_best: Optional[int] = typer.Option(None, "--keep-best", help="Mark what prune --keep-best K keeps."),
    mode: Optional[str] = typer.Option(None, "--mode", help="min or max, as for prune."),
    as_json: JsonOpt = False,
    storage_options: OptionsOpt = None,
) -> None:
    """Draw the monitored metric over the checkpoints into a PNG, the best ones starred."""
    from ckptcore.plot import plot_checkpoints

    kept = None
    if keep_last is not None or keep_best is not None:
        policy = _policy("plot", keep_last, keep_best, mode)
    opened = open_root(root, _parse_options(storage_options))
    if keep_last is not None or keep_best is not None:
        doomed = {e.path for e in select_deletions(policy, opened.manifest, mode)}
        kept = [e.path for e in opened.manifest.entries if e.path not in doomed]
    output = output or f"{_root_name(root)}-checkpoints.png"
    try:
        drawn = plot_checkpoints(opened.manifest, output, title=opened.location, kept=kept)
    except (ImportError, ValueError, OSError) as exc:
        raise _fail(f"{root}: {_one_line(exc)}", code=1 if isinstance(exc, ValueError) else 2) from exc
    if as_json:
        typer.echo(json.dumps({"root": root, "output": output, "checkpoints": drawn}, indent=2))
    else:
        typer.echo(f"{root}: drew {drawn} checkpoints into {output}")


def _root_name(root: str) -> str:
    """The last component of a root's path (``.`` and ``..`` resolved), or ``root``."""
    path = root.split(_URL_MARK, 1)[1] if _URL_MARK in root else os.path.abspath(root)
    return os.path.basename(path.rstrip("/")) or "root"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (the ``ckptcore`` console script)."""
    app(args=list(argv) if argv is not None else None, prog_name="ckptcore")


if __name__ == "__main__":  # pragma: no cover
    main()
