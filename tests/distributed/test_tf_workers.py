"""Two tf.distribute.MultiWorkerMirroredStrategy workers (TF_CONFIG on 127.0.0.1), one root."""

from __future__ import annotations

import json

import pytest
from launch import check_local_root, run_workers
from s3_server import free_port

pytest.importorskip("tensorflow")
TIMEOUT = 300  # two processes starting TensorFlow on a shared machine


def tf_configs() -> list[dict]:
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    return [{"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "",
             "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})}
            for i in range(2)]


def test_two_multi_worker_mirrored_workers_share_a_local_root(tmp_path):
    root, weights = tmp_path / "shared", tmp_path / "weights"
    chief, other = (w.report for w in run_workers("tf_worker.py", tf_configs(), [str(root), str(weights)],
                                                  timeout=TIMEOUT))
    # The role comes from the strategy's cluster resolver: task worker 0 commits.
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["source"] == other["source"] == "tf.distribute"
    # strategy.reduce gives every worker the same logs, hence the same decisions.
    assert chief["logs"] == other["logs"] and chief["kept"] == other["kept"]
    assert chief["digests"] == other["digests"] and len(chief["kept"]) == 2
    assert len(set(chief["digests"])) == 3  # it trained: the weights changed every epoch
    entries = check_local_root(root)
    assert sorted(e.path for e in entries) == sorted(path for path, _ in chief["kept"])
    assert chief["loaded_best"] == chief["digests"][chief["best_epoch"] - 1]
    assert chief["loaded_latest"] == chief["final"]
    # Keras's own save_weights ran on every worker (async_save=False): the chief's files only.
    assert chief["weights_kept"] == other["weights_kept"] and chief["weights_kept"]
    saved = check_local_root(weights)
    assert [(e.path, e.epoch) for e in saved] == [tuple(k) for k in chief["weights_kept"]]
    best = min(range(3), key=lambda i: chief["logs"][i]["val_loss"])
    assert chief["weights_best"] == chief["digests"][best]
