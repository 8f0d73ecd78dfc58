"""Any fsspec URL (``s3://``, ``gs://``, ``az://``, ``memory://``, ...), with ``storage_options``.

Object stores have no atomic rename, so a commit works in this order:

1. the writer writes into a local staging file (nothing remote yet);
2. the complete file is uploaded under its final name: one object PUT, which an object store
   makes visible only once all bytes have arrived (large files go as a multipart upload, its
   parts sent in parallel, also invisible until completed; see :data:`S3_PART_SIZE`); a
   directory (SavedModel) is uploaded file by file;
3. the engine writes ``manifest.json`` last: it is the commit marker, so a reader that trusts
   the manifest never sees a checkpoint that is still being uploaded.

Nothing creates buckets: a URL whose bucket does not exist fails at construction, and says so.
"""

from __future__ import annotations

import contextlib
import os
from glob import has_magic
from typing import Any, ClassVar

from ckptcore.backends.base import BaseBackend, CommitInfo
from ckptcore.backends.timeouts import bound_client, with_client_timeouts
from ckptcore.errors import BucketNotFoundError, ConfigError, MissingDependencyError, StorageError

__all__ = ["S3_PART_SIZE", "FsspecBackend"]

#: Part size of S3 multipart uploads. s3fs uploads a file above twice this size in parts,
#: ``max_concurrency`` of them at a time (an ``S3FileSystem`` option, in ``storage_options``;
#: s3fs's default is 10): a 227 MB checkpoint goes as 14 parts, 10 in flight.
S3_PART_SIZE = 16 << 20


