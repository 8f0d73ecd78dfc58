"""The chief of a distributed Keras job, read from the engine in use, and layouts that cannot be saved.

:func:`detect_role` looks at the Keras backend's own distributed runtime:

- JAX: once ``jax.distributed.initialize`` has run, process ``jax.process_index() == 0`` of
  ``jax.process_count()`` is the chief.
- TensorFlow: inside a ``tf.distribute`` strategy's scope with a cluster resolver
  (``MultiWorkerMirroredStrategy``), task ``chief`` 0, else ``worker`` 0.

Anything else (no distributed runtime, a callback made outside the strategy's scope) is left
to :func:`ckptcore.distributed.is_chief`, which reads ``TF_CONFIG``, ``RANK`` and
``SLURM_PROCID``; an explicit ``is_chief=`` argument comes before all of them.
"""

from __future__ import annotations

from typing import Any

import keras

from ckptcore.distributed import Role, is_chief, role_from_task
from ckptcore.errors import ConfigError

__all__ = ["chief", "detect_role", "check_layout"]


def _jax_role() -> Role | None:
    import jax

    initialized = getattr(jax.distributed, "is_initialized", None)
    if initialized is None:  # an older JAX: the runtime's own state
        from jax._src import distributed as state

        initialized = lambda: state.global_state.client is not None  # noqa: E731
    if not initialized():
        return None  # jax.process_index() now would start JAX's backends before initialize
    return Role(chief=jax.process_index() == 0, index=jax.process_index(),
                count=jax.process_count(), source="jax")


def _tf_role() -> Role | None:
    import tensorflow as tf

    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    return role_from_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict(),
                          source="tf.distribute")


def detect_role() -> Role | None:
    """This process's role from the Keras backend's distributed runtime, or None."""
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_role()
    if backend == "tensorflow":
        return _tf_role()
    return None


def chief(explicit: bool | None) -> bool:
    """Whether this process commits: ``explicit``, else the engine in use, else the environment."""
    return is_chief(explicit, None if explicit is not None else detect_role())


def _spans_processes(value: Any) -> bool:
    """Whether a JAX array is sharded over devices of several processes (not replicated)."""
    return not getattr(value, "is_fully_addressable", True) and not getattr(value, "is_fully_replicated", True)


def check_layout(model: Any, gathers: bool) -> None:
    """Refuse, before training, a model whose variables no process holds whole.

    Under ``keras.distribution.ModelParallel`` across processes, a kernel sharded over the
    devices of several processes cannot be read by any one of them, so ``model.save`` fails
    (``Fetching value for jax.Array that spans non-addressable devices``). ckptcore's
    non-blocking snapshot (``async_save=True`` with ``.keras`` or ``.weights.h5``) gathers such
    arrays from every process (``gathers=True``); Keras's own save, used otherwise, cannot.

    Raises:
        ConfigError: ``gathers`` is False and a variable spans processes (named, with the fix).
    """
    if keras.backend.backend() != "jax" or gathers:
        return
    sharded = [v.path for v in model.variables if _spans_processes(getattr(v, "value", None))]
    if sharded:
        raise ConfigError(
            f"ModelCheckpoint: {len(sharded)} variable(s) are sharded across processes "
            f"({', '.join(sharded[:3])}{', ...' if len(sharded) > 3 else ''}), which Keras's own save "
            "cannot read (no process holds them whole); use async_save=True with a .keras or "
            ".weights.h5 filepath (ckptcore then gathers them from every process), or a layout "
            "that keeps each variable within one process"
        )
