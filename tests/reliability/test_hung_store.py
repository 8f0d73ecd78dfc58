"""An S3 endpoint that accepts connections and never replies, or flaps, must not hang training.

The endpoint (:mod:`hung_server`) sits between s3fs and a real S3 API server (moto) on
127.0.0.1: it relays, hangs (accepts, reads, never replies) or closes every connection, as the
test says. The Keras fits are real; the wall-clock bounds are generous, they catch a hang (the
unfixed code blocked for minutes), not slowness.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
from hung_server import Endpoint
from s3_server import S3Server, running_s3

from ckptcore import Checkpointer, Manifest
from ckptcore.backends.timeouts import S3_CONFIG_DEFAULTS, S3FS_RETRIES, with_client_timeouts
from ckptcore.errors import CheckpointSaveWarning
from ckptcore.manifest import MANIFEST_NAME

DEADLINE = 2.0  # storage_timeout of the fits
NEVER = 600  # a client read timeout longer than any test: only ckptcore's deadline bounds them


@pytest.fixture
def store(monkeypatch):
    """``(endpoint, bucket, moto)``: the endpoint relays to moto until a test switches it."""
    with running_s3(monkeypatch) as moto:
        bucket = moto.make_bucket()
        with Endpoint("forward", ("127.0.0.1", moto.port)) as endpoint:
            yield endpoint, bucket, moto


def _options(endpoint: Endpoint, **config) -> dict:
    options = {"client_kwargs": {"endpoint_url": endpoint.url}, "use_listings_cache": False,
               "skip_instance_cache": True}
    if config:
        options["config_kwargs"] = config
    return options


def _remote(moto: S3Server, bucket: str, prefix: str = "run") -> tuple[list[str], list[str]]:
    """``(manifest paths, object names)`` of the run's prefix, read from moto directly."""
    import s3fs

    from ckptcore.backends.fsspec import FsspecBackend
    from ckptcore.store import load_settled

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **moto.options)
    # As a reader sees it: the pending records (a save's one manifest write comes before its
    # upload; a close that gave up on a hung store writes no more) settled by what is there.
    manifest = load_settled(FsspecBackend(f"s3://{bucket}/{prefix}", storage_options=moto.options))
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/{prefix}") if not p.endswith(MANIFEST_NAME))
    return sorted(e.path for e in manifest.entries), names


def _warned(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CheckpointSaveWarning)]


def test_client_defaults_are_added_where_the_user_set_none():
    options = with_client_timeouts("s3://b/run", {"config_kwargs": {"read_timeout": 7}, "anon": True})
    assert options["config_kwargs"] == {**S3_CONFIG_DEFAULTS, "read_timeout": 7}
    assert options["anon"] is True
    assert with_client_timeouts("memory://run", {"x": 1}) == {"x": 1}


def test_an_upload_to_an_endpoint_that_never_replies_fails_within_the_client_timeout(store):
    from ckptcore.backends.fsspec import FsspecBackend

    endpoint, bucket, _ = store
    backend = FsspecBackend(f"s3://{bucket}/run", _options(endpoint))
    assert backend.fs.retries == S3FS_RETRIES
    endpoint.mode = "hang"
    start = time.monotonic()
    # An object PUT: botocore sends "Expect: 100-continue" and aiohttp waited for the answer
    # with no timeout at all, whatever read_timeout said.
    with pytest.raises(Exception, match="Read timeout") as caught:
        backend.write_bytes("probe", b"x" * 1000)
    took = time.monotonic() - start
    assert took < S3_CONFIG_DEFAULTS["read_timeout"] * 1.5 + S3_CONFIG_DEFAULTS["connect_timeout"], took
    assert "ReadTimeout" in type(caught.value).__name__
    backend.close()


def test_a_store_that_flaps_costs_each_save_one_attempt_and_saves_resume(tmp_path, store):
    endpoint, bucket, moto = store
    ck = Checkpointer(f"s3://{bucket}/run/w-{{epoch}}.npy", write=lambda p: np.save(p, np.arange(8.0)),
                      storage_options=_options(endpoint), retries=2, retry_backoff=0.01, async_save=True)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.wait()
    endpoint.mode = "close"  # accepts, then closes: the store flaps
    attempts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(1, 6):
            before = endpoint.accepted
            ck.on_epoch_end(epoch, {"val_loss": 1.0})
            ck.wait()
            attempts.append(endpoint.accepted - before)
        endpoint.mode = "forward"
        for epoch in range(6, 8):
            ck.on_epoch_end(epoch, {"val_loss": 1.0})
            ck.wait()
    ck.close()
    missed = _warned(caught)
    assert len(missed) == 5 and all(f"'w-{n}.npy' was not saved" in m for n, m in zip(range(2, 7), missed))
    # One attempt is one request, which aiohttp sends on a second connection once when the first
    # closes under it (an idempotent GET).
    one = attempts[1]
    assert one in (1, 2), attempts
    assert attempts[0] == 3 * one, "the first failing save: one try and two retries"
    assert attempts[1:] == [one] * 4, "then one attempt per save while the store is down"
    listed, objects = _remote(moto, bucket)
    assert listed == objects == ["w-1.npy", "w-7.npy", "w-8.npy"]


