"""Bounded retries with exponential backoff for transient storage faults.

A fault is *transient* when trying again may succeed: a dropped or refused connection, a
timeout, a throttled or failing server (HTTP 5xx, ``SlowDown``). A full disk, a missing or
read-only path and a permission error are not: they fail at once.

The check works on the exception's class names (and on its cause chain), so it recognises the
errors of botocore, aiohttp and fsspec without importing them. Note that through s3fs a
refused connection surfaces as botocore's ``EndpointConnectionError``, which is *not* an
``OSError``; a read timeout is one.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, TypeVar

__all__ = ["BackendRetries", "RetryPolicy", "is_transient"]

log = logging.getLogger("ckptcore")
T = TypeVar("T")

_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN", "EBUSY", "EINTR", "ETIMEDOUT", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED",
        "EPIPE", "ENETDOWN", "ENETUNREACH", "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN",
    )
    if hasattr(errno, name)
)
#: Exception class names (anywhere in the class hierarchy) that mark a transient fault:
#: the builtins, botocore (ConnectionError, HTTPClientError, ...), aiohttp, fsspec.
_TRANSIENT_NAMES = frozenset({
    "ConnectionError", "TimeoutError", "HTTPClientError", "EndpointConnectionError",
    "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError", "ResponseParserError",
    "IncompleteRead", "IncompleteReadError", "ClientConnectionError", "ClientPayloadError",
    "ServerDisconnectedError", "ServerTimeoutError", "FSTimeoutError",
})
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "ServerBusy",
})


def _one_is_transient(exc: BaseException) -> bool:
    if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        return (isinstance(status, int) and status >= 500) or code in _TRANSIENT_CODES
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a fault worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        if _one_is_transient(current):
            return True
        seen.add(id(current))
        current = current.__cause__  # raise ... from exc; an implicit context may be unrelated
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a backend call is retried.

    Args:
        retries: Extra attempts after the first (0 turns retrying off).
        backoff: Delay before the first retry, in seconds; it doubles on each retry.
        max_delay: Upper bound of one delay, in seconds.
        jitter: Each delay is scaled by a random factor in ``[1 - jitter, 1]`` so that many
            writers do not retry in lock-step.
        transient: Decides whether an exception is worth retrying.
        sleep: The sleep function (replaceable in tests).
    """

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5
    transient: Callable[[BaseException], bool] = is_transient
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delays(self) -> Iterator[float]:
        """The delays before each retry."""
        for attempt in range(self.retries):
            delay = min(self.backoff * (2**attempt), self.max_delay)
            yield delay * (1 - self.jitter * random.random())

    def call(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call ``fn(*args, **kwargs)``, retrying transient faults.

        Args:
            what: What the call does, for the log (``"upload 'w-3.keras' to fsspec"``).

        Returns:
            What ``fn`` returns.

        Raises:
            Exception: The last failure, once retries are spent, or at once when it is not
                transient.
        """
        delays = self.delays()
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not self.transient(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise
                # Named, as Python's last-resort handler prints the message alone.
                log.warning("ckptcore: %s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
                self.sleep(delay)


class BackendRetries:
    """Retries backend calls with one policy, and spares a backend that is down the retries.

    A backend whose last call failed on a transient fault even after its retries gets a single
    try, without backoff, until a call to it succeeds again: a store that is down then costs
    each save one attempt instead of the whole retry schedule, and training waits less on it.

    Args:
        policy: How calls are retried while the backend answers.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._down: set[str] = set()

    def call(self, name: str, what: str, fn: Callable[..., T], *args: object,
             policy: RetryPolicy | None = None, reaches_store: bool = True) -> T:
        """Call ``fn(*args)`` on backend ``name`` under ``policy`` (default: this one's).

        Args:
            reaches_store: False for a call that may succeed without the store answering
                (staging into a local temporary directory): its success does not count as
                the store being back.

        Raises:
            Exception: The last failure, as :meth:`RetryPolicy.call` raises it.
        """
        policy = policy or self.policy
        if name in self._down:
            policy = replace(policy, retries=0)
        try:
            result = policy.call(what, fn, *args)
        except Exception as exc:
            if policy.transient(exc):
                self._down.add(name)
            raise
        if reaches_store:
            self._down.discard(name)
        return result
