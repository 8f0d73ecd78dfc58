"""Freeing the space of replaced and deleted checkpoints, off the saving thread.

Removing a large file costs time in proportion to its size: the file system frees every block
(about 55 ms for 227 MB on ext4, more where deletes are discarded to the disk). A replace over
an existing checkpoint, a retention delete and a directory swap would each pay that inside a
save. Instead the old copy is moved (or hard-linked) into a staging slot at once, which takes
no time, and the slot is handed to the process's :class:`Reaper`, which removes it on a thread
of its own.

The slot is under ``ROOT/.ckptcore/staging``, never under a final name, so what is still being
freed is never visible as a checkpoint. A process that exits leaves the reaper a bounded time
to finish (:data:`EXIT_WAIT_SECONDS`); what it leaves, or what a killed process leaves, the next
open of the root removes (:func:`ckptcore.backends.local_layout.recover` and ``sweep``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
from collections import deque

__all__ = ["EXIT_WAIT_SECONDS", "REAPER", "Reaper"]

log = logging.getLogger("ckptcore")
#: How long an exiting process waits for the reaper to finish what it was handed.
EXIT_WAIT_SECONDS = 30.0


class Reaper:
    """A daemon thread removing the directories handed to it, in order."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Start empty: at construction, and in a forked child (which has no reaper thread; its
        parent's keeps freeing what it was handed)."""
        self._todo: deque[str] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def submit(self, path: str) -> None:
        """Remove ``path`` (a staging slot) soon, on the reaper's thread."""
        with self._cond:
            self._todo.append(path)
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ckptcore-reaper", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over so far is removed.

        Args:
            timeout: Seconds to wait at most (None: as long as it takes).

        Returns:
            Whether the reaper is idle.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._todo), timeout=60.0):
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                path = self._todo.popleft()
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %r: %s (removed at the next open of its root)", path, exc)
            finally:
                with self._cond:
                    self._busy -= 1
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
