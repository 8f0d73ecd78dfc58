"""Fixtures shared by the core unit tests: a real NumPy writer, a fake clock, a printer."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from ckptcore.digest import bytes_digest


class NumpyWriter:
    """A ``write(path)`` that saves a small array with ``np.save`` and remembers each call.

    ``value`` is written into the array, so a test can tell checkpoints apart by content.
    """

    def __init__(self) -> None:
        self.value = 0.0
        self.paths: list[str] = []
        self.threads: list[str] = []

    def __call__(self, path: str) -> None:
        self.paths.append(path)
        self.threads.append(threading.current_thread().name)
        np.save(path, np.full(4, self.value, dtype=np.float64))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def npwrite() -> NumpyWriter:
    return NumpyWriter()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def printed() -> list[str]:
    """A list to pass as ``printer=printed.append``."""
    return []


def digest_of(path: str) -> str:
    with open(path, "rb") as fh:
        return bytes_digest(fh.read())


def files_under(root: str) -> set[str]:
    """Every file under ``root`` but ckptcore's own, as '/'-separated paths relative to it."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        if os.path.abspath(dirpath) == os.path.abspath(root):
            dirs[:] = [d for d in dirs if d != ".ckptcore"]  # ckptcore's own files
        for name in files:
            out.add(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return out


@pytest.fixture
def helpers():
    """Small helpers for assertions on the checkpoint root."""

    class _Helpers:
        digest = staticmethod(digest_of)
        files = staticmethod(files_under)

    return _Helpers
