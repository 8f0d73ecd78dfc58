"""Kill a training process at random moments while it saves; count the checkpoints it ruined.

Each trial starts a real training process, waits until its first checkpoint is written, lets
it run a random while more (saving all along), then ``SIGKILL``s it: no handler runs, no buffer
is flushed, nothing is cleaned up. A trial is *corrupt* when afterwards a file under a final
checkpoint name does not load, or a ``manifest.json`` does not parse or disagrees with the
disk (a listed checkpoint missing, or its size or sha256 different).

Modes:

* ``core-sync`` / ``core-async``: a NumPy loop with two ckptcore ``Checkpointer``\\ s, a
  fixed-name ``best.npy`` (``save_best_only``) and templated ``w-{epoch:05d}.npy``
  (``keep_last=3``); ``np.save`` writes, ``np.load(allow_pickle=False)`` checks.
* ``keras-sync`` / ``keras-async``: ``model.fit`` with two ckptcore Keras ``ModelCheckpoint``\\ s,
  a fixed-name ``best.keras`` (``save_best_only``) and templated ``w-{epoch:04d}.weights.h5``
  (``keep_last=3``); checked with ``keras.saving.load_model(safe_mode=True)`` and
  ``model.load_weights``.
* ``keras-native``: the same two checkpoints with ``keras.callbacks.ModelCheckpoint``.

The processes are forked from a ``multiprocessing`` fork server that imported NumPy (and
Keras) once, so a trial costs the training, not the imports.

Run ``python -m benchmarks.crash_harness --kills 40`` (``--help`` for the options); it prints a
Markdown table and, with ``--json PATH``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from ckptcore.layout import DIR, STAGING_DIR

__all__ = ["MODES", "Summary", "run_mode", "train", "verify"]

MODES = ("core-sync", "core-async", "keras-sync", "keras-async", "keras-native")
CORE_SIZE = 1 << 18  # float64 values per NumPy checkpoint (2 MiB)
SUBROOTS = ("best", "every")


# -- the training processes ---------------------------------------------------------------------

def _train_core(root: str, async_save: bool, ready: Any, seed: int) -> None:
    import numpy as np

    from ckptcore import Checkpointer

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=CORE_SIZE)

    def write(path: str) -> None:
        np.save(path, weights)

    def snapshot():
        copy = weights.copy()
        return lambda path: np.save(path, copy)

    io = {"snapshot": snapshot} if async_save else {"write": write}
    best = Checkpointer(os.path.join(root, "best", "best.npy"), monitor="loss", save_best_only=True,
                        async_save=async_save, **io)
    every = Checkpointer(os.path.join(root, "every", "w-{epoch:05d}.npy"), monitor="loss", keep_last=3,
                         async_save=async_save, **io)
    for epoch in range(10**9):
        weights += rng.normal(scale=0.01, size=CORE_SIZE)
        logs = {"loss": (1.0 + 0.5 * rng.random()) / (1 + epoch)}
        best.on_epoch_end(epoch, logs)
        every.on_epoch_end(epoch, logs)
        if epoch == 1:
            best.wait()
            every.wait()
            ready.set()


def _keras_model(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    return model


def _train_keras(root: str, mode: str, ready: Any, seed: int) -> None:
    import keras
    import numpy as np

    model = _keras_model(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = x[:, :1] * 2.0 + 0.1 * rng.normal(size=(256, 1)).astype("float32")
    best = os.path.join(root, "best", "best.keras")
    every = os.path.join(root, "every", "w-{epoch:04d}.weights.h5")
    if mode == "keras-native":
        for sub in SUBROOTS:
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True),
            keras.callbacks.ModelCheckpoint(every, monitor="loss", save_weights_only=True),
        ]
    else:
        from ckptcore.adapters.keras import ModelCheckpoint

        async_save = mode == "keras-async"
        callbacks = [
            ModelCheckpoint(best, monitor="loss", save_best_only=True, async_save=async_save),
            ModelCheckpoint(every, monitor="loss", save_weights_only=True, keep_last=3, async_save=async_save),
        ]

    class Ready(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                for cb in callbacks:
                    engine = getattr(cb, "checkpointer", None)
                    if engine is not None:
                        engine.wait()
                ready.set()

    model.fit(x, y, batch_size=64, epochs=10**6, verbose=0, callbacks=[*callbacks, Ready()])


def train(mode: str, root: str, ready: Any, seed: int) -> None:
    """Train until killed, saving all along (run in a child process)."""
    if mode.startswith("core-"):
        _train_core(root, mode == "core-async", ready, seed)
    else:
        _train_keras(root, mode, ready, seed)


# -- checking what a killed process left --------------------------------------------------------

def _load(path: str, models: dict[str, Any]) -> None:
    if path.endswith(".npy"):
        import numpy as np

        np.load(path, allow_pickle=False)
    elif path.endswith(".weights.h5"):
        if "weights" not in models:
            models["weights"] = _keras_model(0)
        models["weights"].load_weights(path)
    elif path.endswith(".keras"):
        import keras

        keras.saving.load_model(path, safe_mode=True, compile=False)
    else:
        raise ValueError(f"unexpected file {path!r}")


def _check_manifest(sub: str) -> list[str]:
    from ckptcore.audit import unaccounted
    from ckptcore.manifest import MANIFEST_NAME, Manifest

    path = os.path.join(sub, *MANIFEST_NAME.split("/"))
    if not os.path.exists(path):
        return []
    try:
        with open(path, "rb") as fh:
            manifest = Manifest.from_json(fh.read(), source=path)
    except ValueError as exc:
        return [f"{path}: {exc}"]
    problems = [f"{os.path.join(sub, *e.path.split('/'))}: listed in the manifest but missing"
                for e in manifest.entries if not os.path.lexists(os.path.join(sub, *e.path.split("/")))]
    problems += [f"{os.path.join(sub, *rel.split('/'))}: not accounted for by the manifest (no entry or "
                 "pending record holds its size/sha256)" for rel in unaccounted(sub)]
    return problems


def verify(root: str) -> dict[str, Any]:
    """Load every file under a final name below ``root``; check each manifest against the disk.

    Returns:
        ``{"files": n, "leftovers": m, "problems": [...]}``. Hidden names (what a save left in
        ``.ckptcore/staging``, other writers' temporary files) are never final names: they are
        counted, not loaded.
    """
    problems: list[str] = []
    files = leftovers = 0
    models: dict[str, Any] = {}
    for dirpath, dirs, names in os.walk(root):
        for own in [d for d in dirs if d == DIR]:  # ckptcore's own: what a save left in staging
            staging = os.path.join(dirpath, own, *STAGING_DIR.split("/")[1:])
            leftovers += len(os.listdir(staging)) if os.path.isdir(staging) else 0
        leftovers += sum(d.startswith(".") and d != DIR for d in dirs)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                leftovers += 1
                continue
            files += 1
            path = os.path.join(dirpath, name)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Keras on optimizer state it does not load
                    _load(path, models)
            except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
                problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:120]}")
    for sub in SUBROOTS:
        problems += _check_manifest(os.path.join(root, sub))
    problems = [p.replace(root + os.sep, "").replace(root, ".") for p in problems]
    return {"files": files, "leftovers": leftovers, "problems": problems}


# -- the parent ---------------------------------------------------------------------------------

@dataclass
class Summary:
    """What the kills of one mode left behind."""

    mode: str
    kills: int = 0
    corrupt: int = 0
    files_checked: int = 0
    leftovers: int = 0
    not_ready: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)


def context(keras: bool) -> Any:
    """The fork-server context: NumPy, ckptcore and, if asked, Keras are imported once.

    Ask for Keras on the first call if any Keras mode will run: the preload list only counts
    until the fork server starts.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    ctx = multiprocessing.get_context("forkserver")
    preload = ["numpy", "ckptcore", __name__]
    if keras:
        preload += ["keras", "ckptcore.adapters.keras"]
    if not getattr(context, "keras", False):
        ctx.set_forkserver_preload(preload)
        context.keras = keras  # type: ignore[attr-defined]
    return ctx


def _one_kill(ctx: Any, pool: Any, mode: str, root: str, window: float, rng: random.Random,
              ready_timeout: float) -> tuple[bool, dict[str, Any]]:
    ready = ctx.Event()
    proc = ctx.Process(target=train, args=(mode, root, ready, rng.randrange(2**31)), daemon=True)
    proc.start()
    deadline = time.monotonic() + ready_timeout
    while not (became_ready := ready.wait(0.1)) and proc.is_alive() and time.monotonic() < deadline:
        pass
    if became_ready:
        time.sleep(rng.uniform(0.0, window))
    proc.kill()  # SIGKILL
    proc.join()
    return became_ready, pool.apply(verify, (root,))


def run_mode(mode: str, kills: int, window: float, seed: int = 0, workdir: str | None = None,
             fresh_root: bool = False, ready_timeout: float = 120.0) -> Summary:
    """Kill ``kills`` training processes of ``mode``; check each root after each kill.

    Args:
        mode: One of :data:`MODES`.
        kills: How many processes to kill.
        window: The kill comes up to this many seconds after the first checkpoint.
        seed: Seeds the kill moments and the training.
        workdir: Where the checkpoint roots go (a temporary directory by default).
        fresh_root: Start each trial in an empty root; by default a trial restarts in the
            root the previous kill left, as a restarted job would.
        ready_timeout: Seconds to wait for a process's first checkpoint.
    """
    if mode not in MODES:
        raise ValueError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}")
    ctx = context(keras=mode.startswith("keras"))
    rng = random.Random(f"{seed}-{mode}")
    summary = Summary(mode)
    start = time.perf_counter()
    base = tempfile.mkdtemp(prefix=f"crash-{mode}-", dir=workdir)
    try:
        with ctx.Pool(1) as pool:
            for trial in range(kills):
                root = os.path.join(base, f"t{trial}" if fresh_root else "root")
                became_ready, outcome = _one_kill(ctx, pool, mode, root, window, rng, ready_timeout)
                summary.kills += 1
                summary.not_ready += not became_ready
                summary.files_checked += outcome["files"]
                summary.leftovers = max(summary.leftovers, outcome["leftovers"])
                if outcome["problems"]:
                    summary.corrupt += 1
                    summary.examples += outcome["problems"][:2]
                    if not fresh_root:  # the next trial starts clean, so each kill counts alone
                        shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary.seconds = round(time.perf_counter() - start, 1)
    return summary


