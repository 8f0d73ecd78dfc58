"""``Checkpointer`` end to end with real ``np.save`` writes into a temporary directory."""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import numpy as np
import pytest

from ckptcore import (
    CheckpointSaveError,
    Checkpointer,
    Manifest,
    ManifestEntry,
    MonitorError,
    SaveSchedule,
)


from ckptcore.manifest import MANIFEST_NAME
from layout_helpers import leftovers, visible


def _manifest(root) -> Manifest:
    return Manifest.from_json((root / MANIFEST_NAME).read_text())


def _run_epochs(ck: Checkpointer, values, key="val_loss", npwrite=None):
    saved = []
    for epoch, value in enumerate(values):
        if npwrite is not None:
            npwrite.value = float(epoch)
        ck.on_epoch_begin(epoch)
        saved.append(ck.on_epoch_end(epoch, {key: value, "loss": 1.0}))
    return saved


def _assert_manifest_agrees_with_disk(root, helpers, foreign=()):
    manifest = _manifest(root)
    listed = {e.path for e in manifest.entries}
    on_disk = helpers.files(str(root)) - set(foreign)
    assert listed == on_disk
    for entry in manifest.entries:
        full = os.path.join(root, *entry.path.split("/"))
        assert entry.size == os.path.getsize(full)
        assert entry.digest == helpers.digest(full)
        assert entry.backends == ["local"]
    return manifest


def test_save_best_only_with_verbose_messages(tmp_path, npwrite, printed, helpers):
    root = tmp_path / "ck"
    ck = Checkpointer(
        str(root / "w-{epoch:02d}-{val_loss:.3f}.npy"), write=npwrite, monitor="val_loss",
        save_best_only=True, verbose=1, printer=printed.append,
    )
    saved = _run_epochs(ck, [0.5, 0.6, 0.4, math.nan, math.inf, -math.inf, 0.3], npwrite=npwrite)
    ck.close()
    assert saved == ["w-01-0.500.npy", None, "w-03-0.400.npy", None, None, None, "w-07-0.300.npy"]
    decisions = [line for line in printed if "finished saving" not in line]
    assert decisions == [  # Keras's wording, with "checkpoint" for "model" in the generic engine
        f"\nEpoch 1: val_loss improved from inf to 0.50000, saving checkpoint to {root / 'w-01-0.500.npy'}",
        "\nEpoch 2: val_loss did not improve from 0.50000",
        f"\nEpoch 3: val_loss improved from 0.50000 to 0.40000, saving checkpoint to {root / 'w-03-0.400.npy'}",
        "\nEpoch 4: val_loss did not improve from 0.40000",
        "\nEpoch 5: val_loss did not improve from 0.40000",
        "\nEpoch 6: val_loss did not improve from 0.40000",
        f"\nEpoch 7: val_loss improved from 0.40000 to 0.30000, saving checkpoint to {root / 'w-07-0.300.npy'}",
    ]
    finished = [line for line in printed if "finished saving" in line]
    assert [line.split(" (")[0] for line in finished] == [
        f"\nEpoch {n}: finished saving checkpoint to {root / name}"
        for n, name in [(1, "w-01-0.500.npy"), (3, "w-03-0.400.npy"), (7, "w-07-0.300.npy")]
    ]
    assert all(re.search(r"\(160 B in \d+\.\d\d s, (instant|[\d.]+ [kMG]?B/s)\)$", line) for line in finished), finished
    assert np.load(root / "w-03-0.400.npy")[0] == 2.0
    manifest = _assert_manifest_agrees_with_disk(root, helpers)
    assert [e.path for e in manifest.entries if e.is_best] == ["w-07-0.300.npy"]
    assert ck.best() == str(root / "w-07-0.300.npy") == ck.latest()
    assert manifest.tracker["best"] == 0.3
    assert [(e.epoch, e.monitor_value) for e in manifest.entries] == [(1, 0.5), (3, 0.4), (7, 0.3)]


