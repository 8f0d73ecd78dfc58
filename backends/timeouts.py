"""Client timeouts for object stores, so a call to a store that never answers fails.

s3fs on its own waits ``read_timeout`` (15 s) per attempt, botocore retries a timed-out
request up to 4 more times and s3fs retries the call 5 times more: one call to an endpoint that
accepts connections and never replies then takes over six minutes. ckptcore retries storage
calls itself (``retries``, ``retry_backoff``) and tries a store that is down once per call
until it answers, so the client is set to fail fast instead:

* botocore: :data:`S3_CONFIG_DEFAULTS` (``connect_timeout``, ``read_timeout`` and a single
  attempt per request) merged into ``storage_options["config_kwargs"]``, key by key, for what
  the user did not set;
* s3fs: one try per call (:data:`S3FS_RETRIES`), unless the user set botocore's ``retries``;
* no ``Expect: 100-continue`` header: botocore adds it to every upload, and aiohttp then waits
  for the server's "100 Continue" with no timeout at all (its read timeout starts once the body
  is sent), so an upload to a store that never replies would hang whatever ``read_timeout``
  says. The header is not signed; S3 takes the body without it.

A call to an S3 endpoint that does not answer then fails after about ``read_timeout`` seconds;
the first save during an outage costs ``retries + 1`` such calls, every later one a single call.
Other fsspec file systems are left as they are.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["S3FS_RETRIES", "S3_CONFIG_DEFAULTS", "S3_SCHEMES", "bound_client", "with_client_timeouts"]

S3_SCHEMES = frozenset({"s3", "s3a"})
#: botocore ``Config`` arguments ckptcore sets unless ``storage_options["config_kwargs"]`` has them.
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 20,
    "retries": {"total_max_attempts": 1},
}
#: Tries of one s3fs call (s3fs's own default is 5) unless the user set botocore's retries.
S3FS_RETRIES = 1


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def with_client_timeouts(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """``storage_options`` with ckptcore's client timeouts added where the user set none.

    Args:
        url: The root URL (only ``s3://`` and ``s3a://`` get defaults).
        storage_options: What the user passed; not modified.

    Returns:
        A new dict (the same content for other schemes).
    """
    options = dict(storage_options)
    if _scheme(url) not in S3_SCHEMES:
        return options
    given = options.get("config_kwargs")
    if given is not None and not isinstance(given, dict):
        return options  # s3fs reports what is wrong with it
    config = copy.deepcopy(given or {})
    for key, value in S3_CONFIG_DEFAULTS.items():
        config.setdefault(key, copy.deepcopy(value))
    options["config_kwargs"] = config
    return options


def _no_expect_continue(request: Any, **_: Any) -> None:
    """botocore ``before-send`` handler: send the body without waiting for "100 Continue"."""
    if "Expect" in request.headers:
        del request.headers["Expect"]


def bound_client(url: str, fs: Any, storage_options: dict[str, Any]) -> None:
    """Make an s3fs file system's calls fail instead of hang (see the module docstring)."""
    if _scheme(url) not in S3_SCHEMES or not hasattr(fs, "retries") or not hasattr(fs, "connect"):
        return
    given = storage_options.get("config_kwargs")
    if not (isinstance(given, dict) and "retries" in given):
        fs.retries = S3FS_RETRIES
    fs.connect()  # creates the client (no request is sent) so its events can be hooked
    hooks = [fs.s3.meta.events.register]  # this client; the session's, for clients made later
    if callable(getattr(fs.session, "register", None)):
        hooks.append(fs.session.register)
    for register in hooks:
        register("before-send.s3", _no_expect_continue, unique_id="ckptcore-no-expect-continue")
