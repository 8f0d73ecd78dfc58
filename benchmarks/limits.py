"""The physical references and the back-to-back regime, measured in one process.

Run by :mod:`benchmarks.worker` (``python -m benchmarks.worker limits ...``). At the target
model size, interleaved in rounds so that the shared machine's load hits each the same way:

* **references**: a memory copy of the state's bytes into a reused buffer; a raw ``write`` +
  ``fsync`` of the bytes of the model's ``.keras`` file into a new file beside the checkpoints;
  the BLAKE3 (the digest ckptcore records), the SHA-256 (the digest of older manifests) and
  the zlib CRC-32 (every zip member has one) of those bytes on one core; with an S3 endpoint, a raw s3fs upload of the same bytes to it (the same part
  size as the fsspec backend's);
* **single saves**: one synchronous save at a time, each from a settled disk (``os.sync``
  before it, outside the timing), interleaved with the raw write in an order that rotates
  from one repeat to the next, after one untimed save (imports, threads): ckptcore's
  ``ModelCheckpoint(async_save=False)`` (write, hash, fsync, rename, manifest) and Keras's
  ``model.save`` (no fsync);
* **the writer alone**: as many non-blocking saves, each handed over and waited for, with
  no training between them, alternating with as many raw ``write`` + ``fsync`` of the same
  bytes, every file kept and the disk never resting (the writer's own sustained throughput,
  with the machine to itself, against raw writes on the disk in the same state);
* **keeps up**: a non-blocking fit with 20 steps per epoch, enough for the writer to finish
  each save before the next; the saves made while it was idle, against the copy of the same
  state into reused host buffers measured just after (sliced over the cores as the snapshot
  copies, and by one thread);
* **back to back**: fits with 2 steps per epoch and a save at every epoch end (the writer
  cannot rest between saves), for Keras's ``ModelCheckpoint`` and ckptcore's callback, sync
  and async, with the time the writer spends on each save (``Committer.save``); their
  reference, a raw ``write`` + ``fsync`` as many times in a row into kept files, just before
  and just after each round's fits (the disk's sustained rate, well below its burst rate on a
  virtual disk).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
import zlib
from typing import Any, Callable

import blake3
import numpy as np

__all__ = ["B2B_CONTENDERS", "KEEPS_UP_STEPS", "measure_limits", "time_writer_jobs", "writer_was_idle"]

B2B_CONTENDERS = ("keras", "ckpt_sync", "ckpt_async")
B2B_S3 = "ckpt_async_s3"  # with an S3 endpoint: the writer's time per upload against a raw put
B2B_STEPS = 2
#: Steps per epoch of the keeps-up fits: enough training between saves for the writer to finish.
KEEPS_UP_STEPS = 20
WRITER_S: list[float] = []
WRITER_END: list[float] = []  # perf_counter() when each Committer.save returned


def time_writer_jobs() -> None:
    """Note how long each ``Committer.save`` takes (the writer's time per save, when async)."""
    from ckptcore.commit import Committer

    save = Committer.save

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return save(self, *args, **kwargs)
        finally:
            end = time.perf_counter()
            WRITER_S.append(end - start)
            WRITER_END.append(end)

    Committer.save = timed  # type: ignore[method-assign]


def _raw_write_fsync(data: bytes, folder: str, index: Any, keep: bool = False) -> float:
    """Seconds to write ``data`` to a new file and fsync it; the file is removed unless ``keep``
    (kept files pile up as a fit's checkpoints do, each written to fresh blocks)."""
    path = os.path.join(folder, f"raw-{index}.bin")
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view.nbytes:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    if not keep:
        os.remove(path)
    return seconds


def _remove_raw(folder: str, prefix: str | tuple[str, ...]) -> None:
    """Remove the files of ``folder`` whose names start with ``prefix`` (untimed)."""
    for name in os.listdir(folder):
        if name.startswith(prefix):
            os.remove(os.path.join(folder, name))


def _settled(folder: str) -> None:
    """Remove what earlier measurements wrote, then let the disk finish (os.sync), untimed."""
    _remove_raw(folder, ("raw-", "keras-"))
    os.sync()


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _single_saves(model: Any, data: bytes, folder: str, repeats: int, refs: dict[str, list[float]]) -> None:
    """``repeats`` interleaved single saves of each kind, each from a settled disk."""
    from ckptcore.adapters.keras import ModelCheckpoint

    # keep_last=1: each save reuses the blocks of the one before it, as the raw write and
    # Keras's save (whose files are removed between measurements) do; files that pile up would
    # each take fresh blocks, which on a thin-provisioned disk costs more than the write.
    callback = ModelCheckpoint(os.path.join(folder, "ckpt", "m-{epoch:03d}.keras"), async_save=False, keep_last=1)
    callback.set_model(model)
    callback.on_train_begin()
    start = len(refs["single_ckpt_sync_s"])
    kinds: dict[str, Callable[[int], float]] = {  # each returns its own time
        "single_raw_write_fsync_s": lambda i: _raw_write_fsync(data, folder, i),
        "single_ckpt_sync_s": lambda i: _timed(lambda: callback.on_epoch_end(start + i + 1, {"loss": 1.0})),
        "single_keras_save_s": lambda i: _timed(lambda: model.save(os.path.join(folder, f"keras-{i}.keras"))),
    }
    order = list(kinds)
    try:
        if not start:  # one untimed save first: the first one pays for imports and threads
            callback.on_epoch_end(0, {"loss": 1.0})
        for i in range(repeats):
            shift = i % len(order)
            for key in order[shift:] + order[:shift]:  # no kind always right after another
                _settled(folder)
                refs[key].append(kinds[key](i))
    finally:
        callback.on_train_end()
        _settled(folder)


def _memory_copy(source: np.ndarray, target: np.ndarray) -> float:
    start = time.perf_counter()
    np.copyto(target, source)
    return time.perf_counter() - start


def _raw_s3_put(path: str, ctx: Any, index: int) -> float:
    import s3fs

    from ckptcore.backends.fsspec import S3_PART_SIZE

    fs = s3fs.S3FileSystem(**(ctx.s3_options or {}))
    key = f"{ctx.s3_bucket}/raw/put-{index}.bin"
    start = time.perf_counter()
    fs.put_file(path, key, chunksize=S3_PART_SIZE)
    seconds = time.perf_counter() - start
    fs.rm(key)
    return seconds


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _writer_alone(model: Any, data: bytes, folder: str, tag: str, saves: int) -> tuple[list[float], list[float]]:
    """``saves`` non-blocking saves, each handed to the writer and waited for, alternating with
    as many raw write + fsync of the same bytes (which goes first alternates too), files kept,
    nothing between them: the writer's time per save (``Committer.save``) with the machine to
    itself, and the raw writes it is compared with, on the disk in the same state.

    Returns:
        ``(raw seconds, writer seconds)``, one of each per save.
    """
    from ckptcore.adapters.keras import ModelCheckpoint

    root = os.path.join(folder, f"alone-{tag}")
    callback = ModelCheckpoint(os.path.join(root, "m-{epoch:03d}.keras"), async_save=True)
    callback.set_model(model)
    callback.on_train_begin()
    raw: list[float] = []
    writer: list[float] = []

    def save(epoch: int) -> None:
        WRITER_S.clear()
        callback.on_epoch_end(epoch, {"loss": 1.0})
        callback.wait()
        writer.extend(WRITER_S)

    try:
        os.sync()
        for epoch in range(saves):
            steps = [lambda: raw.append(_raw_write_fsync(data, folder, f"alone-{tag}-{epoch}", keep=True)),
                     lambda: save(epoch)]
            for step in steps if epoch % 2 == 0 else steps[::-1]:
                step()
    finally:
        callback.on_train_end()
    shutil.rmtree(root)  # untimed: later measurements find the disk as before
    _remove_raw(folder, f"raw-alone-{tag}-")
    return raw, writer


def writer_was_idle(starts: list[float], ends: list[float]) -> list[bool]:
    """For each save of a fit (its hook's start time), whether every earlier save's write had
    finished by then: the saves made while the writer kept up."""
    return [sum(end <= start for end in ends) >= i for i, start in enumerate(starts)]


def _keeps_up(fit: Callable[..., dict[str, Any]], model: Any, round_: int) -> dict[str, Any]:
    """A non-blocking fit with enough steps per epoch for the writer to finish each save before
    the next, and the reused-buffer copies of the same state (one thread, and sliced over the
    cores as the snapshot copies) measured just after it."""
    from benchmarks.models import host_copy_seconds

    WRITER_S.clear()
    WRITER_END.clear()
    record = fit("ckpt_async", steps=KEEPS_UP_STEPS)
    idle = writer_was_idle(record["blocked_at_s"], WRITER_END)
    reuse = host_copy_seconds(model, reuse=True)
    parallel = host_copy_seconds(model, reuse=True, parallel=True)
    record.update(scenario="keeps_up", round=round_, steps_per_epoch=KEEPS_UP_STEPS, writer_s=list(WRITER_S),
                  writer_idle=idle, host_copy_reuse_s=reuse, host_copy_reuse_median_s=_median(reuse),
                  host_copy_parallel_s=parallel, host_copy_parallel_median_s=_median(parallel))
    return record


def _raw_back_to_back(data: bytes, folder: str, tag: str, saves: int) -> list[float]:
    """``saves`` raw write + fsync of ``data`` into new files in a row, kept, nothing between:
    the disk's sustained rate, the reference for saves back to back."""
    os.sync()
    return [_raw_write_fsync(data, folder, f"b2b-{tag}-{i}", keep=True) for i in range(saves)]


def measure_limits(ctx: Any, model: Any, fit: Callable[..., dict[str, Any]], rounds: int,
                   repeats: int = 3, saves: int = 5) -> list[dict[str, Any]]:
    """The references and the fits: one record for each back-to-back and keeps-up fit, then
    one of the references.

    Args:
        ctx: The benchmark context (where to write, the S3 bucket if any).
        model: The built, trained model of the target size.
        fit: ``fit(contender, steps=B2B_STEPS)`` runs one fit of ``saves`` epochs and returns
            its record.
        rounds: Rounds of references and fits.
        repeats: Single saves of each kind per round.
        saves: Saves in one back-to-back fit (its epochs), and raw writes in a row around them.
    """
    folder = ctx.fresh("limits")
    keras_file = os.path.join(folder, "reference.keras")
    model.save(keras_file)
    with open(keras_file, "rb") as fh:
        data = fh.read()
    state = np.frombuffer(data, dtype=np.uint8)
    target = np.empty_like(state)
    target[:] = 0  # paged in, as reused host buffers are
    refs: dict[str, list[float]] = {key: [] for key in (
        "raw_write_fsync_s", "raw_write_fsync_kept_s", "raw_write_fsync_b2b_s", "memory_copy_s", "blake3_s", "sha256_s", "crc32_s", "s3_put_s",
        "single_raw_write_fsync_s", "single_ckpt_sync_s", "single_keras_save_s", "writer_alone_s",
        "writer_alone_raw_s")}
    refs["writer_alone_ratio"] = []  # per round: median raw write / median writer save, alternated
    records = []
    for round_ in range(rounds):
        _single_saves(model, data, folder, repeats, refs)
        refs["raw_write_fsync_s"].append(_raw_write_fsync(data, folder, round_))
        for i in range(repeats):  # the same, piling up, as the back-to-back fits' checkpoints do
            os.sync()
            refs["raw_write_fsync_kept_s"].append(_raw_write_fsync(data, folder, f"kept-{round_}-{i}", keep=True))
        refs["memory_copy_s"].append(_memory_copy(state, target))
        refs["blake3_s"].append(_timed(lambda: blake3.blake3(data).digest()))
        refs["sha256_s"].append(_timed(lambda: hashlib.sha256(data).digest()))
        refs["crc32_s"].append(_timed(lambda: zlib.crc32(data)))
        if ctx.s3_bucket:
            refs["s3_put_s"].append(_raw_s3_put(keras_file, ctx, round_))
        names = B2B_CONTENDERS + ((B2B_S3,) if ctx.s3_bucket else ())
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        raw, alone = _writer_alone(model, data, folder, str(round_), saves)
        refs["writer_alone_raw_s"] += raw
        refs["writer_alone_s"] += alone
        refs["writer_alone_ratio"].append(statistics.median(raw) / statistics.median(alone))
        # The disk's sustained rate drifts over minutes on a thin-provisioned disk: measured just
        # before and just after the round's fits, in their regime (in a row, files kept).
        refs["raw_write_fsync_b2b_s"] += _raw_back_to_back(data, folder, f"{round_}-before", saves)
        for name in order:
            WRITER_S.clear()
            record = fit(name)
            record.update(scenario="b2b", round=round_, writer_s=list(WRITER_S),
                          writer_median_s=_median(WRITER_S[1:] or WRITER_S))
            records.append(record)
        refs["raw_write_fsync_b2b_s"] += _raw_back_to_back(data, folder, f"{round_}-after", saves)
        _settled(folder)
        records.append(_keeps_up(fit, model, round_))
        _settled(folder)
    summary: dict[str, Any] = {"scenario": "limits", "contender": "reference", "file_mb": len(data) / 1e6,
                               "steps_per_epoch": B2B_STEPS, "rounds": rounds}
    for key, values in refs.items():
        summary[key] = values
        summary[(key[:-2] + "_median_s") if key.endswith("_s") else key + "_median"] = _median(values)
    records.append(summary)
    return records