def _table(summaries: list[Summary]) -> str:
    lines = ["| mode | kills | corrupt outcomes | files checked | temporary files left (most at once) |",
             "|---|---:|---:|---:|---:|"]
    for s in summaries:
        share = 100 * s.corrupt / max(s.kills, 1)
        lines.append(f"| {s.mode} | {s.kills} | {s.corrupt} ({share:.0f}%) | {s.files_checked} | {s.leftovers} |")
    return "\n".join(lines)


def _record(args: argparse.Namespace, summaries: list[Summary]) -> dict[str, Any]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("ckptcore", "keras", "tensorflow-cpu", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {
        "kills_per_mode": args.kills, "window_s": args.window, "seed": args.seed,
        "python": platform.python_version(), "cpus": os.cpu_count(), "versions": versions,
        "results": [asdict(s) for s in summaries],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    parser.add_argument("--kills", type=int, default=40, help="kills per mode")
    parser.add_argument("--window", type=float, default=2.0, help="seconds after the first checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    context(keras=any(m.startswith("keras") for m in modes))
    summaries = []
    for mode in modes:
        summary = run_mode(mode, args.kills, args.window, seed=args.seed)
        print(f"{mode}: {summary.corrupt}/{summary.kills} corrupt ({summary.seconds}s)", file=sys.stderr, flush=True)
        summaries.append(summary)
    print(_table(summaries))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(_record(args, summaries), fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
