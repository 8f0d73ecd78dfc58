"""The W&B backend with the real SDK in offline mode, asserting on what the SDK recorded in the
run's transaction log (the records ``wandb sync`` would upload)."""

from __future__ import annotations

import os
import sys

import pytest
from contract import BackendContract, info_for
from wandb_log import finish_and_read, stored_files

from ckptcore.manifest import MANIFEST_NAME
from layout_helpers import visible
from ckptcore import Checkpointer, ConfigError, MissingDependencyError
from ckptcore.backends import resolve_backend

wandb = pytest.importorskip("wandb")
from ckptcore.backends.wandb import WandbBackend  # noqa: E402


def _file(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def _staging() -> str:
    return os.path.join(os.environ["WANDB_DATA_DIR"], "artifacts", "staging")


class TestWandbContract(BackendContract):
    @pytest.fixture
    def backend(self, wandb_run, tmp_path):
        return WandbBackend(str(tmp_path / "ckpt"), run=wandb_run)

    @pytest.fixture
    def stored(self, wandb_run):
        return lambda backend: stored_files(finish_and_read(wandb_run))


def _train(tmp_path, losses, **options) -> Checkpointer:
    counter = iter(range(1, 1000))
    ck = Checkpointer(str(tmp_path / "ckpt" / "m-{epoch:02d}.bin"),
                      write=lambda p: _file(p, f"weights {next(counter)}".encode()),
                      monitor="val_loss", on_save_error="raise", **options)
    for epoch, loss in enumerate(losses):
        ck.on_epoch_end(epoch, {"val_loss": loss, "loss": loss + 0.1})
    ck.close()
    return ck


def test_each_checkpoint_is_a_version_with_aliases_and_metadata(tmp_path, wandb_run):
    ck = _train(tmp_path, [0.5, 0.4, 0.6, 0.3], backends=["wandb"], keep_last=1)
    logged = finish_and_read(wandb_run)

    assert [(a.name, a.type) for a in logged] == [(f"run_{wandb_run.id}_model", "model")] * 4
    assert [a.aliases for a in logged] == [
        ["best", "epoch_1", "latest"], ["best", "epoch_2", "latest"], ["epoch_3", "latest"],
        ["best", "epoch_4", "latest"],
    ]
    third = logged[2].metadata
    assert third["epoch"] == 3 and third["path"] == "m-03.bin" and third["is_best"] is False
    assert third["metrics"] == {"val_loss": 0.6, "loss": pytest.approx(0.7)}
    assert third["monitor"] == "val_loss" and third["monitor_value"] == 0.6
    assert [list(a.files) for a in logged] == [[f"m-0{n}.bin"] for n in range(1, 5)]
    # Retention pruned the local copies; every version keeps its own bytes for the upload.
    assert visible(tmp_path / "ckpt") == ["m-04.bin"]
    assert stored_files(logged) == {f"m-0{n}.bin": f"weights {n}".encode() for n in range(1, 5)}
    assert [e.backends for e in ck.manifest.entries] == [["local", "wandb"]]


def test_files_are_hard_linked_not_copied(tmp_path, wandb_run):
    committed = _file(tmp_path / "ckpt" / "w.bin", os.urandom(10_000))
    backend = WandbBackend(str(tmp_path / "ckpt"), run=wandb_run)
    backend.put(committed, "w.bin", info_for(committed))
    held = os.stat(committed)
    logged = finish_and_read(wandb_run)

    entry = logged[0].files["w.bin"]
    assert entry.local_path.startswith(_staging() + os.sep)
    assert os.path.samefile(entry.local_path, committed), "the same inode: no bytes copied"
    assert held.st_nlink == 2
    assert entry.size == 10_000
    staged = [name for name in os.listdir(_staging()) if not name.startswith("ckptcore-")]
    assert staged == [], "W&B made no mutable staging copy"


def test_without_a_hard_link_wandb_makes_its_own_copy(tmp_path, wandb_run, monkeypatch):
    committed = _file(tmp_path / "w.bin", b"bytes")
    backend = WandbBackend(str(tmp_path), run=wandb_run)

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    backend.put(committed, "w.bin", info_for(committed))
    monkeypatch.undo()
    entry = finish_and_read(wandb_run)[0].files["w.bin"]
    assert not os.path.samefile(entry.local_path, committed)
    assert open(entry.local_path, "rb").read() == b"bytes"


def test_an_unchanged_file_is_not_logged_again(tmp_path, wandb_run):
    same = _file(tmp_path / "best.bin", b"same weights")
    first = WandbBackend(str(tmp_path), run=wandb_run)
    first.put(same, "best.bin", info_for(same, epoch=1))
    first.put(same, "best.bin", info_for(same, epoch=2))
    # A new backend on the same run (a second fit) remembers what was logged.
    again = WandbBackend(str(tmp_path), run=wandb_run)
    assert again.exists("best.bin")
    again.put(same, "best.bin", info_for(same, epoch=3))
    changed = _file(tmp_path / "best.bin", b"new weights")
    again.put(changed, "best.bin", info_for(changed, epoch=4))
    logged = finish_and_read(wandb_run)
    assert [a.metadata["epoch"] for a in logged] == [1, 4]


def test_batch_saves_and_custom_names(tmp_path, wandb_run):
    backend = WandbBackend(str(tmp_path), artifact_name="tiny-net", artifact_type="checkpoint", run=wandb_run)
    src = _file(tmp_path / "w.bin", b"w")
    info = {**info_for(src, epoch=2, is_best=False), "batch": 7}
    backend.put(src, "w-2-7.bin", info)
    assert backend.locate("w-2-7.bin") == "ckptcore-tests/tiny-net:epoch_2_batch_7"
    assert backend.locate("never-logged.bin") == "ckptcore-tests/tiny-net:latest"
    logged = finish_and_read(wandb_run)
    assert (logged[0].name, logged[0].type) == ("tiny-net", "checkpoint")
    assert logged[0].aliases == ["epoch_2", "epoch_2_batch_7", "latest"]
    assert logged[0].metadata["batch"] == 7


def test_a_nan_metric_is_recorded_as_null(tmp_path, wandb_run):
    backend = WandbBackend(str(tmp_path), run=wandb_run)
    src = _file(tmp_path / "w.bin", b"w")
    backend.put(src, "w.bin", {**info_for(src), "metrics": {"loss": float("nan"), "acc": 1}})
    assert finish_and_read(wandb_run)[0].metadata["metrics"] == {"loss": None, "acc": 1}


def test_it_needs_an_active_run(tmp_path):
    assert wandb.run is None
    with pytest.raises(ConfigError, match=r"run: no active W&B run.*wandb\.init\(\)"):
        WandbBackend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"wandb\.init\(\)"):
        Checkpointer(str(tmp_path / "w-{epoch}.bin"), write=lambda p: None, backends=["wandb"])


