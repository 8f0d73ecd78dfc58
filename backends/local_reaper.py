"""Freeing the space of replaced and deleted checkpoints, off the saving thread.

Removing a large file costs time in proportion to its size: the file system frees every block
(about 55 ms for 227 MB on ext4, more where deletes are discarded to the disk). A replace over
an existing checkpoint, a retention delete and a directory swap would each pay that inside a
save. Instead the old copy is moved (or hard-linked) into a staging slot at once, which takes
no time, and the slot is handed to the process's :class:`Reaper`, which removes it on a thread
of its own.

The slot is under ``ROOT/.ckptcore/staging``, never under a final name, so what is still being
freed is never visible as a checkpoint. Each root's slots are removed on a thread of their
own, and a root's ``close`` or next open waits for that root's slots only, not for another
root's. A process that exits leaves the reaper a bounded time to finish
(:data:`EXIT_WAIT_SECONDS`); what it leaves, or what a killed process leaves, the next open of
the root removes (:func:`ckptcore.backends.local_layout.recover` and ``sweep``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
from collections import Counter, deque

__all__ = ["EXIT_WAIT_SECONDS", "REAPER", "Reaper"]

log = logging.getLogger("ckptcore")
#: How long an exiting process waits for the reaper to finish what it was handed.
EXIT_WAIT_SECONDS = 30.0


class Reaper:
    """Daemon threads removing the staging slots handed to them: one thread per root, each in
    order, so a slow removal on one root never holds up another's."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Start empty: at construction, and in a forked child (which has no reaper threads; its
        parent's keep freeing what they were handed)."""
        self._cond = threading.Condition()
        self._todo: dict[str, deque[str]] = {}  # root -> slots to remove, in order
        self._busy: Counter[str] = Counter()  # root -> slots handed over, not yet removed
        self._threads: dict[str, threading.Thread] = {}

    def submit(self, path: str, root: str = "") -> None:
        """Remove ``path`` (a staging slot of ``root``) soon, on that root's reaper thread."""
        root = os.path.realpath(root or ".")
        with self._cond:
            self._todo.setdefault(root, deque()).append(path)
            self._busy[root] += 1
            thread = self._threads.get(root)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._run, args=(root,), name="ckptcore-reaper", daemon=True)
                self._threads[root] = thread
                thread.start()
            self._cond.notify_all()

    def drain(self, timeout: float | None = None, root: str | None = None) -> bool:
        """Wait until everything handed over so far (for ``root``, when given) is removed.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes).
            root: Wait for this root's slots only; None: for every root's.

        Returns:
            Whether nothing (of ``root``) is left to remove.
        """
        if root is None:
            with self._cond:
                return self._cond.wait_for(lambda: not +self._busy, timeout)
        key = os.path.realpath(root or ".")  # the same directory, however it was named
        with self._cond:
            return self._cond.wait_for(lambda: self._busy[key] <= 0, timeout)

    def _run(self, root: str) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._todo.get(root)), timeout=60.0):
                    if self._threads.get(root) is threading.current_thread():  # idle: end
                        del self._threads[root]
                        self._todo.pop(root, None)
                    return
                path = self._todo[root].popleft()
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %r: %s (removed at the next open of its root)", path, exc)
            finally:
                with self._cond:
                    self._busy[root] -= 1
                    self._cond.notify_all()


#: The reaper every local root of this process shares.
REAPER = Reaper()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REAPER._reset)


@atexit.register
def _finish_at_exit() -> None:
    if not REAPER.drain(EXIT_WAIT_SECONDS):
        log.warning("checkpoint space is still being freed at exit; the rest is removed at the "
                    "next open of the root")
