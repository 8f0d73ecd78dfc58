"""Warnings that point at the user's call, not at library internals.

A warning issued deep inside the engine (a save that failed, a monitor missing from the logs)
is about the line of the user's script that drove it: ``model.fit(...)``, a ``CallbackList``
hook of a hand-written loop, ``Checkpointer(...)``. :func:`warn` finds that line by walking out
of the frames of ckptcore and of the training frameworks that call its hooks, so the warning's
file and line (and the ``__main__`` filter that shows a ``DeprecationWarning``) are the user's.
Every warning ckptcore issues goes through it.
"""

from __future__ import annotations

import sys
import warnings
from typing import Optional

__all__ = ["INTERNAL_MODULES", "user_stacklevel", "warn"]

#: Top-level packages whose frames are not "the user's call": ckptcore itself and the
#: frameworks whose loops call ckptcore's hooks.
INTERNAL_MODULES: tuple[str, ...] = ("ckptcore", "keras", "tensorflow", "tf_keras", "jax", "torch")


def _internal(module: Optional[str]) -> bool:
    if not module:
        return False
    top = module.split(".", 1)[0]
    return top in INTERNAL_MODULES


def user_stacklevel(start: int = 1) -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside the libraries.

    Args:
        start: Frames to skip first (1: the caller of this function).

    Returns:
        A stacklevel for :func:`warnings.warn` called from the caller of this function; the
        outermost frame when every frame is internal (a background thread, say).
    """
    frame = sys._getframe(start)
    level = 1
    while frame.f_back is not None and _internal(frame.f_globals.get("__name__")):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a warning of ``category`` pointing at the user's call."""
    # Level 1 of the count is warn()'s caller: skip this frame too.
    warnings.warn(message, category, stacklevel=user_stacklevel(2) + 1)
