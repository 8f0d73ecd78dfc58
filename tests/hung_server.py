"""A TCP endpoint on 127.0.0.1 that a test switches between hanging, flapping and answering.

Modes:

* ``"hang"``: accepts every connection, reads what comes and never replies;
* ``"close"``: accepts and closes at once (a store that flaps);
* ``"forward"``: relays bytes to a real server (moto's S3 server), so the store answers.

Switching the mode cuts every open connection, so a client's kept-alive connection sees the
new behaviour too. Used as s3fs's ``endpoint_url``.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["Endpoint"]

MODES = ("hang", "close", "forward")


class Endpoint:
    """A switchable TCP endpoint; use as a context manager (stops its threads and sockets).

    Args:
        mode: The initial mode (see the module docstring).
        target: ``(host, port)`` relayed to in ``"forward"`` mode.
    """

    def __init__(self, mode: str = "hang", target: tuple[str, int] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}")
        self._mode = mode
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="hung-endpoint", daemon=True)

    def __enter__(self) -> "Endpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        self._cut()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}")
        self._mode = mode
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            mode = self._mode
            if mode == "close":
                conn.close()
                continue
            self._track(conn)
            if mode == "hang":
                threading.Thread(target=self._drain, args=(conn,), daemon=True).start()
            else:
                self._forward(conn)

    def _drain(self, conn: socket.socket) -> None:
        try:
            while not self._stopping.is_set() and conn.recv(65536):
                pass
        except OSError:
            pass

    def _forward(self, conn: socket.socket) -> None:
        assert self.target is not None, "forward mode needs a target"
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        for src, dst in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def describe(self) -> dict[str, Any]:
        return {"mode": self._mode, "accepted": self.accepted, "url": self.url}
