"""The manifest: what this engine saved, validated on the way in and out.

It is stored at :data:`MANIFEST_NAME` under the root (see :mod:`ckptcore.layout`).

Version 2 records each checkpoint's digest with its algorithm (``digest``:
``"blake3:<hex>"``, see :mod:`ckptcore.digest`). A version-1 manifest held bare SHA-256 hex
under ``sha256`` (and ``replaces``); it is read as version 2, its digests ``"sha256:<hex>"``,
and written back as version 2. A ckptcore that knows only version 1 refuses to open a root
with a version-2 manifest ("upgrade ckptcore") instead of misreading it (one already saving
there sets it aside at its next save: stop older writers of a root before upgrading).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ckptcore.digest import algorithm_of
from ckptcore.errors import ForeignManifestError, ManifestError
from ckptcore.layout import MANIFEST_NAME
from ckptcore.names import component_problem, path_problem, reserved_reason

__all__ = [
    "MANIFEST_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "Manifest", "ManifestEntry", "PendingRecord",
    "merge_manifests",
]

MANIFEST_VERSION = 2
#: The ``format`` mark of a ckptcore manifest: another tool's ``manifest.json`` lacks it.
MANIFEST_FORMAT = "ckptcore.manifest"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _check_relative(value: str) -> str:
    # An empty component also catches a leading "/"; "." would name the root itself (a
    # delete of it would remove every checkpoint).
    problem = path_problem(value)
    if problem is not None:
        raise ValueError(f"path must be relative and stay under the root, naming something below it; {problem}")
    reserved = reserved_reason(value)
    if reserved is not None:
        # Never a checkpoint: retention or prune would delete ckptcore's own files.
        raise ValueError(f"path {value!r} is reserved, never a checkpoint: {reserved}")
    return value


def _legacy_digest(value: Any, where: str) -> Any:
    """A version-1 digest (bare SHA-256 hex) as ``"sha256:<hex>"``."""
    if value is None:
        return None
    prefixed = f"sha256:{value.lower()}" if isinstance(value, str) else value
    try:
        algorithm_of(prefixed)
    except ValueError:
        raise ValueError(f"{where}: version-1 sha256 {value!r} is not 64 hex digits") from None
    return prefixed


def _entry_from_version_1(data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        return data
    data = dict(data)
    data["digest"] = _legacy_digest(data.pop("sha256", None), f"{where}.sha256")
    return data


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 manifest's data in version 2's form: ``sha256`` becomes ``digest``, and its
    bare SHA-256 hex (and ``replaces``) ``"sha256:<hex>"``."""
    data = dict(data)
    if isinstance(data.get("entries"), list):
        data["entries"] = [_entry_from_version_1(e, f"entries.{i}") for i, e in enumerate(data["entries"])]
    if isinstance(data.get("pending"), list):
        records = []
        for i, record in enumerate(data["pending"]):
            where = f"pending.{i}"
            record = _entry_from_version_1(record, where)
            if isinstance(record, dict):
                record["replaces"] = _legacy_digest(record.get("replaces"), f"{where}.replaces")
                for name in ("entry", "previous"):
                    if record.get(name) is not None:
                        record[name] = _entry_from_version_1(record[name], f"{where}.{name}")
            records.append(record)
        data["pending"] = records
    return data


def _check_digest(value: Optional[str]) -> Optional[str]:
    if value is not None:
        algorithm_of(value)  # ValueError: what was given and the form allowed
    return value


