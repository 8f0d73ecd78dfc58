"""mkdocs hooks: the site shows ckptcore's version and repository, and the API reference finds
the installed package's layout.

The repository is ``CKPTCORE_REPO_URL`` when set, else the checkout's ``origin`` remote, as an
https address; with neither, the site links to no repository.

``ckptcore.adapters`` and ``ckptcore.backends`` are installed from the ``adapters/`` and
``backends/`` folders, which mkdocstrings (reading source, not importing it) cannot follow from
the checkout. ``build/api-src/ckptcore`` is a copy laid out as the installed package, and
``mkdocs.yml`` points mkdocstrings there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Sphinx roles and "::" that the docstrings use; Markdown shows them raw.
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):(?=<code>)")
_LITERAL = re.compile(r"::</p>")
SUBPACKAGES = ("adapters", "backends")


def _folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the API reference needs {module} installed (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0])


def _mirror_package(target: Path) -> None:
    """``target`` becomes a copy of the ckptcore package as installed (griffe follows links to
    their real folders, so a copy it is: a few hundred kB of source)."""
    core = _folder("ckptcore")
    shutil.rmtree(target, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", *SUBPACKAGES)
    shutil.copytree(core, target, ignore=lambda d, names: skip(d, names) if Path(d) == core else
                    shutil.ignore_patterns("__pycache__")(d, names))
    for name in SUBPACKAGES:
        shutil.copytree(_folder(f"ckptcore.{name}"), target / name,
                        ignore=shutil.ignore_patterns("__pycache__"))


def _repository() -> str | None:
    url = os.environ.get("CKPTCORE_REPO_URL")
    if not url:
        try:
            url = subprocess.run(["git", "remote", "get-url", "origin"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            url = ""
    if url.startswith("git@"):  # git@host:owner/name.git -> https://host/owner/name
        host, _, path = url[4:].partition(":")
        url = f"https://{host}/{path}"
    url = url.removesuffix(".git")
    return url if url.startswith(("https://", "http://")) else None


def on_startup(**_: Any) -> None:
    """Mirror the package for mkdocstrings, before any plug-in reads its configuration."""
    _mirror_package(ROOT / "build" / "api-src" / "ckptcore")


def on_config(config: Any, **_: Any) -> Any:
    """The version in the footer, the repository in the header."""
    from ckptcore import __version__ as version

    config["extra"]["ckptcore_version"] = version
    repository = _repository()
    if repository and not config.get("repo_url"):
        config["repo_url"] = repository
        config["repo_name"] = f"ckptcore {version}"
    config["copyright"] = f"ckptcore {version} · Apache-2.0"
    return config


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """On the API reference, drop the Sphinx roles before code (``:class:`X``` shows as ``X``)."""
    if page.file.src_uri != "api.md":
        return html
    return _LITERAL.sub(":</p>", _ROLE.sub("", html))
