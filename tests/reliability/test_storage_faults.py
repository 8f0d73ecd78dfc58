"""Storage faults: an S3 server that goes away and comes back, an fsspec store that fails some
calls, a full disk, an unwritable root.

What must hold every time: transient faults are retried a bounded number of times with
backoff; training goes on; the failure is reported with the checkpoint's name; what other
backends committed is kept; no manifest lists a checkpoint its storage does not hold.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import resource
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from ckptcore.manifest import MANIFEST_NAME
from ckptcore.pending import accounted
from layout_helpers import leftovers
from ckptcore import Checkpointer, CheckpointSaveError, Manifest
from ckptcore.digest import digest
from ckptcore.errors import CheckpointSaveWarning
from ckptcore.digest import bytes_digest


def _save(value: float, size: int = 4):
    return lambda path: np.save(path, np.full(size, value))


def _run(ck: Checkpointer, epochs, before_epoch=None) -> list[str | None]:
    saved = []
    for epoch in epochs:
        if before_epoch is not None:
            before_epoch(epoch)
        ck._write = _save(float(epoch + 1))
        ck.on_epoch_begin(epoch)
        saved.append(ck.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)}))
    return saved


def _local_manifest(root) -> Manifest:
    return Manifest.from_json((root / MANIFEST_NAME).read_bytes())


def _assert_local_agrees(root) -> Manifest:
    """Every entry of the local manifest is on disk with its size and digest."""
    manifest = _local_manifest(root)
    for entry in manifest.entries:
        assert digest(str(root / entry.path)) == (entry.size, entry.digest), entry.path
    assert leftovers(root) == [], "no staged file is left behind"
    return manifest


def _warnings_of(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CheckpointSaveWarning)]


# -- S3 --------------------------------------------------------------------------------------------

def _s3fs(s3):
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **s3.options)


def test_s3_that_stops_and_comes_back_mid_run(tmp_path, s3, caplog):
    url = f"s3://{s3.bucket}/run"
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[url], storage_options=s3.options,
                      retries=2, retry_backoff=0.01)

    def outage(epoch: int) -> None:
        if epoch == 2:
            s3.stop()
        if epoch == 4:
            s3.start()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = _run(ck, range(6), before_epoch=outage)
    ck.close()
    assert saved == [f"w-{n}.npy" for n in range(1, 7)], "training went on and every epoch saved locally"
    reported = _warnings_of(caught)
    assert len(reported) == 2
    for name, message in zip(["w-3.npy", "w-4.npy"], reported):
        assert f"'{name}' was only partly saved" in message and "committed to local" in message
        assert "failed on s3" in message and "EndpointConnectionError" in message
    # The save's one manifest write comes first: the store is found down there, and the
    # upload is not tried (it would leave a file no manifest of that store accounts for).
    retried = [r for r in caplog.records
               if "reading the manifest of s3" in r.getMessage() and "retrying" in r.getMessage()]
    assert len(retried) == 2, "two retries, then it gave up"

    local = _assert_local_agrees(tmp_path)
    where = {e.path: e.backends for e in local.entries}
    assert where == {"w-1.npy": ["local", "s3"], "w-2.npy": ["local", "s3"], "w-3.npy": ["local"],
                     "w-4.npy": ["local"], "w-5.npy": ["local", "s3"], "w-6.npy": ["local", "s3"]}
    fs = _s3fs(s3)
    remote = Manifest.from_json(fs.cat_file(f"{s3.bucket}/run/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-1.npy", "w-2.npy", "w-5.npy", "w-6.npy"]
    for entry in remote.entries:
        local_copy = tmp_path / entry.path
        assert fs.cat_file(f"{s3.bucket}/run/{entry.path}") == local_copy.read_bytes()
    assert not fs.exists(f"{s3.bucket}/run/w-3.npy")


def test_s3_that_comes_back_during_the_retries_gets_the_checkpoint(tmp_path, s3, caplog):
    url = f"s3://{s3.bucket}/run"
    ck = Checkpointer(str(tmp_path / "best.npy"), backends=[url], storage_options=s3.options,
                      save_best_only=True, retries=3)
    ck.committer.retry = dataclasses.replace(ck.committer.retry, sleep=lambda delay: s3.start())
    _run(ck, range(1))
    s3.stop()  # down at the next save; the first retry's wait brings it back
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSaveWarning)
        assert _run(ck, range(1, 2)) == ["best.npy"]
    ck.close()
    assert "failed (EndpointConnectionError" in caplog.text
    fs = _s3fs(s3)
    assert fs.cat_file(f"{s3.bucket}/run/best.npy") == (tmp_path / "best.npy").read_bytes()
    assert np.load(tmp_path / "best.npy")[0] == 2.0
    assert _assert_local_agrees(tmp_path).entries[0].backends == ["local", "s3"]


def test_s3_as_the_only_storage_while_it_is_down(tmp_path, s3):
    url = f"s3://{s3.bucket}/run/w-{{epoch}}.npy"
    ck = Checkpointer(url, storage_options=s3.options, retries=1, retry_backoff=0.01)
    _run(ck, range(1))
    s3.stop()
    with pytest.warns(CheckpointSaveWarning, match=r"'w-2.npy' was not saved: .*EndpointConnectionError"):
        assert _run(ck, range(1, 2)) == [None]
    s3.start()
    assert _run(ck, range(2, 3)) == ["w-3.npy"]
    ck.close()
    fs = _s3fs(s3)
    remote = Manifest.from_json(fs.cat_file(f"{s3.bucket}/run/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-1.npy", "w-3.npy"]
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3.bucket}/run")) == [".ckptcore", "w-1.npy", "w-3.npy"]


def test_an_unreachable_root_is_a_storage_error_at_construction_and_in_the_cli(s3):
    from typer.testing import CliRunner

    from ckptcore import StorageError
    from ckptcore.cli import app

    root = f"s3://{s3.bucket}/run"
    s3.stop()
    with pytest.raises(StorageError, match=rf"cannot read {root}/{MANIFEST_NAME}: EndpointConnectionError"):
        Checkpointer(f"{root}/w-{{epoch}}.npy", storage_options=s3.options, retries=1, retry_backoff=0.01)
    result = CliRunner().invoke(app, ["ls", root, "--storage-options", json.dumps(s3.options)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"ckptcore: error: {root}: cannot read {root}/{MANIFEST_NAME}: EndpointConnectionError")


def test_on_save_error_raise_stops_training_with_the_checkpoint_named(tmp_path, s3):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[f"s3://{s3.bucket}/run"],
                      storage_options=s3.options, retries=0, on_save_error="raise")
    s3.stop()
    with pytest.raises(CheckpointSaveError, match="'w-1.npy' was only partly saved") as info:
        _run(ck, range(1))
    assert info.value.partial and info.value.checkpoint == "w-1.npy"
    ck.close()
    assert [e.backends for e in _assert_local_agrees(tmp_path).entries] == [["local"]]


# -- an fsspec store that fails some calls -----------------------------------------------------

def test_transient_faults_are_retried_until_the_call_succeeds(tmp_path, flaky_fs, caplog):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[flaky_fs.url], retries=3, retry_backoff=0.001)
    flaky_fs.fail("put_file", 2, lambda: ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
    flaky_fs.fail("pipe_file", 1, lambda: TimeoutError("read timed out"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSaveWarning)
        _run(ck, range(1))
    ck.close()
    assert flaky_fs.calls["put_file"] == 3
    assert caplog.text.count("retrying in") == 3
    assert flaky_fs.fs.cat_file(f"{flaky_fs.url}/w-1.npy") == (tmp_path / "w-1.npy").read_bytes()


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (lambda: PermissionError(errno.EACCES, "access denied"), 1),  # not transient: no retry
        (lambda: FileNotFoundError(errno.ENOENT, "no such bucket"), 1),
        (lambda: OSError(errno.ENOSPC, "no space left"), 1),
        (lambda: TimeoutError("timed out"), 3),  # transient: retried twice, then given up
        (lambda: OSError(errno.EAGAIN, "try again"), 3),
    ],
    ids=["permission", "missing", "full", "timeout", "eagain"],
)
def test_a_secondary_that_keeps_failing_is_reported_and_the_primary_keeps_the_checkpoint(
        tmp_path, flaky_fs, error, attempts):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[flaky_fs.url], retries=2, retry_backoff=0.001)
    _run(ck, range(1))
    flaky_fs.calls.clear()
    flaky_fs.fail("put_file", 10, error)
    with pytest.warns(CheckpointSaveWarning, match=r"'w-2.npy' was only partly saved: committed to local but failed on flakymem"):
        assert _run(ck, range(1, 2)) == ["w-2.npy"]
    assert flaky_fs.calls["put_file"] == attempts
    flaky_fs.fail("put_file", 0, error)
    _run(ck, range(2, 3))
    ck.close()
    assert [e.path for e in _assert_local_agrees(tmp_path).entries] == ["w-1.npy", "w-2.npy", "w-3.npy"]
    remote = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-1.npy", "w-3.npy"]
    assert not flaky_fs.fs.exists(f"{flaky_fs.url}/w-2.npy")


def test_a_backend_that_is_down_gets_one_try_per_save_until_it_answers(tmp_path, flaky_fs, caplog):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[flaky_fs.url], retries=2, retry_backoff=0.001)
    attempts = []

    def save(epoch: int) -> None:
        # A save's first call to the store is the read of its manifest (before the upload).
        before = flaky_fs.calls.get("cat_file", 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointSaveWarning)
            _run(ck, range(epoch, epoch + 1))
        attempts.append(flaky_fs.calls.get("cat_file", 0) - before)

    def down(calls: int) -> None:  # the whole store: every call of these kinds fails
        for name in ("cat_file", "pipe_file", "put_file"):
            flaky_fs.fail(name, calls, lambda: ConnectionRefusedError("connection refused"))

    down(100)
    save(0)
    save(1)  # still down: one try, no retries
    down(0)
    save(2)  # it answers again
    down(100)
    save(3)  # down anew: the whole retry schedule again
    ck.close()
    assert attempts == [3, 1, 1, 3]
    where = {e.path: e.backends for e in _assert_local_agrees(tmp_path).entries}
    assert where == {"w-1.npy": ["local"], "w-2.npy": ["local"], "w-3.npy": ["local", "flakymem"],
                     "w-4.npy": ["local"]}


def test_a_secondary_whose_manifest_cannot_be_written_never_lists_what_it_lacks(tmp_path, flaky_fs):
    ck = Checkpointer(str(tmp_path / "best.npy"), backends=[flaky_fs.url], save_best_only=True,
                      retries=0)
    _run(ck, range(1))
    before = flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}")
    # The next save replaces best.npy: the remote manifest must first stop listing the old one.
    flaky_fs.fail("pipe_file", 10, lambda: PermissionError(errno.EACCES, "read-only bucket"))
    with pytest.warns(CheckpointSaveWarning, match=r"'best.npy' was only partly saved.*flakymem \(manifest not writable\)"):
        _run(ck, range(1, 2))
    flaky_fs.fail("pipe_file", 0, ConnectionError)
    assert flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}") == before
    remote_best = flaky_fs.fs.cat_file(f"{flaky_fs.url}/best.npy")
    assert accounted(Manifest.from_json(before), "best.npy", lambda a: bytes_digest(remote_best, a)), \
        "the remote manifest still agrees with the remote file: it was not replaced"
    ck.close()
    assert np.load(tmp_path / "best.npy")[0] == 2.0
    assert _assert_local_agrees(tmp_path).entries[0].backends == ["local"]


def test_a_failing_delete_during_retention_does_not_stop_training(tmp_path, flaky_fs, caplog):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[flaky_fs.url], keep_last=1,
                      retries=0)
    flaky_fs.fail("rm", 10, lambda: PermissionError(errno.EACCES, "delete not allowed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSaveWarning)
        _run(ck, range(3))
    ck.close()
    assert "could not delete 'w-1.npy' from flakymem" in caplog.text
    assert [e.path for e in _assert_local_agrees(tmp_path).entries] == ["w-3.npy"]
    remote = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-3.npy"], "the manifest no longer lists what was pruned"


def test_retention_deletes_nothing_a_stored_manifest_still_lists(flaky_fs):
    ck = Checkpointer(f"{flaky_fs.url}/w-{{epoch}}.npy", keep_last=1, retries=0)
    _run(ck, range(2))
    flaky_fs.fail("pipe_file", 1, lambda: ConnectionResetError("connection reset"))  # the manifest
    # The save's manifest write comes before its upload: nothing of w-3 is stored, and the
    # manifest is written once more without its record.
    with pytest.warns(CheckpointSaveWarning, match=r"'w-3.npy' was not saved.*could not write the manifest"):
        _run(ck, range(2, 3))
    assert not flaky_fs.fs.exists(f"{flaky_fs.url}/w-3.npy")
    stored = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    w2 = bytes_digest(flaky_fs.fs.cat_file(f"{flaky_fs.url}/w-2.npy"))
    assert accounted(stored, "w-2.npy", lambda a: w2) and not stored.entries, "w-2 still held, as pending"
    assert flaky_fs.fs.exists(f"{flaky_fs.url}/w-2.npy"), "pruned while the stored manifest lists it"
    _run(ck, range(3, 4))
    ck.close()
    stored = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [e.path for e in stored.entries] == ["w-4.npy"]
    assert [flaky_fs.fs.exists(f"{flaky_fs.url}/w-{n}.npy") for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert stored.pending == []


def test_a_deferred_delete_spares_what_another_run_wrote_there_since(flaky_fs):
    a = Checkpointer(f"{flaky_fs.url}/m-{{epoch}}.npy", write=_save(1.0), keep_last=1, retries=0)
    a.on_epoch_end(0, {"val_loss": 1.0})
    flaky_fs.fail("pipe_file", 1, lambda: ConnectionResetError("connection reset"))  # the manifest
    with pytest.warns(CheckpointSaveWarning, match="'m-2.npy'"):
        a.on_epoch_end(1, {"val_loss": 1.0})  # pruning m-1 waits: the stored manifest lists it
    with Checkpointer(f"{flaky_fs.url}/m-{{epoch}}.npy", write=_save(2.0)) as b:
        b.on_epoch_end(0, {"val_loss": 0.5})  # another run writes m-1 meanwhile
    a.on_epoch_end(2, {"val_loss": 1.0})
    a.close()
    stored = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [(e.path, e.run_id) for e in stored.entries] == [("m-1.npy", b.run_id), ("m-3.npy", a.run_id)]
    for entry in stored.entries:
        assert bytes_digest(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{entry.path}")) == entry.digest
    assert not flaky_fs.fs.exists(f"{flaky_fs.url}/m-2.npy")


def test_a_secondary_that_was_down_gets_its_pruned_checkpoints_deleted_later(tmp_path, flaky_fs, caplog):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[flaky_fs.url], keep_last=1, retries=0)
    _run(ck, range(1))
    flaky_fs.fail("pipe_file", 1, lambda: ConnectionRefusedError("connection refused"))  # its manifest
    with pytest.warns(CheckpointSaveWarning, match=r"'w-2.npy' was only partly saved"):
        _run(ck, range(1, 2))
    assert "not deleting 'w-1.npy' from flakymem now" in caplog.text
    assert flaky_fs.fs.exists(f"{flaky_fs.url}/w-1.npy"), "its manifest there still lists it"
    _run(ck, range(2, 3))
    ck.close()
    assert not flaky_fs.fs.exists(f"{flaky_fs.url}/w-1.npy"), "deleted once its manifest there was written"
    remote = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-3.npy"]
    assert [e.path for e in _assert_local_agrees(tmp_path).entries] == ["w-3.npy"]


def test_a_failing_primary_store_lists_nothing_it_did_not_commit(flaky_fs):
    ck = Checkpointer(f"{flaky_fs.url}/w-{{epoch}}.npy", retries=1, retry_backoff=0.001)
    _run(ck, range(1))
    flaky_fs.fail("put_file", 2, lambda: ConnectionAbortedError("connection aborted"))  # both attempts
    with pytest.warns(CheckpointSaveWarning, match=r"'w-2.npy' was not saved: ConnectionAbortedError"):
        assert _run(ck, range(1, 2)) == [None]
    _run(ck, range(2, 3))
    ck.close()
    remote = Manifest.from_json(flaky_fs.fs.cat_file(f"{flaky_fs.url}/{MANIFEST_NAME}"))
    assert [e.path for e in remote.entries] == ["w-1.npy", "w-3.npy"]
    assert not flaky_fs.fs.exists(f"{flaky_fs.url}/w-2.npy")


# -- a full disk -------------------------------------------------------------------------------------

def _fill_until_full(ck: Checkpointer, size: int) -> tuple[list, list[str]]:
    saved = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(4):
            ck._write = _save(float(epoch + 1), size)
            saved.append(ck.on_epoch_end(epoch, {"val_loss": 1.0}))
    return saved, _warnings_of(caught)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted for the test (needs root on Linux; skipped otherwise)."""
    yield from _tmpfs(tmp_path / "small", "size=1m", "the RLIMIT_FSIZE and quota-store tests "
                      "cover a full disk without it")


