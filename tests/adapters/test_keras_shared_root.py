"""Two ModelCheckpoint callbacks in one fit, writing to the same root (a best file and one per epoch)."""

from __future__ import annotations


from keras_helpers import files, manifest_entries
from typer.testing import CliRunner

from ckptcore.adapters.keras import ModelCheckpoint
from ckptcore.cli import app
from ckptcore.digest import bytes_digest


def test_two_callbacks_on_one_root_keep_both_runs_in_the_manifest(tmp_path, make_model, data):
    x, y = data
    best = ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", save_best_only=True, verbose=0)
    every = ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"), keep_last=2, verbose=0)
    make_model().fit(x, y, batch_size=8, epochs=3, callbacks=[best, every], verbose=0)

    entries = manifest_entries(tmp_path)
    assert sorted(e["path"] for e in entries) == ["best.keras", "m-2.keras", "m-3.keras"]
    assert files(tmp_path) == ["best.keras", "m-2.keras", "m-3.keras"]
    assert len({e["run_id"] for e in entries}) == 2
    for entry in entries:
        assert entry["digest"] == bytes_digest((tmp_path / entry["path"]).read_bytes())
    assert [e["path"] for e in entries if e["is_best"]] == ["best.keras"]
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
