"""What the ``ckptcore`` command prints for names a crafted (or merely unusual) manifest holds,
and what ``best``/``latest`` do with an entry nothing vouches for."""

from __future__ import annotations

import os
import re

import numpy as np
from typer.testing import CliRunner

from ckptcore import MANIFEST_NAME, Checkpointer, Manifest
from ckptcore.backends.local import LocalBackend
from ckptcore.cli import app
from ckptcore.commit import load_manifest
from ckptcore.manifest import ManifestEntry
from ckptcore.digest import bytes_digest

runner = CliRunner()


def _write(path: str) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.arange(4.0))


def _crafted_root(tmp_path, names: list[str]) -> str:
    """A root whose manifest lists ``names`` (each a real file with its real digest)."""
    root = str(tmp_path / "run")
    os.makedirs(root)
    entries = []
    for epoch, name in enumerate(names, 1):
        data = f"checkpoint {epoch}".encode()
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(data)
        entries.append(ManifestEntry(name=name, path=name, epoch=epoch, monitor="loss", monitor_value=1 / epoch,
                                     size=len(data), digest=bytes_digest(data)))
    LocalBackend(root).write_bytes(MANIFEST_NAME, Manifest(entries=entries).to_json().encode())
    return root


def test_the_table_shows_bracketed_names_as_they_are_not_as_markup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short root: a title wider than 60 columns would wrap
    root = "run[bold]"
    with Checkpointer(os.path.join(root, "m[best]-{epoch}.npy"), write=_write, monitor="loss") as ck:
        for epoch, loss in enumerate([0.5, 0.4]):
            ck.on_epoch_end(epoch, {"loss": loss})
    for columns in ("200", "60"):
        result = runner.invoke(app, ["ls", root], env={"COLUMNS": columns})
        assert result.exit_code == 0, result.output
        assert "m[best]-1.npy" in result.stdout and "m[best]-2.npy" in result.stdout
        assert "run[bold]" in result.stdout  # the title (the root) too


def test_control_characters_in_names_are_shown_escaped_and_forge_no_line(tmp_path):
    forged = "c\nok         fake.npy"
    root = _crafted_root(tmp_path, ["a\x1b[2Jb.npy", forged])
    for command in (["verify", root], ["ls", root], ["latest", root], ["prune", root, "--keep-last", "1", "--dry-run"]):
        result = runner.invoke(app, command, env={"COLUMNS": "60"})
        assert result.exit_code == 0, result.output
        output = result.stdout + result.stderr
        assert "\x1b" not in output, command
        assert not any(line.startswith("ok         fake") for line in output.splitlines()), command
    verified = runner.invoke(app, ["verify", root]).stdout
    assert "a\\x1b[2Jb.npy" in verified and "c\\nok         fake.npy" in verified
    assert runner.invoke(app, ["latest", root]).stdout.strip() == os.path.join(root, "c\\nok         fake.npy")


def _without_digest(tmp_path, data: bytes | None) -> str:
    root = str(tmp_path / "run")
    with Checkpointer(os.path.join(root, "m-{epoch}.npy"), write=_write, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 0.5})
    backend = LocalBackend(root)
    manifest = load_manifest(backend)
    entry = manifest.entries[0]
    entry.digest = None
    backend.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    if data is not None:
        with open(os.path.join(root, entry.path), "wb") as fh:
            fh.write(data)
    return root


def test_best_and_latest_exit_1_on_an_entry_without_a_digest(tmp_path):
    root = _without_digest(tmp_path, None)
    for command in ("best", "latest"):
        result = runner.invoke(app, [command, root])
        assert result.exit_code == 1, (command, result.output)
        assert result.stdout == ""  # no path for a script to load
        assert "UNVERIFIED" in result.stderr and "no digest" in result.stderr
        assert runner.invoke(app, [command, root, "--no-verify"]).exit_code == 0


def test_a_size_that_differs_is_bad_even_without_a_digest(tmp_path):
    root = _without_digest(tmp_path, b"garbage")
    result = runner.invoke(app, ["verify", root])
    assert result.exit_code == 1
    assert result.stderr.startswith("BAD") and "7 bytes != manifest" in result.stderr
    assert "1 bad" in result.stdout
    best = runner.invoke(app, ["best", root])
    assert best.exit_code == 1 and "is BAD" in best.stderr


def test_plot_of_the_current_directory_is_named_after_it_not_hidden(tmp_path, monkeypatch):
    root = _crafted_root(tmp_path, ["m-1.npy", "m-2.npy"])
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["plot", "."])
    assert result.exit_code == 0, result.output
    assert os.path.isfile(os.path.join(root, "run-checkpoints.png"))
    assert not [name for name in os.listdir(root) if name.endswith(".png") and name.startswith(".")]
    monkeypatch.chdir(os.path.join(root, os.pardir))
    assert runner.invoke(app, ["plot", "run/"]).exit_code == 0
    assert os.path.isfile(tmp_path / "run-checkpoints.png")


def test_piped_output_never_cuts_a_name(tmp_path):
    name = "n" * 240 + ".npy"
    root = _crafted_root(tmp_path, [name, "m-2.npy"])
    result = runner.invoke(app, ["ls", root], env={"COLUMNS": None})  # not a terminal, no COLUMNS
    assert result.exit_code == 0, result.output
    assert name in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < len(name) + 100  # no padding either


def _two_monitors(tmp_path) -> str:
    root = str(tmp_path / "run")
    for monitor, template in (("val_sparse_categorical_accuracy", "digits-{epoch:02d}.keras"),
                              ("val_loss", "other-model-{epoch:02d}.npy")):
        with Checkpointer(os.path.join(root, template), write=_write, monitor=monitor) as ck:
            for epoch in range(3):
                ck.on_epoch_end(epoch, {monitor: 0.9 + epoch / 100})
    return root


def test_a_root_of_two_runs_and_long_monitor_names_fits_60_columns_with_whole_numbers(tmp_path):
    root = _two_monitors(tmp_path)
    result = runner.invoke(app, ["ls", root], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 60, result.stdout
    for value in ("0.90000", "0.91000", "0.92000"):
        assert sum(value in line for line in lines) == 2, result.stdout  # one per run, never cut
    assert "monitors: m1 val_loss, m2 val_sparse_categorical_accuracy" in result.stdout
    assert "m2=0.92000" in result.stdout


def test_a_table_that_cannot_fit_grows_instead_of_cutting_numbers(tmp_path):
    root = _two_monitors(tmp_path)
    result = runner.invoke(app, ["ls", root], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "=0.9" in line]
    assert len(rows) == 6, result.stdout
    for row in rows:  # the value, the size and the age whole: the table is wider than 40 instead
        assert re.search(r" m[12]=0\.9[0-2]000 .* \d+ B +\d+s$", row), row