def _tmpfs(mount_point, options: str, otherwise: str):
    """Mount a tmpfs with ``options`` at ``mount_point`` for one test; skip where one cannot."""
    mount_point.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip(f"mounting a tmpfs needs root on Linux; {otherwise}")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_reports_the_checkpoint_and_keeps_the_earlier_ones(small_tmpfs):
    ck = Checkpointer(str(small_tmpfs / "w-{epoch}.npy"), retries=3)
    saved, reported = _fill_until_full(ck, size=48_000)  # 384 KB a checkpoint: the third does not fit
    ck.close()
    assert saved == ["w-1.npy", "w-2.npy", None, None], "training went on"
    assert len(reported) == 2
    assert "'w-3.npy' was not saved: OSError" in reported[0] and "'w-4.npy' was not saved" in reported[1]
    manifest = _assert_local_agrees(small_tmpfs)
    assert [e.path for e in manifest.entries] == ["w-1.npy", "w-2.npy"]
    assert np.load(small_tmpfs / "w-2.npy")[0] == 2.0


FSIZE_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys, warnings
    import numpy as np
    from ckptcore import Checkpointer

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    ck = Checkpointer(sys.argv[1] + "/w-{epoch}.npy", monitor="loss")
    saved, reported = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch, size in enumerate([1_000, 10_000, 40_000, 2_000]):  # the third is 320 KB
            ck._write = lambda path, size=size: np.save(path, np.zeros(size))
            saved.append(ck.on_epoch_end(epoch, {"loss": 1.0}))
    ck.close()
    print(json.dumps({"saved": saved, "reported": [str(w.message) for w in caught]}))
    """
)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_a_file_size_limit_fails_one_save_and_training_goes_on(tmp_path):
    """Runs without root: the kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG)."""
    script = tmp_path / "child.py"
    script.write_text(FSIZE_CHILD)
    root = tmp_path / "root"
    result = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["saved"] == ["w-1.npy", "w-2.npy", None, "w-4.npy"]
    assert len(outcome["reported"]) == 1 and "'w-3.npy' was not saved" in outcome["reported"][0]
    assert "OSError" in outcome["reported"][0]
    assert [e.path for e in _assert_local_agrees(root).entries] == ["w-1.npy", "w-2.npy", "w-4.npy"]


def test_a_full_store_reports_the_checkpoint(tmp_path, quota_fs):
    quota_fs.quota = 3_000
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), backends=[quota_fs.url], retries=2, retry_backoff=0.001)
    saved, reported = _fill_until_full(ck, size=100)  # 928 bytes a file, plus the manifest
    ck.close()
    assert saved == ["w-1.npy", "w-2.npy", "w-3.npy", "w-4.npy"], "the local disk got every one"
    assert reported and all("only partly saved: committed to local" in m and "quotamem" in m for m in reported)
    assert any("No space left on device" in m for m in reported)
    fs = quota_fs()
    remote = Manifest.from_json(fs.cat_file(f"{quota_fs.url}/{MANIFEST_NAME}"))
    assert len(remote.entries) >= 1
    for entry in remote.entries:
        assert digest(str(tmp_path / entry.path))[1] == bytes_digest(
            fs.cat_file(f"{quota_fs.url}/{entry.path}"))
    assert fs.used() <= quota_fs.quota


# -- an unwritable root ------------------------------------------------------------------------------

@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only tmpfs (root on Linux; skipped otherwise): chmod does not stop root."""
    yield from _tmpfs(tmp_path / "ro", "ro,size=64k", "the file-as-root test runs anyway")


