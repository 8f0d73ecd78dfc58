"""Several runs writing to one checkpoint root: the manifest keeps every run's checkpoints."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
from typer.testing import CliRunner

from ckptcore import Checkpointer
from ckptcore.backends.local import LocalBackend
from ckptcore.cli import app
from ckptcore.commit import Committer, load_manifest
from ckptcore.manifest import MANIFEST_NAME, Manifest, ManifestEntry, merge_manifests
from ckptcore.retention import RetentionPolicy
from ckptcore.digest import bytes_digest

LOSSES = [0.9, 0.5, 0.7, 0.3, 0.4]
ACCS = [0.2, 0.6, 0.5, 0.55, 0.8]


def writer(value: list[float]):
    """A real np.save writer (through a handle: np.save appends '.npy' to other names)."""

    def write(path: str) -> None:
        with open(path, "wb") as fh:
            np.save(fh, np.full(4, value[0]))

    return write


def two_runs(root, best_options=None, epoch_options=None, epochs=len(LOSSES)):
    """A best-only checkpointer on loss and a per-epoch one, fed the same epochs in turn."""
    value = [0.0]
    best = Checkpointer(str(root / "best.npy"), write=writer(value), monitor="loss",
                        save_best_only=True, verbose=0, **(best_options or {}))
    every = Checkpointer(str(root / "m-{epoch}.npy"), write=writer(value), monitor="acc",
                         mode="max", verbose=0, **(epoch_options or {}))
    for epoch in range(epochs):
        value[0] = float(epoch)
        logs = {"loss": LOSSES[epoch], "acc": ACCS[epoch]}
        best.on_epoch_end(epoch, logs)
        every.on_epoch_end(epoch, logs)
    best.close()
    every.close()
    return best, every


def stored(root) -> Manifest:
    return load_manifest(LocalBackend(str(root)))


def assert_digests_match(root, manifest: Manifest) -> None:
    for entry in manifest.entries:
        data = (root / entry.path).read_bytes()
        assert entry.digest == bytes_digest(data) and entry.size == len(data), entry.path


def test_both_runs_checkpoints_are_listed_with_their_digests(tmp_path):
    best, every = two_runs(tmp_path)
    manifest = stored(tmp_path)
    by_run = {run: sorted(e.path for e in manifest.entries if e.run_id == run) for run in manifest.runs}
    assert by_run == {best.run_id: ["best.npy"], every.run_id: [f"m-{i}.npy" for i in range(1, 6)]}
    assert manifest.runs == [best.run_id, every.run_id]
    assert_digests_match(tmp_path, manifest)
    # best.npy holds the epoch-4 array (loss 0.3, the lowest).
    assert np.load(tmp_path / "best.npy").tolist() == [3.0] * 4


def test_each_run_keeps_its_own_best_flag(tmp_path):
    best, every = two_runs(tmp_path)
    flagged = {e.run_id: e.path for e in stored(tmp_path).entries if e.is_best}
    assert flagged == {best.run_id: "best.npy", every.run_id: "m-5.npy"}  # acc 0.8 is the highest
    assert best.best().endswith("best.npy") and every.best().endswith("m-5.npy")


def test_retention_of_one_run_never_removes_the_others(tmp_path):
    best, every = two_runs(tmp_path, epoch_options={"keep_last": 2})
    manifest = stored(tmp_path)
    assert sorted(e.path for e in manifest.entries) == ["best.npy", "m-4.npy", "m-5.npy"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npy") == ["best.npy", "m-4.npy", "m-5.npy"]
    assert_digests_match(tmp_path, manifest)


def test_retention_of_the_best_run_leaves_the_epoch_run_alone(tmp_path):
    value = [1.0]
    other = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=writer(value), verbose=0)
    for epoch in range(3):
        other.on_epoch_end(epoch, {})
    other.close()
    pruning = Checkpointer(str(tmp_path / "b-{epoch}.npy"), write=writer(value), monitor="loss",
                           keep_last=1, verbose=0)
    for epoch in range(3):
        pruning.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    pruning.close()
    assert sorted(e.path for e in stored(tmp_path).entries) == ["b-3.npy", "m-1.npy", "m-2.npy", "m-3.npy"]
    assert all((tmp_path / f"m-{i}.npy").exists() for i in (1, 2, 3))


def test_cli_verify_and_ls_pass_on_the_shared_root(tmp_path):
    two_runs(tmp_path, epoch_options={"keep_last": 3})
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["ls", str(tmp_path)])
    assert listing.exit_code == 0 and "best.npy" in listing.output and "m-5.npy" in listing.output


def test_resume_restores_the_state_of_the_run_it_continues(tmp_path):
    best, every = two_runs(tmp_path)
    manifest = stored(tmp_path)
    assert manifest.latest().run_id == every.run_id  # the per-epoch run wrote last
    assert manifest.states[best.run_id]["tracker"]["best"] == 0.3
    assert manifest.states[every.run_id]["tracker"]["best"] == 0.8
    assert manifest.tracker == manifest.states[every.run_id]["tracker"]
    resumed = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=writer([9.0]), monitor="acc",
                           mode="max", resume=True, verbose=0)
    assert resumed.run_id == every.run_id and resumed.tracker.best == 0.8
    resumed.close()


def test_top_level_state_follows_the_latest_entry_when_the_other_run_closes_last(tmp_path):
    value = [0.0]
    every = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=writer(value), monitor="acc",
                         mode="max", verbose=0)
    best = Checkpointer(str(tmp_path / "best.npy"), write=writer(value), monitor="loss",
                        save_best_only=True, verbose=0)
    best.on_epoch_end(0, {"loss": 0.5})
    every.on_epoch_end(0, {"acc": 0.7})
    every.close()
    best.close()  # writes last, but the latest checkpoint is the per-epoch run's
    manifest = stored(tmp_path)
    assert manifest.latest().run_id == every.run_id
    assert manifest.tracker["best"] == 0.7


def test_a_run_replacing_another_runs_file_wins_and_the_other_entry_goes(tmp_path):
    first = Checkpointer(str(tmp_path / "w.npy"), write=writer([1.0]), verbose=0)
    first.on_epoch_end(0, {})
    second = Checkpointer(str(tmp_path / "w.npy"), write=writer([2.0]), verbose=0)
    first.on_epoch_end(1, {})  # the first run writes again after the second opened the root
    second.on_epoch_end(0, {})
    first.close()
    second.close()
    manifest = stored(tmp_path)
    assert [(e.path, e.run_id) for e in manifest.entries] == [("w.npy", second.run_id)]
    assert_digests_match(tmp_path, manifest)


def test_committers_in_threads_lose_no_entry(tmp_path):
    runs = [Checkpointer(str(tmp_path / f"r{i}-{{epoch}}.npy"), write=writer([float(i)]), verbose=0)
            for i in range(3)]
    start = threading.Barrier(len(runs))

    def train(ck: Checkpointer) -> None:
        start.wait()
        for epoch in range(8):
            ck.on_epoch_end(epoch, {})

    threads = [threading.Thread(target=train, args=(ck,)) for ck in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ck in runs:
        ck.close()
    manifest = stored(tmp_path)
    assert len(manifest.entries) == 24 and len(manifest.runs) == 3
    assert_digests_match(tmp_path, manifest)


class ReadTogether(LocalBackend):
    """A local backend whose manifest reads wait (up to a timeout) until two callers have read.

    Two committers that could read the manifest at the same time both get past the barrier
    before either writes: without the per-location lock, one write would drop the other's entry.
    """

    barrier = threading.Barrier(2, timeout=0.5)

    def read_bytes(self, relpath: str) -> bytes:
        data = super().read_bytes(relpath)
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            self.barrier.reset()
        return data


def test_two_committers_on_one_location_serialise_their_read_merge_write(tmp_path):
    def committer(run: str) -> Committer:
        return Committer([ReadTogether(str(tmp_path))], RetentionPolicy(), "min", run,
                         state=lambda: ({}, {}))

    LocalBackend(str(tmp_path)).write_bytes(MANIFEST_NAME, Manifest().to_json().encode())
    runs = [committer("run-a"), committer("run-b")]

    def save(ck: Committer) -> None:
        path = f"{ck.run_id}.npy"
        ck.save(path, writer([1.0]), ManifestEntry(name=path, path=path, run_id=ck.run_id))

    threads = [threading.Thread(target=save, args=(ck,)) for ck in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each save wrote its record before its commit: neither lost the other's.
    assert sorted(r.path for r in stored(tmp_path).pending) == ["run-a.npy", "run-b.npy"]
    for ck in runs:
        ck.close()
    assert sorted(e.path for e in stored(tmp_path).entries) == ["run-a.npy", "run-b.npy"]


def test_an_unreadable_stored_manifest_is_kept_aside_not_clobbered(tmp_path, caplog):
    ck = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=writer([1.0]), verbose=0)
    tmp_path.joinpath(MANIFEST_NAME).write_text("{not json")  # spoiled after the engine opened
    with caplog.at_level(logging.ERROR, logger="ckptcore"):
        ck.on_epoch_end(0, {})
    ck.close()
    aside = [p for p in tmp_path.joinpath(MANIFEST_NAME).parent.iterdir()
             if p.name.startswith("manifest.json.unreadable-")]
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert "not valid JSON" in caplog.text and aside[0].name in caplog.text
    assert [e.path for e in stored(tmp_path).entries] == ["m-1.npy"]


def test_merge_keeps_stored_state_of_other_runs_and_takes_ours_for_our_run():
    other = ManifestEntry(name="a", path="a", run_id="other", created_at="2024-01-01T00:00:02+00:00", is_best=True)
    ours_old = ManifestEntry(name="b", path="b", run_id="me", created_at="2024-01-01T00:00:01+00:00")
    pruned = ManifestEntry(name="c", path="c", run_id="me", created_at="2024-01-01T00:00:00+00:00")
    stored_copy = Manifest(entries=[pruned, ours_old, other], runs=["me", "other"],
                           states={"other": {"tracker": {"best": 1}, "schedule": {}}})
    ours = Manifest(entries=[ours_old], runs=["me", "new"], tracker={"best": 2})
    merged = merge_manifests(ours, stored_copy, "me", set())
    assert [e.path for e in merged.entries] == ["b", "a"]  # c was pruned by its own run
    assert merged.runs == ["me", "other", "new"] and merged.entries[1].is_best
    assert merged.states["me"]["tracker"] == {"best": 2} and merged.tracker == {"best": 1}
    json.loads(merged.to_json())


def test_two_checkpointers_resuming_on_one_root_each_continue_their_own_run(tmp_path):
    best, every = two_runs(tmp_path)
    value = [0.0]
    best2 = Checkpointer(str(tmp_path / "best.npy"), write=writer(value), monitor="loss",
                         save_best_only=True, resume=True)
    every2 = Checkpointer(str(tmp_path / "m-{epoch}.npy"), write=writer(value), monitor="acc",
                          mode="max", resume=True)
    assert best2.run_id == best.run_id and every2.run_id == every.run_id
    assert best2.tracker.best == min(LOSSES)
    assert every2.tracker.best == max(ACCS)
    best2.close()
    every2.close()
