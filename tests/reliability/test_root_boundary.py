"""The root boundary: nothing ckptcore reads, writes, renames or deletes is outside the root.

A local root holds a symbolic link ``link -> ../outside`` and a manifest with entries under
``link/`` (or naming links): ``prune``, a resumed ``Checkpointer`` with retention, ``verify``,
the loaders and a save must neither touch nor vouch for anything outside. The root itself may
be a link.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptcore import Checkpointer, CheckpointSaveWarning, ManifestEntry, UnsafePathError
from ckptcore.backends.local import LocalBackend
from ckptcore.cli import app
from ckptcore.commit import load_manifest
from ckptcore.manifest import MANIFEST_NAME
from ckptcore.digest import bytes_digest

runner = CliRunner()


def _write(path: str) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.arange(4.0))


def _snapshot(directory) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (links not followed)."""
    out = {}
    for dirpath, dirs, files in os.walk(directory):
        for name in [*files, *dirs]:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, directory)] = b"<dir>" if os.path.isdir(full) else open(full, "rb").read()
    return out


@pytest.fixture
def trap(tmp_path):
    """``(root, outside)``: a root of three real checkpoints plus manifest entries that lead out.

    ``outside`` holds ``precious.txt`` and ``sub/data.bin``; the root holds ``link -> ../outside``
    and ``evil.npy -> ../outside/precious.txt``; the manifest lists ``link/precious.txt``,
    ``link/sub`` and ``evil.npy`` as the oldest checkpoints of the run, with their real digest.
    """
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "precious.txt").write_bytes(b"do not delete")
    (outside / "sub" / "data.bin").write_bytes(b"\x00" * 64)
    root = tmp_path / "root"
    with Checkpointer(str(root / "m-{epoch}.npy"), write=_write, monitor="loss") as ck:
        for epoch in range(3):
            ck.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10})
    os.symlink("../outside", root / "link")
    os.symlink("../outside/precious.txt", root / "evil.npy")
    backend = LocalBackend(str(root))
    manifest = load_manifest(backend)
    run = manifest.latest().run_id
    precious = bytes_digest(b"do not delete")
    crafted = [
        ManifestEntry(name="precious.txt", path="link/precious.txt", digest=precious, size=13, run_id=run,
                      backends=["local"], created_at="2020-01-01T00:00:00+00:00"),
        ManifestEntry(name="sub", path="link/sub", run_id=run, created_at="2020-01-01T00:00:01+00:00",
                      digest="blake3:" + "0" * 64, backends=["local"]),
        ManifestEntry(name="evil.npy", path="evil.npy", digest=precious, size=13, run_id=run,
                      backends=["local"], created_at="2020-01-01T00:00:02+00:00"),
    ]
    manifest.entries = [*crafted, *manifest.entries]
    backend.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    return root, outside


def test_prune_deletes_nothing_through_a_link(trap):
    root, outside = trap
    before = _snapshot(outside)
    result = runner.invoke(app, ["prune", str(root), "--keep-last", "1"])
    assert _snapshot(outside) == before
    assert result.exit_code == 1, result.output
    assert "symbolic link" in result.stderr and "link/precious.txt" in result.stderr
    assert os.path.islink(root / "link") and os.path.islink(root / "evil.npy")  # refused, not unlinked
    assert sorted(os.listdir(root)) == sorted(["evil.npy", "link", "m-3.npy", *_own_names(root)])


def _own_names(root) -> list[str]:
    """The top-level names ckptcore keeps its own files under (the manifest's first component)."""
    return [MANIFEST_NAME.split("/")[0]]


def test_a_resumed_run_with_retention_deletes_nothing_through_a_link(trap, caplog):
    root, outside = trap
    before = _snapshot(outside)
    with Checkpointer(str(root / "m-{epoch}.npy"), write=_write, monitor="loss", keep_last=1, resume=True) as ck:
        ck.on_epoch_end(3, {"loss": 0.1})
    assert _snapshot(outside) == before
    assert os.path.islink(root / "link")
    assert "symbolic link" in caplog.text
    assert not (root / "m-1.npy").exists() and (root / "m-4.npy").exists()


def test_verify_reports_an_entry_through_a_link_as_bad(trap):
    root, _outside = trap
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1
    lines = {line.split()[1]: line for line in result.stderr.splitlines() if line.strip()}
    for path in ("link/precious.txt", "link/sub", "evil.npy"):
        assert lines[path].startswith("BAD") and "symbolic link" in lines[path], lines
    assert "3 ok" in result.stdout and "3 bad" in result.stdout


def test_verify_does_not_follow_a_link_inside_a_directory_checkpoint(tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"secret")

    def write_dir(path: str) -> None:
        os.makedirs(os.path.join(path, "variables"))
        open(os.path.join(path, "saved_model.pb"), "wb").write(b"graph")

    root = tmp_path / "root"
    with Checkpointer(str(root / "m-{epoch}"), write=write_dir, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 1.0})
    os.symlink(tmp_path / "outside.bin", root / "m-1" / "variables" / "w.bin")
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1
    assert result.stderr.startswith("BAD") and "symbolic link" in result.stderr


def test_a_save_never_writes_through_a_link_below_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("../outside", root / "link")
    with pytest.warns(CheckpointSaveWarning, match="symbolic link"):
        with Checkpointer(str(root / "{where}" / "m.npy"), write=_write, monitor="loss") as ck:
            ck.on_epoch_end(0, {"loss": 1.0, "where": "link"})
    assert list(outside.iterdir()) == []


def test_a_symlinked_root_itself_is_used(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    with Checkpointer(str(tmp_path / "alias" / "m-{epoch}.npy"), write=_write, monitor="loss", keep_last=1) as ck:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for epoch in range(3):
                ck.on_epoch_end(epoch, {"loss": 1.0})
    assert (real / "m-3.npy").exists() and not (real / "m-1.npy").exists()
    assert runner.invoke(app, ["verify", str(tmp_path / "alias")]).exit_code == 0


def test_the_backend_refuses_links_on_every_path_operation(trap):
    root, outside = trap
    backend = LocalBackend(str(root))
    for call in (lambda: backend.read_bytes("link/precious.txt"), lambda: backend.read_bytes("evil.npy"),
                 lambda: backend.delete("link/sub"), lambda: backend.exists("link/precious.txt"),
                 lambda: backend.write_bytes("link/new.txt", b"x"), lambda: backend.stage("link/new.npy"),
                 lambda: backend.locate_for_read("evil.npy")):
        with pytest.raises(UnsafePathError, match="symbolic link"):
            call()
    assert sorted(os.listdir(outside)) == ["precious.txt", "sub"]
    assert backend.read_bytes("m-1.npy") == (root / "m-1.npy").read_bytes()

