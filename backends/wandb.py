"""W&B Artifacts: each committed checkpoint becomes a version of one ``wandb.Artifact``.

Every version gets the aliases ``latest`` and ``epoch_N`` (N 1-based, as in the file name;
``epoch_N_batch_M`` too for mid-epoch saves) and ``best`` when the checkpoint improved the
monitored value. W&B moves an alias to the newest version that receives it, so older versions
lose ``latest`` and ``best`` as training goes on. The metadata holds the epoch, the global
step, the metrics, the monitored value and the checkpoint's digest.

No staging copy: W&B copies every file it is given into its staging area unless the file is
declared immutable. A committed checkpoint never changes in place (the local backend writes a
new file and renames it, retention unlinks), so the backend hard-links the file (or each file
of a directory) into W&B's staging directory and adds the link with ``policy="immutable"``: no
bytes are copied, a later save under the same name or a pruned local copy cannot alter what
W&B uploads, and W&B removes the link once the upload is done (in offline mode it stays until
``wandb sync``). Where a hard link is impossible (another file system), W&B's own copy is used.

Retention: W&B versions are never deleted by ckptcore (``can_delete`` is False): deleting
versions needs the W&B API and a connection, and a version may be in use elsewhere. Use an
artifact TTL or W&B's cleanup tools for old versions; the aliases always point at the newest
``latest``/``best``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import threading
import uuid
from typing import Any, ClassVar

from ckptcore.backends.base import BaseBackend, CommitInfo
from ckptcore.errors import ConfigError, MissingDependencyError, StorageError

__all__ = ["WandbBackend"]

log = logging.getLogger("ckptcore")
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_INFO_KEYS = ("epoch", "batch", "global_step", "monitor", "monitor_value", "is_best", "digest", "size")


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise MissingDependencyError(
            f"the wandb backend needs the W&B SDK ({exc.name or exc} is not installed); "
            'install it with: pip install "ckptcore[wandb]"'
        ) from exc
    return wandb


def _staging_dir() -> str:
    """W&B's artifact staging directory (``$WANDB_DATA_DIR/artifacts/staging``)."""
    try:
        from wandb.sdk.artifacts.staging import get_staging_dir

        return str(get_staging_dir())
    except ImportError:  # pragma: no cover - a future SDK moved it
        from wandb import env

        path = os.path.join(env.get_data_dir(), "artifacts", "staging")
        os.makedirs(path, exist_ok=True)
        return path


def _plain(value: Any) -> Any:
    """JSON-safe metadata: NaN/inf become None, NumPy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def default_artifact_name(run: Any) -> str:
    """The artifact name W&B's own callback uses for ``run``: ``run_<run id>_model``."""
    return f"run_{run.id}_model"


def _check_args(root: Any, artifact_name: Any, artifact_type: Any) -> None:
    if not isinstance(root, str):
        raise ConfigError(f"root: got {root!r} ({type(root).__name__}); allowed: a string")
    if artifact_name is not None and (
        not isinstance(artifact_name, str) or not _ARTIFACT_NAME.match(artifact_name)
    ):
        raise ConfigError(
            f"artifact_name: got {artifact_name!r}; allowed: None (run_<run id>_model) or a name "
            "of letters, digits, '-', '_' and '.'"
        )
    if not isinstance(artifact_type, str) or not artifact_type.strip():
        raise ConfigError(f"artifact_type: got {artifact_type!r}; allowed: a non-empty string such as 'model'")


