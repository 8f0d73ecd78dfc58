"""A real S3 API server on loopback for the tests: moto's ``ThreadedMotoServer``, as s3fs tests
itself. Every test module that needs S3 starts one through :class:`S3Server`.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from typing import Any, Iterator

import pytest

__all__ = ["AWS_TEST_ENV", "S3Server", "free_port", "running_s3"]

#: Dummy credentials: moto accepts any, botocore insists on some.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """moto's S3 server on 127.0.0.1, which a test may stop and start again on the same port.

    moto keeps its buckets in the process, so objects written before a stop are there after.
    Skips the test when s3fs or moto's server is not installed. Set the credentials of
    :data:`AWS_TEST_ENV` in the environment (``monkeypatch.setenv``) before using it.

    Args:
        **options: Extra ``storage_options`` for s3fs (``config_kwargs``, say).
    """

    def __init__(self, **options: Any) -> None:
        pytest.importorskip("s3fs")
        self._factory = pytest.importorskip("moto.server").ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        #: ``storage_options`` that point s3fs here (no listing cache: tests look right after writes).
        self.options: dict[str, Any] = {
            "client_kwargs": {"endpoint_url": self.endpoint}, "use_listings_cache": False, **options,
        }
        self._server: Any = None

    def start(self) -> "S3Server":
        if self._server is None:
            self._server = self._factory(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def make_bucket(self) -> str:
        """Create a fresh, empty bucket; return its name."""
        import s3fs

        name = f"ckpt-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**self.options).mkdir(name)
        return name


@contextlib.contextmanager
def running_s3(patch: pytest.MonkeyPatch, **options: Any) -> Iterator[S3Server]:
    """A started :class:`S3Server` (``options`` as for it), with :data:`AWS_TEST_ENV` set in the
    environment through ``patch``; stopped on the way out."""
    for name, value in AWS_TEST_ENV.items():
        patch.setenv(name, value)
    server = S3Server(**options).start()
    try:
        yield server
    finally:
        server.stop()
