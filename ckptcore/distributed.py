"""Several workers, one checkpoint: which process is the chief, and what the others do.

In a distributed job every worker runs the same training loop and the same callbacks. Only one
worker, the *chief*, commits: checkpoint files, the manifest, W&B artifacts and retention
deletes. The others take the same decisions (same schedule, same best) and call the same write
function, because some engines need every worker to take part in a save (a value read under
``tf.distribute``, a gather of sharded JAX arrays), but they write it into a private temporary
directory outside the checkpoint root and delete it: nothing of theirs reaches the root.

Who is the chief, in order of precedence:

1. An explicit ``is_chief=True/False`` given to the :class:`~ckptcore.Checkpointer` (or to the
   Keras callbacks): for launchers ckptcore does not know (Ray Train:
   ``is_chief=ray.train.get_context().get_world_rank() == 0``).
2. What the framework adapter reads from the engine in use (the Keras adapter: JAX's
   ``jax.process_index()`` once ``jax.distributed`` is initialised, the cluster resolver of a
   ``tf.distribute`` strategy).
3. The environment, by :func:`role_from_env`: ``TF_CONFIG`` (task ``chief``, else ``worker`` 0
   when the cluster has no ``chief``), then ``RANK`` (torchrun, ``torch.distributed``,
   Ray Train's torch workers), then ``SLURM_PROCID`` (one task per process under ``srun``).
4. Otherwise the process is alone, so it is the chief.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ckptcore.commit import Committer
from ckptcore.errors import ConfigError
from ckptcore.manifest import ManifestEntry

__all__ = ["Role", "WorkerCommitter", "is_chief", "role_from_env", "role_from_task"]

log = logging.getLogger("ckptcore")

#: Environment variables holding a process rank, in order of precedence after TF_CONFIG.
RANK_VARIABLES: tuple[tuple[str, str], ...] = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


@dataclass(frozen=True)
class Role:
    """This process's place in a distributed job.

    Attributes:
        chief: Whether this process commits the checkpoints.
        index: Its index among the workers (0-based), if known.
        count: How many workers there are, if known.
        source: Where the role was read (``"TF_CONFIG"``, ``"RANK"``, ``"jax"``, ...).
    """

    chief: bool
    index: int | None = None
    count: int | None = None
    source: str = "default"


def role_from_task(task_type: str | None, task_id: int | None, cluster: Mapping[str, Any],
                   source: str = "TF_CONFIG") -> Role:
    """The role of a ``tf.distribute`` task: ``chief`` 0, or ``worker`` 0 with no chief listed.

    Evaluators and parameter servers are never the chief.
    """
    index = int(task_id or 0)
    workers = len(cluster.get("chief", ())) + len(cluster.get("worker", ()))
    if task_type == "chief":
        chief = index == 0
    elif task_type == "worker":
        chief = index == 0 and not cluster.get("chief")
        index += len(cluster.get("chief", ()))
    else:
        chief = False
    return Role(chief=chief, index=index, count=workers or None, source=source)


def _tf_config_role(text: str) -> Role | None:
    """The role ``TF_CONFIG`` describes; None for one without a task or cluster (``{}``),
    which tf.distribute also takes for a job of one."""
    try:
        config = json.loads(text)
        task = config.get("task") or {}
        cluster = config.get("cluster") or {}
        if not isinstance(task, dict) or not isinstance(cluster, dict):
            raise TypeError("task and cluster must be objects")
        if not task.get("type"):
            if cluster:  # who is this process? Taken for a worker, nothing would ever be committed
                raise ValueError("a cluster but no task type")
            return None
        index = task.get("index") or 0
        if isinstance(index, bool) or not isinstance(index, (int, str)) or int(index) < 0:
            raise ValueError(f"task index {index!r}")
        return role_from_task(task["type"], int(index), cluster)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"TF_CONFIG: got {text[:200]!r}, which is not a tf.distribute cluster description "
            '({"cluster": {...}, "task": {"type": "worker", "index": 0}}); fix it, or pass '
            "is_chief=True/False"
        ) from exc


def _rank(name: str, value: str, size_name: str, environ: Mapping[str, str]) -> Role:
    try:
        rank = int(value)
        size = int(environ[size_name]) if environ.get(size_name) else None
    except ValueError as exc:
        raise ConfigError(
            f"{name}: got {value!r} ({size_name}={environ.get(size_name)!r}); allowed: a process "
            "rank, an int >= 0; fix the environment, or pass is_chief=True/False"
        ) from exc
    if rank < 0:
        raise ConfigError(f"{name}: got {value!r}; allowed: an int >= 0, or pass is_chief=True/False")
    return Role(chief=rank == 0, index=rank, count=size, source=name)


def role_from_env(environ: Mapping[str, str] | None = None) -> Role | None:
    """The role the environment describes (``TF_CONFIG``, ``RANK``, ``SLURM_PROCID``), or None.

    Raises:
        ConfigError: A variable is set but cannot be read (named in the message).
    """
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG", "").strip() and (role := _tf_config_role(environ["TF_CONFIG"])) is not None:
        return role
    for name, size_name in RANK_VARIABLES:
        if environ.get(name, "").strip():
            return _rank(name, environ[name].strip(), size_name, environ)
    return None


def is_chief(explicit: bool | None = None, detected: Role | None = None,
             environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process commits: ``explicit``, else ``detected``, else the environment.

    Args:
        explicit: The ``is_chief`` argument, if given.
        detected: What a framework adapter read from the engine in use.
        environ: The environment to read (default ``os.environ``).
    """
    if explicit is not None:
        return explicit
    role = detected or role_from_env(environ)
    return True if role is None else role.chief


class WorkerCommitter(Committer):
    """The commit pipeline of a worker that is not the chief: the save runs, nothing is kept.

    ``save`` calls the write function (the engine may need this worker's part in it) on a path
    in a private temporary directory outside the checkpoint root, deletes it, and records the
    entry in this worker's in-memory manifest, as the chief records it, so ``latest()``,
    ``best()`` and retention's choices are the chief's. No manifest is written, nothing is
    deleted from storage.

    A write function with a ``skip()`` method (one bound to a snapshot the training thread
    already took, where this worker's part was done) is skipped instead of written.
    """

    claims_runs = False  # it writes nothing to the root, not even its liveness

    def save(self, relpath: str, write: Callable[[str], None], entry: ManifestEntry) -> ManifestEntry:
        """Run ``write`` into a private temporary path, delete it, record ``entry`` in memory."""
        skip = getattr(write, "skip", None)
        if callable(skip):
            skip()
        else:
            tmpdir = tempfile.mkdtemp(prefix="ckptcore-worker-")
            try:
                write(os.path.join(tmpdir, relpath.rsplit("/", 1)[-1]))
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
        planned, _down = self._plan(entry)  # in memory only: a worker's write_manifest writes nothing
        self._committed(entry, *planned, unsafe=set())  # entry.backends: where the chief commits it
        return entry

    def foreign_directory(self, relpath: str) -> str | None:
        """Never a reason to refuse here: the chief checks its own root."""
        return None

    def write_manifest(self, skip: Sequence[str] = (), best: Any = None) -> set[str]:
        """Nothing: only the chief writes the manifest."""
        return set()

    def _delete_pruned(self, unsafe: set[str]) -> None:
        with self.lock:
            self._undeleted = []  # the chief deletes what retention prunes
            self.manifest.pending = [r for r in self.manifest.pending if r.digest is not None]

    def __repr__(self) -> str:
        return f"WorkerCommitter({self.primary!r}, run_id={self.run_id!r})"
