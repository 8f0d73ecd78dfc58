"""The benchmarks' own arithmetic: which saves count as made while the writer kept up."""

from __future__ import annotations

import pytest

from benchmarks.limits import writer_was_idle
from benchmarks.report import keeps_up


def test_a_save_counts_as_idle_only_when_every_earlier_write_had_ended():
    # Hooks start at 0, 10, 20, 30; writes end at 5 (before the 2nd save), 25 (after the
    # 3rd save began) and 28 (before the 4th).
    assert writer_was_idle([0.0, 10.0, 20.0, 30.0], [5.0, 25.0, 28.0, 40.0]) == [True, True, False, True]
    assert writer_was_idle([0.0, 1.0], []) == [True, False]


def _keeps_up_record(blocked, idle, reuse):
    return {"scenario": "keeps_up", "blocked_s": blocked, "writer_idle": idle, "host_copy_reuse_s": reuse}


def test_keeps_up_leaves_out_each_fits_first_save_and_saves_that_waited():
    records = [
        _keeps_up_record([9.0, 0.020, 0.5, 0.030], [True, True, False, True], [0.010, 0.012]),
        _keeps_up_record([8.0, 0.040], [True, True], [0.014]),
        {"scenario": "b2b", "blocked_s": [1.0]},
    ]
    blocked, reuse, counted = keeps_up(records)
    assert counted == 3  # 0.020, 0.030 and 0.040: not the first saves, not the one that waited
    assert blocked == pytest.approx(0.030)
    assert reuse == pytest.approx(0.012)


def test_keeps_up_is_none_without_such_fits():
    assert keeps_up([{"scenario": "b2b", "blocked_s": [1.0]}]) == (None, None, 0)
