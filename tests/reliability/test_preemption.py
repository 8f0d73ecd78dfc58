"""``save_on_preemption=True``: SIGTERM saves a final checkpoint and finishes pending saves.

A real training process gets a real SIGTERM from this test while it is in the middle of an
epoch, with background saves still in flight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from ckptcore.manifest import MANIFEST_NAME
from ckptcore import Checkpointer
from ckptcore.digest import digest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")

#: Trains 5 batches per epoch, saves every 3rd epoch in the background (slowly, so saves are
#: still pending), and parks in epoch 7 after batch 4 until the parent sends SIGTERM.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    import numpy as np
    from ckptcore import Checkpointer

    root, chain = sys.argv[1], sys.argv[2]
    if chain == "python-handler":
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, previous)

    state = {"steps": 0}

    def snapshot():
        value = float(state["steps"])
        def write(path):
            time.sleep(0.4)  # a slow upload: still pending when the signal comes
            np.save(path, np.full(4, value))
        return write

    ck = Checkpointer(root + "/w-{epoch:03d}.npy", snapshot=snapshot, async_save=True,
                      max_pending=2, every_n_epochs=3, save_on_preemption=True, monitor="loss")
    for epoch in range(100):
        ck.on_epoch_begin(epoch)
        for batch in range(5):
            state["steps"] += 1
            ck.on_train_batch_end(batch, {"loss": 1.0 / state["steps"]})
            if epoch == 6 and batch == 3:
                print("ready", flush=True)
                for _ in range(3000):  # a long step; the signal arrives during it
                    time.sleep(0.01)
                print("no signal came", flush=True)
                sys.exit(3)
        saved = ck.on_epoch_end(epoch, {"loss": 1.0 / state["steps"]})
        if saved:
            print("queued", saved, flush=True)
    """
)


def _run_until_ready(tmp_path, chain: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), chain],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.strip())
        if line.strip() == "ready":
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=60)
    lines += [line.strip() for line in out.splitlines()]
    return subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(lines), err), lines


def _entries(root) -> dict[str, dict]:
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    return {e["path"]: e for e in manifest["entries"]}


def _assert_agrees_with_disk(root, entries) -> None:
    for path, entry in entries.items():
        assert digest(str(root / path)) == (entry["size"], entry["digest"]), path
    on_disk = {n for n in os.listdir(root) if n != ".ckptcore"}
    assert on_disk == set(entries), "no temporary file is left and nothing is unlisted"


def test_sigterm_saves_a_final_checkpoint_and_finishes_pending_saves(tmp_path):
    result, lines = _run_until_ready(tmp_path, "default")
    assert result.returncode == -signal.SIGTERM, result.stderr  # it still dies of SIGTERM
    root = tmp_path / "root"
    entries = _entries(root)
    queued = [line.split()[1] for line in lines if line.startswith("queued")]
    assert queued == ["w-003.npy", "w-006.npy"]
    assert set(entries) == {"w-003.npy", "w-006.npy", "w-007.npy"}, "pending saves were finished"
    # The final checkpoint holds the state at the signal: 6 epochs of 5 batches, then 4.
    assert np.load(root / "w-007.npy", allow_pickle=False)[0] == 34.0
    assert entries["w-007.npy"]["epoch"] == 7 and entries["w-007.npy"]["batch"] == 4
    assert entries["w-007.npy"]["global_step"] == 34 and not entries["w-007.npy"]["is_best"]
    assert np.load(root / "w-006.npy", allow_pickle=False)[0] == 30.0
    _assert_agrees_with_disk(root, entries)
    assert "saving a final checkpoint" in result.stderr


def test_sigterm_chains_to_the_handler_that_was_there_before(tmp_path):
    result, lines = _run_until_ready(tmp_path, "python-handler")
    assert result.returncode == 0, result.stderr
    assert "previous handler ran" in lines
    root = tmp_path / "root"
    entries = _entries(root)
    assert set(entries) == {"w-003.npy", "w-006.npy", "w-007.npy"}
    _assert_agrees_with_disk(root, entries)


def _write(path: str) -> None:
    np.save(path, np.arange(3.0))