def test_max_mode_and_silence_without_verbose(tmp_path, npwrite, printed):
    ck = Checkpointer(
        str(tmp_path / "w-{epoch}.npy"), write=npwrite, monitor="val_accuracy",
        save_best_only=True, printer=printed.append,
    )
    assert ck.mode == "max"
    assert _run_epochs(ck, [0.5, 0.4, 0.7], key="val_accuracy") == ["w-1.npy", None, "w-3.npy"]
    ck.close()
    assert printed == []


def test_initial_value_threshold(tmp_path, npwrite, printed):
    ck = Checkpointer(
        str(tmp_path / "w-{epoch}.npy"), write=npwrite, save_best_only=True,
        initial_value_threshold=0.45, verbose=1, printer=printed.append,
    )
    assert _run_epochs(ck, [0.5, 0.45, 0.44]) == [None, None, "w-3.npy"]
    ck.close()
    assert printed[0] == "\nEpoch 1: val_loss did not improve from 0.45000"
    assert "improved from 0.45000 to 0.44000" in printed[2]


def test_without_save_best_only_every_epoch_is_saved_and_the_best_marked(tmp_path, npwrite, helpers, printed):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, verbose=1, printer=printed.append)
    _run_epochs(ck, [0.5, math.nan, 0.7, -math.inf, 0.2, math.inf])
    ck.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert len(manifest.entries) == 6
    assert [e.path for e in manifest.entries if e.is_best] == ["w-5.npy"]
    assert ck.best() == str(tmp_path / "w-5.npy")
    assert ck.latest() == str(tmp_path / "w-6.npy")
    assert printed[0] == f"\nEpoch 1: saving checkpoint to {tmp_path / 'w-1.npy'}"


def test_save_freq_counts_batches_under_steps_per_execution(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "w-{epoch}-{batch}.npy"), write=npwrite, save_freq=4)
    saved = []
    for epoch in range(2):
        ck.on_epoch_begin(epoch)
        for index in (2, 5, 8):  # steps_per_execution=3, 9 batches per epoch
            saved.append(ck.on_train_batch_end(index, {"loss": 0.1}))
        assert ck.on_epoch_end(epoch, {"loss": 0.1, "val_loss": 0.2}) is None
    ck.close()
    assert [s for s in saved if s] == ["w-1-6.npy", "w-1-9.npy", "w-2-3.npy", "w-2-9.npy"]
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert [(e.epoch, e.batch, e.global_step) for e in manifest.entries] == [
        (1, 6, 6), (1, 9, 9), (2, 3, 12), (2, 9, 18)
    ]
    assert manifest.schedule["batches_run"] == 18


def test_batch_saves_with_save_best_only_use_batch_logs(tmp_path, npwrite):
    # Keras 3 crashes here (monitor op unset before the first epoch end); we must not.
    ck = Checkpointer(str(tmp_path / "w-{epoch}-{batch}.npy"), write=npwrite, save_freq=2,
                      monitor="loss", save_best_only=True)
    ck.on_epoch_begin(0)
    saved = [ck.on_train_batch_end(i, {"loss": v}) for i, v in enumerate([0.9, 0.8, 0.85, 0.9, 0.1, 0.2])]
    ck.close()
    assert saved == [None, "w-1-2.npy", None, None, None, "w-1-6.npy"]


def test_every_n_epochs(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, every_n_epochs=2)
    saved = _run_epochs(ck, [0.5] * 5)
    ck.close()
    assert saved == [None, "w-2.npy", None, "w-4.npy", None]


def test_every_seconds_with_a_fake_clock(tmp_path, npwrite, clock):
    ck = Checkpointer(str(tmp_path / "w-{epoch}-{step}.npy"), write=npwrite, every_n_epochs=1000)
    ck.schedule = SaveSchedule("epoch", every_n_epochs=1000, every_seconds=30, clock=clock)
    ck.on_epoch_begin(0)
    saved = []
    for batch in range(6):
        clock.tick(10)
        saved.append(ck.on_train_batch_end(batch, {"loss": 1.0, "step": batch}))
    assert ck.on_epoch_end(0, {"loss": 1.0, "step": 6}) is None  # 10 s since the last save
    clock.tick(30)
    saved.append(ck.on_epoch_end(0, {"loss": 1.0, "step": 7}))
    ck.close()
    assert saved == [None, None, "w-1-2.npy", None, None, "w-1-5.npy", "w-1-7.npy"]
    assert [(e.epoch, e.batch) for e in ck.manifest.entries] == [(1, 3), (1, 6), (1, None)]


