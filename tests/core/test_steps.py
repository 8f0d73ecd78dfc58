"""Naming and scheduling by step: the ``{step}`` placeholder and ``every_n_steps``."""

from __future__ import annotations

import pytest

from ckptcore import Checkpointer, ConfigError, FilepathTemplate
from ckptcore.commit import load_manifest
from ckptcore.backends.local import LocalBackend


def test_step_placeholder_renders_the_global_step_and_matches_digits_only():
    template = FilepathTemplate("run/ckpt-{step:06d}.bin")
    assert template.placeholders == ("step",)
    assert template.render(epoch=2, batch=4, logs={}, step=1234) == "ckpt-001234.bin"
    assert template.matches("ckpt-001234.bin")
    assert not template.matches("ckpt-best.bin")


def test_step_missing_names_it_among_the_keys():
    template = FilepathTemplate("run/ckpt-{step}.bin")
    with pytest.raises(KeyError, match=r"needs \{step\}"):
        template.render(epoch=0, logs={"loss": 1.0})


def test_every_n_steps_saves_every_n_batches_across_epochs_named_by_step(tmp_path, npwrite):
    root = tmp_path / "ck"
    ck = Checkpointer(str(root / "ckpt-{step:04d}.npy"), write=npwrite, every_n_steps=4, monitor="loss")
    assert ck.schedule.save_freq == 4
    saved = []
    for epoch in range(3):
        ck.on_epoch_begin(epoch)
        for batch in range(5):  # 15 batches in all: saves after batches 4, 8 and 12
            saved.append(ck.on_train_batch_end(batch, {"loss": 1.0}))
        saved.append(ck.on_epoch_end(epoch, {"loss": 1.0}))
    ck.close()
    assert [s for s in saved if s] == ["ckpt-0004.npy", "ckpt-0008.npy", "ckpt-0012.npy"]
    manifest = load_manifest(LocalBackend(str(root)))
    assert [e.global_step for e in manifest.entries] == [4, 8, 12]


def test_step_with_epoch_saves_is_the_batch_count_at_the_epoch_end(tmp_path, npwrite):
    ck = Checkpointer(str(tmp_path / "e{epoch}-s{step}.npy"), write=npwrite, monitor="loss")
    for epoch in range(2):
        ck.on_epoch_begin(epoch)
        for batch in range(3):
            ck.on_train_batch_end(batch, {"loss": 1.0})
        assert ck.on_epoch_end(epoch, {"loss": 1.0}) == f"e{epoch + 1}-s{3 * (epoch + 1)}.npy"
    ck.close()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"every_n_steps": 0}, r"every_n_steps: got 0 \(int\); allowed: an int >= 1"),
        ({"every_n_steps": 2.5}, r"every_n_steps: got 2.5 \(float\)"),
        ({"every_n_steps": True}, r"every_n_steps: got True"),
        ({"every_n_steps": 10, "save_freq": 5}, r"every_n_steps: got 10 with save_freq=5; allowed: one of them"),
    ],
)
def test_every_n_steps_is_validated_at_construction(tmp_path, npwrite, kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        Checkpointer(str(tmp_path / "c-{step}.npy"), write=npwrite, **kwargs)


def test_unrecognized_save_freq_keeps_keras_wording(tmp_path, npwrite):
    with pytest.raises(ValueError, match=r"^Unrecognized save_freq: invalid\. Expected save_freq are 'epoch' or integer"):
        Checkpointer(str(tmp_path / "c.npy"), write=npwrite, save_freq="invalid")
