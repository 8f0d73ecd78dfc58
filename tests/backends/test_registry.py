"""How the registry picks the fsspec and W&B backends, and what it passes them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ckptcore import BackendNotFoundError, MissingDependencyError
from ckptcore.backends import registry, resolve_backend

pytest.importorskip("fsspec")


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))


def test_optional_backends_are_attributes_loaded_on_first_use(tmp_path):
    code = (
        "import sys, ckptcore.backends as b\n"
        "assert 'fsspec' not in sys.modules and 'wandb' not in sys.modules\n"
        "assert b.resolve_backend('local', 'x').name == 'local'\n"
        "assert 'fsspec' not in sys.modules, 'a local path needs no fsspec'\n"
        "assert b.FsspecBackend.__name__ == 'FsspecBackend'\n"
        "assert b.WandbBackend.__name__ == 'WandbBackend'\n"
        "assert 'wandb' not in sys.modules, 'the class does not import the SDK'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_an_unknown_scheme_says_what_works():
    with pytest.raises(BackendNotFoundError) as info:
        resolve_backend("nosuchscheme://bucket/x")
    message = str(info.value)
    assert "'nosuchscheme://'" in message and "wandb" in message and "fsspec" in message


def test_without_fsspec_a_url_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.registry", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "ckptcore\[fsspec\]"') as info:
        resolve_backend("s3://bucket/run")
    assert "s3://" in str(info.value)


def test_a_registered_scheme_wins_over_fsspec(clean_registry, memory_url):
    class Claimed:
        def __init__(self, root):
            self.root = root

    registry.register_backend("memory", Claimed)
    assert isinstance(resolve_backend(memory_url), Claimed)


def test_storage_options_reach_only_backends_that_take_them(clean_registry, tmp_path):
    class Keyword:
        def __init__(self, root, *, anon=False):
            self.root, self.anon = root, anon

    class Anything:
        def __init__(self, root, **options):
            self.root, self.options = root, options

    registry.register_backend("kw", Keyword)
    registry.register_backend("any", Anything)
    options = {"anon": True, "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
    assert resolve_backend("kw://x", **options).anon is True
    assert resolve_backend("any", str(tmp_path), **options).options == options
    assert resolve_backend("kw", str(tmp_path)).anon is False