def test_keep_last(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_last=2)
    _run_epochs(ck, [0.5, 0.4, 0.3, 0.2, 0.1])
    ck.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert [e.path for e in manifest.entries] == ["w-4.npy", "w-5.npy"]


def test_keep_best(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_best=2)
    _run_epochs(ck, [0.5, 0.1, 0.7, math.nan, 0.3, 0.9])
    ck.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert [e.path for e in manifest.entries] == ["w-2.npy", "w-5.npy"]
    assert manifest.best().path == "w-2.npy"


def test_keep_last_and_keep_best(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_last=1, keep_best=1)
    _run_epochs(ck, [0.5, 0.1, 0.7, 0.3, 0.9])
    ck.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert [e.path for e in manifest.entries] == ["w-2.npy", "w-5.npy"]


def test_retention_never_deletes_what_it_did_not_write(tmp_path, npwrite, helpers):
    # A checkpoint of another run, listed in the manifest, and a file nobody listed.
    (tmp_path / "w-0.npy").write_bytes(b"another run")
    (tmp_path / "notes.txt").write_text("keep me")
    other = Manifest(runs=["other-run"])
    other.add(ManifestEntry(name="w-0.npy", path="w-0.npy", epoch=0, run_id="other-run",
                            size=11, digest=helpers.digest(str(tmp_path / "w-0.npy")), backends=["local"]))
    (tmp_path / "manifest.json").write_text(other.to_json())  # the old place: migrated at open
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_last=1)
    _run_epochs(ck, [0.5, 0.4, 0.3])
    ck.close()
    assert (tmp_path / "w-0.npy").read_bytes() == b"another run"
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers, foreign={"notes.txt"})
    assert [e.path for e in manifest.entries] == ["w-0.npy", "w-3.npy"]
    assert manifest.runs[0] == "other-run" and ck.run_id in manifest.runs


def test_a_fixed_filename_keeps_one_entry(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "model.npy"), write=npwrite, keep_last=3)
    _run_epochs(ck, [0.5, 0.4, 0.6, 0.3], npwrite=npwrite)
    ck.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert len(manifest.entries) == 1
    assert manifest.entries[0].epoch == 4 and manifest.entries[0].is_best
    assert np.load(tmp_path / "model.npy")[0] == 3.0


def test_a_failing_write_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, npwrite, helpers):
    ck = Checkpointer(str(tmp_path / "model.npy"), write=npwrite, save_best_only=True)
    npwrite.value = 1.0
    assert ck.on_epoch_end(0, {"val_loss": 0.5}) == "model.npy"
    before = helpers.digest(str(tmp_path / "model.npy"))

    def broken(path: str) -> None:
        with open(path, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise RuntimeError("device lost")

    ck._write = broken
    with pytest.raises(CheckpointSaveError) as info:
        ck.on_epoch_end(1, {"val_loss": 0.1})
    assert "'model.npy'" in str(info.value) and "device lost" in str(info.value)
    assert info.value.checkpoint == "model.npy"
    assert isinstance(info.value, OSError)
    assert helpers.digest(str(tmp_path / "model.npy")) == before, "the previous checkpoint is intact"
    assert helpers.files(str(tmp_path)) == {"model.npy"} and leftovers(tmp_path) == [], "no temp file left"
    assert ck.tracker.best == 0.5, "the tracker's best rolls back to the last committed one"
    # The next improvement over the committed best is saved again.
    ck._write = npwrite
    assert ck.on_epoch_end(2, {"val_loss": 0.4}) == "model.npy"
    ck.close()
    assert _manifest(tmp_path).entries[0].monitor_value == 0.4


def test_a_failing_write_leaves_no_file_under_the_final_name(tmp_path, helpers):
    def broken(path: str) -> None:
        np.save(path, np.zeros(3))
        raise TypeError("cannot pickle 'generator' object")

    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=broken)
    with pytest.raises(CheckpointSaveError, match="'w-1.npy'.*cannot pickle"):
        ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.close()
    assert helpers.files(str(tmp_path)) == set() and leftovers(tmp_path) == []
    assert ck.tracker.best is None