def test_the_handler_is_installed_only_when_asked_and_restored_at_close(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    plain = Checkpointer(str(tmp_path / "a" / "w.npy"), write=_write)
    assert signal.getsignal(signal.SIGTERM) == before
    plain.close()
    ck = Checkpointer(str(tmp_path / "b" / "w.npy"), write=_write, save_on_preemption=True)
    assert signal.getsignal(signal.SIGTERM) != before
    ck.close()
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_ignored_sigterm_saves_and_training_goes_on(tmp_path):
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=_write, save_on_preemption=True,
                          every_n_epochs=10)
        ck.on_epoch_begin(0)
        ck.on_epoch_end(0, {"val_loss": 0.5})
        ck.on_epoch_begin(1)
        signal.raise_signal(signal.SIGTERM)  # handled here, on the main thread
        assert (tmp_path / "w-2.npy").exists(), "the final checkpoint was saved"
        ck.on_epoch_end(1, {"val_loss": 0.4})  # the process was not stopped: training goes on
        ck.close()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, "the ignored handler is back"
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_checkpointer_built_off_the_main_thread_does_not_install(tmp_path, caplog):
    before = signal.getsignal(signal.SIGTERM)
    built = []
    thread = threading.Thread(
        target=lambda: built.append(Checkpointer(str(tmp_path / "w.npy"), write=_write, save_on_preemption=True))
    )
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) == before
    assert "only be installed from the main thread" in caplog.text
    built[0].close()


def test_a_signal_during_a_save_waits_until_that_save_is_committed(tmp_path, caplog):
    seen_during_write = []

    def write(path: str) -> None:
        np.save(path, np.arange(3.0))
        signal.raise_signal(signal.SIGTERM)  # arrives in the middle of the commit pipeline
        seen_during_write.append("saving a final checkpoint" in caplog.text)

    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=write, save_on_preemption=True)
        ck.on_epoch_begin(0)
        assert ck.on_epoch_end(0, {"val_loss": 0.5}) == "w-1.npy"
        assert seen_during_write == [False], "the handler did not run inside the save"
        assert "saving a final checkpoint" in caplog.text, "it ran right after"
        ck.close()
    finally:
        signal.signal(signal.SIGTERM, before)
    entries = _entries(tmp_path)
    assert list(entries) == ["w-1.npy"], "nothing new ran since that save: no second checkpoint"
    _assert_agrees_with_disk(tmp_path, entries)


KERAS_CHILD = textwrap.dedent(
    """
    import sys, time
    import keras, numpy as np
    from ckptcore.adapters.keras import ModelCheckpoint

    class ParkMidEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 1:  # epoch 3, after its second batch
                print("ready", flush=True)
                for _ in range(3000):
                    time.sleep(0.01)
                sys.exit(3)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    checkpoint = ModelCheckpoint(sys.argv[1] + "/m-{epoch}.keras", monitor="loss", every_n_epochs=2,
                                 save_on_preemption=True)
    model.fit(x, x[:, :1], epochs=100, batch_size=8, verbose=0, callbacks=[checkpoint, ParkMidEpoch()])
    """
)


def test_keras_fit_saves_a_final_checkpoint_on_sigterm(tmp_path):
    keras_adapter = pytest.importorskip("ckptcore.adapters.keras")
    script = tmp_path / "child.py"
    script.write_text(KERAS_CHILD)
    root = tmp_path / "root"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.strip() == "ready":
            proc.send_signal(signal.SIGTERM)
            break
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, err[-2000:]
    entries = _entries(root)
    assert list(entries) == ["m-2.keras", "m-3.keras"], "the epoch-2 save and the final one"
    assert entries["m-3.keras"]["epoch"] == 3 and not entries["m-3.keras"]["is_best"]
    _assert_agrees_with_disk(root, entries)
    restored = keras_adapter.load_latest(root)
    assert restored.count_params() == 4 * 8 + 8 + 8 + 1


def test_in_a_shared_root_the_final_checkpoint_never_replaces_this_runs_best(tmp_path):
    # best.npy (save_best_only) and m-{epoch}.npy share a root; the best-only run restarts
    # and gets SIGTERM before anything improves.
    written = iter(range(100))

    def write(path: str) -> None:  # different bytes at every save
        np.save(path, np.full(3, float(next(written))))

    best = Checkpointer(str(tmp_path / "best.npy"), write=write, save_best_only=True)
    every = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=write)
    for epoch, loss in enumerate([0.5, 0.6, 0.4]):
        best.on_epoch_end(epoch, {"val_loss": loss})
        every.on_epoch_end(epoch, {"val_loss": loss})
    best.close()
    every.close()
    kept = (tmp_path / "best.npy").read_bytes()
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        again = Checkpointer(str(tmp_path / "best.npy"), write=write, save_best_only=True,
                             resume=True, save_on_preemption=True)
        again.on_epoch_begin(0)
        signal.raise_signal(signal.SIGTERM)
        again.close()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert (tmp_path / "best.npy").read_bytes() == kept
    assert (tmp_path / "best-preempted.npy").exists()
    assert again.best() == str(tmp_path / "best.npy")
