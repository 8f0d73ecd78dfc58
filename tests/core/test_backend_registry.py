"""The backend registry: names, URL schemes, objects, install hints, entry points on first miss."""

from __future__ import annotations

import sys
import textwrap

import pytest

from ckptcore import BackendNotFoundError, MissingDependencyError
from ckptcore.backends import (
    ENTRY_POINT_GROUP,
    LocalBackend,
    available_backends,
    get_backend_class,
    register_backend,
    resolve_backend,
)
from ckptcore.backends import registry


@pytest.fixture
def clean_registry(monkeypatch):
    """Registrations made by a test do not leak into others."""
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    return registry


def test_local_paths_and_names_resolve_to_the_local_backend(tmp_path):
    for spec, root in [
        ("", ""),
        (str(tmp_path), str(tmp_path)),
        ("runs/a", "runs/a"),
        (".", "."),
        ("file://" + str(tmp_path), str(tmp_path)),
    ]:
        backend = resolve_backend(spec, spec)
        assert isinstance(backend, LocalBackend), spec
        assert backend.root == root
    named = resolve_backend("local", str(tmp_path))
    assert isinstance(named, LocalBackend) and named.root == str(tmp_path)
    assert get_backend_class("file") is LocalBackend
    assert {"local", "file"} <= set(available_backends())


def test_a_backend_object_is_used_as_is(tmp_path):
    backend = LocalBackend(str(tmp_path))
    assert resolve_backend(backend, "ignored") is backend


def test_unknown_names_and_schemes_say_what_is_available():
    for spec in ("no-such-backend", "nosuchscheme://bucket/x"):
        with pytest.raises(BackendNotFoundError) as info:
            resolve_backend(spec, "root")
        message = str(info.value)
        assert "local" in message and ENTRY_POINT_GROUP in message
        assert isinstance(info.value, LookupError)


def test_register_backend(clean_registry, tmp_path):
    class Memo(LocalBackend):
        name = "memo"

        def __init__(self, root: str = "", **options):
            super().__init__(root)
            self.options = options

    register_backend("memo", Memo)
    assert "memo" in available_backends()
    by_name = resolve_backend("memo", str(tmp_path), flag=1)
    assert isinstance(by_name, Memo) and by_name.root == str(tmp_path) and by_name.options == {"flag": 1}
    by_url = resolve_backend("memo://x/y")
    assert isinstance(by_url, Memo) and by_url.root == "memo://x/y"


def test_a_builtin_whose_dependency_is_missing_names_the_install_command(clean_registry, monkeypatch):
    monkeypatch.setitem(registry._BUILTIN, "ghost", ("ckptcore_no_such_module_xyz", "Ghost", "ghost"))
    with pytest.raises(MissingDependencyError) as info:
        get_backend_class("ghost")
    assert 'pip install "ckptcore[ghost]"' in str(info.value)
    assert isinstance(info.value, ImportError)


def test_entry_points_are_read_on_first_miss_only(clean_registry, tmp_path, monkeypatch):
    module = "ckptcore_test_plugin_backend"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from ckptcore.backends import LocalBackend

            class PluginBackend(LocalBackend):
                name = "plugin"
            """
        )
    )
    dist = tmp_path / "ckptcore_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ckptcore-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nplugin = {module}:PluginBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)

    resolve_backend("local", str(tmp_path))
    assert "plugin" not in available_backends()
    assert module not in sys.modules, "entry points must not be loaded before a miss"
    backend = resolve_backend("plugin", str(tmp_path))
    assert type(backend).__name__ == "PluginBackend"
    assert module in sys.modules
    assert "plugin" in available_backends()
    assert isinstance(resolve_backend("plugin://somewhere"), LocalBackend)


@pytest.mark.parametrize("spec", [123, object(), ["local"]])
def test_an_object_that_is_not_a_backend_is_refused(spec):
    from ckptcore import ConfigError

    with pytest.raises(ConfigError) as info:
        resolve_backend(spec, "root")
    message = str(info.value)
    assert "backends" in message and repr(spec) in message and "put" in message


def test_checkpointer_refuses_a_bad_extra_backend_at_construction(tmp_path):
    from ckptcore import Checkpointer, ConfigError

    with pytest.raises(ConfigError, match="backends: got 123"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=lambda p: None, backends=[123])
