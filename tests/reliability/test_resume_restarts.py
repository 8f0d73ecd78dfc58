"""Restarting real training processes with ``resume=True``: after SIGTERM (the final checkpoint
of ``save_on_preemption``) and after SIGKILL at random moments (tests/reliability/resume_harness.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

#: The same script runs twice: the first run gets SIGTERM in epoch 3, the second finishes.
SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import keras
    from ckptcore.adapters.keras import ModelCheckpoint

    root, journal, park = sys.argv[1], sys.argv[2], sys.argv[3] == "park"

    class Journal(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.note(event="start", initial_epoch=self.model._initial_epoch or 0)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if park and self.epoch == 2 and batch == 1:
                print("ready", flush=True)
                for _ in range(3000):  # the signal arrives during this step
                    time.sleep(0.01)
        def on_epoch_end(self, epoch, logs=None):
            self.note(event="epoch", epoch=epoch)
        def note(self, **fields):
            with open(journal, "a") as fh:
                fh.write(json.dumps(fields) + "\\n")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    checkpoint = ModelCheckpoint(root + "/m-{epoch}.keras", monitor="loss", resume=True,
                                 save_on_preemption=True)
    model.fit(x, x[:, :1], epochs=6, batch_size=8, verbose=0, callbacks=[checkpoint, Journal()])
    print("iterations", int(keras.ops.convert_to_numpy(model.optimizer.iterations)), flush=True)
    """
)


def _journal(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigterm_then_rerun_continues_and_the_epochs_add_up(tmp_path):
    pytest.importorskip("ckptcore.adapters.keras")
    import ckptcore

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    root, journal = tmp_path / "root", tmp_path / "journal.jsonl"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([sys.executable, str(script), str(root), str(journal), "park"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in first.stdout:  # type: ignore[union-attr]
            if line.strip() == "ready":
                first.send_signal(signal.SIGTERM)
                break
        _out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGTERM, err[-2000:]
    point = ckptcore.latest_checkpoint(root)
    assert (point.path, point.mid_epoch, point.initial_epoch) == ("m-3.keras", True, 2), "the final checkpoint"

    second = subprocess.run([sys.executable, str(script), str(root), str(journal), "run"],
                            capture_output=True, text=True, env=env, timeout=180)
    assert second.returncode == 0, second.stderr[-2000:]
    events = _journal(journal)
    starts = [e["initial_epoch"] for e in events if e["event"] == "start"]
    ended = [e["epoch"] for e in events if e["event"] == "epoch"]
    assert starts == [0, 2], "the rerun continues at the interrupted epoch 3"
    assert ended == [0, 1, 2, 3, 4, 5], "epochs 1-2, then 3 (interrupted once, run again) to 6"
    # 2 epochs and 2 batches before the signal, 4 epochs after: 4 batches per epoch.
    assert "iterations 26" in second.stdout
    assert ckptcore.latest_checkpoint(root).epoch == 6


@pytest.mark.parametrize("sync", [False, True], ids=["non-blocking", "blocking"])
def test_sigkill_at_random_moments_loses_no_epochs_and_never_the_best(tmp_path, sync):
    pytest.importorskip("ckptcore.adapters.keras")
    from resume_harness import check_campaign, run_campaign

    campaign = run_campaign(str(tmp_path), kills=2, sync=sync, seed=7 if sync else 3, max_wait=1.0)
    assert campaign.kills >= 1 and len(campaign.runs) == 3
    check_campaign(campaign, str(tmp_path / "root"), lag=0 if sync else 2)
