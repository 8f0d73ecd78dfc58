"""Names and URL schemes to backend classes, with lazy imports and entry-point discovery.

How a spec is resolved (:func:`resolve_backend`):

1. a backend object is used as it is;
2. a URL (``scheme://...``) goes to the backend registered under its scheme: one added with
   :func:`register_backend`, a built-in (``file://`` and ``local://`` are local disk:
   ``local:///data/x`` is the path ``/data/x``), a third-party backend from
   the entry-point group ``ckptcore.backends`` (read on the first miss, never at import), or
   else the fsspec backend when fsspec knows the scheme (``s3``, ``gs``, ``memory``, ...);
3. a bare name (``"local"``, ``"wandb"``, a plug-in's name) goes to that backend, built on the
   checkpoint root;
4. anything else is a local path.

Optional dependencies are imported only when their backend is first used; a missing one raises
:class:`~ckptcore.errors.MissingDependencyError` with the install command.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from importlib.metadata import entry_points
from typing import Any, Callable

from ckptcore.errors import BackendNotFoundError, ConfigError, MissingDependencyError

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_backends",
    "get_backend_class",
    "register_backend",
    "resolve_backend",
]

log = logging.getLogger("ckptcore")
ENTRY_POINT_GROUP = "ckptcore.backends"

# name -> (module path, class name, extra for the install hint)
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "local": ("ckptcore.backends.local", "LocalBackend", None),
    "file": ("ckptcore.backends.local", "LocalBackend", None),
    "fsspec": ("ckptcore.backends.fsspec", "FsspecBackend", "fsspec"),
    "wandb": ("ckptcore.backends.wandb", "WandbBackend", "wandb"),
}
_REGISTERED: dict[str, Callable[..., Any]] = {}
# What the engine calls on a backend object it is given (see the Backend protocol).
_NEEDED = ("name", "put", "close")
_NEEDED_IF = (("can_delete", "delete"), ("keeps_manifest", "write_bytes"))
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def register_backend(name: str, factory: Callable[..., Any]) -> None:
    """Register a backend class (or factory) under a name or URL scheme."""
    _REGISTERED[name] = factory


def available_backends() -> list[str]:
    """Names known without loading any plug-in (plug-ins appear once they were looked up)."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _load_builtin(name: str) -> Callable[..., Any]:
    module, attr, extra = _BUILTIN[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise
        hint = f'pip install "ckptcore[{extra}]"' if extra else "reinstall ckptcore"
        raise MissingDependencyError(
            f"backend {name!r} needs a package that is not installed ({exc.name or exc}); "
            f"install it with: {hint}"
        ) from exc


def _from_entry_points(name: str) -> Callable[..., Any] | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            factory = ep.load()
            _REGISTERED[name] = factory
            return factory
    return None


def _fsspec_knows(scheme: str) -> bool:
    """Whether fsspec has an implementation for ``scheme`` (fsspec is imported only now)."""
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError as exc:
        raise MissingDependencyError(
            f"a {scheme}:// URL is stored through fsspec, which is not installed; "
            'install it with: pip install "ckptcore[fsspec]"'
        ) from exc
    return scheme in known_implementations or scheme in registry


def _not_found(name: str) -> BackendNotFoundError:
    return BackendNotFoundError(
        f"backend: got {name!r}; available: {', '.join(available_backends())}, or a URL whose "
        f"scheme fsspec knows (s3://, gs://, memory://, ...); third-party backends register "
        f"under the entry-point group {ENTRY_POINT_GROUP!r}"
    )


def get_backend_class(name: str) -> Callable[..., Any]:
    """Return the class registered under ``name`` (loading plug-ins on first miss).

    Raises:
        BackendNotFoundError: Nothing is registered under ``name``.
        MissingDependencyError: The backend needs a package that is not installed.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _load_builtin(name)
    factory = _from_entry_points(name)
    if factory is None:
        raise _not_found(name)
    return factory


def _class_for_scheme(scheme: str) -> Callable[..., Any]:
    if scheme in _REGISTERED or (scheme in _BUILTIN and scheme != "fsspec"):
        return get_backend_class(scheme)
    factory = _from_entry_points(scheme)
    if factory is not None:
        return factory
    if _fsspec_knows(scheme):
        return _load_builtin("fsspec")
    raise _not_found(f"{scheme}://")


def _construct(factory: Callable[..., Any], location: str, options: dict[str, Any]) -> Any:
    """Call ``factory(location, **options)``, passing only the options it accepts.

    ``options`` are storage options meant for URL backends; a backend whose constructor takes
    neither ``**kwargs`` nor a parameter of that name does not get them.
    """
    if options:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin or C factory: pass everything
            params = None
        if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            dropped = sorted(set(options) - set(params))
            if dropped:
                log.debug("backend %r does not take the options %s", factory, dropped)
            options = {k: v for k, v in options.items() if k in params}
    return factory(location, **options)


def _check_object(spec: Any) -> Any:
    missing = [m for m in _NEEDED if not hasattr(spec, m)]
    missing += [m for flag, m in _NEEDED_IF if getattr(spec, flag, False) and not hasattr(spec, m)]
    if missing:
        raise ConfigError(
            f"backends: got {spec!r} ({type(spec).__name__}), which lacks {', '.join(missing)}; "
            "allowed: a backend name, a path or URL, or an object implementing "
            "ckptcore.backends.Backend"
        )
    return spec


def resolve_backend(spec: Any, root: str = "", **options: Any) -> Any:
    """Turn a name, URL, path or backend object into a backend instance.

    Args:
        spec: A backend object (returned as is), a registered name, or a path/URL whose scheme
            selects the backend.
        root: The checkpoint root, used when ``spec`` is a bare name.
        **options: Storage options (fsspec's ``storage_options``, such as
            ``client_kwargs={"endpoint_url": ...}``), passed to backends that accept them.

    Raises:
        ConfigError: ``spec`` is an object without the methods the engine calls.
        BackendNotFoundError: No backend is registered under the name or URL scheme.
        MissingDependencyError: The backend needs a package that is not installed.
    """
    if not isinstance(spec, str):
        return _check_object(spec)
    match = _URL.match(spec)
    if match:
        return _construct(_class_for_scheme(match.group(1).lower()), spec, options)
    if spec in _BUILTIN or spec in _REGISTERED:
        return _construct(get_backend_class(spec), root, options)
    if "/" in spec or "\\" in spec or spec in ("", ".") or spec.startswith("~"):
        return _construct(get_backend_class("local"), spec, options)
    return _construct(get_backend_class(spec), root, options)
