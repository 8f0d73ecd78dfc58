"""keras.distribution.ModelParallel over two JAX processes: a kernel no process holds whole."""

from __future__ import annotations

import pytest
from launch import check_local_root, run_workers
from s3_server import free_port

pytest.importorskip("jax")


def test_a_kernel_sharded_across_processes_is_gathered_and_restored_into_its_layout(tmp_path):
    root = tmp_path / "shared"
    envs = [{"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "WORKER_ID": str(i)} for i in range(2)]
    chief, other = (w.report for w in run_workers("jax_model_parallel_worker.py", envs,
                                                  [str(root), str(free_port())], timeout=300))
    assert chief["sharded"] and other["sharded"]  # the layout really spans both processes
    # Keras's own save cannot read the kernel: refused before the first epoch, naming why.
    for report in (chief, other):
        assert "sharded across processes" in report["refused"] and "d1" in report["refused"]
        assert report["epochs_before_refusal"] == []
    # The snapshot gathers it; the chief commits one whole checkpoint; it loads back sharded.
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["trained"] == other["trained"] == chief["loaded"] == other["loaded"]
    assert chief["loaded_sharded"] and other["loaded_sharded"]
    entries = check_local_root(root)
    assert [e.path for e in entries] == chief["kept"] == other["kept"] == ["m-2.keras"]
