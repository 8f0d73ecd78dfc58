"""Run every example under docs/examples/ (small sizes, in a temporary directory) and check what
it produced: the files, the manifest, what it printed and, for the demo, what W&B recorded."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.digest import bytes_digest
from wandb_log import recorded_artifacts

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"

def run_example(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(cwd),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result

def manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())

def checkpoint_files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name != ".ckptcore"}

def assert_manifest_matches_files(root: Path) -> list[dict]:
    entries = manifest(root)["entries"]
    assert checkpoint_files(root) == {e["path"] for e in entries}
    for entry in entries:
        data = (root / entry["path"]).read_bytes()
        assert bytes_digest(data) == entry["digest"]
        assert len(data) == entry["size"]
    return entries

def test_every_example_is_run_by_a_test():
    examples = {Path(p).name for p in glob.glob(str(EXAMPLES / "*.py"))}
    tested = {"numpy_loop.py", "custom_loop.py", "demo.py", "resume_keras.py", "resume_callback_list.py",
              "resume_torch_loop.py"}
    assert examples == tested, f"add a test for {sorted(examples - tested)}"

def test_numpy_loop(tmp_path):
    result = run_example("numpy_loop.py", tmp_path, "--epochs", "12", "--samples", "200", "--out", "ck")
    root = tmp_path / "ck"
    entries = assert_manifest_matches_files(root)
    # keep_best=2 and keep_last=1: the loss falls every epoch, so the last two survive.
    assert [e["epoch"] for e in entries] == [11, 12]
    assert all(e["monitor"] == "val_loss" for e in entries)
    assert entries[-1]["is_best"] and entries[-1]["path"].startswith("linreg-012-")
    assert f"best: {os.path.join('ck', entries[-1]['path'])}" in result.stdout
    restored = float(result.stdout.split("restored val_loss: ")[1].split()[0])
    assert restored == pytest.approx(entries[-1]["monitor_value"], abs=1e-4)
    assert len([line for line in result.stdout.splitlines() if line.startswith("epoch")]) == 12

def test_custom_loop_with_callback_list(tmp_path):
    result = run_example("custom_loop.py", tmp_path, "--epochs", "3", "--samples", "400", "--out", "ck")
    root = tmp_path / "ck"  # a one-component relative root, as in "ckpt/model-{epoch}.keras"
    entries = assert_manifest_matches_files(root)
    assert 1 <= len(entries) <= 2  # save_best_only with keep_last=2
    values = [e["monitor_value"] for e in entries]
    assert values == sorted(values) and entries[-1]["is_best"]  # val_accuracy: max
    assert all(e["path"].startswith("digits-") and e["path"].endswith(".keras") for e in entries)
    # CallbackList was given steps=, so epoch-end saves know their global step (320 / 32 = 10).
    assert [e["global_step"] for e in entries] == [10 * e["epoch"] for e in entries]
    accuracy = float(result.stdout.split("restored model's val_accuracy: ")[1].split()[0])
    assert accuracy == pytest.approx(entries[-1]["monitor_value"], abs=1e-3)

# Runs a script with only the distributions an install line brings importable: any other
# installed package fails to import, as it would in an environment made by that line alone.
_ONLY = """
import importlib.abc, importlib.metadata as md, re, runpy, sys
from packaging.requirements import Requirement
extras, extra_dists = set(sys.argv[1].split(",")), sys.argv[2].split(",")
allowed, todo = set(), [("ckptcore", extras), *((d, set()) for d in extra_dists)]
while todo:
    name, wanted = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if (key, frozenset(wanted)) in allowed:
        continue
    allowed.add((key, frozenset(wanted)))
    for text in md.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
            try:
                md.distribution(req.name)
            except md.PackageNotFoundError:
                continue
            todo.append((req.name, set(req.extras)))
names = {k for k, _ in allowed}
blocked = {top for top, dists in md.packages_distributions().items()
           if not any(re.sub(r"[-_.]+", "-", d).lower() in names for d in dists)}