@pytest.mark.parametrize("async_save", [True, False], ids=["async", "sync"])
def test_a_manifest_write_that_hangs_holding_the_lock_does_not_block_training(flaky_fs, async_save):
    import threading

    release = threading.Event()

    def hang() -> BaseException:
        assert release.wait(60), "the test never released the hung manifest write"
        return TimeoutError("the store answered at last, too late")

    ck = Checkpointer(f"{flaky_fs.url}/w-{{epoch}}.npy", write=lambda p: np.save(p, np.arange(4.0)),
                      storage_timeout=0.3, retries=0, async_save=async_save)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.wait()
    flaky_fs.fail("pipe_file", 1, hang)  # the next manifest write hangs, holding the manifest lock
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(1, 6):
            ck.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})
        took = time.monotonic() - start
        missed = _warned(caught)
        release.set()
        ck.close()
    assert took < 10, f"training waited {took:.1f}s on a hung manifest write"
    # Sync: the stuck save is reported at its deadline; async: it holds the writer (reported at
    # close); every later save is skipped and reported.
    first = 3 if async_save else 2
    assert [m.split("'")[1] for m in missed] == [f"w-{n}.npy" for n in range(first, 7)], missed


# -- real Keras fits --------------------------------------------------------------------------------

keras = pytest.importorskip("keras")


def _model(units: int = 2048):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(units), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


class HangAfter(keras.callbacks.Callback):
    """Switches the endpoint to ``mode`` at the end of epoch ``epoch`` (after the saves there)
    and records the process's memory at each epoch end."""

    def __init__(self, endpoint: Endpoint, epoch: int, saver, mode: str = "hang") -> None:
        super().__init__()
        self.endpoint, self.epoch, self.saver, self.mode = endpoint, epoch, saver, mode
        self.rss: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.saver.wait()  # the saves so far reached the store
            self.endpoint.mode = self.mode
        self.rss.append(_rss_mib())


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.parametrize("async_save", [True, False], ids=["async", "sync"])
def test_a_keras_fit_to_a_store_that_stops_answering_finishes_in_bounded_time(tmp_path, store, async_save):
    from ckptcore.adapters.keras import ModelCheckpoint

    endpoint, bucket, moto = store
    epochs = 12
    model = _model()
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = x[:, :1]
    weights_mib = sum(w.nbytes for w in model.get_weights()) / 2**20
    callback = ModelCheckpoint(f"s3://{bucket}/run/m-{{epoch:02d}}.weights.h5", save_weights_only=True,
                               monitor="loss", async_save=async_save, storage_timeout=DEADLINE,
                               storage_options=_options(endpoint, read_timeout=NEVER), retries=0)
    hang = HangAfter(endpoint, 1, callback)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[callback, hang])
    took = time.monotonic() - start
    rss_growth = hang.rss[-1] - hang.rss[3]  # over the 8 saves skipped after the first ones
    missed = _warned(caught)
    print(f"fit {took:.1f}s, RSS +{rss_growth:.0f} MiB, weights {weights_mib:.1f} MiB, {len(missed)} reported")

    # Saves 1 and 2 reached the store; the hang costs one deadline, then each save is skipped at
    # once (sync), or gets no writer slot (async), and close gives up after at most one more.
    assert took < 3 * DEADLINE + 60, f"fit took {took:.0f}s"
    reported = {m.split("'")[1] for m in missed if "was not saved" in m}
    assert reported >= {f"m-{n:02d}.weights.h5" for n in range(4, epochs + 1)}, missed
    assert all("storage_timeout=2s" in m for m in missed)
    # A snapshot per skipped save would hold 8 more copies of the weights.
    assert rss_growth < 2 * weights_mib + 20, f"RSS grew by {rss_growth:.0f} MiB ({weights_mib:.0f} MiB of weights)"

    endpoint.mode = "forward"  # the store answers again: what the process holds now is committed
    listed, objects = _remote(moto, bucket)
    assert {"m-01.weights.h5", "m-02.weights.h5"} <= set(listed)
    assert set(listed) <= set(objects)