def test_a_write_that_writes_elsewhere_is_an_error(tmp_path):
    # np.save appends ".npy" to any other name: the checkpoint would silently go missing.
    ck = Checkpointer(str(tmp_path / "w-{epoch}.bin"), write=lambda path: np.save(path, np.zeros(2)))
    with pytest.raises(CheckpointSaveError, match="'w-1.bin'.*wrote nothing.*exactly the path"):
        ck.on_epoch_end(0, {"val_loss": 0.5})
    ck.close()
    assert visible(tmp_path) == [] and leftovers(tmp_path) == []


def test_missing_monitor_warns_once_listing_the_keys(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, monitor="val_loss",
                      save_best_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = _run_epochs(ck, [0.5, 0.4, 0.3], key="loss_only")
    ck.close()
    assert saved == [None, None, None]
    messages = [str(w.message) for w in caught if "val_loss" in str(w.message)]
    assert len(messages) == 1
    assert "loss, loss_only" in messages[0]
    assert not any(tmp_path.glob("w-*.npy"))


def test_a_non_scalar_monitor_names_the_monitor(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, monitor="val_auc",
                      save_best_only=True)
    with pytest.raises(MonitorError) as info:
        ck.on_epoch_end(0, {"val_auc": np.array([0.1, 0.2, 0.3])})
    ck.close()
    assert "'val_auc'" in str(info.value) and "(3,)" in str(info.value)
    assert not any(tmp_path.glob("w-*.npy"))


def test_a_missing_template_key_names_it(tmp_path, npwrite):
    from ckptcore import MissingKeyError

    ck = Checkpointer(str(tmp_path / "w-{val_acc:.2f}.npy"), write=npwrite)
    with pytest.raises(MissingKeyError, match=r"\{val_acc\}.*epoch, loss, step, val_loss"):
        ck.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.5})
    ck.close()


def test_values_cannot_leave_the_root(tmp_path, npwrite):
    root = tmp_path / "root"
    ck = Checkpointer(str(root / "w-{tag}.npy"), write=npwrite)
    assert ck.save(0, logs={"tag": "../../escape"}) == "w-______escape.npy"
    ck.close()
    assert (root / "w-______escape.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_manifest_survives_a_restart_and_resume_state_restores_state(tmp_path, npwrite):
    first = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, save_best_only=True,
                         save_freq=4)
    first.on_epoch_begin(0)
    for i in range(6):
        first.on_train_batch_end(i, {"val_loss": 0.5 - i / 100})
    first.close()
    state = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert state["tracker"]["best"] == pytest.approx(0.47)
    # resume="state": the stored state as it is (resume=True continues at the checkpoint instead).
    second = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, save_best_only=True,
                          save_freq=4, resume="state")
    assert second.tracker.best == pytest.approx(0.47)
    assert second.schedule.batches_run == 6
    assert [e.path for e in second.manifest.entries] == ["w-1.npy"]
    second.close()


def test_close_is_idempotent_and_works_as_a_context_manager(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite) as ck:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.close()
    assert (tmp_path / "w-1.npy").exists()
    assert "w-{epoch}.npy" in repr(ck)


def test_directory_checkpoints_in_epoch_folders_are_pruned_completely(tmp_path, helpers):
    def write_dir(path: str) -> None:
        os.makedirs(os.path.join(path, "variables"))
        np.save(os.path.join(path, "variables", "v.npy"), np.zeros(2))

    ck = Checkpointer(str(tmp_path / "e{epoch}" / "model"), write=write_dir, keep_last=1)
    _run_epochs(ck, [0.3, 0.2, 0.1])
    ck.close()
    assert visible(tmp_path) == ["e3"] and leftovers(tmp_path) == []
    assert helpers.files(str(tmp_path)) == {"e3/model/variables/v.npy"}
    entry = _manifest(tmp_path).entries[0]
    assert entry.path == "e3/model" and entry.name == "model"