class WandbBackend(BaseBackend):
    """Log each committed checkpoint as a version of a W&B artifact.

    Use it as an extra backend next to the primary copy::

        run = wandb.init(project="p")
        ck = Checkpointer("ckpt/m-{epoch:02d}.keras", write=..., backends=["wandb"])

    Args:
        root: The checkpoint root (kept for messages; W&B stores by artifact name).
        artifact_name: Name of the artifact; default ``run_<run id>_model``, as W&B's own
            Keras callback names it.
        artifact_type: Type of the artifact (default ``"model"``).
        run: The W&B run to log to; default the active run (``wandb.run``).

    Raises:
        ConfigError: No W&B run is active, or an argument is invalid.
        MissingDependencyError: The W&B SDK is not installed.
    """

    name: str = "wandb"
    can_delete: ClassVar[bool] = False
    keeps_manifest: ClassVar[bool] = False

    # (run id, artifact name) -> relpath -> digest of the last version logged for it. Shared by
    # the backends of one run, so a new engine on the same run (a second ``fit``) does not
    # upload an unchanged file again.
    _last_logged: ClassVar[dict[tuple[str, str], dict[str, str]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        root: str = "",
        *,
        artifact_name: str | None = None,
        artifact_type: str = "model",
        run: Any = None,
    ) -> None:
        _check_args(root, artifact_name, artifact_type)
        wandb = _wandb()
        run = run if run is not None else wandb.run
        if run is None:
            raise ConfigError(
                "run: no active W&B run (wandb.run is None); call wandb.init() before creating "
                "the wandb backend, or pass run="
            )
        super().__init__(root)
        self.run = run
        self.artifact_name: str = artifact_name or default_artifact_name(run)
        self.artifact_type: str = artifact_type
        self._aliases: dict[str, list[str]] = {}
        self._held: list[str] = []

    # -- logging ------------------------------------------------------------------------------
    def put(self, src: str, relpath: str, info: CommitInfo) -> str:
        """Log ``src`` (a file or a directory) as a new artifact version named by ``relpath``.

        A file is stored under ``relpath``; a directory's contents at the artifact's root (W&B's
        layout), with ``relpath`` in the metadata (``path``).

        A file whose digest equals the last version logged for ``relpath`` is not logged again.
        """
        if not os.path.exists(src):
            raise FileNotFoundError(f"wandb: nothing to log at {src!r} for {relpath!r}")
        value = info.get("digest")
        if not value:
            from ckptcore.digest import digest

            value = digest(src)[1]
        with self._lock:
            seen = self._last_logged.setdefault((self.run.id, self.artifact_name), {})
            if seen.get(relpath) == value:
                log.info("wandb: %r is unchanged since its last version; not logged again", relpath)
                return self.locate(relpath)
        held = self._hold(src)
        try:
            artifact = self._artifact(held or src, held is not None, relpath, {**info, "digest": value})
            aliases = self._alias_list(info)
            self.run.log_artifact(artifact, aliases=aliases)
        except BaseException:
            if held is not None:
                shutil.rmtree(os.path.dirname(held), ignore_errors=True)
            raise
        with self._lock:
            seen[relpath] = value
            self._aliases[relpath] = aliases
        return self.locate(relpath)

    def _artifact(self, src: str, immutable: bool, relpath: str, info: CommitInfo) -> Any:
        wandb = _wandb()
        metadata = {key: _plain(info.get(key)) for key in _INFO_KEYS if key in info}
        metadata["metrics"] = _plain(dict(info.get("metrics") or {}))
        metadata["path"] = relpath
        artifact = wandb.Artifact(self.artifact_name, type=self.artifact_type, metadata=metadata)
        policy = "immutable" if immutable else "mutable"
        if os.path.isdir(src):
            # The directory's contents at the artifact's root, as W&B's own callback logs a
            # SavedModel: ``artifact.download()`` is then the directory itself.
            artifact.add_dir(src, policy=policy)
        else:
            artifact.add_file(src, name=relpath, policy=policy)
        return artifact

    @staticmethod
    def _alias_list(info: CommitInfo) -> list[str]:
        aliases = ["latest"]
        epoch, batch = info.get("epoch"), info.get("batch")
        if epoch is not None:
            aliases.append(f"epoch_{epoch}")
            if batch is not None:
                aliases.append(f"epoch_{epoch}_batch_{batch}")
        if info.get("is_best"):
            aliases.append("best")
        return aliases

    def _hold(self, src: str) -> str | None:
        """Hard-link ``src`` into W&B's staging directory; None when that is impossible."""
        holder = os.path.join(_staging_dir(), f"ckptcore-{uuid.uuid4().hex}")
        target = os.path.join(holder, os.path.basename(os.path.normpath(src)))
        try:
            os.makedirs(holder)
            if os.path.isdir(src):
                shutil.copytree(src, target, copy_function=os.link)
            else:
                os.link(src, target)
        except OSError as exc:
            log.info("wandb: cannot hard-link %r (%s); W&B makes its own staging copy", src, exc)
            shutil.rmtree(holder, ignore_errors=True)
            return None
        self._held.append(holder)
        return target

    # -- the rest of the protocol -------------------------------------------------------------
    def locate(self, relpath: str) -> str:
        """The artifact version holding ``relpath``: ``[entity/]project/name:alias``.

        The alias is the most specific one this backend gave it (``epoch_N_batch_M``,
        ``epoch_N``), or ``latest`` for a path it has not logged.
        """
        aliases = [a for a in self._aliases.get(relpath, []) if a.startswith("epoch_")]
        alias = aliases[-1] if aliases else "latest"
        parts = [p for p in (getattr(self.run, "entity", ""), getattr(self.run, "project", "")) if p]
        return "/".join([*parts, self.artifact_name]) + f":{alias}"

    def exists(self, relpath: str) -> bool:
        """Whether this backend logged ``relpath`` during this run."""
        with self._lock:
            return relpath in self._last_logged.get((self.run.id, self.artifact_name), {})

    def delete(self, relpath: str) -> None:
        """Do nothing: W&B versions are never deleted here (``can_delete`` is False)."""
        log.debug("wandb: not deleting the version of %r; W&B versions are kept", relpath)

    def read_bytes(self, relpath: str) -> bytes:
        """W&B keeps no small files for ckptcore (``keeps_manifest`` is False).

        Raises:
            FileNotFoundError: Always.
        """
        raise FileNotFoundError(
            f"wandb: {relpath!r} is not kept in W&B; the manifest lives with the primary backend"
        )

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Refuse: W&B keeps no small files for ckptcore (``keeps_manifest`` is False)."""
        raise StorageError(f"wandb: cannot store {relpath!r}; this backend keeps no manifest")

    def close(self) -> None:
        """Remove the staging links W&B has already uploaded and released."""
        for holder in self._held:
            if not any(files for _d, _s, files in os.walk(holder)):
                shutil.rmtree(holder, ignore_errors=True)
        self._held = [h for h in self._held if os.path.isdir(h)]

    def __repr__(self) -> str:
        return f"WandbBackend(artifact_name={self.artifact_name!r}, artifact_type={self.artifact_type!r})"
