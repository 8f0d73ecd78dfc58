"""Which worker is the chief: the explicit argument, then TF_CONFIG, RANK, SLURM_PROCID."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ckptcore import Checkpointer, ConfigError, Role, is_chief, role_from_env
from ckptcore.commit import load_manifest
from ckptcore.backends.local import LocalBackend


def tf_config(task_type: str, index: int, chief: bool = False) -> str:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    ("environ", "chief", "source"),
    [
        ({"TF_CONFIG": tf_config("worker", 0)}, True, "TF_CONFIG"),
        ({"TF_CONFIG": tf_config("worker", 1)}, False, "TF_CONFIG"),
        ({"TF_CONFIG": tf_config("worker", 0, chief=True)}, False, "TF_CONFIG"),
        ({"TF_CONFIG": tf_config("chief", 0, chief=True)}, True, "TF_CONFIG"),
        ({"TF_CONFIG": tf_config("evaluator", 0)}, False, "TF_CONFIG"),
        ({"RANK": "0", "WORLD_SIZE": "4"}, True, "RANK"),
        ({"RANK": "3", "WORLD_SIZE": "4"}, False, "RANK"),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, False, "SLURM_PROCID"),
        # Precedence: TF_CONFIG before RANK before SLURM_PROCID.
        ({"TF_CONFIG": tf_config("worker", 1), "RANK": "0"}, False, "TF_CONFIG"),
        ({"RANK": "0", "SLURM_PROCID": "1"}, True, "RANK"),
    ],
)
def test_the_environment_names_the_chief(environ, chief, source):
    role = role_from_env(environ)
    assert (role.chief, role.source) == (chief, source)
    assert is_chief(environ=environ) is chief


def test_the_worker_index_counts_the_chief_first():
    role = role_from_env({"TF_CONFIG": tf_config("worker", 1, chief=True)})
    assert (role.index, role.count) == (2, 3)


def test_explicit_and_detected_roles_come_before_the_environment():
    environ = {"RANK": "1"}
    assert is_chief(True, environ=environ) is True
    assert is_chief(None, Role(chief=True, source="jax"), environ) is True
    assert is_chief(False, Role(chief=True), {}) is False
    assert is_chief(environ={}) is True  # alone: the chief


@pytest.mark.parametrize(
    ("environ", "named"),
    [({"TF_CONFIG": "{not json"}, "TF_CONFIG"), ({"TF_CONFIG": '{"task": 3}'}, "TF_CONFIG"),
     ({"RANK": "zero"}, "RANK"), ({"SLURM_PROCID": "-1"}, "SLURM_PROCID")],
)
def test_an_unreadable_variable_is_named(environ, named):
    with pytest.raises(ConfigError, match=named):
        role_from_env(environ)


def test_is_chief_must_be_a_bool_or_none(tmp_path):
    with pytest.raises(ConfigError, match=r"is_chief: got 'yes' \(str\); allowed: True"):
        Checkpointer(str(tmp_path / "m.npy"), write=lambda p: None, is_chief="yes")


def test_a_worker_runs_the_write_outside_the_root_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")  # the override beats the environment
    root = tmp_path / "root"
    given = []

    def write(path):
        given.append(path)
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(2))

    ck = Checkpointer(str(root / "m-{epoch}.npy"), write=write, monitor="loss", keep_last=1,
                      is_chief=False)
    for epoch, loss in enumerate([0.5, 0.4]):
        ck.on_epoch_end(epoch, {"loss": loss})
    assert ck.latest() == str(root / "m-2.npy")  # the chief's record, kept in memory
    ck.close()
    assert len(given) == 2 and not any(p.startswith(str(root)) or os.path.exists(p) for p in given)
    assert not root.exists() or not any(root.rglob("*"))
    assert load_manifest(LocalBackend(str(root))) is None


@pytest.mark.parametrize("text", ["{}", '{"cluster": {}}', '{"task": {}}'])
def test_a_tf_config_without_task_or_cluster_is_a_job_of_one(tmp_path, monkeypatch, text):
    """tf.distribute takes it for a single worker, the chief: its saves must be committed."""
    assert role_from_env({"TF_CONFIG": text}) is None
    assert role_from_env({"TF_CONFIG": text, "RANK": "1"}).source == "RANK"  # the next variable decides
    monkeypatch.setenv("TF_CONFIG", text)
    for name in ("RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    with Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=lambda p: np.save(p, np.zeros(2))) as ck:
        ck.on_epoch_end(0, {})
    assert (tmp_path / "m-1.npy").exists()
    assert [e.path for e in load_manifest(LocalBackend(str(tmp_path))).entries] == ["m-1.npy"]


@pytest.mark.parametrize("text", [
    '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}',  # no task: which worker is this?
    '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": -1}}',
    '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0.5}}',
])
def test_a_tf_config_that_names_no_task_of_its_cluster_is_refused(text):
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        role_from_env({"TF_CONFIG": text})