@pytest.mark.parametrize(
    ("filepath", "manifest_path"),
    [
        ("ckpt/w-{epoch}.npy", f"ckpt/{MANIFEST_NAME}"),  # a one-word root is a folder, not a name
        ("local/w-{epoch}.npy", f"local/{MANIFEST_NAME}"),  # even when it spells a backend name
        ("w-{epoch}.npy", MANIFEST_NAME),
        ("runs/a/w-{epoch}.npy", f"runs/a/{MANIFEST_NAME}"),
    ],
)
def test_relative_roots(tmp_path, monkeypatch, npwrite, filepath, manifest_path):
    monkeypatch.chdir(tmp_path)
    ck = Checkpointer(filepath, write=npwrite, save_best_only=True)
    assert ck.on_epoch_end(0, {"val_loss": 0.5}) == "w-1.npy"
    ck.close()
    assert (tmp_path / filepath.replace("{epoch}", "1")).exists()
    assert (tmp_path / manifest_path).exists()
    for resume in (True, manifest_path):
        again = Checkpointer(filepath, write=npwrite, save_best_only=True, resume=resume)
        assert again.tracker.best == 0.5
        assert [e.path for e in again.manifest.entries] == ["w-1.npy"]
        again.close()


def test_resume_from_a_named_root_without_a_manifest_is_a_clear_error(tmp_path):
    from ckptcore import ManifestError

    with pytest.raises(ManifestError, match="nothing to resume from"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=lambda p: None,
                     resume=str(tmp_path / "elsewhere" / "manifest.json"))


def test_a_loop_without_epoch_begin_names_batch_saves_with_their_epoch(tmp_path, npwrite, helpers):
    # steps_per_execution=4 with 5 batches per epoch reports indices 3 and 4; no on_epoch_begin.
    ck = Checkpointer(str(tmp_path / "w-{epoch}-{batch}.npy"), write=npwrite, save_freq=2, monitor="loss")
    saved = []
    for epoch in range(3):
        for batch in (3, 4):
            saved.append(ck.on_train_batch_end(batch, {"loss": 1.0}))
        ck.on_epoch_end(epoch, {"loss": 1.0})
    ck.close()
    assert [s for s in saved if s] == ["w-1-4.npy", "w-2-4.npy", "w-2-5.npy", "w-3-4.npy"]
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    assert [(e.epoch, e.global_step) for e in manifest.entries] == [(1, 4), (2, 9), (2, 10), (3, 14)]


def test_a_closed_checkpointer_refuses_to_save(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite)
    ck.close()
    with pytest.raises(RuntimeError, match="closed"):
        ck.on_epoch_end(0, {"val_loss": 1.0})
    assert not (tmp_path / "w-1.npy").exists()