def test_bad_arguments_name_the_argument(tmp_path, wandb_run):
    with pytest.raises(ConfigError, match="artifact_name: got 'a/b'"):
        WandbBackend(str(tmp_path), artifact_name="a/b")
    with pytest.raises(ConfigError, match="artifact_type: got ''"):
        WandbBackend(str(tmp_path), artifact_type="")


def test_resolved_by_name_and_never_deleting(tmp_path, wandb_run):
    backend = resolve_backend("wandb", str(tmp_path), client_kwargs={"endpoint_url": "http://x"})
    assert isinstance(backend, WandbBackend) and backend.run is wandb_run
    assert (backend.name, backend.can_delete, backend.keeps_manifest) == ("wandb", False, False)
    with pytest.raises(FileNotFoundError):
        backend.read_bytes(MANIFEST_NAME)
    with pytest.raises(OSError):
        backend.write_bytes(MANIFEST_NAME, b"{}")


def test_a_missing_sdk_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "ckptcore\[wandb\]"'):
        WandbBackend(str(tmp_path))


def test_with_a_url_primary_wandb_logs_the_local_staged_copy(tmp_path, wandb_run, memory_url):
    ck = Checkpointer(memory_url + "/w-{epoch}.bin", write=lambda p: _file(p, b"remote weights"),
                      backends=["wandb"], on_save_error="raise")
    ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.close()
    assert ck.manifest.entries[0].backends == ["memory", "wandb"]
    logged = finish_and_read(wandb_run)
    assert logged[0].aliases == ["best", "epoch_1", "latest"]
    assert stored_files(logged) == {"w-1.bin": b"remote weights"}
