"""Kill a real Keras ``fit`` and restart it with ``resume=True`` until it finishes.

The child trains a small model for ``EPOCHS`` epochs with two resuming callbacks on one root:
``m-{epoch}.keras`` (every epoch, ``keep_last=2``) and a fixed-name ``best.keras``
(``save_best_only``), both non-blocking unless ``--sync``. ``val_loss`` is a fixed function of
the epoch (:func:`val_loss`), with worse epochs between better ones, so the parent knows which
model must be the best. A journal line is written at each epoch end, before the saves.

Checks, after every kill and at the end (:func:`check_campaign`):

* epochs add up: a restart continues at most one epoch before the last journaled one plus the
  saves still in flight, and never after the epoch that was running (nothing is skipped); the
  last run ends at epoch ``EPOCHS``;
* the best is never replaced by a worse model: the best value on storage never gets worse
  from one kill to the next, each restart's tracker starts from it, and at the end it is the
  best value over all epochs and ``best.keras`` verifies against the manifest.

Run a campaign: ``python tests/reliability/resume_harness.py --kills 40`` (KERAS_BACKEND as set).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

EPOCHS = 12

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import keras
    from ckptcore.adapters.keras import ModelCheckpoint

    root, journal, sync = sys.argv[1], sys.argv[2], sys.argv[3] == "sync"
    EPOCHS = int(sys.argv[4])

    def val_loss(epoch):
        return round(1.0 - 0.05 * epoch + (0.3 if epoch % 3 == 1 else 0.0), 4)

    def note(**fields):
        with open(journal, "a") as fh:
            fh.write(json.dumps(fields) + "\\n")
            fh.flush()
            os.fsync(fh.fileno())

    class Started(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # after the resuming callbacks' own
            note(event="start", initial_epoch=self.model._initial_epoch or 0, best=best.best,
                 iterations=int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    class Journal(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.03)  # an epoch long enough to be killed in
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = val_loss(epoch)
            note(event="epoch", epoch=epoch, val_loss=logs["val_loss"])

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    every = ModelCheckpoint(root + "/m-{epoch}.keras", keep_last=2, resume=True, async_save=not sync)
    best = ModelCheckpoint(root + "/best.keras", save_best_only=True, resume=True, async_save=not sync)
    # The journal comes first: its epoch end is written before the saves of that epoch.
    model.fit(x, x[:, :1], epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[Journal(), every, best, Started()])
    note(event="done")
    """
)


def val_loss(epoch: int) -> float:
    """The scripted ``val_loss`` of 0-based ``epoch`` (as the child computes it)."""
    return round(1.0 - 0.05 * epoch + (0.3 if epoch % 3 == 1 else 0.0), 4)


@dataclass
class Campaign:
    """What a campaign saw: per run, its journal events; per kill, the best on storage."""

    runs: list[list[dict]] = field(default_factory=list)
    bests: list[float | None] = field(default_factory=list)
    kills: int = 0


def _stored_best(root: str) -> float | None:
    from ckptcore.backends.local import LocalBackend
    from ckptcore.store import load_settled

    if not os.path.isdir(root):
        return None
    # As the next run (and any reader) sees it: a save the kill left pending is settled by the
    # bytes really under best.keras.
    manifest = load_settled(LocalBackend(root))
    best = None if manifest is None else next(
        (e for e in reversed(manifest.entries) if e.path == "best.keras" and e.is_best), None)
    return None if best is None else best.monitor_value


def _read_journal(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def run_campaign(workdir: str, kills: int, *, sync: bool = False, seed: int = 0,
                 max_wait: float = 1.5, child_timeout: float = 180.0) -> Campaign:
    """Start the child, SIGKILL it ``kills`` times at random moments of training, then let it
    finish; return what each run journaled."""
    rng = random.Random(seed)
    root = os.path.join(workdir, "root")
    script = os.path.join(workdir, "child.py")
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(CHILD)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    campaign = Campaign()
    for attempt in range(kills + 1):
        journal = os.path.join(workdir, f"journal-{attempt}.jsonl")
        proc = subprocess.Popen([sys.executable, script, root, journal, "sync" if sync else "async", str(EPOCHS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            if attempt < kills:
                deadline = time.monotonic() + child_timeout
                # Mostly once training is up to speed (an epoch ended), sometimes while it restores.
                wanted = "start" if rng.random() < 0.2 else "epoch"
                while (not any(e["event"] == wanted for e in _read_journal(journal))
                       and proc.poll() is None and time.monotonic() < deadline):
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, max_wait))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    campaign.kills += 1
            _out, err = proc.communicate(timeout=child_timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        events = _read_journal(journal)
        campaign.runs.append(events)
        campaign.bests.append(_stored_best(root))
        if events and events[-1]["event"] == "done":
            if attempt < kills:
                continue  # it finished before the kill came: later runs have nothing to do
        elif attempt == kills:
            raise AssertionError(f"the last run did not finish: {err[-2000:]}")
    return campaign


def check_campaign(campaign: Campaign, root: str, *, lag: int) -> None:
    """Assert the campaign's invariants (see the module docstring).

    Args:
        lag: How many ended epochs may lack their checkpoint at a kill (saves in flight).
    """
    last_ended = -1
    previous_best: float | None = None
    for index, events in enumerate(campaign.runs):
        start = next((e for e in events if e["event"] == "start"), None)
        if start is None:
            continue  # killed before training began
        initial = start["initial_epoch"]
        assert last_ended - lag <= initial <= last_ended + 1, (
            f"run {index} continued at epoch {initial + 1} after epoch {last_ended + 1} ended "
            f"(allowed: {last_ended + 1 - lag} to {last_ended + 2})")
        if previous_best is not None:
            assert start["best"] == previous_best, f"run {index} forgot the best {previous_best}: {start['best']}"
        ended = [e["epoch"] for e in events if e["event"] == "epoch"]
        assert ended == list(range(initial, initial + len(ended))), f"run {index} skipped epochs: {ended}"
        last_ended = ended[-1] if ended else last_ended
        best = campaign.bests[index]
        if best is not None and previous_best is not None:
            assert best <= previous_best, f"a worse model ({best}) replaced the best ({previous_best})"
        previous_best = best if best is not None else previous_best
    assert campaign.runs[-1][-1]["event"] == "done" and last_ended == EPOCHS - 1
    assert previous_best == min(val_loss(e) for e in range(EPOCHS))
    from ckptcore.adapters.keras import load_best

    assert load_best(root).count_params() == 4 * 8 + 8 + 8 + 1  # verifies size and digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sync", action="store_true", help="blocking saves instead of non-blocking ones")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ckptcore-resume-campaign-")
    started = time.monotonic()
    campaign = run_campaign(workdir, args.kills, sync=args.sync, seed=args.seed)
    check_campaign(campaign, os.path.join(workdir, "root"), lag=0 if args.sync else 2)
    repeated = sum(len([e for e in run if e["event"] == "epoch"]) for run in campaign.runs) - EPOCHS
    print(f"{campaign.kills} SIGKILLs, {len(campaign.runs)} runs, {EPOCHS} epochs, {repeated} epoch(s) "
          f"run again, every invariant held ({time.monotonic() - started:.0f} s, {workdir})")


if __name__ == "__main__":
    main()
