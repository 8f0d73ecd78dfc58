"""The docs site builds with ``mkdocs build --strict``: a broken link or anchor fails the tests."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # mkdocs and mkdocs-material are in the dev extra; a missing one must fail here

REPO = Path(__file__).resolve().parents[1]


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml, ignoring the ``!!python/name`` tags that plug-ins may use."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def build(config_dir: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=config_dir, env=env, capture_output=True, text=True, timeout=180,
    )


def nav_pages() -> list[str]:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)
    pages = []
    for item in config["nav"]:
        pages.extend(item.values() if isinstance(item, dict) else [item])
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for the tests that read it."""
    out = tmp_path_factory.mktemp("docs") / "site"
    result = build(REPO, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_site_builds_in_strict_mode(site):
    tmp_path = site.parent
    for page in nav_pages():
        html = "index.html" if page == "index.md" else f"{page[:-3]}/index.html"
        assert (tmp_path / "site" / html).is_file(), page
    # The examples are included from docs/examples/, so the docs show the code the tests run.
    custom = (tmp_path / "site" / "custom-loops" / "index.html").read_text()
    assert "CallbackList" in custom and "on_train_batch_end" in custom
    embedding = (tmp_path / "site" / "embedding" / "index.html").read_text()
    assert "savez" in embedding and "linreg-" in embedding


def test_the_api_reference_is_generated_from_the_docstrings(site):
    api = (site / "api" / "index.html").read_text()
    from ckptcore.adapters.keras import ModelCheckpoint, load_best
    from ckptcore.backends.fsspec import FsspecBackend

    for obj in (ModelCheckpoint, load_best, FsspecBackend):
        first_line = obj.__doc__.strip().splitlines()[0]
        assert html.escape(first_line.split("``")[0], quote=False) in api, first_line
    assert ":class:" not in api and "::</p>" not in api  # Sphinx markup of the docstrings
    for name in ("ckptcore.Checkpointer", "ckptcore.adapters.keras.ModelCheckpoint",
                 "ckptcore.backends.fsspec.FsspecBackend", "ckptcore.errors.BucketNotFoundError"):
        assert f'id="{name}"' in api, name


def test_the_site_shows_the_version_and_keeps_argument_names_whole(site):
    from ckptcore import __version__

    index = (site / "index.html").read_text()
    assert f"ckptcore {__version__}" in index
    assert "stylesheets/extra.css" in index
    css = (site / "stylesheets" / "extra.css").read_text()
    rule = css[css.index("td code"):].split("}")[0]
    assert "word-break: normal" in rule and "white-space: nowrap" in rule


def test_the_repository_is_linked_when_known(tmp_path):
    env_url = "https://example.org/team/ckptcore"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "CKPTCORE_REPO_URL": env_url + ".git"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'href="{env_url}"' in (tmp_path / "site" / "index.html").read_text()


def test_every_documented_topic_is_in_the_nav():
    pages = nav_pages()
    for page in ("index.md", "quickstart.md", "keras.md", "custom-loops.md", "embedding.md",
                 "backends.md", "cli.md", "design.md", "benchmarks.md", "api.md", "workers.md"):
        assert page in pages
        assert (REPO / "docs" / page).is_file(), page


@pytest.mark.parametrize(
    "broken",
    ["See [the missing page](nowhere.md).", "See [a missing anchor](cli.md#no-such-section)."],
)
def test_a_broken_link_fails_the_build(tmp_path, broken):
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\n" + broken + "\n")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    target = broken.split("(")[1].rstrip(").")
    assert target.split("#")[-1] in result.stdout + result.stderr
