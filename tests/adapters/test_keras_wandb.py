"""WandbModelCheckpoint with the real W&B SDK in offline mode, asserting on the run's records."""

from __future__ import annotations

import os
import pickle

import pytest
from keras_helpers import assert_same_weights, files, manifest_entries
from wandb_log import recorded_artifacts

from ckptcore.adapters.keras import WandbModelCheckpoint
from ckptcore.errors import ConfigError

wandb = pytest.importorskip("wandb")


@pytest.fixture
def wandb_run(tmp_path, monkeypatch):
    """An offline W&B run writing under tmp_path; finished at the end of the test."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    (tmp_path / "wandb-dir").mkdir()
    run = wandb.init(project="ckptcore-tests", dir=str(tmp_path / "wandb-dir"))
    try:
        yield run
    finally:
        if wandb.run is not None:
            wandb.finish()


def _finish(run) -> list:
    path = run.settings.sync_file
    run.finish()
    return recorded_artifacts(path)


def test_requires_an_active_run(tmp_path):
    assert wandb.run is None
    with pytest.raises(ConfigError, match=r"wandb\.init\(\)") as info:
        WandbModelCheckpoint(str(tmp_path / "m.keras"))
    assert isinstance(info.value, wandb.Error), "code written for W&B's callback catches it too"
    assert "wandb.init()" in info.value.message and info.value.context == {}
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value) and str(again) == str(info.value)


def test_bad_artifact_arguments(tmp_path, wandb_run):
    with pytest.raises(ConfigError, match="artifact_name"):
        WandbModelCheckpoint(str(tmp_path / "m.keras"), artifact_name="a/b")
    with pytest.raises(ConfigError, match="artifact_type"):
        WandbModelCheckpoint(str(tmp_path / "m.keras"), artifact_type="")
    with pytest.raises(ConfigError, match="artifact_nme"):
        WandbModelCheckpoint(str(tmp_path / "m.keras"), artifact_nme="x")


def test_each_checkpoint_is_an_artifact_version(tmp_path, data, make_model, wandb_run):
    x, y = data
    model = make_model()
    cb = WandbModelCheckpoint(str(tmp_path / "ckpt" / "m-{epoch:02d}.keras"), monitor="val_loss")
    history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, callbacks=[cb], verbose=0)
    logged = _finish(wandb_run)

    assert [a.name for a in logged] == [f"run_{wandb_run.id}_model"] * 3
    assert {a.type for a in logged} == {"model"}
    val_loss = history.history["val_loss"]
    for n, artifact in enumerate(logged, start=1):
        improved = val_loss[n - 1] < min(val_loss[: n - 1], default=float("inf"))
        expected = {"latest", f"epoch_{n}"} | ({"best"} if improved else set())
        assert set(artifact.aliases) == expected  # epoch_N is 1-based, as in the file name
        name = f"m-{n:02d}.keras"
        assert {k: f.size for k, f in artifact.files.items()} == {name: os.path.getsize(tmp_path / "ckpt" / name)}
        assert artifact.metadata["epoch"] == n
        assert artifact.metadata["metrics"]["val_loss"] == pytest.approx(val_loss[n - 1])
        assert set(artifact.metadata["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert [e["backends"] for e in manifest_entries(tmp_path / "ckpt")] == [["local", "wandb"]] * 3


def test_best_only_without_improvement_logs_nothing_more(tmp_path, data, make_model, wandb_run):
    x, y = data
    model = make_model(lr=0.0)  # the weights never change, so no epoch after the first improves
    cb = WandbModelCheckpoint(str(tmp_path / "ckpt" / "best.weights.h5"), monitor="val_loss", save_best_only=True,
                              save_weights_only=True, artifact_name="tiny-net", artifact_type="checkpoint")
    model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, callbacks=[cb], verbose=0)  # the anchor crashes
    logged = _finish(wandb_run)

    assert len(logged) == 1, "an unchanged best is not uploaded again"
    assert (logged[0].name, logged[0].type) == ("tiny-net", "checkpoint")
    assert logged[0].aliases == ["best", "epoch_1", "latest"]
    assert files(tmp_path / "ckpt") == ["best.weights.h5"]
    fresh = make_model(lr=0.0)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(tmp_path / "ckpt" / "best.weights.h5")
    assert_same_weights(model, fresh)


def test_second_fit_logs_to_the_same_artifact(tmp_path, data, make_model, wandb_run):
    x, y = data
    model = make_model()
    cb = WandbModelCheckpoint(str(tmp_path / "ckpt" / "m-{epoch}.weights.h5"), monitor="loss", save_weights_only=True)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, callbacks=[cb], verbose=0)  # the engine reopens
    logged = _finish(wandb_run)
    assert [a.name for a in logged] == [f"run_{wandb_run.id}_model"] * 2
    assert [a.aliases for a in logged] == [["best", "epoch_1", "latest"], ["best", "epoch_2", "latest"]]
    assert [list(a.files) for a in logged] == [["m-1.weights.h5"], ["m-2.weights.h5"]]


def test_a_callback_reused_on_a_new_run_names_the_artifact_after_that_run(tmp_path, data, make_model, wandb_run):
    x, y = data
    model = make_model()
    cb = WandbModelCheckpoint(str(tmp_path / "ckpt" / "m-{epoch}.weights.h5"), monitor="loss", save_weights_only=True)
    assert cb.artifact_name == f"run_{wandb_run.id}_model"
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[cb], verbose=0)
    first = _finish(wandb_run)
    assert cb.artifact_name is None  # no run is active
    second_run = wandb.init(project="ckptcore-tests", dir=str(tmp_path / "wandb-dir"))
    model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, callbacks=[cb], verbose=0)
    second = _finish(second_run)
    assert [a.name for a in first] == [f"run_{wandb_run.id}_model"]
    assert [a.name for a in second] == [f"run_{second_run.id}_model"]
    assert [list(a.files) for a in second] == [["m-2.weights.h5"]]


def test_resume_continues_a_run_from_its_local_checkpoints(tmp_path, wandb_run, data, make_model):
    filepath = str(tmp_path / "ckpt" / "m-{epoch}.keras")
    first = make_model()
    first.fit(*data, epochs=2, batch_size=8, verbose=0,
              callbacks=[WandbModelCheckpoint(filepath, monitor="loss", resume=True)])
    again = make_model()
    callback = WandbModelCheckpoint(filepath, monitor="loss", resume=True)
    history = again.fit(*data, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert history.epoch == [2] and callback.initial_epoch == 2
    assert callback.restored.point.path == "m-2.keras" and callback.restored.optimizer
    logged = _finish(wandb_run)
    assert [a.aliases for a in logged][-1].count("epoch_3") == 1
