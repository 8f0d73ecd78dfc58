"""The engine over several backends: one failing, retention everywhere, resume and restarts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ckptcore.manifest import MANIFEST_NAME
from layout_helpers import visible
from ckptcore import CheckpointSaveError, Checkpointer, ConfigError, Manifest
from ckptcore.errors import CheckpointSaveWarning
from ckptcore.backends import LocalBackend

fsspec = pytest.importorskip("fsspec")


class Writer:
    """``np.save`` of a counter, so every checkpoint has its own bytes."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: str) -> None:
        self.count += 1
        np.save(path, np.full(3, float(self.count)))


def _names(fs, root: str) -> list[str]:
    base = fs._strip_protocol(root).rstrip("/")
    return sorted(fs._strip_protocol(p)[len(base):].lstrip("/") for p in fs.find(base))


def _epochs(ck: Checkpointer, losses, start: int = 0) -> None:
    for epoch, loss in enumerate(losses, start=start):
        ck.on_epoch_end(epoch, {"val_loss": loss})


# -- several backends at once -----------------------------------------------------------------
def test_one_failing_backend_is_reported_and_the_others_keep_their_copies(
        tmp_path, memory_url, s3_bucket, s3_options):
    import s3fs

    s3 = s3fs.S3FileSystem(**s3_options)
    s3.mkdir("ckptcore-gone-bucket")
    bad = "s3://ckptcore-gone-bucket/copy"
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=Writer(), storage_options=s3_options,
                      backends=[memory_url, f"s3://{s3_bucket}/copy", bad], on_save_error="raise",
                      retries=0)
    s3.rmdir("ckptcore-gone-bucket")  # deleted while training: the save to it fails
    with pytest.raises(CheckpointSaveError) as info:
        ck.on_epoch_end(0, {"val_loss": 0.5})
    message = str(info.value)
    assert "'w-1.npy'" in message and "ckptcore-gone-bucket" in message
    assert "committed to local, memory, s3" in message
    assert info.value.checkpoint == "w-1.npy"
    ck.close()

    assert ck.manifest.entries[0].backends == ["local", "memory", "s3"]
    assert visible(tmp_path) == ["w-1.npy"]
    assert _names(fsspec.filesystem("memory"), memory_url) == [MANIFEST_NAME, "w-1.npy"]
    s3 = s3fs.S3FileSystem(**s3_options)
    assert _names(s3, f"{s3_bucket}/copy") == [MANIFEST_NAME, "w-1.npy"]
    copied = Manifest.from_json(s3.cat_file(f"{s3_bucket}/copy/{MANIFEST_NAME}"))
    assert [e.path for e in copied.entries] == ["w-1.npy"]
    with s3.open(f"{s3_bucket}/copy/w-1.npy", "rb") as fh:
        assert np.load(fh).tolist() == [1.0, 1.0, 1.0]


def test_by_default_a_failing_backend_warns_and_training_goes_on(tmp_path, memory_url):
    missing = LocalBackend(str(tmp_path / "file-in-the-way" / "copy"))
    (tmp_path / "file-in-the-way").write_text("a file where a directory should be")
    ck = Checkpointer(str(tmp_path / "run" / "w-{epoch}.npy"), write=Writer(),
                      backends=[memory_url, missing], retries=0)
    with pytest.warns(CheckpointSaveWarning, match="w-1.npy"):
        ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.close()
    assert ck.manifest.entries[0].backends == ["local", "memory"]
    assert _names(fsspec.filesystem("memory"), memory_url) == [MANIFEST_NAME, "w-1.npy"]


def test_retention_applies_to_every_backend_that_can_delete(tmp_path, memory_url, s3_bucket, s3_options):
    import s3fs

    backup = LocalBackend(str(tmp_path / "backup"))
    ck = Checkpointer(str(tmp_path / "run" / "w-{epoch}.npy"), write=Writer(), storage_options=s3_options,
                      backends=[memory_url, f"s3://{s3_bucket}/copy", backup], keep_last=1, keep_best=1)
    _epochs(ck, [0.5, 0.3, 0.6, 0.7])
    ck.close()
    kept = [MANIFEST_NAME, "w-2.npy", "w-4.npy"]  # the best and the last
    assert backup.name == f"local:{backup.root}", "a second local backend gets a distinct name"
    assert all(e.backends == ["local", "memory", "s3", backup.name] for e in ck.manifest.entries)
    assert visible(tmp_path / "run") == kept[1:]
    assert visible(tmp_path / "backup") == kept[1:]
    assert _names(fsspec.filesystem("memory"), memory_url) == kept
    assert _names(s3fs.S3FileSystem(**s3_options), f"{s3_bucket}/copy") == kept


