"""Every bad argument fails at construction of ``Checkpointer``, with a message that names the
argument, what was given and what is allowed."""

from __future__ import annotations

import pytest

from ckptcore import CheckpointConfig, Checkpointer, ConfigError


def _noop(path: str) -> None:  # never called: construction fails first
    raise AssertionError("write must not run")


# (kwargs, the argument named, what was given, words of what is allowed)
BAD_ARGUMENTS = [
    ({"mode": "best"}, "mode", "'best'", ["'auto'", "'min'", "'max'"]),
    ({"mode": None}, "mode", "None", ["'auto'", "'min'", "'max'"]),
    ({"save_freq": 0}, "save_freq", "0", ["'epoch'", "positive int"]),
    ({"save_freq": -3}, "save_freq", "-3", ["'epoch'", "positive int"]),
    ({"save_freq": 2.5}, "save_freq", "2.5", ["'epoch'", "positive int"]),
    ({"save_freq": 10.0}, "save_freq", "10.0", ["'epoch'", "positive int"]),
    ({"save_freq": True}, "save_freq", "True", ["'epoch'", "positive int"]),
    ({"save_freq": False}, "save_freq", "False", ["'epoch'", "positive int"]),
    ({"save_freq": "batch"}, "save_freq", "'batch'", ["'epoch'", "positive int"]),
    ({"save_freq": "Epoch"}, "save_freq", "'Epoch'", ["'epoch'", "positive int"]),
    ({"filepath": "w-{epoch"}, "filepath", "'w-{epoch'", ["allowed"]),
    ({"filepath": "w-{epoch}}.npy"}, "filepath", "'w-{epoch}}.npy'", ["allowed"]),
    ({"filepath": "ck/w-{}.npy"}, "filepath", "'ck/w-{}.npy'", ["named placeholders"]),
    ({"filepath": "ck/w-{0}.npy"}, "filepath", "'ck/w-{0}.npy'", ["named placeholders"]),
    ({"filepath": "ck/w-{epoch!r}.npy"}, "filepath", "'ck/w-{epoch!r}.npy'", ["allowed"]),
    ({"filepath": "ck/w-{logs.loss}.npy"}, "filepath", "'ck/w-{logs.loss}.npy'", ["plain name"]),
    ({"filepath": ""}, "filepath", "''", ["non-empty"]),
    ({"filepath": 42}, "filepath", "42", ["path or URL"]),
    ({"keep_last": 0}, "keep_last", "0", [">= 1"]),
    ({"keep_last": -1}, "keep_last", "-1", [">= 1"]),
    ({"keep_last": 2.0}, "keep_last", "2.0", ["int"]),
    ({"keep_best": 0}, "keep_best", "0", [">= 1"]),
    ({"initial_value_threshold": "abc"}, "initial_value_threshold", "'abc'", ["a number"]),
    ({"initial_value_threshold": float("nan")}, "initial_value_threshold", "nan", ["not NaN"]),
    ({"monitor": ""}, "monitor", "''", ["non-empty"]),
    ({"monitor": "   "}, "monitor", "'   '", ["non-empty"]),
    ({"monitor": None}, "monitor", "None", ["non-empty"]),
    ({"verbose": "1"}, "verbose", "'1'", ["0 (silent) or an int >= 1"]),
    ({"verbose": 1.0}, "verbose", "1.0", ["0 (silent) or an int >= 1"]),
    ({"verbose": -1}, "verbose", "-1", ["0 (silent) or an int >= 1"]),
    ({"save_best_only": "yes"}, "save_best_only", "'yes'", ["True or False"]),
    ({"every_n_epochs": 0}, "every_n_epochs", "0", [">= 1"]),
    ({"every_seconds": 0}, "every_seconds", "0", ["> 0"]),
    ({"every_seconds": "60"}, "every_seconds", "'60'", ["a number"]),
    ({"min_delta": -0.1}, "min_delta", "-0.1", [">= 0"]),
    ({"max_pending": 0}, "max_pending", "0", [">= 1"]),
    ({"mode_hint": "up"}, "mode_hint", "'up'", ["'min'", "'max'"]),
    ({"save_freqq": 3}, "save_freqq", "unknown argument", ["save_freq"]),
]


@pytest.mark.parametrize(
    ("kwargs", "argument", "given", "allowed"),
    BAD_ARGUMENTS,
    ids=[f"{a}={g}" for _, a, g, _ in BAD_ARGUMENTS],
)
def test_bad_argument_is_rejected_at_construction(tmp_path, kwargs, argument, given, allowed):
    kwargs = dict(kwargs)
    filepath = kwargs.pop("filepath", str(tmp_path / "ck" / "w-{epoch}.npy"))
    with pytest.raises((ValueError, TypeError)) as info:
        Checkpointer(filepath, write=_noop, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert argument in message
    assert given in message
    for word in allowed:
        assert word in message, f"{word!r} missing from {message!r}"
    assert not (tmp_path / "ck").exists(), "a rejected configuration must not touch storage"


def test_every_bad_argument_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        Checkpointer(str(tmp_path / "w.npy"), write=_noop, mode="up", save_freq=0, keep_last=0)
    message = str(info.value)
    for name in ("mode", "save_freq", "keep_last"):
        assert f"{name}:" in message


def test_write_and_snapshot_must_be_callable(tmp_path):
    with pytest.raises(ConfigError, match=r"write: got 'nope'.*callable"):
        Checkpointer(str(tmp_path / "w.npy"), write="nope")
    with pytest.raises(ConfigError, match=r"snapshot: got 3.*callable"):
        Checkpointer(str(tmp_path / "w.npy"), write=_noop, snapshot=3)


def test_good_arguments_are_normalised(tmp_path):
    cfg = CheckpointConfig.build(
        filepath=tmp_path / "w-{epoch}.npy",  # a PathLike is accepted
        save_freq=5,
        verbose=True,
        initial_value_threshold=1,
        min_delta=0,
        backends="local",
    )
    assert cfg.filepath == str(tmp_path / "w-{epoch}.npy")
    assert cfg.save_freq == 5
    assert cfg.verbose == 1
    assert cfg.initial_value_threshold == 1.0
    assert cfg.backends == ("local",)
    assert CheckpointConfig.build(filepath="w.npy").save_freq == "epoch"


def test_numpy_scalars_are_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    cfg = CheckpointConfig.build(filepath="w.npy", initial_value_threshold=np.float32(0.5))
    assert cfg.initial_value_threshold == 0.5


@pytest.mark.parametrize("argument", ["initial_value_threshold", "min_delta", "every_seconds", "retry_backoff"])
def test_an_array_of_numbers_is_not_a_number(tmp_path, argument):
    np = pytest.importorskip("numpy")
    with pytest.raises(ConfigError, match=rf"{argument}: got array\(\[0.3, 0.2\]\).*a single number"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=_noop, **{argument: np.array([0.3, 0.2])})


def test_every_n_epochs_needs_an_epoch_schedule(tmp_path):
    with pytest.raises(ConfigError, match=r"every_n_epochs: got 2 with save_freq=10"):
        Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=_noop, save_freq=10, every_n_epochs=2)


def test_config_is_frozen():
    from pydantic import ValidationError

    cfg = CheckpointConfig.build(filepath="w.npy")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.monitor = "loss"  # type: ignore[misc]
