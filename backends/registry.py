"""Names and URL schemes to backend classes, with lazy imports and entry-point discovery."""

from __future__ import annotations

import importlib
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

ENTRY_POINT_GROUP = "ckptcore.backends"

# name -> (module path, class name, extra for the install hint)
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "local": ("ckptcore.backends.local", "LocalBackend", None),
    "file": ("ckptcore.backends.local", "LocalBackend", None),
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
    """Names known without loading any plug-in."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _load_builtin(name: str) -> Callable[..., Any]:
    module, attr, extra = _BUILTIN[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
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


def get_backend_class(name: str) -> Callable[..., Any]:
    """Return the class registered under ``name`` (loading plug-ins on first miss)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _load_builtin(name)
    factory = _from_entry_points(name)
    if factory is None:
        raise BackendNotFoundError(
            f"backend: got {name!r}; available: {', '.join(available_backends())} "
            f"(third-party backends register under the entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return factory


def resolve_backend(spec: Any, root: str = "", **options: Any) -> Any:
    """Turn a name, URL, path or backend object into a backend instance.

    Args:
        spec: A backend object (returned as is), a registered name, or a path/URL whose scheme
            selects the backend.
        root: The checkpoint root, used when ``spec`` is a bare name.
        **options: Passed to the backend's constructor (``storage_options`` and the like).

    Raises:
        ConfigError: ``spec`` is an object without the methods the engine calls.
        BackendNotFoundError: No backend is registered under the name or URL scheme.
    """
    if not isinstance(spec, str):
        missing = [m for m in _NEEDED if not hasattr(spec, m)]
        missing += [m for flag, m in _NEEDED_IF if getattr(spec, flag, False) and not hasattr(spec, m)]
        if missing:
            raise ConfigError(
                f"backends: got {spec!r} ({type(spec).__name__}), which lacks {', '.join(missing)}; "
                "allowed: a backend name, a path or URL, or an object implementing "
                "ckptcore.backends.Backend"
            )
        return spec
    match = _URL.match(spec)
    if match:
        return get_backend_class(match.group(1).lower())(spec, **options)
    if spec in _BUILTIN or spec in _REGISTERED:
        return get_backend_class(spec)(root, **options)
    if "/" in spec or "\\" in spec or spec in ("", "."):
        return get_backend_class("local")(spec, **options)
    return get_backend_class(spec)(root, **options)
