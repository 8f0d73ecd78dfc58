"""``SaveSchedule``: batch counting that never drifts, epochs, seconds, state round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptcore import ConfigError, SaveSchedule


def _epoch_reports(steps: int, sizes: list[int]) -> list[int]:
    """0-based batch indices reported in an epoch of ``steps`` batches run ``sizes`` at a time.

    Mirrors Keras's ``steps_per_execution``: each hook reports the index of the last batch of the
    execution, and the last execution of the epoch may be shorter.
    """
    indices, done, i = [], 0, 0
    while done < steps:
        done = min(steps, done + sizes[i % len(sizes)])
        indices.append(done - 1)
        i += 1
    return indices


def _run(schedule: SaveSchedule, epochs: list[tuple[int, list[int]]], call_start_epoch: bool):
    """Drive ``schedule`` like the engine does; return the totals at which saves happened."""
    saves, totals = [], []
    for steps, sizes in epochs:
        if call_start_epoch:
            schedule.start_epoch()
        for index in _epoch_reports(steps, sizes):
            before = schedule.batches_run
            schedule.advance(index)
            totals.append((before, schedule.batches_run))
            if schedule.batch_due():
                assert schedule.batch_due(), "a check must not change state"
                schedule.consume()
                assert not schedule.batch_due()
                saves.append(schedule.batches_run)
    return saves, totals


epochs_strategy = st.lists(
    st.tuples(st.integers(1, 40), st.lists(st.integers(1, 12), min_size=1, max_size=5)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 15), epochs=epochs_strategy)
def test_batch_saves_never_drift(n, epochs):
    schedule = SaveSchedule(save_freq=n)
    saves, totals = _run(schedule, epochs, call_start_epoch=True)
    total = sum(steps for steps, _ in epochs)
    assert schedule.batches_run == total, "every batch run is counted exactly once"
    crossing = [after for before, after in totals if after // n > before // n]
    # One save per report that crosses a multiple of N, at the total where it crossed.
    assert saves == crossing
    if all(after - before <= n for before, after in totals):
        assert len(saves) == total // n  # each report crosses at most one multiple


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 10), k=st.integers(1, 10), steps=st.integers(1, 30), epochs=st.integers(1, 5))
def test_fixed_execution_size(n, k, steps, epochs):
    schedule = SaveSchedule(save_freq=n)
    saves, _ = _run(schedule, [(steps, [k])] * epochs, call_start_epoch=True)
    assert len(saves) == len({t // n for t in saves})  # never twice in one window
    if k <= n:
        assert len(saves) == (steps * epochs) // n
    for t in saves:
        assert t % n < k, f"a save at total {t} came later than the execution that crossed it"


def test_steps_per_execution_example():
    # k=3 reports indices 2, 5, 8; N=4 is crossed at totals 6 (4), 9 (8), 12 (12), 18 (16).
    schedule = SaveSchedule(save_freq=4)
    saves, _ = _run(schedule, [(9, [3]), (9, [3])], call_start_epoch=True)
    assert saves == [6, 9, 12, 18]


def test_restarted_indices_without_start_epoch_are_counted():
    # A hand-written loop that never calls on_epoch_begin: indices 2, 2, 2 with k=3 each mean
    # three more batches, not one.
    schedule = SaveSchedule(save_freq=3)
    saves = []
    for _ in range(4):
        schedule.advance(2)
        if schedule.batch_due():
            schedule.consume()
            saves.append(schedule.batches_run)
    assert schedule.batches_run == 12
    assert saves == [3, 6, 9, 12]


def test_epoch_schedule():
    schedule = SaveSchedule("epoch", every_n_epochs=3)
    assert [e for e in range(10) if schedule.epoch_due(e)] == [2, 5, 8]
    assert not schedule.uses_batches
    assert not schedule.batch_due()
    assert not SaveSchedule(5).epoch_due(0)
    assert SaveSchedule(5).uses_batches


def test_time_schedule_with_a_fake_clock(clock):
    schedule = SaveSchedule("epoch", every_seconds=60, clock=clock)
    assert schedule.uses_batches
    assert not schedule.time_due()
    clock.tick(59.9)
    assert not schedule.time_due()
    clock.tick(0.1)
    assert schedule.time_due()
    assert schedule.time_due(), "a check must not change state"
    schedule.consume()
    assert not schedule.time_due()
    clock.tick(60)
    assert schedule.time_due()
    assert not SaveSchedule("epoch", clock=clock).time_due()


def test_state_dict_round_trip():
    first = SaveSchedule(save_freq=4)
    _run(first, [(10, [3])], call_start_epoch=True)
    state = first.state_dict()
    assert state == {"save_freq": 4, "batches_run": 10, "consumed_batch_windows": 2}
    second = SaveSchedule(save_freq=4)
    second.load_state_dict(state)
    second.start_epoch()
    saves = []
    for index in (1, 3, 5):  # totals 12, 14, 16
        second.advance(index)
        if second.batch_due():
            second.consume()
            saves.append(second.batches_run)
    assert saves == [12, 16]


def test_state_with_another_frequency_starts_a_fresh_window():
    schedule = SaveSchedule(save_freq=5)
    schedule.load_state_dict({"save_freq": 3, "batches_run": 7, "consumed_batch_windows": 2})
    assert schedule.batches_run == 7
    assert not schedule.batch_due()  # 7 // 5 = 1 window, already behind us
    schedule.advance(2)  # +3 -> 10
    assert schedule.batch_due()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"save_freq": 0}, "save_freq"),
        ({"save_freq": 1.0}, "save_freq"),
        ({"save_freq": True}, "save_freq"),
        ({"save_freq": "steps"}, "save_freq"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"every_n_epochs": 1.5}, "every_n_epochs"),
        ({"every_seconds": 0}, "every_seconds"),
        ({"every_seconds": float("inf")}, "every_seconds"),
        ({"every_seconds": True}, "every_seconds"),
    ],
)
def test_bad_arguments(kwargs, named):
    with pytest.raises(ConfigError) as info:
        SaveSchedule(**kwargs)
    assert named in str(info.value)
    assert "allowed" in str(info.value)


def test_an_index_past_the_epoch_end_counts_up_to_the_end_only():
    # steps_per_execution=3 over 10 batches: Keras reports 2, 5, 8 and then 11 for the last one.
    schedule = SaveSchedule(save_freq=5)
    assert [schedule.advance(i, steps=10) for i in (2, 5, 8, 11)] == [2, 5, 8, 9]
    assert schedule.batches_run == 10


def test_indices_past_a_steps_that_is_too_small_go_on_counting():
    schedule = SaveSchedule(save_freq=5)
    assert [schedule.advance(i, steps=3) for i in range(5)] == [0, 1, 2, 3, 4]
    assert schedule.batches_run == 5
