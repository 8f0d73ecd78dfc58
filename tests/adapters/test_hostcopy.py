"""Large copies of a snapshot spread over cores: every byte in place once ``wait`` returns."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from ckptcore.adapters.keras import hostcopy
from ckptcore.adapters.keras.hostcopy import PARALLEL_MIN, ParallelCopy
from ckptcore.adapters.keras.snapshot import KerasSnapshot

pytestmark = pytest.mark.keras


@pytest.fixture
def two_threads(monkeypatch):
    """At least two copying threads, even where this process may use one core only."""
    monkeypatch.setattr(hostcopy, "workers", lambda: 2)


@pytest.mark.parametrize("dtype", ["float32", "int64", "float16", "uint8"])
def test_every_byte_of_a_large_copy_is_in_place_after_wait(two_threads, dtype):
    rng = np.random.default_rng(0)
    count = (3 * PARALLEL_MIN) // np.dtype(dtype).itemsize + 7  # slices of unequal length
    source = rng.integers(0, 120, size=count).astype(dtype).reshape(-1, 1)
    target = np.zeros_like(source)
    copies = ParallelCopy()
    copies.copy(target, source)
    copies.wait()
    np.testing.assert_array_equal(target, source)
    source += 1  # the target is a copy, not a view
    assert not np.shares_memory(target, source)
    assert not np.array_equal(target, source)


def test_small_and_strided_arrays_are_copied_at_once(two_threads):
    copies = ParallelCopy()
    small_target, small = np.zeros(10), np.arange(10.0)
    copies.copy(small_target, small)
    big = np.arange(2 * PARALLEL_MIN // 4, dtype=np.float32).reshape(2, -1)
    strided = big[:, ::2]  # not contiguous: no flat slices of it
    strided_target = np.zeros_like(strided)
    copies.copy(strided_target, strided)
    np.testing.assert_array_equal(small_target, small)  # before any wait
    np.testing.assert_array_equal(strided_target, strided)
    copies.wait()


def test_mismatched_arrays_are_refused_at_once_naming_both():
    with pytest.raises(ValueError, match=r"got shape \(5,\).*target's shape \(4,\)"):
        ParallelCopy().copy(np.zeros(4, np.float32), np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="dtype float64.*dtype float32"):
        ParallelCopy().copy(np.zeros(4, np.float32), np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="shape"):  # no broadcasting either
        ParallelCopy().copy(np.zeros((2, 3), np.float32), np.zeros(3, np.float32))


def test_a_failed_slice_is_raised_by_wait_after_the_others_finish(two_threads, monkeypatch):
    finished = []

    def one_fails_one_is_slow(target, source):
        if source[0] == 1:
            raise OSError("this slice failed")
        time.sleep(0.3)
        np.copyto(target, source)
        finished.append(target.nbytes)

    monkeypatch.setattr(hostcopy, "_copy_slice", one_fails_one_is_slow)
    source = np.zeros(2 * PARALLEL_MIN, np.uint8)
    source[PARALLEL_MIN:] = 1  # two slices: the first slow, the second failing at once
    copies = ParallelCopy()
    copies.copy(np.empty_like(source), source)
    with pytest.raises(OSError, match="this slice failed"):
        copies.wait()
    assert finished == [PARALLEL_MIN]  # the slow slice was done before wait raised
    copies.wait()  # nothing left pending


def test_a_snapshot_of_large_variables_holds_the_state_it_was_taken_at(tmp_path, two_threads, monkeypatch):
    copied = []

    def slow_slice(target, source):  # a slow core: the snapshot must still wait for it
        time.sleep(0.2)
        np.copyto(target, source)
        copied.append(target.nbytes)

    monkeypatch.setattr(hostcopy, "_copy_slice", slow_slice)
    keras.utils.set_random_seed(3)
    width = 1100  # a 4.8 MB kernel and two Adam slots as large: copied on the pool
    model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(width), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(8, width)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    assert model.layers[0].kernel.shape[0] * width * 4 >= PARALLEL_MIN
    at_snapshot = [np.array(v) for v in model.weights + model.optimizer.variables]

    write = KerasSnapshot(lambda: model, "keras", sync_write=model.save)()
    assert sum(copied) >= 3 * PARALLEL_MIN  # the kernel and its two slots, done on the pool
    done = len(copied)
    for variable in model.weights + model.optimizer.variables:  # training moves on at once
        variable.assign(np.full(variable.shape, 7, keras.backend.standardize_dtype(variable.dtype)))
    path = str(tmp_path / "large.keras")
    write(path)
    assert len(copied) == done  # nothing was still copying after the snapshot returned
    loaded = keras.saving.load_model(path)
    got = [np.array(v) for v in loaded.weights + loaded.optimizer.variables]
    assert len(got) == len(at_snapshot)
    for a, b in zip(got, at_snapshot):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_copies_on_a_pool_of_its_own(two_threads):
    import os

    source = np.arange(2 * PARALLEL_MIN, dtype=np.uint8)
    copies = ParallelCopy()
    copies.copy(np.empty_like(source), source)  # the parent's pool exists now
    copies.wait()
    pid = os.fork()
    if pid == 0:  # the child: the parent's pool threads are not here
        code = 1
        try:
            target = np.zeros_like(source)
            child = ParallelCopy()
            child.copy(target, source)
            child.wait()
            code = 0 if np.array_equal(target, source) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's copy did not finish in 30 s")
