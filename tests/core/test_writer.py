"""``BackgroundWriter``: order, back-pressure, errors re-raised with the checkpoint named, close."""

from __future__ import annotations

import logging
import threading

import pytest

from ckptcore import BackgroundWriter, CheckpointSaveError, ConfigError

HANG_GUARD = 30  # seconds; only reached when the code under test is broken


def test_jobs_run_in_order_on_a_background_thread():
    writer = BackgroundWriter(max_pending=3)
    ran: list[tuple[int, str]] = []
    for i in range(6):
        writer.submit(f"ck-{i}", lambda i=i: ran.append((i, threading.current_thread().name)))
    writer.wait()
    assert [i for i, _ in ran] == list(range(6))
    assert {name for _, name in ran} == {"ckptcore-writer"}
    assert writer.pending == 0
    writer.close()


def test_back_pressure_second_submit_waits_for_the_first():
    writer = BackgroundWriter(max_pending=1)
    second_started, second_returned = threading.Event(), threading.Event()
    order: list[str] = []
    observed: list[bool] = []

    def first_job() -> None:
        assert second_started.wait(HANG_GUARD)
        # With back-pressure the second submit cannot return while this job runs.
        observed.append(second_returned.wait(0.3))
        order.append("first finished")

    def submit_second() -> None:
        second_started.set()
        writer.submit("ck-2", lambda: order.append("second ran"))
        order.append("second submit returned")
        second_returned.set()

    writer.submit("ck-1", first_job)
    helper = threading.Thread(target=submit_second)
    helper.start()
    helper.join(HANG_GUARD)
    writer.close()
    assert observed == [False]
    assert order.index("first finished") < order.index("second submit returned")
    assert "second ran" in order


def test_a_failure_is_reraised_on_the_next_call_naming_the_checkpoint():
    writer = BackgroundWriter()
    writer.submit("runs/w-3.npy", lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(CheckpointSaveError) as info:
        writer.wait()
    assert "runs/w-3.npy" in str(info.value) and "disk full" in str(info.value)
    assert info.value.checkpoint == "runs/w-3.npy"
    assert isinstance(info.value.__cause__, OSError)
    writer.check()  # reported once
    writer.close()


def test_a_failure_surfaces_on_submit_and_on_close():
    writer = BackgroundWriter(max_pending=1)
    ran: list[str] = []
    writer.submit("a.npy", lambda: (_ for _ in ()).throw(ValueError("bad state")))
    # The second submit waits for the first save's slot, then reports its failure instead of
    # queueing more work behind it.
    with pytest.raises(CheckpointSaveError, match="'a.npy'.*bad state"):
        writer.submit("b.npy", lambda: ran.append("b"))
    writer.submit("c.npy", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(CheckpointSaveError, match="'c.npy'.*boom"):
        writer.close()
    assert ran == []


def test_close_finishes_pending_saves_then_refuses_new_ones():
    writer = BackgroundWriter(max_pending=4)
    gate = threading.Event()
    done: list[int] = []
    writer.submit("a", lambda: (gate.wait(HANG_GUARD), done.append(1)))
    writer.submit("b", lambda: done.append(2))
    assert done == []
    gate.set()
    writer.close()
    assert done == [1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("c", lambda: None)
    writer.close()  # idempotent


def test_close_without_raising_logs_every_failure(caplog):
    writer = BackgroundWriter(max_pending=2)
    writer.submit("a.npy", lambda: 1 / 0)
    writer.submit("b.npy", lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="ckptcore"):
        writer.close(raise_errors=False)
    text = caplog.text
    assert "'a.npy'" in text and "'b.npy'" in text


@pytest.mark.parametrize("value", [0, -1, 1.5, True, None])
def test_bad_max_pending(value):
    with pytest.raises(ConfigError, match="max_pending"):
        BackgroundWriter(max_pending=value)


def test_report_takes_an_earlier_failure_and_the_new_save_goes_ahead():
    writer = BackgroundWriter(max_pending=1)

    def failing() -> None:
        raise OSError("disk gone")

    writer.submit("ck-1", failing)
    # With one slot, ck-2 waits for ck-1 to fail, so the failure is there to report.
    reported: list[CheckpointSaveError] = []
    ran: list[str] = []
    writer.submit("ck-2", lambda: ran.append("ck-2"), report=reported.append)
    writer.close()
    assert [e.checkpoint for e in reported] == ["ck-1"]
    assert ran == ["ck-2"]

