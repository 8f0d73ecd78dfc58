"""``BestTracker``: direction, min_delta, thresholds, NaN/inf, state round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptcore import BestTracker, ConfigError, MonitorError

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
)
modes = st.sampled_from(["min", "max"])
deltas = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e6, allow_nan=False))


def _better(mode: str, a: float, b: float, delta: float) -> bool:
    return a < b - delta if mode == "min" else a > b + delta


@settings(max_examples=300, deadline=None)
@given(mode=modes, delta=deltas, seq=st.lists(values, max_size=40))
def test_best_is_monotone_finite_and_respects_min_delta(mode, delta, seq):
    tracker = BestTracker(mode, min_delta=delta)
    for value in seq:
        before = tracker.best
        improved = tracker.update(value)
        after = tracker.best
        if not math.isfinite(value):
            assert not improved, "NaN/inf must never become the best"
            assert after == before
            continue
        if before is None:
            assert improved and after == value
            continue
        assert improved == _better(mode, value, before, delta)
        assert after == (value if improved else before)
        # Monotone in the tracker's direction.
        assert (after <= before) if mode == "min" else (after >= before)
    assert tracker.best is None or math.isfinite(tracker.best)


@settings(max_examples=200, deadline=None)
@given(mode=modes, delta=deltas, head=st.lists(values, max_size=20), tail=st.lists(values, max_size=20))
def test_state_dict_round_trip(mode, delta, head, tail):
    original = BestTracker(mode, min_delta=delta)
    for value in head:
        original.update(value)
    state = json.loads(json.dumps(original.state_dict()))  # survives JSON, as in the manifest
    restored = BestTracker(mode, min_delta=delta)
    restored.load_state_dict(state)
    assert restored.best == original.best
    for value in tail:
        assert restored.is_improvement(value) == original.is_improvement(value)
        assert restored.update(value) == original.update(value)
        assert restored.best == original.best


@settings(max_examples=100, deadline=None)
@given(mode=modes, value=values)
def test_is_improvement_never_changes_state(mode, value):
    tracker = BestTracker(mode)
    tracker.update(1.0)
    state = tracker.state_dict()
    tracker.is_improvement(value)
    tracker.is_improvement(value)
    assert tracker.state_dict() == state


def test_initial_value_threshold_seeds_the_best():
    tracker = BestTracker("min", initial_value_threshold=0.5)
    assert tracker.best == 0.5
    assert not tracker.update(0.6)
    assert not tracker.update(0.5)  # equal is not better
    assert tracker.update(0.4)
    high = BestTracker("max", initial_value_threshold=np.float32(0.9))
    assert not high.update(0.8)
    assert high.update(0.95)


def test_min_delta_example():
    tracker = BestTracker("min", min_delta=0.1)
    assert tracker.update(1.0)
    assert not tracker.update(0.95)
    assert not tracker.update(0.9)  # exactly min_delta is not enough
    assert tracker.update(0.85)
    assert tracker.best == 0.85


def test_scalar_arrays_are_accepted_and_vectors_rejected():
    tracker = BestTracker("max")
    assert tracker.update(np.array(0.3))
    assert tracker.best == pytest.approx(0.3)
    with pytest.raises(MonitorError, match=r"shape \(3,\)"):
        tracker.update(np.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"mode": "auto"}, "mode"),
        ({"mode": "min", "min_delta": -1}, "min_delta"),
        ({"mode": "min", "min_delta": math.nan}, "min_delta"),
        ({"mode": "min", "min_delta": True}, "min_delta"),
        ({"mode": "min", "initial_value_threshold": math.nan}, "initial_value_threshold"),
    ],
)
def test_bad_construction(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        BestTracker(**kwargs)


def test_loading_a_state_with_another_mode_is_refused():
    tracker = BestTracker("max")
    with pytest.raises(ConfigError, match="'min'.*'max'"):
        tracker.load_state_dict({"mode": "min", "best": 1.0})


def test_pending_bests_undo_falls_back_past_every_best_that_reached_no_storage():
    import threading

    from ckptcore.tracker import PendingBests

    tracker = BestTracker("min")
    bests = PendingBests(tracker, threading.RLock())
    first = bests.record(0.5, improved=True)
    bests.settle(first)  # 0.5 reached storage
    second = bests.record(0.4, improved=True)
    third = bests.record(0.3, improved=True)
    bests.undo(second)  # 0.4 failed while 0.3 is still in flight
    assert tracker.best == 0.3
    bests.undo(third)  # 0.3 failed too: back to the last best that was stored
    assert tracker.best == 0.5
    bests.undo(third)  # a second undo changes nothing
    assert tracker.best == 0.5


def test_a_stored_state_of_another_monitor_is_refused():
    stored = BestTracker("min", monitor="val_loss")
    stored.update(0.05)
    state = stored.state_dict()
    assert state["monitor"] == "val_loss"
    with pytest.raises(ConfigError, match=r"monitor: .*'val_loss'.*'loss'"):
        BestTracker("min", monitor="loss").load_state_dict(state)
    same = BestTracker("min", monitor="val_loss")
    same.load_state_dict(state)
    assert same.best == 0.05
