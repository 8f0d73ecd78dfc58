"""The retry policy: which faults are transient, how often and how long it waits."""

from __future__ import annotations

import errno

import pytest

from ckptcore.errors import CheckpointSaveError, StorageError
from ckptcore.retry import RetryPolicy, is_transient


def _botocore():
    return pytest.importorskip("botocore.exceptions")


def _client_error(code: str, status: int):
    return _botocore().ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


def _chained(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise StorageError(f"upload failed: {exc}") from exc
    except StorageError as outer:
        return outer


def _s3fs_translated(code: str, status: int) -> OSError:
    """What s3fs raises for an S3 error code it has no builtin for: EIO, caused by the ClientError."""
    error = OSError(errno.EIO, code)
    error.__cause__ = _client_error(code, status)
    return error


TRANSIENT = [
    lambda: ConnectionResetError(errno.ECONNRESET, "reset"),
    lambda: ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    lambda: BrokenPipeError(errno.EPIPE, "broken pipe"),
    lambda: TimeoutError("timed out"),
    lambda: OSError(errno.EAGAIN, "try again"),
    lambda: OSError(errno.EBUSY, "busy"),
    lambda: _botocore().EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),  # not an OSError
    lambda: _botocore().ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    lambda: _botocore().ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
    lambda: _client_error("SlowDown", 503),
    lambda: _client_error("InternalError", 500),
    lambda: pytest.importorskip("aiohttp").ServerDisconnectedError(),
    lambda: pytest.importorskip("fsspec.exceptions").FSTimeoutError(),
    lambda: _chained(ConnectionResetError("reset")),
    lambda: _s3fs_translated("ServiceUnavailable", 503),
]
PERMANENT = [
    lambda: PermissionError(errno.EACCES, "denied"),
    lambda: FileNotFoundError(errno.ENOENT, "missing"),
    lambda: NotADirectoryError(errno.ENOTDIR, "not a directory"),
    lambda: OSError(errno.ENOSPC, "no space left on device"),
    lambda: OSError(errno.EROFS, "read-only file system"),
    lambda: OSError(errno.EIO, "i/o error"),
    lambda: ValueError("bad value"),
    lambda: _client_error("AccessDenied", 403),
    lambda: _client_error("NoSuchBucket", 404),
    lambda: _chained(PermissionError("denied")),
    lambda: CheckpointSaveError("w.npy", "bad"),
]


@pytest.mark.parametrize("make", TRANSIENT, ids=range(len(TRANSIENT)))
def test_transient_faults(make):
    assert is_transient(make())


@pytest.mark.parametrize("make", PERMANENT, ids=range(len(PERMANENT)))
def test_permanent_faults(make):
    assert not is_transient(make())


def test_an_implicit_context_does_not_make_a_fault_transient():
    try:
        try:
            raise ConnectionResetError("earlier, unrelated")
        except ConnectionResetError:
            raise PermissionError("denied")  # noqa: B904 - the point of the test
    except PermissionError as exc:
        assert not is_transient(exc)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"done"``."""

    def __init__(self, failures: int, error=lambda: TimeoutError("timed out")) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return ("done", args, kwargs)


def _policy(retries=3, **kw):
    slept: list[float] = []
    return RetryPolicy(retries=retries, jitter=0.0, sleep=slept.append, **kw), slept


def test_delays_double_from_the_backoff_and_are_capped():
    policy, _ = _policy(retries=6, backoff=0.5, max_delay=4.0)
    assert list(policy.delays()) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = RetryPolicy(retries=50, backoff=1.0, max_delay=1.0, jitter=0.5)
    assert all(0.5 <= d <= 1.0 for d in jittered.delays())


def test_a_transient_fault_is_retried_until_it_succeeds():
    policy, slept = _policy(backoff=0.1)
    flaky = Flaky(2)
    assert policy.call("upload", flaky, "a", key=1) == ("done", ("a",), {"key": 1})
    assert flaky.calls == 3 and slept == [0.1, 0.2]


def test_retries_are_bounded_and_the_last_failure_is_raised():
    policy, slept = _policy(retries=2, backoff=0.1)
    flaky = Flaky(10)
    with pytest.raises(TimeoutError):
        policy.call("upload", flaky)
    assert flaky.calls == 3 and slept == [0.1, 0.2]


def test_a_permanent_fault_is_not_retried():
    policy, slept = _policy()
    flaky = Flaky(10, error=lambda: PermissionError("denied"))
    with pytest.raises(PermissionError):
        policy.call("upload", flaky)
    assert flaky.calls == 1 and slept == []


def test_zero_retries_turns_retrying_off():
    policy, slept = _policy(retries=0)
    with pytest.raises(TimeoutError):
        policy.call("upload", Flaky(1))
    assert slept == []


def test_retries_are_logged_with_what_failed(caplog):
    policy, _ = _policy(retries=1, backoff=0.25)
    policy.call("copying 'w-3.npy' to s3", Flaky(1))
    assert "copying 'w-3.npy' to s3 failed (TimeoutError: timed out); retrying in 0.25s" in caplog.text


def test_the_engine_takes_retries_and_backoff_from_its_arguments(tmp_path):
    from ckptcore import Checkpointer

    ck = Checkpointer(str(tmp_path / "w.npy"), retries=5, retry_backoff=0.125)
    assert (ck.committer.retry.retries, ck.committer.retry.backoff) == (5, 0.125)
    ck.close()