def test_without_save_best_only_a_non_scalar_monitor_warns_once_and_saves(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, monitor="val_auc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ck.on_epoch_end(0, {"val_auc": np.array([0.1, 0.2])})
        second = ck.on_epoch_end(1, {"val_auc": "n/a"})
    ck.close()
    assert (first, second) == ("w-1.npy", "w-2.npy")
    messages = [str(w.message) for w in caught if "val_auc" in str(w.message)]
    assert len(messages) == 1 and "(2,)" in messages[0]
    assert [e.monitor_value for e in ck.manifest.entries] == [None, None]


def test_a_none_monitor_value_counts_as_missing(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss available"):
        assert ck.on_epoch_end(0, {"val_loss": None}) is None
    assert ck.on_epoch_end(1, {"val_loss": 0.5}) == "w-2.npy"
    ck.close()


def test_resuming_with_another_monitor_is_refused(tmp_path, npwrite):
    filepath = str(tmp_path / "w-{epoch}.npy")
    with Checkpointer(filepath, write=npwrite, monitor="val_loss", save_best_only=True) as ck:
        ck.on_epoch_end(0, {"val_loss": 0.05, "loss": 0.3})
    with pytest.raises(ValueError, match=r"monitor.*'val_loss'.*'loss'"):
        Checkpointer(filepath, write=npwrite, monitor="loss", save_best_only=True, resume=True)


@pytest.mark.parametrize(("section", "bad"), [
    ("tracker", {"mode": "min", "best": "x"}),
    ("tracker", {"mode": "min", "best": [1]}),
    ("schedule", {"batches_run": None}),
    ("states", {"tracker": "not an object"}),
])
def test_a_stored_state_that_cannot_be_restored_names_the_manifest(tmp_path, npwrite, section, bad):
    from ckptcore import ManifestError

    filepath = str(tmp_path / "w-{epoch}.npy")
    with Checkpointer(filepath, write=npwrite) as ck:
        ck.on_epoch_end(0, {"val_loss": 0.5})
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["states"] = {}
    if section == "states":  # the run's own stored state, which a resume prefers
        bad = {data["entries"][0]["run_id"]: bad}
    data[section] = bad
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"manifest\.json.*cannot be restored"):
        Checkpointer(filepath, write=npwrite, resume=True)


def test_best_and_latest_are_this_runs_own(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "loss-{epoch}.npy"), write=npwrite, monitor="loss") as first:
        first.on_epoch_end(0, {"loss": 0.5})
    second = Checkpointer(str(tmp_path / "acc-{epoch}.npy"), write=npwrite, monitor="val_acc")
    assert (second.best(), second.latest()) == (None, None)
    second.on_epoch_end(0, {"val_acc": 0.7})
    assert second.best() == second.latest() == str(tmp_path / "acc-1.npy")
    second.close()
    assert first.best() == str(tmp_path / "loss-1.npy")


def test_a_printer_that_cannot_be_called_is_refused(tmp_path, npwrite):
    from ckptcore import ConfigError

    with pytest.raises(ConfigError, match="printer: got 5"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, printer=5)


@pytest.mark.parametrize("foreign", ['{"name": "my-dataset", "files": ["a.csv"]}', '["a.csv"]', "not json"])
def test_a_manifest_json_of_another_tool_is_left_alone(tmp_path, npwrite, foreign):
    # A web app's manifest.json in the directory: ckptcore's own files are under .ckptcore.
    (tmp_path / "manifest.json").write_text(foreign)
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite) as ck:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    assert (tmp_path / "manifest.json").read_text() == foreign
    assert visible(tmp_path) == ["manifest.json", "w-1.npy"]
    assert [e.path for e in _manifest(tmp_path).entries] == ["w-1.npy"]


def test_ckptcores_own_manifest_at_the_old_place_is_moved_in_at_open(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite) as ck:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    # A root written by an earlier ckptcore: its manifest at ROOT/manifest.json.
    (tmp_path / MANIFEST_NAME).rename(tmp_path / "manifest.json")
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, resume=True)
    assert [e.path for e in ck.manifest.entries] == ["w-1.npy"]
    ck.close()
    assert visible(tmp_path) == ["w-1.npy"]
    assert [e.path for e in _manifest(tmp_path).entries] == ["w-1.npy"]


def test_the_manifest_carries_its_format_mark(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite) as ck:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["format"] == "ckptcore.manifest"


def test_keep_best_needs_scalar_monitor_values(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_best=2)
    with pytest.raises(MonitorError, match="'val_loss'"):
        ck.on_epoch_end(0, {"val_loss": np.array([0.1, 0.2])})
    ck.close()


def test_an_unranked_checkpoint_is_not_pruned_by_its_own_save(tmp_path, npwrite, helpers):
    # keep_best ranks only checkpoints with a finite monitored value (validation_freq=2 leaves
    # every other epoch without val_loss); such a checkpoint stays until the next save.
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_best=1)
    saved = [ck.on_epoch_end(epoch, logs) for epoch, logs in enumerate(
        [{"val_loss": 0.5}, {"loss": 1.0}, {"val_loss": 0.7}, {"loss": 1.0}])]
    assert saved == ["w-1.npy", "w-2.npy", "w-3.npy", "w-4.npy"]
    ck.close()
    assert [e.path for e in _assert_manifest_agrees_with_disk(tmp_path, helpers).entries] == ["w-1.npy", "w-4.npy"]