blocked -= set(sys.stdlib_module_names) | {"_distutils_hack"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in blocked:
            message = f"No module named {fullname!r} (not installed by the documented line)"
            raise ModuleNotFoundError(message, name=fullname)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_custom_loop_runs_with_the_extras_it_documents(tmp_path):
    doc = (EXAMPLES / "custom_loop.py").read_text()
    line = next(line.strip() for line in doc.splitlines() if line.strip().startswith("pip install"))
    words = line.split()
    extras = words[2].strip("\"'").removeprefix(".[").removesuffix("]")
    others = words[3:]
    assert extras == "keras,jax,cli" and others == ["scikit-learn"]
    run = next(line.strip() for line in doc.splitlines() if "python docs/examples/custom_loop.py" in line)
    assert run.startswith("KERAS_BACKEND=jax ")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", _ONLY, extras, ",".join(others), str(EXAMPLES / "custom_loop.py"),
         "--epochs", "2", "--samples", "300", "--out", "ck"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restored model's val_accuracy" in result.stdout
    assert_manifest_matches_files(tmp_path / "ck")


def test_the_import_blocker_blocks_what_the_line_leaves_out(tmp_path):
    script = tmp_path / "uses_wandb.py"
    script.write_text("import wandb\n")
    result = subprocess.run([sys.executable, "-c", _ONLY, "keras,jax", "scikit-learn", str(script)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not installed by the documented line" in result.stderr


def test_demo(tmp_path):
    result = run_example("demo.py", tmp_path, "--epochs", "4", "--samples", "600", "--out", "out")
    root = tmp_path / "out" / "checkpoints"
    entries = assert_manifest_matches_files(root)
    # Every epoch is saved; keep_best=3 keeps the three best by val_accuracy.
    assert len(entries) == 3
    saved = {e["epoch"] for e in entries}
    assert saved <= {1, 2, 3, 4}
    best = max(entries, key=lambda e: e["monitor_value"])
    assert best["is_best"] and sum(e["is_best"] for e in entries) == 1
    assert all(e["backends"] == ["local", "wandb"] for e in entries)

    # The table of checkpoints, then the restored best and its accuracy.
    out = result.stdout
    for column in ("name", "epoch", "step", "val_accuracy", "best", "size", "age"):
        assert column in out
    assert all(e["path"] in out for e in entries)
    assert f"restored the best checkpoint {best['path']}" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert 0.1 < accuracy <= 1.0

    # What the W&B SDK recorded in the offline run: one artifact version per epoch.
    logs = glob.glob(str(tmp_path / "out" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(logs) == 1
    logged = recorded_artifacts(logs[0])
    assert len(logged) == 4
    run_id = logs[0].rsplit("run-", 1)[1].removesuffix(".wandb")
    name = f"run_{run_id}_model"
    assert all(a.type == "model" and "latest" in a.aliases for a in logged)
    assert [f"epoch_{n}" in a.aliases for n, a in enumerate(logged, 1)] == [True] * 4
    best_epochs = [n for n, a in enumerate(logged, 1) if "best" in a.aliases]
    assert best_epochs[-1] == best["epoch"]
    assert {a.name for a in logged} == {name} and f"versions of artifact {name!r}" in out

    # The closing hint works as printed, from a fresh shell (no venv on PATH) in the same place.
    hint = next(line for line in out.splitlines() if line.startswith("try: "))
    commands = [c.strip() for c in hint.removeprefix("try: ").split("|")]
    assert [c.split()[-2] for c in commands] == ["ls", "verify"]
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    for command in commands:
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=fresh, capture_output=True,
                             text=True, timeout=120)
        assert ran.returncode == 0, (command, ran.stderr)
    assert ran.stdout.count("ok ") == len(entries)  # verify, the last one


def test_resume_keras_continues_at_the_next_epoch(tmp_path):
    first = run_example("resume_keras.py", tmp_path, "--epochs", "2", "--out", "ck")
    assert "nothing to resume from" in first.stdout and "epochs run: [1, 2]; optimizer iterations: 12" in first.stdout
    second = run_example("resume_keras.py", tmp_path, "--epochs", "4", "--out", "ck")
    assert "restored ck/model-02.keras; training continues at epoch 3" in second.stdout
    assert "epochs run: [3, 4]; optimizer iterations: 24" in second.stdout
    assert checkpoint_files(tmp_path / "ck") >= {"model-03.keras", "model-04.keras"}


def test_resume_callback_list_continues_the_loop(tmp_path):
    run_example("resume_callback_list.py", tmp_path, "--epochs", "2", "--out", "ck")
    second = run_example("resume_callback_list.py", tmp_path, "--epochs", "4", "--out", "ck")
    epochs = [line.split(":")[0] for line in second.stdout.splitlines() if line.startswith("epoch")]
    assert epochs == ["epoch 3", "epoch 4"]
    assert "optimizer iterations: 16" in second.stdout


def test_resume_torch_loop_continues_from_the_latest_checkpoint(tmp_path):
    pytest.importorskip("torch")
    run_example("resume_torch_loop.py", tmp_path, "--epochs", "2", "--out", "ck")
    second = run_example("resume_torch_loop.py", tmp_path, "--epochs", "5", "--out", "ck")
    assert "resumed from epoch-002.pt (epoch 2, step 8)" in second.stdout
    epochs = [line.split(":")[0] for line in second.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == ["epoch 3", "epoch 4", "epoch 5"]
    assert "optimizer steps: 20" in second.stdout
    # keep_last=2, and the checkpoint the run resumed from is never pruned.
    saved = {p for p in checkpoint_files(tmp_path / "ck") if p.endswith(".pt")}
    assert saved == {"epoch-002.pt", "epoch-004.pt", "epoch-005.pt"}
