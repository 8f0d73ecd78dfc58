"""``RetentionPolicy``: keep last N, best K, every N-th epoch; only own checkpoints; protected."""

from __future__ import annotations

import math

import pytest

from ckptcore import ConfigError, ManifestEntry, RetentionPolicy


def _entry(i: int, value: float | None = None, run: str = "me", is_best: bool = False, batch=None):
    return ManifestEntry(
        name=f"w-{i}.npy", path=f"w-{i}.npy", epoch=i, batch=batch, monitor_value=value,
        run_id=run, is_best=is_best,
    )


def _paths(entries):
    return [e.path for e in entries]


def test_no_limit_keeps_everything():
    policy = RetentionPolicy()
    assert not policy.active
    assert policy.select_deletions([_entry(i) for i in range(5)], "min", {"me"}) == []


def test_keep_last():
    entries = [_entry(i) for i in range(1, 6)]
    deleted = RetentionPolicy(keep_last=2).select_deletions(entries, "min", {"me"})
    assert _paths(deleted) == ["w-1.npy", "w-2.npy", "w-3.npy"]


@pytest.mark.parametrize(("mode", "kept"), [("min", {"w-2.npy", "w-4.npy"}), ("max", {"w-1.npy", "w-3.npy"})])
def test_keep_best(mode, kept):
    values = {1: 0.9, 2: 0.1, 3: 0.8, 4: 0.2, 5: 0.5}
    entries = [_entry(i, v) for i, v in values.items()]
    deleted = RetentionPolicy(keep_best=2).select_deletions(entries, mode, {"me"})
    assert set(_paths(entries)) - set(_paths(deleted)) == kept


@pytest.mark.parametrize("mode", ["min", "max"])
def test_keep_best_never_ranks_nan_or_inf(mode):
    bad = [math.nan, math.inf, -math.inf]
    entries = [_entry(i, v) for i, v in enumerate(bad, start=1)] + [_entry(4, 0.5), _entry(5, 0.7)]
    deleted = RetentionPolicy(keep_best=2).select_deletions(entries, mode, {"me"})
    assert set(_paths(entries)) - set(_paths(deleted)) == {"w-4.npy", "w-5.npy"}


def test_keep_last_and_keep_best_together():
    values = [0.1, 0.5, 0.6, 0.7, 0.8]
    entries = [_entry(i, v) for i, v in enumerate(values, start=1)]
    deleted = RetentionPolicy(keep_last=2, keep_best=1).select_deletions(entries, "min", {"me"})
    assert _paths(deleted) == ["w-2.npy", "w-3.npy"]


def test_the_current_best_is_kept_even_without_a_score():
    entries = [_entry(1, None, is_best=True), _entry(2, 0.5), _entry(3, 0.4)]
    deleted = RetentionPolicy(keep_best=1).select_deletions(entries, "min", {"me"})
    assert _paths(deleted) == ["w-2.npy"]


def test_keep_every_n_epochs_keeps_epoch_saves_only():
    entries = [_entry(i) for i in range(1, 7)] + [_entry(8, batch=3)]
    deleted = RetentionPolicy(keep_last=1, keep_every_n_epochs=2).select_deletions(entries, "min", {"me"})
    assert _paths(deleted) == ["w-1.npy", "w-3.npy", "w-5.npy"]


def test_only_own_runs_are_candidates_and_protected_paths_stay():
    entries = [_entry(1, run="other"), _entry(2), _entry(3), _entry(4)]
    deleted = RetentionPolicy(keep_last=1).select_deletions(
        entries, "min", own_runs={"me"}, protected={"w-2.npy"}
    )
    assert _paths(deleted) == ["w-3.npy"]


@pytest.mark.parametrize("name", ["keep_last", "keep_best", "keep_every_n_epochs"])
@pytest.mark.parametrize("value", [0, -1, 1.0, True, "2"])
def test_bad_counts(name, value):
    with pytest.raises(ConfigError) as info:
        RetentionPolicy(**{name: value})
    assert name in str(info.value) and repr(value) in str(info.value)
