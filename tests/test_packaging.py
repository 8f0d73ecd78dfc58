"""Both install paths give ``ckptcore.adapters`` and ``ckptcore.backends`` from the adapters/ and
backends/ folders: the editable install of this checkout, and a wheel built from it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What the probe imports and reports, run in a fresh interpreter.
PROBE = """
import json, sys
import ckptcore, ckptcore.backends, ckptcore.adapters
from ckptcore.backends import LocalBackend, resolve_backend
assert isinstance(resolve_backend("local", "x"), LocalBackend)
print(json.dumps({name: sys.modules[name].__file__
                  for name in ("ckptcore", "ckptcore.backends", "ckptcore.adapters",
                               "ckptcore.backends.local")}))
"""

# Not needed to build the wheel; skipped so that the copy is small and nothing is built in the
# checkout itself (setuptools writes build/ and *.egg-info next to pyproject.toml).
_SKIP = {
    ".git", ".venv", "venv", "build", "dist", "site", "wandb", "tests", "docs", "benchmarks",
    "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", "node_modules",
}


def _probe(args: list[str], cwd: Path) -> dict[str, str]:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _under(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def test_editable_install_maps_the_folders(tmp_path):
    files = _probe([sys.executable, "-c", PROBE], cwd=tmp_path)  # cwd outside the checkout
    assert _under(files["ckptcore"], REPO / "ckptcore")
    assert _under(files["ckptcore.backends"], REPO / "backends")
    assert _under(files["ckptcore.backends.local"], REPO / "backends")
    assert _under(files["ckptcore.adapters"], REPO / "adapters")


def test_built_wheel_installs_and_imports(tmp_path):
    source, wheels, target = tmp_path / "src", tmp_path / "wheels", tmp_path / "target"
    shutil.copytree(
        REPO, source,
        ignore=lambda _dir, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")],
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("ckptcore-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "ckptcore/backends/local.py" in names
    assert "ckptcore/adapters/__init__.py" in names
    assert "ckptcore/adapters/keras/__init__.py" in names
    assert not any(n.startswith(("adapters/", "backends/", "tests/")) for n in names), (
        "adapters/ and backends/ must be installed inside ckptcore, never as top-level packages"
    )

    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    # -I -S: no PYTHONPATH, no user site, no site-packages processing (so not the editable
    # finder of this checkout); the cwd is outside it. The installed wheel comes first, then the
    # environment's site-packages for pydantic.
    site_dirs = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    code = f"import sys; sys.path[:0] = {[str(target), *site_dirs]!r}\n" + PROBE
    files = _probe([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path)
    for name, path in files.items():
        assert _under(path, target), f"{name} came from {path}, not from the installed wheel"
    assert files["ckptcore.backends"].endswith(str(Path("ckptcore", "backends", "__init__.py")))
    assert files["ckptcore.adapters"].endswith(str(Path("ckptcore", "adapters", "__init__.py")))


@pytest.mark.parametrize("folder", ["ckptcore", "adapters", "backends"])
def test_the_folders_of_the_spec_exist(folder):
    assert (REPO / folder / "__init__.py").is_file()