def test_a_read_only_root_reports_every_checkpoint_and_training_goes_on(read_only_mount):
    ck = Checkpointer(str(read_only_mount / "w-{epoch}.npy"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _run(ck, range(3)) == [None, None, None]
    ck.close()
    reported = _warnings_of(caught)
    assert [m.split("'")[1] for m in reported] == ["w-1.npy", "w-2.npy", "w-3.npy"]
    assert all("Read-only file system" in m for m in reported)
    assert os.listdir(read_only_mount) == []


@pytest.mark.parametrize("below", [("sub",), ()], ids=["root-below-a-file", "root-is-a-file"])
def test_a_root_below_a_file_reports_the_checkpoint(tmp_path, below):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the root should be")
    ck = Checkpointer(str(blocker.joinpath(*below) / "w-{epoch}.npy"), retries=3)
    with pytest.warns(CheckpointSaveWarning, match=rf"'w-1.npy' was not saved: cannot stage.*{blocker}' is a file, not a directory"):
        assert _run(ck, range(1)) == [None]
    ck.close()
    assert blocker.read_text() == "a file where the root should be"
    assert sorted(os.listdir(tmp_path)) == ["not-a-dir"]


def test_keras_fit_goes_on_when_the_root_is_unwritable(tmp_path):
    keras = pytest.importorskip("keras")
    from ckptcore.adapters.keras import ModelCheckpoint

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.zeros((16, 4), "float32"), np.zeros((16, 1), "float32")
    checkpoint = ModelCheckpoint(str(blocker / "m-{epoch}.keras"), monitor="loss")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert len(history.history["loss"]) == 3, "fit ran every epoch"
    assert [m.split("'")[1] for m in _warnings_of(caught)] == ["m-1.keras", "m-2.keras", "m-3.keras"]
