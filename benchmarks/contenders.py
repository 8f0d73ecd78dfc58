"""The callbacks compared, each with a check that its checkpoints are complete after ``fit``.

Every contender saves a whole model (``.keras``, or Orbax's own layout) at every epoch end,
keeps every checkpoint, and is built fresh for each ``fit``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CONTENDERS", "LABELS", "Context", "Contender", "make"]


@dataclass
class Context:
    """Where a contender writes: a local directory, an S3 bucket, an offline W&B run."""

    workdir: str
    s3_options: dict[str, Any] | None = None
    s3_bucket: str | None = None
    counter: int = 0
    s3_roots: list[str] = field(default_factory=list)

    def fresh(self, name: str) -> str:
        """A new, empty local directory for one fit."""
        self.counter += 1
        path = os.path.join(self.workdir, f"{name}-{self.counter}")
        os.makedirs(path)
        return path


@dataclass
class Contender:
    """One fit's callbacks, the one whose hooks are timed, and how to check its files."""

    callbacks: list[Any]
    timed: Any | None
    check: Callable[[int], tuple[int, int]]
    details: dict[str, Any] = field(default_factory=dict)


LABELS = {
    "none": "no callback",
    "keras": "keras ModelCheckpoint",
    "keras_orbax": "keras OrbaxCheckpoint",
    "wandb": "W&B WandbModelCheckpoint",
    "ckpt_sync": "ckptcore sync, local",
    "ckpt_async": "ckptcore async, local",
    "ckpt_sync_s3": "ckptcore sync, S3",
    "ckpt_async_s3": "ckptcore async, S3",
    "ckpt_async_wandb": "ckptcore async, local + W&B",
}
_NAME = "m-{epoch:02d}.keras"


def _complete_keras_file(path: str) -> bool:
    """A finished .keras archive: its central directory is there and lists the weights."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "model.weights.h5" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _local_check(folder: str) -> Callable[[int], tuple[int, int]]:
    def check(epochs: int) -> tuple[int, int]:
        names = [_NAME.format(epoch=e) for e in range(1, epochs + 1)]
        return epochs, sum(_complete_keras_file(os.path.join(folder, n)) for n in names)

    return check


def _none(ctx: Context) -> Contender:
    return Contender([], None, lambda epochs: (0, 0))


def _keras(ctx: Context) -> Contender:
    import keras

    folder = ctx.fresh("keras")
    callback = keras.callbacks.ModelCheckpoint(os.path.join(folder, _NAME), save_freq="epoch")
    return Contender([callback], callback, _local_check(folder))


def _keras_orbax(ctx: Context) -> Contender:
    import keras

    folder = ctx.fresh("orbax")
    callback = keras.callbacks.OrbaxCheckpoint(folder, save_freq="epoch", max_to_keep=None)

    def check(epochs: int) -> tuple[int, int]:
        done = [n for n in os.listdir(folder) if n.isdigit() and os.path.isdir(os.path.join(folder, n))]
        return epochs, len(done)

    return Contender([callback], callback, check)


def _wandb(ctx: Context) -> Contender:
    from wandb.integration.keras import WandbModelCheckpoint

    folder = ctx.fresh("wandb")
    callback = WandbModelCheckpoint(os.path.join(folder, _NAME), save_freq="epoch")
    return Contender([callback], callback, _local_check(folder))


def _ckpt(ctx: Context, *, async_save: bool, where: str) -> Contender:
    from ckptcore.adapters.keras import ModelCheckpoint, WandbModelCheckpoint

    folder = ctx.fresh(f"ckpt-{where}")
    options: dict[str, Any] = {"monitor": "loss", "async_save": async_save}
    if where == "s3":
        url = f"s3://{ctx.s3_bucket}/{os.path.basename(folder)}"
        ctx.s3_roots.append(url)
        callback = ModelCheckpoint(f"{url}/{_NAME}", storage_options=ctx.s3_options, **options)
        return Contender([callback], callback, _s3_check(ctx, url))
    cls = WandbModelCheckpoint if where == "wandb" else ModelCheckpoint
    callback = cls(os.path.join(folder, _NAME), **options)
    return Contender([callback], callback, _local_check(folder))


def _s3_check(ctx: Context, url: str) -> Callable[[int], tuple[int, int]]:
    def check(epochs: int) -> tuple[int, int]:
        import json

        import s3fs

        fs = s3fs.S3FileSystem(**(ctx.s3_options or {}))
        root = url[len("s3://"):]
        from ckptcore.manifest import MANIFEST_NAME

        manifest = json.loads(fs.cat_file(f"{root}/{MANIFEST_NAME}"))
        sizes = {e["name"]: e["size"] for e in manifest["entries"]}
        complete = 0
        for epoch in range(1, epochs + 1):
            name = _NAME.format(epoch=epoch)
            try:
                complete += fs.info(f"{root}/{name}")["size"] == sizes.get(name)
            except FileNotFoundError:
                pass
        return epochs, complete

    return check


CONTENDERS: dict[str, Callable[[Context], Contender]] = {
    "none": _none,
    "keras": _keras,
    "keras_orbax": _keras_orbax,
    "wandb": _wandb,
    "ckpt_sync": lambda ctx: _ckpt(ctx, async_save=False, where="local"),
    "ckpt_async": lambda ctx: _ckpt(ctx, async_save=True, where="local"),
    "ckpt_sync_s3": lambda ctx: _ckpt(ctx, async_save=False, where="s3"),
    "ckpt_async_s3": lambda ctx: _ckpt(ctx, async_save=True, where="s3"),
    "ckpt_async_wandb": lambda ctx: _ckpt(ctx, async_save=True, where="wandb"),
}


def make(name: str, ctx: Context) -> Contender:
    """Build contender ``name`` for one fit."""
    return CONTENDERS[name](ctx)