def test_a_foreign_manifest_json_on_a_secondary_backend_is_left_alone(tmp_path, npwrite, memory_url):
    import fsspec

    fs = fsspec.filesystem("memory")
    foreign = b'{"name": "my-dataset", "files": ["a.csv"]}'
    fs.pipe_file(f"{memory_url}/manifest.json", foreign)
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, backends=[memory_url]) as ck:
        ck.on_epoch_end(0, {"val_loss": 1.0})
    assert fs.cat_file(f"{memory_url}/manifest.json") == foreign
    assert fs.exists(f"{memory_url}/w-1.npy") and fs.exists(f"{memory_url}/{MANIFEST_NAME}")


def test_a_foreign_manifest_that_appears_later_is_not_replaced(tmp_path, npwrite, memory_url, caplog):
    import fsspec

    from ckptcore import CheckpointSaveWarning

    fs = fsspec.filesystem("memory")
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, backends=[memory_url])
    foreign = b'{"name": "my-dataset", "files": ["a.csv"]}'
    fs.pipe_file(f"{memory_url}/{MANIFEST_NAME}", foreign)  # where ckptcore keeps its own
    with pytest.warns(CheckpointSaveWarning, match=r"'w-1.npy' was only partly saved.*memory \(manifest not writable\)"):
        ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.close()
    assert fs.cat_file(f"{memory_url}/{MANIFEST_NAME}") == foreign
    assert not [p for p in fs.find(memory_url) if "unreadable" in p]
    assert "not a ckptcore manifest" in caplog.text

def test_resume_in_a_shared_root_without_this_templates_checkpoints_starts_fresh(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "loss-{epoch}.npy"), write=npwrite, monitor="loss") as other:
        other.on_epoch_end(0, {"loss": 0.01})
    with Checkpointer(str(tmp_path / "val-{epoch}.npy"), write=npwrite, monitor="val_loss",
                      save_best_only=True, resume=True) as ck:
        assert ck.tracker.best is None and ck.run_id != other.run_id
        assert ck.on_epoch_end(0, {"val_loss": 0.5}) == "val-1.npy"


def test_a_checkpointer_added_on_resume_is_a_run_of_its_own(tmp_path, npwrite, helpers):
    with Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite, keep_last=2) as first:
        for epoch in range(3):
            first.on_epoch_end(epoch, {"val_loss": 1.0 - epoch / 10})
    every = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite, keep_last=2, resume=True)
    best = Checkpointer(str(tmp_path / "best.npy"), write=npwrite, save_best_only=True, resume=True)
    assert every.run_id == first.run_id and best.run_id != first.run_id
    assert best.tracker.best is None  # fresh: no checkpoint here has its name
    for epoch in range(3, 5):
        for ck in (every, best):
            ck.on_epoch_end(epoch, {"val_loss": 0.5 - epoch / 100})
    every.close()
    best.close()
    manifest = _assert_manifest_agrees_with_disk(tmp_path, helpers)
    # m-3 is the checkpoint the run resumed from: retention keeps it.
    assert sorted(e.path for e in manifest.entries) == ["best.npy", "m-3.npy", "m-4.npy", "m-5.npy"]
    assert manifest.best(best.run_id).path == "best.npy"


def test_a_run_continued_by_an_open_checkpointer_is_not_taken_twice(tmp_path, npwrite):
    with Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite) as first:
        first.on_epoch_end(0, {"val_loss": 1.0})
    one = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite, resume=True)
    two = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite, resume=True)
    assert one.run_id == first.run_id and two.run_id != first.run_id
    one.close()
    two.close()
    three = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=npwrite, resume=True)
    assert three.run_id == first.run_id  # closed runs can be continued again
    three.close()
