"""Two JAX processes (jax.distributed on 127.0.0.1, gloo) training with Keras DataParallel."""

from __future__ import annotations

import json

import pytest
from launch import check_local_root, own_files, run_workers
from s3_server import AWS_TEST_ENV, free_port, running_s3
from ckptcore.digest import bytes_digest

pytest.importorskip("jax")
TIMEOUT = 300  # two processes starting JAX and Keras on a shared machine


def run_job(root: str, options: dict | None = None, env: dict | None = None):
    args = [root, str(free_port())] + ([json.dumps(options)] if options else [])
    envs = [{"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "WORKER_ID": str(i), **(env or {})}
            for i in range(2)]
    return run_workers("jax_worker.py", envs, args, timeout=TIMEOUT)


def check_job(workers) -> dict:
    chief, other = (w.report for w in workers)
    assert (chief["chief"], other["chief"]) == (True, False)  # from jax.process_index()
    # Keras reduces the metrics over the global batch: every worker sees the same logs, so
    # every worker takes the same decisions (same saves, same retention, same best).
    assert chief["logs"] == other["logs"] and len(chief["logs"]) == 4
    assert chief["kept"] == other["kept"] and len(chief["kept"]) == 2
    assert chief["digests"] == other["digests"]  # replicated weights
    assert len(set(chief["digests"])) == 4  # it trained: the weights changed every epoch
    # load_best / load_latest give back the chief's weights of those epochs.
    assert chief["loaded_best"] == chief["digests"][chief["best_epoch"] - 1]
    assert chief["loaded_latest"] == chief["final"]
    return chief


def test_two_jax_processes_share_a_local_root(tmp_path):
    root = tmp_path / "shared"
    chief = check_job(run_job(str(root)))
    entries = check_local_root(root)
    assert sorted(e.path for e in entries) == sorted(path for path, _ in chief["kept"])


def test_a_resumed_job_restores_the_same_checkpoint_on_every_worker(tmp_path):
    root = str(tmp_path / "shared")
    first = check_job(run_job(root))
    latest = max(epoch for _path, epoch in first["kept"])  # retention kept the best 2
    chief, other = (w.report for w in run_job(root, env={"RESUME": "1", "EPOCHS": "6"}))
    assert (chief["chief"], other["chief"]) == (True, False)
    # Every worker restored the chief's checkpoint of that epoch and continued after it.
    assert chief["begin"] == other["begin"] == first["digests"][latest - 1]
    assert chief["epochs"] == other["epochs"] == list(range(latest + 1, 7))
    assert chief["logs"] == other["logs"] and chief["digests"] == other["digests"]
    entries = check_local_root(tmp_path / "shared")
    assert len({e.run_id for e in entries}) == 1  # the resumed job continued the same run


def test_two_jax_processes_share_an_s3_bucket(monkeypatch):
    with running_s3(monkeypatch) as server:
        bucket = server.make_bucket()
        chief = check_job(run_job(f"s3://{bucket}/run", server.options, AWS_TEST_ENV))
        import hashlib

        import s3fs

        from ckptcore.backends.fsspec import FsspecBackend
        from ckptcore.commit import load_manifest

        fs = s3fs.S3FileSystem(**server.options)
        visible, _ = own_files(sorted(p.split("/run/", 1)[1] for p in fs.find(f"{bucket}/run")))
        manifest = load_manifest(FsspecBackend(f"s3://{bucket}/run", storage_options=server.options))
        assert sorted(visible) == sorted(e.path for e in manifest.entries) == sorted(p for p, _ in chief["kept"])
        assert len(manifest.runs) == 1
        for entry in manifest.entries:
            assert bytes_digest(fs.cat(f"{bucket}/run/{entry.path}")) == entry.digest
