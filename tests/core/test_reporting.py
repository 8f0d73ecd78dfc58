"""What the engine says at verbose=1 and logs through the ``ckptcore`` logger."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from ckptcore import Checkpointer, ConfigError
from ckptcore.reporting import Reporter, human_size
from ckptcore.retry import RetryPolicy


def _slow_write(seconds: float):
    def write(path: str) -> None:
        time.sleep(seconds)
        np.save(path, np.zeros(1000))  # 8128 bytes

    return write


def test_a_non_blocking_save_says_when_it_finished_with_size_time_and_rate(tmp_path, printed):
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=_slow_write(0.2), async_save=True, verbose=1,
                      printer=printed.append)
    ck.on_epoch_begin(0)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    assert not any("finished" in line for line in printed)  # still writing in the background
    ck.close()
    [line] = [line for line in printed if "finished" in line]
    match = re.fullmatch(r"\nEpoch 1: finished saving checkpoint to (.+) \(8\.1 kB in (\d+\.\d\d) s, ([\d.]+) kB/s\)", line)
    assert match, line
    assert match.group(1) == str(tmp_path / "w-1.npy")
    assert float(match.group(2)) >= 0.2
    assert float(match.group(3)) == pytest.approx(8.128 / float(match.group(2)), rel=0.1)


def test_retention_says_what_it_deleted_and_logs_it(tmp_path, npwrite, printed, caplog):
    caplog.set_level(logging.INFO, logger="ckptcore")
    ck = Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=npwrite, keep_last=2, verbose=1, printer=printed.append)
    for epoch in range(4):
        ck.on_epoch_begin(epoch)
        ck.on_epoch_end(epoch, {"val_loss": 1.0})
    ck.close()
    deleted = [line for line in printed if "deleted" in line]
    assert deleted == [f"\nEpoch 3: deleted {tmp_path / 'w-1.npy'} (retention: keep_last=2)",
                       f"\nEpoch 4: deleted {tmp_path / 'w-2.npy'} (retention: keep_last=2)"]
    logged = [r for r in caplog.records if r.name == "ckptcore" and r.levelno == logging.INFO]
    assert [r.getMessage() for r in logged if "deleted" in r.getMessage()] == [d.strip() for d in deleted]
    assert sum("finished saving checkpoint" in r.getMessage() for r in logged) == 4


def test_commits_are_logged_at_info_even_when_silent(tmp_path, npwrite, printed, caplog):
    caplog.set_level(logging.INFO, logger="ckptcore")
    ck = Checkpointer(str(tmp_path / "w.npy"), write=npwrite, printer=printed.append)
    ck.on_epoch_begin(0)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    ck.close()
    assert printed == []
    assert any(r.levelno == logging.INFO and r.getMessage().startswith("Epoch 1: finished saving checkpoint to")
               for r in caplog.records)


def test_a_slow_save_shows_progress_until_it_is_done(tmp_path, printed, monkeypatch):
    monkeypatch.setattr(Reporter, "slow_after", 0.2)
    monkeypatch.setattr(Reporter, "slow_every", 0.2)
    ck = Checkpointer(str(tmp_path / "w.npy"), write=_slow_write(0.9), verbose=1, printer=printed.append)
    ck.on_epoch_begin(0)
    ck.on_epoch_end(0, {"val_loss": 1.0})
    progress = [line for line in printed if "still saving" in line]
    assert 2 <= len(progress) <= 5, printed
    assert progress[0] == f"\nEpoch 1: still saving checkpoint to {tmp_path / 'w.npy'} (0 s so far)"
    time.sleep(0.5)
    ck.close()
    assert len([line for line in printed if "still saving" in line]) == len(progress)  # stopped with the save
    assert "finished saving" in printed[-1]


def test_retry_lines_name_the_logger(caplog):
    caplog.set_level(logging.WARNING, logger="ckptcore")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        return "ok"

    assert RetryPolicy(retries=2, sleep=lambda s: None).call("uploading 'w.npy' to fsspec", flaky) == "ok"
    [record] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert record.getMessage().startswith("ckptcore: uploading 'w.npy' to fsspec failed (ConnectionError")


def test_human_sizes():
    assert [human_size(n) for n in (0, 999, 1000, 8128, 1_234_567, 5e12)] == [
        "0 B", "999 B", "1.0 kB", "8.1 kB", "1.2 MB", "5.0 TB"]


def test_noun_is_validated(tmp_path, npwrite):
    with pytest.raises(ConfigError, match=r"noun: got ''"):
        Checkpointer(str(tmp_path / "w.npy"), write=npwrite, noun="")