def _url_to_fs(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise MissingDependencyError(
            f"{url}: the fsspec backend needs fsspec ({exc.name or exc} is not installed); "
            'install it with: pip install "ckptcore[fsspec]"'
        ) from exc
    try:
        return url_to_fs(url, **storage_options)
    except ImportError as exc:  # fsspec knows the scheme but not its package: "Install s3fs ..."
        raise MissingDependencyError(
            f"{url}: {exc}; for S3 install it with: pip install \"ckptcore[fsspec]\""
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"filepath: {url!r} is not a URL fsspec can open: {exc}") from exc


def _local_files(src: str) -> list[tuple[str, str]]:
    """``(local path, '/'-separated path relative to src)`` of every file under ``src``."""
    found = []
    for dirpath, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            found.append((full, os.path.relpath(full, src).replace(os.sep, "/")))
    return found


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an S3 call failed on its ``If-Match``/``If-None-Match`` condition (HTTP 412)."""
    while exc is not None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


class FsspecBackend(BaseBackend):
    """Checkpoints under an fsspec URL.

    Args:
        root: The checkpoint root URL, such as ``s3://bucket/runs/a``.
        storage_options: Passed to the fsspec file system (credentials, ``client_kwargs``
            with an ``endpoint_url``, ``anon``, ...). For S3, botocore timeouts the user did
            not set in ``config_kwargs`` are added (:mod:`ckptcore.backends.timeouts`). Keyword arguments are merged into it,
            so ``FsspecBackend(url, anon=True)`` works as ``fsspec.open`` does.

    Attributes:
        fs: The fsspec file system.
        name: The URL's scheme (``s3``, ``memory``, ...), as listed in the manifest.
    """

    name: str = "fsspec"  # each instance: its URL scheme
    can_delete: ClassVar[bool] = True
    keeps_manifest: ClassVar[bool] = True

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None, **options: Any) -> None:
        if not isinstance(root, str) or "://" not in root:
            raise ConfigError(f"root: got {root!r}; allowed: a URL such as 's3://bucket/run'")
        if storage_options is not None and not isinstance(storage_options, dict):
            raise ConfigError(f"storage_options: got {storage_options!r}; allowed: a dict or None")
        merged = {**(storage_options or {}), **options}
        super().__init__(root.rstrip("/"))
        self.storage_options = merged
        # S3 clients get timeouts and one try per call, so a store that never answers fails.
        self.fs, path = _url_to_fs(root, with_client_timeouts(root, merged))
        bound_client(root, self.fs, merged)
        self._path = path.rstrip("/")
        self.name = root.split("://", 1)[0].lower()
        self._put_options = {"chunksize": S3_PART_SIZE} if self.name in ("s3", "s3a") else {}
        self._check_bucket()

    def _check_bucket(self) -> None:
        """Raise ``BucketNotFoundError`` when the root's bucket is known not to exist.

        Only object stores have buckets (their file systems have ``split_path``). Any answer
        but "not found" (no permission to look, an unreachable endpoint) is left to the first
        read of the manifest, which retries and names what failed.
        """
        split = getattr(self.fs, "split_path", None)
        if split is None or not self._path:
            return
        bucket = split(self._path)[0]
        try:
            self.fs.info(bucket)
        except FileNotFoundError as exc:
            scheme = self.name
            raise BucketNotFoundError(
                f"{self.root}: bucket {bucket!r} does not exist at {scheme}://{bucket}; "
                "ckptcore creates no buckets: create it, or fix the URL"
            ) from exc
        except Exception:  # noqa: BLE001 - permissions, network: reported by the manifest read
            return

    def _full(self, relpath: str) -> str:
        return f"{self._path}/{relpath}" if self._path else relpath

    # -- checkpoints --------------------------------------------------------------------------
    def put(self, src: str, relpath: str, info: CommitInfo) -> str:
        """Upload a complete local file or directory under ``relpath``."""
        target = self._full(relpath)
        if not os.path.exists(src):
            raise FileNotFoundError(f"nothing to upload at {src!r} for {relpath!r}")
        if os.path.isdir(src):
            self._put_dir(src, target)
        else:
            if self._isdir(target):  # a directory checkpoint replaced by a file
                self._remove(target)
            self.fs.put_file(src, target, **self._put_options)
            self._check_size(src, target)
        return self.locate(relpath)

    def _put_dir(self, src: str, target: str) -> None:
        if self.fs.exists(target):
            # No rename on object stores: the old files go first so no stale file remains
            # next to the new ones. The manifest does not list the new checkpoint until after.
            self._remove(target)
        for local, rel in _local_files(src):
            self.fs.put_file(local, f"{target}/{rel}", **self._put_options)

    def _isdir(self, target: str) -> bool:
        try:
            return bool(self.fs.isdir(target))
        except FileNotFoundError:
            return False

    def _check_size(self, src: str, target: str) -> None:
        expected = os.path.getsize(src)
        self.fs.invalidate_cache(target)
        found = self.fs.size(target)
        if found != expected:
            raise StorageError(f"{self.fs.unstrip_protocol(target)}: uploaded {found} bytes, expected {expected}")

    def delete(self, relpath: str) -> None:
        """Delete a file or directory checkpoint; a missing one is not an error."""
        try:
            self._remove(self._full(relpath))
        except FileNotFoundError:
            pass

    def _remove(self, target: str) -> None:
        """Delete the file or directory at the literal path ``target``.

        ``fs.rm`` expands ``*``, ``?`` and ``[...]`` as a glob: a checkpoint named
        ``m-[best].keras`` would then be left while ``m-b.keras`` went, and one named ``*``
        would take everything beside it. Such a path is deleted file by file, as ``find``
        lists it (``find`` does not glob).
        """
        if not has_magic(target):
            self.fs.rm(target, recursive=True)
            return
        files = self.fs.find(target)
        if not files and not self._isdir(target):
            raise FileNotFoundError(target)
        for path in files:
            self.fs.rm_file(path)
        if self._isdir(target):  # file systems with real directories (memory, local)
            dirs = sorted(self.fs.find(target, withdirs=True), key=len, reverse=True)
            for path in [*dirs, target]:
                with contextlib.suppress(OSError):
                    self.fs.rmdir(path)

    # -- small files (the manifest) -----------------------------------------------------------
    def read_bytes(self, relpath: str) -> bytes:
        """Read a small file; ``FileNotFoundError`` when absent."""
        return self.fs.cat_file(self._full(relpath))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write a small file in one request (one object PUT on object stores)."""
        self.fs.pipe_file(self._full(relpath), data)

    # -- conditional writes (S3 If-Match / If-None-Match) -------------------------------------
    @property
    def conditional_writes(self) -> bool:
        """Whether manifest writes can be conditional: S3 through s3fs (``If-Match`` on the
        ETag read before the merge, ``If-None-Match: *`` for a first manifest)."""
        return self.name in ("s3", "s3a") and hasattr(self.fs, "call_s3")

    def tag(self, relpath: str) -> str | None:
        """The store's version tag (S3 ETag) of a small file; None when it is absent."""
        target = self._full(relpath)
        self.fs.invalidate_cache(target)
        try:
            return self.fs.info(target).get("ETag")
        except FileNotFoundError:
            return None

    def write_bytes_if(self, relpath: str, data: bytes, tag: str | None) -> bool:
        """Write a small file only if it still has version ``tag`` (None: only if absent).

        Returns:
            False when another writer changed it first (HTTP 412): nothing was written.
        """
        target = self._full(relpath)
        bucket, key, _ = self.fs.split_path(target)
        match = {"IfMatch": tag} if tag is not None else {"IfNoneMatch": "*"}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **match)
        except Exception as exc:  # noqa: BLE001 - s3fs turns the 412 into an OSError
            if _precondition_failed(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(target)
        return True

    def exists(self, relpath: str) -> bool:
        target = self._full(relpath)
        self.fs.invalidate_cache(target)
        return bool(self.fs.exists(target))

    def locate(self, relpath: str) -> str:
        """The URL of ``relpath``: the root URL as given, then the relative path."""
        return f"{self.root}/{relpath}"

    def __repr__(self) -> str:
        return f"FsspecBackend({self.root!r})"
