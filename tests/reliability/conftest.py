"""Fixtures for the reliability tests: a stoppable S3 server, fsspec file systems that fail.

The file systems are real fsspec implementations (subclasses of ``MemoryFileSystem``) that
fail chosen calls, the way a flaky network store or a full bucket would.
"""

from __future__ import annotations

import errno
import os
import uuid
from typing import Any, Callable

import pytest
from s3_server import running_s3


@pytest.fixture
def s3(monkeypatch):
    """A running S3 server of this test's own, with a bucket; stopped at the end.

    ``s3.stop()`` and ``s3.start()`` take it away and bring it back on the same port.
    """
    # ckptcore retries; botocore's own retries of a refused connection would only add delay.
    config = {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 5}
    with running_s3(monkeypatch, config_kwargs=config) as server:
        server.bucket = server.make_bucket()  # type: ignore[attr-defined]
        yield server


def _memory_subclass(protocol: str, body: dict[str, Any]) -> type:
    """A ``MemoryFileSystem`` under its own protocol, with a store of its own."""
    from fsspec.implementations.memory import MemoryFileSystem

    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith(f"{protocol}://"):
            path = "memory://" + path[len(protocol) + 3:]
        return MemoryFileSystem._strip_protocol.__func__(cls, path)

    attrs = {"protocol": protocol, "store": {}, "pseudo_dirs": [""],
             "_strip_protocol": classmethod(_strip_protocol), **body}
    return type(f"{protocol.title()}FileSystem", (MemoryFileSystem,), attrs)


class Faults:
    """Which calls of :class:`FlakyMemoryFileSystem` fail, how often and with what."""

    def __init__(self) -> None:
        self.plan: dict[str, tuple[int, Callable[[], BaseException]]] = {}
        self.calls: dict[str, int] = {}

    def fail(self, method: str, times: int, error: Callable[[], BaseException]) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error()``."""
        self.plan[method] = (times, error)

    def check(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        times, error = self.plan.get(method, (0, None))  # type: ignore[assignment]
        if times > 0:
            self.plan[method] = (times - 1, error)
            raise error()


def _flaky(name: str) -> Callable[..., Any]:
    def method(self, *args: Any, **kwargs: Any) -> Any:
        type(self).faults.check(name)
        return getattr(super(type(self), self), name)(*args, **kwargs)

    method.__name__ = name
    return method


@pytest.fixture
def flaky_fs():
    """The ``flakymem://`` protocol: an in-memory fsspec file system whose calls fail on demand.

    Returns the :class:`Faults` controlling it; ``flaky_fs.url`` is a fresh root URL.
    """
    fsspec = pytest.importorskip("fsspec")
    faults = Faults()
    cls = _memory_subclass("flakymem", {
        "faults": faults, "cachable": False,
        **{name: _flaky(name) for name in ("put_file", "pipe_file", "cat_file", "rm")},
    })
    fsspec.register_implementation("flakymem", cls, clobber=True)
    faults.url = f"flakymem://bucket-{uuid.uuid4().hex[:8]}/run"  # type: ignore[attr-defined]
    faults.fs = cls()  # type: ignore[attr-defined]
    faults.fs.mkdir(faults.url.split("://", 1)[1].split("/")[0])  # type: ignore[attr-defined]
    yield faults
    cls.store.clear()


@pytest.fixture
def quota_fs():
    """The ``quotamem://`` protocol: an in-memory fsspec file system that holds at most
    ``quota`` bytes and raises ``ENOSPC`` past it, like a full disk or bucket quota."""
    fsspec = pytest.importorskip("fsspec")

    def used(self) -> int:
        return sum(len(f.getvalue()) if hasattr(f, "getvalue") else 0 for f in type(self).store.values())

    def put_file(self, lpath, rpath, **kwargs):
        self._charge(os.path.getsize(lpath), rpath)
        return super(cls, self).put_file(lpath, rpath, **kwargs)

    def pipe_file(self, path, value, **kwargs):
        self._charge(len(value), path)
        return super(cls, self).pipe_file(path, value, **kwargs)

    def _charge(self, size, path):
        path = self._strip_protocol(path)
        existing = type(self).store.get(path)
        freed = len(existing.getvalue()) if existing is not None else 0
        if self.used() - freed + size > type(self).quota:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    cls = _memory_subclass("quotamem", {"quota": 0, "cachable": False, "used": used, "put_file": put_file,
                                        "pipe_file": pipe_file, "_charge": _charge})
    fsspec.register_implementation("quotamem", cls, clobber=True)
    cls.url = f"quotamem://bucket-{uuid.uuid4().hex[:8]}/run"
    yield cls
    cls.store.clear()
