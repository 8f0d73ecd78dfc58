"""Two framework-free worker processes (ranks from RANK/WORLD_SIZE) on one shared root."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from launch import check_local_root, run_workers
from s3_server import AWS_TEST_ENV, running_s3
from ckptcore.digest import bytes_digest

ENVS = [{"RANK": "0", "WORLD_SIZE": "2"}, {"RANK": "1", "WORLD_SIZE": "2"}]


def envs(barrier_dir, **extra) -> list[dict]:
    """The two workers' environments; they meet in ``barrier_dir`` after opening the root."""
    return [{**env, "BARRIER_DIR": str(barrier_dir), **extra} for env in ENVS]


def check_reports(workers, root_prefix: str) -> None:
    chief, other = (w.report for w in workers)
    assert chief["chief"] is True and other["chief"] is False
    # The same decisions on both workers: the same saves, the same retention, the same best.
    assert chief["saved"] == other["saved"] and None not in chief["saved"]
    assert chief["kept"] == other["kept"] and chief["best"] == other["best"]
    # Both ran the write; the chief's went through the root's staging, the other's never did.
    assert len(chief["given"]) == len(other["given"]) == len(chief["saved"])
    assert not [p for p in other["given"] if p.startswith(root_prefix)]
    assert not [p for p in other["given"] if os.path.exists(p)]


def test_only_the_chief_writes_a_shared_local_root(tmp_path):
    root = tmp_path / "shared"
    workers = run_workers("core_worker.py", envs(tmp_path / "barrier"), [str(root)], timeout=120)
    check_reports(workers, str(root))
    entries = check_local_root(root)
    assert sorted(e.path for e in entries) == sorted(workers[0].report["kept"])
    for entry in entries:  # the chief's bytes (rank 0 writes zeros), never the other's
        assert np.load(root / entry.path).tolist() == [0.0] * 4


def test_only_the_chief_writes_a_shared_s3_bucket(monkeypatch, tmp_path):
    with running_s3(monkeypatch) as server:
        bucket = server.make_bucket()
        url = f"s3://{bucket}/run"
        workers = run_workers("core_worker.py", envs(tmp_path / "barrier", **AWS_TEST_ENV),
                              [url, json.dumps(server.options)], timeout=120)
        check_reports(workers, url)
        import s3fs

        from ckptcore.backends.fsspec import FsspecBackend
        from ckptcore.commit import load_manifest

        fs = s3fs.S3FileSystem(**server.options)
        files = sorted(p.split("/run/", 1)[1] for p in fs.find(f"{bucket}/run"))
        manifest = load_manifest(FsspecBackend(url, storage_options=server.options))
        paths = [e.path for e in manifest.entries]
        from launch import own_files

        visible, _ = own_files(files)
        assert sorted(visible) == sorted(paths) == sorted(workers[0].report["kept"])
        assert len(manifest.runs) == 1
        import hashlib

        for entry in manifest.entries:
            assert bytes_digest(fs.cat(f"{bucket}/run/{entry.path}")) == entry.digest


def test_a_worker_that_dies_stops_the_others(tmp_path):
    """The watcher kills the survivor at once instead of waiting for the time limit."""
    from launch import WorkerFailed

    envs = [{"RANK": "0", "WORLD_SIZE": "2", "HANG": "1"}, {"RANK": "1", "WORLD_SIZE": "2"}]
    with pytest.raises(WorkerFailed, match="worker 1 exited with status 3"):
        run_workers("hang_or_die.py", envs, timeout=60)


def test_resumed_workers_all_continue_the_chiefs_run(tmp_path):
    """resume=True: every worker reads the same latest entry and state, and continues the run
    the chief wrote, so the root still holds one run."""
    root = tmp_path / "shared"
    first = run_workers("core_worker.py", envs(tmp_path / "b1"), [str(root)], timeout=120)
    resumed = run_workers("core_worker.py", envs(tmp_path / "b2", RESUME="1"), [str(root)], timeout=120)
    chief, other = (w.report for w in resumed)
    assert chief["opened"] == other["opened"]
    opened = chief["opened"]
    assert opened["run_id"] == first[0].report["opened"]["run_id"]
    assert opened["latest"] == first[0].report["latest"] and opened["latest"].endswith("m-03-0.70.npy")
    assert opened["best"] == 0.5 and opened["protected"] == ["m-03-0.70.npy"]
    check_reports(resumed, str(root))
    assert chief["saved"][0].startswith("m-04-")  # both continue at the same epoch
    check_local_root(root)