class ManifestEntry(BaseModel):
    """One committed checkpoint."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="File or directory name of the checkpoint")
    path: str = Field(description="Path relative to the checkpoint root, '/'-separated")
    epoch: Optional[int] = Field(default=None, description="1-based epoch, as in the file name")
    batch: Optional[int] = Field(default=None, description="1-based batch, when saved mid-epoch")
    partial: bool = Field(default=False, description="Saved before its epoch ended (a final checkpoint on a signal)")
    global_step: int = Field(default=0, ge=0, description="Batches run since training began")
    metrics: dict[str, Any] = Field(default_factory=dict)
    monitor: Optional[str] = None
    monitor_value: Optional[float] = None
    is_best: bool = False
    size: int = Field(default=0, ge=0)
    digest: Optional[str] = Field(default=None, description="'algorithm:hex' of the bytes (ckptcore.digest)")
    created_at: str = Field(default_factory=_now)
    run_id: str = Field(default="", description="The engine session that wrote it")
    backends: list[str] = Field(default_factory=list)

    @field_validator("digest")
    @classmethod
    def _digest_form(cls, value: Optional[str]) -> Optional[str]:
        return _check_digest(value)

    @field_validator("name")
    @classmethod
    def _one_component(cls, value: str) -> str:
        problem = component_problem(value)
        if problem is not None:
            # A name is used as a local file name (a download's, say): it must never be a path.
            raise ValueError(f"name must be one file or directory name; {problem}")
        return value

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return _check_relative(value)

    @model_validator(mode="after")
    def _name_is_the_last_component(self) -> "ManifestEntry":
        if self.name != self.path.rsplit("/", 1)[-1]:
            raise ValueError(f"name {self.name!r} must be the last component of path {self.path!r}")
        return self


class PendingRecord(BaseModel):
    """A change to the checkpoint under ``path`` that is written before it is made.

    A write record (``digest`` set) is stored before the new checkpoint is renamed (or
    uploaded) to ``path``; a delete record (``digest`` None) before a pruned one is removed.
    Until it is settled (see :mod:`ckptcore.pending`) the bytes under ``path`` are the new ones
    (``digest``), the old ones (``replaces``; ``previous`` is their entry, still listed), or
    nothing.
    """

    model_config = ConfigDict(extra="ignore")

    path: str = Field(description="Path relative to the root, as in ManifestEntry.path")
    digest: Optional[str] = Field(default=None, description="The new checkpoint's; None for a delete")
    size: int = Field(default=0, ge=0)
    replaces: Optional[str] = Field(default=None, description="The digest of what is under path now, if any")
    run_id: str = ""
    entry: Optional[ManifestEntry] = Field(default=None, description="Listed once the new bytes are found")
    previous: Optional[ManifestEntry] = Field(default=None, description="The entry of the replaced bytes")
    best_before: Optional[float] = Field(
        default=None, description="The run's stored best before this (a best) save; restored if it is dropped"
    )
    created_at: str = Field(default_factory=_now)

    @field_validator("digest", "replaces")
    @classmethod
    def _digest_form(cls, value: Optional[str]) -> Optional[str]:
        return _check_digest(value)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return _check_relative(value)


class Manifest(BaseModel):
    """The whole manifest: entries in commit order plus the engine state."""

    model_config = ConfigDict(extra="ignore")

    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION
    entries: list[ManifestEntry] = Field(default_factory=list)
    tracker: dict[str, Any] = Field(default_factory=dict)
    schedule: dict[str, Any] = Field(default_factory=dict)
    runs: list[str] = Field(default_factory=list, description="Engine sessions, oldest first")
    states: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per run: {'tracker': ..., 'schedule': ...}; the top-level fields hold the "
        "state of the run that wrote the latest entry (the run a resume continues)",
    )
    pending: list[PendingRecord] = Field(
        default_factory=list, description="Changes written before they were made; see ckptcore.pending"
    )
    updated_at: str = Field(default_factory=_now)

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, data: Any) -> Any:
        version = data.get("version") if isinstance(data, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version < 2:
            return _from_version_1(data)
        return data

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > MANIFEST_VERSION:
            raise ValueError(
                f"manifest version {value} is newer than this ckptcore understands "
                f"({MANIFEST_VERSION}); upgrade ckptcore"
            )
        return MANIFEST_VERSION  # an older one is read as this one (see the module's docstring)

    # -- queries ----------------------------------------------------------------------------
    def get(self, path: str) -> ManifestEntry | None:
        """Return the entry at relative ``path``, if any."""
        for entry in self.entries:
            if entry.path == path:
                return entry
        return None

    def best(self, run_id: str | None = None) -> ManifestEntry | None:
        """The most recent entry marked best (of run ``run_id``, when given), or None.

        Each run keeps its own best (runs sharing a root may monitor different metrics), so
        with several runs and no ``run_id`` this is the best of the run that saved a best last.
        """
        for entry in reversed(self.entries):
            if entry.is_best and run_id in (None, entry.run_id):
                return entry
        return None

    def latest(self, run_id: str | None = None) -> ManifestEntry | None:
        """The most recently committed entry (of run ``run_id``, when given), or None."""
        for entry in reversed(self.entries):
            if run_id in (None, entry.run_id):
                return entry
        return None

    # -- changes ----------------------------------------------------------------------------
    def add(self, entry: ManifestEntry) -> None:
        """Add ``entry``, replacing an entry at the same path; one entry per run stays best.

        Entries of other runs keep their flag: runs sharing a root may monitor other metrics.
        """
        self.entries = [e for e in self.entries if e.path != entry.path]
        if entry.is_best:
            for other in self.entries:
                if other.run_id == entry.run_id:
                    other.is_best = False
        self.entries.append(entry)
        self.updated_at = _now()

    def remove(self, path: str) -> None:
        """Drop the entry at ``path``."""
        self.entries = [e for e in self.entries if e.path != path]
        self.updated_at = _now()

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self) -> str:
        """Serialise to JSON text (NaN/inf metrics become null)."""
        return json.dumps(_json_safe(self.model_dump(mode="python")), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = MANIFEST_NAME) -> "Manifest":
        """Parse and validate manifest text.

        Raises:
            ManifestError: If the text is not JSON or does not match the schema.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{source}: not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ManifestError(f"{source}: not a manifest: JSON nested too deeply") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a JSON object, got {type(data).__name__}")
        # Manifests written before the mark existed are known by their entries.
        if data.get("format", MANIFEST_FORMAT if "entries" in data else None) != MANIFEST_FORMAT:
            raise ForeignManifestError(
                f"{source}: not a ckptcore manifest (no \"format\": \"{MANIFEST_FORMAT}\"), so "
                "ckptcore neither reads nor replaces it; give the checkpoints a directory of "
                "their own (say, a subdirectory in filepath)"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise ManifestError(f"{source}: invalid manifest: {problems}") from exc
        except RecursionError as exc:  # pragma: no cover - absurdly nested input
            raise ManifestError(f"{source}: invalid manifest: nested too deeply") from exc


def _created(entry: ManifestEntry) -> datetime:
    try:
        when = datetime.fromisoformat(entry.created_at)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def merge_manifests(ours: Manifest, stored: Manifest | None, run_id: str, owned: set[str]) -> Manifest:
    """Merge this run's view of a root with the manifest stored there by other runs.

    Rules: entries of ``run_id``, and any entry at an ``owned`` path (a path this run is
    replacing, or an entry of another run it put back), come from ``ours``, which is
    authoritative, deletions included; every other entry comes from ``stored``. Where this
    run's entry and another run's share a path, the newer one (``created_at``) is kept. Entries are ordered by ``created_at`` (stable),
    so :meth:`Manifest.latest` is the most recent checkpoint of any run. ``runs`` is the
    union, ``states`` too (this run's from ``ours``), and the top-level ``tracker`` and
    ``schedule`` are those of the run that wrote the latest entry: the run a resume continues.

    Args:
        ours: This run's manifest, its ``tracker``/``schedule`` already this run's state.
        stored: The manifest currently stored, or None when there is none.
        run_id: This run's id.
        owned: Relative paths whose entry (or absence) ``ours`` decides.
    """
    mine = [e for e in ours.entries if e.run_id == run_id or e.path in owned]
    others = [] if stored is None else [e for e in stored.entries if e.run_id != run_id and e.path not in owned]
    # One path, two runs (say, the same fixed file name): the newer entry names the bytes there.
    newer = {e.path: e for e in others}
    mine = [e for e in mine if e.path not in newer or _created(newer[e.path]) <= _created(e)]
    taken = {e.path for e in mine}
    others = [e for e in others if e.path not in taken]
    merged = ours.model_copy(deep=True)
    merged.entries = sorted([*(e.model_copy() for e in others), *(e.model_copy() for e in mine)], key=_created)
    runs = list(stored.runs) if stored is not None else []
    merged.runs = runs + [r for r in ours.runs if r not in runs]
    states = dict(stored.states) if stored is not None else {}
    states.update({k: v for k, v in ours.states.items() if k not in states})
    states[run_id] = {"tracker": ours.tracker, "schedule": ours.schedule}
    merged.states = states
    theirs = [] if stored is None else [r for r in stored.pending if r.run_id != run_id]
    mine_pending = [r for r in ours.pending if r.run_id == run_id]
    merged.pending = [*(r.model_copy() for r in theirs), *(r.model_copy() for r in mine_pending)]
    latest = merged.latest()
    if latest is not None and latest.run_id != run_id:
        state = states.get(latest.run_id)
        if state is not None:
            merged.tracker, merged.schedule = state.get("tracker", {}), state.get("schedule", {})
        elif stored is not None:
            merged.tracker, merged.schedule = stored.tracker, stored.schedule
    merged.updated_at = _now()
    return merged


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1024:
        return None  # too large for a float (and past 4300 digits for JSON): stored as null, as inf is
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:
        return _json_safe(float(value))
    except (TypeError, ValueError, OverflowError):
        return str(value)
