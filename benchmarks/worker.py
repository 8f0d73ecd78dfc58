"""One benchmark process: fits with one or more contenders, one JSON line per measured fit.

Run by :mod:`benchmarks.run`; a process of its own per contender keeps peak memory apart::

    python -m benchmarks.worker sweep --contender keras --sizes 10,100 --epochs 4 --out r.jsonl
    python -m benchmarks.worker fitcost --contenders none,ckpt_async --rounds 3 --out r.jsonl
    python -m benchmarks.worker limits --size 227 --epochs 5 --rounds 2 --out r.jsonl
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any

from benchmarks import limits as limits_
from benchmarks import models
from benchmarks.contenders import Context, make

__all__ = ["main", "measure_fit"]

BATCH = 16


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


SNAPSHOT_S: list[float] = []


def _time_snapshots() -> None:
    """Note the time of each ckptcore host snapshot (part of the time blocked per save)."""
    from ckptcore.adapters.keras.snapshot import KerasSnapshot

    take = KerasSnapshot.__call__

    def timed(self: Any) -> Any:
        start = time.perf_counter()
        try:
            return take(self)
        finally:
            SNAPSHOT_S.append(time.perf_counter() - start)

    KerasSnapshot.__call__ = timed  # type: ignore[method-assign]


class HookTimer:
    """Times the epoch-end and train-end hooks of one callback, as the training thread sees them."""

    def __init__(self, callback: Any) -> None:
        self.epoch_end: list[float] = []
        self.epoch_end_at: list[float] = []  # perf_counter() when each epoch-end hook began
        self.train_end: list[float] = []
        self._wrap(callback, "on_epoch_end", self.epoch_end, self.epoch_end_at)
        self._wrap(callback, "on_train_end", self.train_end, [])

    @staticmethod
    def _wrap(callback: Any, name: str, sink: list[float], starts: list[float]) -> None:
        hook = getattr(callback, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            starts.append(start)
            try:
                return hook(*args, **kwargs)
            finally:
                sink.append(time.perf_counter() - start)

        setattr(callback, name, timed)


def measure_fit(name: str, ctx: Context, model: Any, x: Any, y: Any, epochs: int) -> dict[str, Any]:
    """Fit ``model`` for ``epochs`` with contender ``name``; return what it cost."""
    contender = make(name, ctx)
    timer = HookTimer(contender.timed) if contender.timed is not None else None
    SNAPSHOT_S.clear()
    gc.collect()
    base_kb = _status_kb("VmRSS")
    peak_ok = _reset_peak()
    cpu0, start = os.times(), time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=contender.callbacks)
    fit_s, cpu1 = time.perf_counter() - start, os.times()
    peak_kb = _status_kb("VmHWM") if peak_ok else 0
    expected, complete = contender.check(epochs)
    blocked = timer.epoch_end if timer else []
    return {
        "contender": name, "fit_s": fit_s, "epochs": epochs,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "blocked_s": blocked, "blocked_median_s": statistics.median(blocked) if blocked else 0.0,
        "blocked_at_s": timer.epoch_end_at if timer else [],
        "train_end_s": timer.train_end[0] if timer and timer.train_end else 0.0,
        "base_rss_mb": base_kb / 1024, "peak_rss_mb": peak_kb / 1024,
        "files_expected": expected, "files_complete": complete,
        "snapshot_s": list(SNAPSHOT_S),
        "snapshot_median_s": statistics.median(SNAPSHOT_S) if SNAPSHOT_S else None,
    }


def _context(workdir: str, endpoint: str | None) -> Context:
    ctx = Context(workdir)
    if endpoint:
        import s3fs

        ctx.s3_options = {"client_kwargs": {"endpoint_url": endpoint}, "use_listings_cache": False}
        ctx.s3_bucket = f"bench-{uuid.uuid4().hex[:10]}"
        s3fs.S3FileSystem(**ctx.s3_options).mkdir(ctx.s3_bucket)
    return ctx


def _wandb_run(workdir: str, names: list[str]) -> Any:
    if not any("wandb" in n for n in names):
        return None
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        path = os.path.join(workdir, var.lower())
        os.makedirs(path, exist_ok=True)
        os.environ[var] = path
    return wandb.init(project="ckptcore-bench", mode="offline", dir=os.environ["WANDB_DIR"])


def _emit(out: str, record: dict[str, Any]) -> None:
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def sweep(args: argparse.Namespace, ctx: Context) -> None:
    """One contender over model sizes, smallest first."""
    for size in args.sizes:
        model = models.build(size)
        x, y = models.data(args.steps * BATCH)
        model.fit(x, y, batch_size=BATCH, epochs=1, steps_per_epoch=2, verbose=0)  # traces the step
        record = measure_fit(args.contender, ctx, model, x, y, args.epochs)
        record.update(scenario="sweep", target_mb=size, state_mb=models.state_bytes(model) / 1e6)
        if args.contender == "none":
            fresh = models.host_copy_seconds(model)
            reused = models.host_copy_seconds(model, reuse=True)
            record.update(host_copy_s=fresh, host_copy_median_s=statistics.median(fresh),
                          host_copy_reuse_s=reused, host_copy_reuse_median_s=statistics.median(reused))
        _emit(args.out, record)
        del model
        _cleanup(ctx)


def fitcost(args: argparse.Namespace, ctx: Context) -> None:
    """A small model, many batches, every contender in turn, ``rounds`` times (interleaved)."""
    model = models.build(args.size)
    x, y = models.data(args.steps * BATCH)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    names = list(args.contenders)
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[: round_ % len(names)]  # no fixed position
        for name in order:
            record = measure_fit(name, ctx, model, x, y, args.epochs)
            record.update(scenario="fitcost", round=round_, state_mb=models.state_bytes(model) / 1e6,
                          steps_per_epoch=args.steps)
            _emit(args.out, record)
            _cleanup(ctx)


def limits(args: argparse.Namespace, ctx: Context) -> None:
    """The physical references and the back-to-back fits (see :mod:`benchmarks.limits`)."""
    limits_.time_writer_jobs()
    model = models.build(args.size)
    x, y = models.data(limits_.B2B_STEPS * BATCH)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    data = {limits_.B2B_STEPS: (x, y)}

    def fit(name: str, steps: int = limits_.B2B_STEPS) -> dict[str, Any]:
        if steps not in data:
            data[steps] = models.data(steps * BATCH)
        record = measure_fit(name, ctx, model, *data[steps], args.epochs)
        record.update(target_mb=args.size, state_mb=models.state_bytes(model) / 1e6)
        _cleanup(ctx, keep="limits")
        return record

    for record in limits_.measure_limits(ctx, model, fit, args.rounds, saves=args.epochs):
        record.setdefault("state_mb", models.state_bytes(model) / 1e6)
        record.setdefault("target_mb", args.size)
        _emit(args.out, record)
    _cleanup(ctx)


def _cleanup(ctx: Context, keep: str | None = None) -> None:
    """Remove the checkpoints of the last fit (the offline W&B run's folders stay)."""
    for entry in os.listdir(ctx.workdir):
        if not entry.startswith("wandb_") and not (keep and entry.startswith(keep)):
            shutil.rmtree(os.path.join(ctx.workdir, entry), ignore_errors=True)
    if ctx.s3_roots:  # moto keeps objects in memory
        import s3fs

        fs = s3fs.S3FileSystem(**(ctx.s3_options or {}))
        for url in ctx.s3_roots:
            fs.rm(url[len("s3://"):], recursive=True)
        ctx.s3_roots.clear()
    gc.collect()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    sub = parser.add_subparsers(dest="scenario", required=True)
    one = sub.add_parser("sweep")
    one.add_argument("--contender", required=True)
    one.add_argument("--sizes", type=lambda s: [float(v) for v in s.split(",")], required=True)
    one.add_argument("--epochs", type=int, default=4)
    one.add_argument("--steps", type=int, default=6)
    many = sub.add_parser("fitcost")
    many.add_argument("--contenders", type=lambda s: s.split(","), required=True)
    many.add_argument("--size", type=float, default=2.0)
    many.add_argument("--epochs", type=int, default=3)
    many.add_argument("--steps", type=int, default=200)
    many.add_argument("--rounds", type=int, default=3)
    lim = sub.add_parser("limits")
    lim.add_argument("--size", type=float, default=227.0)
    lim.add_argument("--epochs", type=int, default=5)
    lim.add_argument("--rounds", type=int, default=2)
    for p in (one, many, lim):
        p.add_argument("--out", required=True)
        p.add_argument("--s3-endpoint", default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of one benchmark process."""
    args = _parser().parse_args(argv)
    _time_snapshots()
    names = {"sweep": lambda: [args.contender], "fitcost": lambda: args.contenders,
             "limits": lambda: ["limits_s3" if args.s3_endpoint else "limits"]}[args.scenario]()
    workdir = tempfile.mkdtemp(prefix="ckptcore-bench-")
    run = _wandb_run(workdir, names)
    try:
        ctx = _context(workdir, args.s3_endpoint if any("s3" in n for n in names) else None)
        {"sweep": sweep, "fitcost": fitcost, "limits": limits}[args.scenario](args, ctx)
    finally:
        if run is not None:
            run.finish()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
