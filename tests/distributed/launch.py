"""Start worker processes of one job and watch them: a worker that fails stops the others.

Every test of this folder runs its workers through :func:`run_workers`, so a test is bounded
in time and never hangs on a worker blocked in a collective whose peer died.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from ckptcore.digest import bytes_digest

__all__ = ["Worker", "WorkerFailed", "check_local_root", "files_under", "own_files", "run_workers",
           "write_report"]

HERE = Path(__file__).resolve().parent


class WorkerFailed(AssertionError):
    """A worker exited with an error or the job ran past its time limit."""


@dataclass
class Worker:
    """One finished worker: its index, exit status, output and the report it wrote."""

    index: int
    returncode: int | None
    output: str
    report: dict[str, Any]


def _tail(path: str, limit: int = 4000) -> str:
    with open(path, errors="replace") as fh:
        return fh.read()[-limit:]


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass


def run_workers(script: str, envs: Sequence[Mapping[str, str]], args: Sequence[str] = (),
                timeout: float = 240.0) -> list[Worker]:
    """Run ``python script args`` once per environment in ``envs``, all at once; wait for all.

    Each worker gets ``WORKER_REPORT`` (a JSON file path it may write its observations to).
    As soon as one worker exits with an error, or ``timeout`` seconds have passed, the others
    are killed and :class:`WorkerFailed` is raised with every worker's output tail.
    """
    scratch = tempfile.mkdtemp(prefix="ckptcore-test-workers-")
    procs, logs, reports = [], [], []
    try:
        for index, extra in enumerate(envs):
            log_path = os.path.join(scratch, f"worker{index}.log")
            report = os.path.join(scratch, f"worker{index}.json")
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra, "WORKER_REPORT": report}
            with open(log_path, "wb") as out:
                procs.append(subprocess.Popen([sys.executable, str(HERE / script), *args], env=env,
                                              stdout=out, stderr=subprocess.STDOUT, cwd=scratch))
            logs.append(log_path)
            reports.append(report)
        deadline = time.monotonic() + timeout
        failure = None
        while any(p.poll() is None for p in procs):
            bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if bad:
                failure = f"worker {bad[0]} exited with status {procs[bad[0]].returncode}"
                break
            if time.monotonic() > deadline:
                failure = f"the workers ran past {timeout:.0f} s"
                break
            time.sleep(0.2)
        if failure is None and any(p.returncode != 0 for p in procs):
            failure = "a worker failed"
        _stop(procs)
        if failure is not None:
            tails = "\n".join(f"--- worker {i} (status {p.returncode}):\n{_tail(logs[i])}"
                              for i, p in enumerate(procs))
            raise WorkerFailed(f"{failure}; the others were stopped\n{tails}")
        workers = []
        for i, proc in enumerate(procs):
            report = json.loads(Path(reports[i]).read_text()) if os.path.exists(reports[i]) else {}
            workers.append(Worker(i, proc.returncode, _tail(logs[i]), report))
        return workers
    finally:
        _stop(procs)
        shutil.rmtree(scratch, ignore_errors=True)


def write_report(**values: Any) -> None:
    """In a worker: store what it observed for the test (in ``WORKER_REPORT``)."""
    with open(os.environ["WORKER_REPORT"], "w") as fh:
        json.dump(values, fh)


def files_under(root: str | Path) -> list[str]:
    """Every file below ``root``, as sorted paths relative to it (``/``-separated)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def own_files(files: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split root-relative ``files`` into (visible files, ckptcore's own files).

    ckptcore's own files are the manifest (:data:`ckptcore.manifest.MANIFEST_NAME`) and what
    lies in its hidden state directory, if the manifest lives in one.
    """
    from ckptcore.manifest import MANIFEST_NAME

    hidden = MANIFEST_NAME.split("/", 1)[0] + "/" if "/" in MANIFEST_NAME else None
    mine = [f for f in files if f == MANIFEST_NAME or (hidden is not None and f.startswith(hidden))]
    return [f for f in files if f not in mine], mine


def digest_of(path: Path) -> str:
    return bytes_digest(path.read_bytes())


def check_local_root(root: Path) -> list:
    """The root holds the chief's checkpoints and ckptcore's files only, each listed once with
    its real digest, from one run; returns the manifest entries."""
    from ckptcore.backends.local import LocalBackend
    from ckptcore.commit import load_manifest

    manifest = load_manifest(LocalBackend(str(root)))
    assert manifest is not None, f"no manifest under {root}: {files_under(root)}"
    visible, mine = own_files(files_under(root))
    paths = [e.path for e in manifest.entries]
    assert len(paths) == len(set(paths)), paths
    assert sorted(visible) == sorted(paths), (visible, paths)
    assert not [f for f in mine if "staging" in f or "tmp" in f], mine
    assert len(manifest.runs) == 1 and {e.run_id for e in manifest.entries} == set(manifest.runs)
    for entry in manifest.entries:
        assert digest_of(root / entry.path) == entry.digest, entry.path
    return manifest.entries