def test_the_same_backend_twice_is_refused(tmp_path):
    backup = LocalBackend(str(tmp_path / "backup"))
    with pytest.raises(ConfigError, match="listed twice"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=Writer(), backends=[backup, backup])


# -- resume and restarts -----------------------------------------------------------------------
def test_a_restart_with_resume_keeps_honouring_retention(tmp_path):
    filepath = str(tmp_path / "w-{epoch}.npy")
    first = Checkpointer(filepath, write=Writer(), keep_last=2)
    _epochs(first, [0.5, 0.4, 0.45])
    first.close()

    second = Checkpointer(filepath, write=Writer(), keep_last=2, resume=True)
    assert second.run_id == first.run_id, "the restarted run continues the first"
    assert second.tracker.best == 0.4
    assert second.latest() == str(tmp_path / "w-3.npy")
    assert second.best() == str(tmp_path / "w-2.npy")
    _epochs(second, [0.3, 0.35], start=3)
    second.close()

    # w-3 is what training resumed from: never pruned. w-2 counts against keep_last as before.
    assert visible(tmp_path) == ["w-3.npy", "w-4.npy", "w-5.npy"]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["tracker"]["best"] == 0.3
    assert manifest["runs"] == [first.run_id]


def test_another_run_in_the_same_root_is_never_pruned(tmp_path):
    first = Checkpointer(str(tmp_path / "a-{epoch}.npy"), write=Writer(), keep_last=1)
    _epochs(first, [0.5, 0.4])
    first.close()
    other = Checkpointer(str(tmp_path / "b-{epoch}.npy"), write=Writer(), keep_last=1)
    _epochs(other, [0.9, 0.8, 0.7])
    other.close()
    assert visible(tmp_path) == ["a-2.npy", "b-3.npy"]
    assert len(Manifest.from_json((tmp_path / MANIFEST_NAME).read_text()).runs) == 2


def test_resume_from_a_manifest_url_in_another_root(tmp_path, memory_url):
    source = Checkpointer(memory_url + "/w-{epoch}.npy", write=Writer(), save_best_only=True)
    _epochs(source, [0.5, 0.4, 0.6])
    source.close()
    memory = fsspec.filesystem("memory")
    before = _names(memory, memory_url)

    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=Writer(), save_best_only=True,
                      keep_last=1, resume=memory_url + "/manifest.json")
    assert ck.tracker.best == 0.4
    assert ck.best() == ck.latest() == memory_url + "/w-2.npy", "the source's, until we save"
    assert ck.on_epoch_end(3, {"val_loss": 0.45}) is None, "not better than the source's best"
    _epochs(ck, [0.3, 0.2], start=4)
    ck.close()
    assert ck.best() == ck.latest() == str(tmp_path / "w-6.npy")
    assert [e.path for e in ck.manifest.entries] == ["w-6.npy"], "only this root's checkpoints"
    assert visible(tmp_path) == ["w-6.npy"]
    assert _names(memory, memory_url) == before, "the resume source is never touched"


def test_resume_on_s3(s3_bucket, s3_options):
    url = f"s3://{s3_bucket}/run"
    first = Checkpointer(url + "/w-{epoch}.npy", write=Writer(), storage_options=s3_options, save_freq=2)
    first.on_epoch_begin(0)
    for batch in range(5):
        first.on_train_batch_end(batch, {"val_loss": 1.0 - batch / 10})
    first.close()
    again = Checkpointer(url + "/w-{epoch}.npy", write=Writer(), storage_options=s3_options, save_freq=2,
                         resume="state")
    assert again.schedule.batches_run == 5, "the stored count (resume=True: the checkpoint's epoch start)"
    assert again.tracker.best == pytest.approx(0.7)
    assert again.latest() == url + "/w-1.npy"
    again.close()


def test_resume_without_a_manifest_at_a_url_is_a_clear_error(tmp_path, memory_url):
    from ckptcore import ManifestError

    with pytest.raises(ManifestError, match="nothing to resume from"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=Writer(), resume=memory_url + "/manifest.json")
