"""The core stays pure: importing it loads no ML framework, W&B or fsspec, and no file under
ckptcore/ imports one, not even inside a function."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("keras", "tensorflow", "wandb", "fsspec", "torch", "jax")
REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "ckptcore"

PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
forbidden = {forbidden!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps(loaded))
"""


@pytest.mark.parametrize(
    "modules",
    [["ckptcore"], ["ckptcore.backends"], ["ckptcore", "ckptcore.backends", "ckptcore.adapters"]],
    ids=lambda m: "+".join(m),
)
def test_importing_the_core_loads_no_framework(modules, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN), *modules],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_probe_sees_a_loaded_framework(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN), "fsspec"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert "fsspec" in json.loads(result.stdout.strip().splitlines()[-1])


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
            )
        ):
            names.append((node.lineno, node.args[0].value))
    return names


def test_no_file_under_ckptcore_imports_a_framework():
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no sources found under {CORE}"
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in _imported_names(tree):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert offenders == []


def test_the_checker_sees_every_kind_of_import():
    source = (
        "import torch\nfrom jax import numpy\nimport os, keras.layers\n"
        "def f():\n    import wandb\n    importlib.import_module('fsspec')\n    __import__('tensorflow')\n"
    )
    found = {name.split(".")[0] for _, name in _imported_names(ast.parse(source))}
    assert set(FORBIDDEN) <= found


def test_the_core_leaves_file_locking_to_the_local_backend():
    # The cross-process lock is a backend hook (Backend.lock()); the core never takes one itself.
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(REPO)}:{line}" for line, name in _imported_names(tree)
                      if name.split(".")[0] == "filelock"]
    assert offenders == []
