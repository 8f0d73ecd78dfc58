"""``manifest.json``: what this engine saved, validated on the way in and out."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ckptcore.errors import ManifestError

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "Manifest", "ManifestEntry"]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class ManifestEntry(BaseModel):
    """One committed checkpoint."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="File or directory name of the checkpoint")
    path: str = Field(description="Path relative to the checkpoint root, '/'-separated")
    epoch: Optional[int] = Field(default=None, description="1-based epoch, as in the file name")
    batch: Optional[int] = Field(default=None, description="1-based batch, when saved mid-epoch")
    global_step: int = Field(default=0, ge=0, description="Batches run since training began")
    metrics: dict[str, Any] = Field(default_factory=dict)
    monitor: Optional[str] = None
    monitor_value: Optional[float] = None
    is_best: bool = False
    size: int = Field(default=0, ge=0)
    sha256: Optional[str] = None
    created_at: str = Field(default_factory=_now)
    run_id: str = Field(default="", description="The engine session that wrote it")
    backends: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.split("/")
        if any(part in ("", ".", "..") for part in parts) or "\\" in value or "\x00" in value:
            # "" also catches a leading "/"; "." would name the root itself (a delete of it
            # would remove every checkpoint).
            raise ValueError(f"path must be relative and stay under the root, naming something below it; got {value!r}")
        return value


class Manifest(BaseModel):
    """The whole manifest: entries in commit order plus the engine state."""

    model_config = ConfigDict(extra="ignore")

    version: int = MANIFEST_VERSION
    entries: list[ManifestEntry] = Field(default_factory=list)
    tracker: dict[str, Any] = Field(default_factory=dict)
    schedule: dict[str, Any] = Field(default_factory=dict)
    runs: list[str] = Field(default_factory=list, description="Engine sessions, oldest first")
    updated_at: str = Field(default_factory=_now)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > MANIFEST_VERSION:
            raise ValueError(
                f"manifest version {value} is newer than this ckptcore understands "
                f"({MANIFEST_VERSION}); upgrade ckptcore"
            )
        return value

    # -- queries ----------------------------------------------------------------------------
    def get(self, path: str) -> ManifestEntry | None:
        """Return the entry at relative ``path``, if any."""
        for entry in self.entries:
            if entry.path == path:
                return entry
        return None

    def best(self) -> ManifestEntry | None:
        """The most recent entry marked best, or None."""
        for entry in reversed(self.entries):
            if entry.is_best:
                return entry
        return None

    def latest(self) -> ManifestEntry | None:
        """The most recently committed entry, or None."""
        return self.entries[-1] if self.entries else None

    # -- changes ----------------------------------------------------------------------------
    def add(self, entry: ManifestEntry) -> None:
        """Add ``entry``, replacing an entry at the same path; only one entry stays best."""
        self.entries = [e for e in self.entries if e.path != entry.path]
        if entry.is_best:
            for other in self.entries:
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
    def from_json(cls, text: str | bytes, source: str = "manifest.json") -> "Manifest":
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:
        return _json_safe(float(value))
    except (TypeError, ValueError):
        return str(value)
