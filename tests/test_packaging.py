"""Both install paths give ``ckptcore.adapters`` and ``ckptcore.backends`` from the adapters/ and
backends/ folders: the editable install of this checkout, and a wheel built from it. The wheel
carries the license and ``py.typed``, builds without deprecation banners, and the extras let a
user pick Keras's backend."""

from __future__ import annotations

import email
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

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
         "--disable-pip-version-check", "-v", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # setuptools' banners (a license table, license classifiers) print as deprecation warnings
    assert "Deprecat" not in build.stdout + build.stderr, build.stdout + build.stderr
    (wheel,) = wheels.glob("ckptcore-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(zf.read(metadata_name))
        licenses = [n for n in names if n.endswith("licenses/LICENSE")]
        assert licenses and b"Apache License" in zf.read(licenses[0])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Version"] == _version_in_source()
    assert "ckptcore/py.typed" in names  # mypy reads the annotations
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
    import pydantic  # its folder, wherever this environment keeps it (a layered venv, say)

    site_dirs = list(dict.fromkeys([
        sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
        str(Path(pydantic.__file__).parents[1]),
    ]))
    code = f"import sys; sys.path[:0] = {[str(target), *site_dirs]!r}\n" + PROBE
    files = _probe([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path)
    for name, path in files.items():
        assert _under(path, target), f"{name} came from {path}, not from the installed wheel"
    assert files["ckptcore.backends"].endswith(str(Path("ckptcore", "backends", "__init__.py")))
    assert files["ckptcore.adapters"].endswith(str(Path("ckptcore", "adapters", "__init__.py")))


@pytest.mark.parametrize("folder", ["ckptcore", "adapters", "backends"])
def test_the_folders_of_the_spec_exist(folder):
    assert (REPO / folder / "__init__.py").is_file()


def _version_in_source() -> str:
    namespace: dict[str, str] = {}
    for line in (REPO / "ckptcore" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            exec(line, namespace)
    return namespace["__version__"]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_version_is_written_once():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    import ckptcore

    assert ckptcore.__version__ == _version_in_source() == importlib.metadata.version("ckptcore")


def test_ckptcore_version_prints_the_version():
    script = shutil.which("ckptcore", path=os.path.dirname(sys.executable))
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ckptcore {_version_in_source()}"


@pytest.mark.parametrize("missing", ["typer", "rich"])
def test_the_command_without_the_cli_extra_says_what_to_install(tmp_path, missing):
    # A package on PYTHONPATH that fails to import as a missing one would: the installed
    # console script, run as a user without the cli extra would run it.
    (tmp_path / missing).mkdir()
    (tmp_path / missing / "__init__.py").write_text(
        f"raise ModuleNotFoundError({'No module named ' + missing!r}, name={missing!r})\n"
    )
    script = shutil.which("ckptcore", path=os.path.dirname(sys.executable))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([script, "ls", "."], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"ckptcore: the command line needs {missing}, which is not installed; "
        'install it with: pip install "ckptcore[cli]"'
    ]


def _extra(name: str) -> list[Requirement]:
    return [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"][name]]


def _installed_by(extra: str, platform: dict[str, str]) -> set[str]:
    env = {"python_version": "3.11", "extra": "", **platform}
    return {r.name for r in _extra(extra) if r.marker is None or r.marker.evaluate(env)}


LINUX_X86 = {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"}
LINUX_ARM = {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"}
MAC_ARM = {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"}


def test_the_keras_extra_is_keras_without_a_backend():
    assert {r.name for r in _extra("keras")} == {"keras", "h5py", "isal"}
    for platform in (LINUX_X86, LINUX_ARM, MAC_ARM):  # isal: ISA-L's CRC-32, where it has wheels
        assert _installed_by("keras", platform) == {"keras", "h5py", "isal"}
    other = {"sys_platform": "linux", "platform_machine": "ppc64le", "platform_system": "Linux"}
    assert _installed_by("keras", other) == {"keras", "h5py"}, "elsewhere zlib's CRC-32 serves"
    assert {r.name for r in _extra("jax")} == {"jax"}
    assert {r.name for r in _extra("torch")} == {"torch"}


@pytest.mark.parametrize(
    "platform, package",
    [(LINUX_X86, "tensorflow-cpu"), (LINUX_ARM, "tensorflow"), (MAC_ARM, "tensorflow")],
)
def test_the_tensorflow_extra_picks_a_package_with_wheels_for_the_platform(platform, package):
    assert _installed_by("tensorflow", platform) == {package}


def test_extras_carry_ranges_and_constraints_carry_the_pins():
    extras = _pyproject()["project"]["optional-dependencies"]
    for name, requirements in extras.items():
        for text in requirements:
            requirement = Requirement(text)
            assert not any(spec.operator == "==" for spec in requirement.specifier), (name, text)
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pin = Requirement(line)
            pins[pin.name.lower().replace("_", "-")] = pin
    for requirements in extras.values():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.name == "ckptcore":
                continue
            assert requirement.name.lower() in pins, f"{requirement.name} has no pin in constraints.txt"
            (spec,) = pins[requirement.name.lower()].specifier
            assert requirement.specifier.contains(spec.version.split("+")[0]), (text, spec)


def test_the_dev_extra_keeps_every_backend_and_the_demo_extra_is_smaller():
    dev = _pyproject()["project"]["optional-dependencies"]["dev"]
    assert "ckptcore[all,tensorflow,jax,torch]" in dev
    demo = _installed_by("demo", LINUX_X86)
    assert "ckptcore" in demo and not {"torch", "tensorflow-cpu", "moto", "mkdocs"} & demo
