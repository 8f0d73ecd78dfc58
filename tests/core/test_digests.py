"""Digests that name their algorithm: BLAKE3 for new checkpoints, SHA-256 still read and checked
in version-1 manifests and in roots that hold both."""

from __future__ import annotations

import hashlib
import json
import os

import blake3
import numpy as np
import pytest
from typer.testing import CliRunner

from ckptcore import MANIFEST_NAME, Checkpointer, Manifest
from ckptcore.backends.local import LocalBackend
from ckptcore.cli import app
from ckptcore.commit import load_manifest
from ckptcore.digest import DEFAULT, algorithm_of, bytes_digest, digest, matches, tree_digest
from ckptcore.errors import ManifestError
from ckptcore.hashing import HashingFile
from ckptcore.manifest import MANIFEST_VERSION

runner = CliRunner()


def _write(path: str) -> None:
    with open(path, "wb") as fh:  # other bytes for every name
        np.save(fh, np.frombuffer(os.path.basename(path).encode() * 16, dtype=np.uint8))


def _sha256_hex(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_new_digests_are_blake3_and_name_their_algorithm(tmp_path):
    assert DEFAULT == "blake3"
    assert bytes_digest(b"abc") == "blake3:" + blake3.blake3(b"abc").hexdigest()
    assert bytes_digest(b"abc", "sha256") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "f").write_bytes(b"abc")
    assert digest(str(tmp_path / "f")) == (3, bytes_digest(b"abc"))
    assert digest(str(tmp_path / "f"), "sha256") == (3, bytes_digest(b"abc", "sha256"))
    assert matches(str(tmp_path / "f"), 3, bytes_digest(b"abc", "sha256"))
    assert not matches(str(tmp_path / "f"), 4, bytes_digest(b"abc")) and not matches(str(tmp_path / "f"), 3, None)
    assert not matches(str(tmp_path / "f"), 3, bytes_digest(b"abd"))


@pytest.mark.parametrize("value", ["ab" * 32, "md5:" + "ab" * 32, "blake3:" + "AB" * 32, "blake3:abc", "", None, 7])
def test_a_digest_of_another_form_is_refused_naming_what_is_allowed(value):
    with pytest.raises(ValueError, match="is not '<algorithm>:<64 lowercase hex digits>' with an algorithm of blake3, sha256"):
        algorithm_of(value)


def test_a_sha256_directory_digest_is_the_one_version_1_recorded(tmp_path):
    """Version 1 hashed ``path NUL size NUL sha256-hex`` lines in walk order: the same value,
    prefixed, so a directory checkpoint saved then still verifies."""
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.bin").write_bytes(b"bb")
    (tmp_path / "d" / "sub" / "a.bin").write_bytes(b"a")
    lines = hashlib.sha256()
    for rel, data in (("b.bin", b"bb"), ("sub/a.bin", b"a")):
        lines.update(f"{rel}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert digest(str(tmp_path / "d"), "sha256") == (3, "sha256:" + lines.hexdigest())
    opened = [("sub/a.bin", lambda: open(tmp_path / "d" / "sub" / "a.bin", "rb")),
              ("b.bin", lambda: open(tmp_path / "d" / "b.bin", "rb"))]
    assert tree_digest(opened) == digest(str(tmp_path / "d"))
    assert digest(str(tmp_path / "d"))[1].startswith("blake3:")


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
@pytest.mark.parametrize("stable", [False, True])
def test_hashing_file_hashes_in_the_algorithm_asked_for(tmp_path, algorithm, stable):
    data = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8)
    with HashingFile(str(tmp_path / "f"), stable_buffers=stable, algorithm=algorithm) as out:
        out.write(b"head")
        out.write(data)
    assert out.digest == (len(data) + 4, bytes_digest(b"head" + data.tobytes(), algorithm))


def test_hashing_file_refuses_an_unknown_algorithm_before_creating_the_file(tmp_path):
    with pytest.raises(ValueError, match="'md5' is not one of blake3, sha256"):
        HashingFile(str(tmp_path / "f"), algorithm="md5")
    assert not (tmp_path / "f").exists()


def _as_version_1(root: str) -> dict:
    """Rewrite a root's manifest as version 1 wrote it: bare SHA-256 hex under ``sha256``."""
    path = os.path.join(root, *MANIFEST_NAME.split("/"))
    with open(path) as fh:
        data = json.load(fh)
    data["version"] = 1
    for entry in data["entries"]:
        del entry["digest"]
        entry["sha256"] = _sha256_hex(os.path.join(root, entry["path"]))
    with open(path, "w") as fh:
        json.dump(data, fh)
    return data


def test_a_version_1_manifest_is_read_with_its_sha256_digests_and_written_back_as_version_2(tmp_path):
    root = str(tmp_path / "run")
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss") as ck:
        for epoch, loss in enumerate([0.5, 0.4]):
            ck.on_epoch_end(epoch, {"loss": loss})
    old = _as_version_1(root)
    manifest = load_manifest(LocalBackend(root))
    assert [e.digest for e in manifest.entries] == ["sha256:" + e["sha256"] for e in old["entries"]]
    assert manifest.version == MANIFEST_VERSION == 2
    stored = json.loads(manifest.to_json())
    assert stored["version"] == 2 and all("sha256" not in e and e["digest"].startswith("sha256:")
                                          for e in stored["entries"])
    result = runner.invoke(app, ["verify", root])
    assert result.exit_code == 0 and result.stdout.count("ok") >= 2, result.output


def test_a_version_1_root_continues_with_blake3_and_settles_its_sha256_records(tmp_path):
    """Saves after the upgrade get BLAKE3; the old entries keep SHA-256, are verified with it,
    and retention prunes them (a delete record that ``replaces`` a SHA-256 digest); a pending
    record of version 1 is settled by the SHA-256 of the bytes found."""
    root = str(tmp_path / "run")
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss") as ck:
        for epoch, loss in enumerate([0.5, 0.4]):
            ck.on_epoch_end(epoch, {"loss": loss})
    old = _as_version_1(root)
    # A version-1 pending record a killed run left: the new bytes are there, not yet listed.
    path = os.path.join(root, *MANIFEST_NAME.split("/"))
    data = json.load(open(path))
    listed = data["entries"].pop()
    data["pending"] = [{"path": listed["path"], "sha256": listed["sha256"], "size": listed["size"],
                        "replaces": None, "run_id": "gone", "entry": listed}]
    json.dump(data, open(path, "w"))
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss", resume=True,
                      keep_last=2) as ck:
        assert [e.path for e in ck.manifest.entries] == ["w-1.npy", "w-2.npy"]  # the record settled
        assert all(e.digest.startswith("sha256:") for e in ck.manifest.entries)
        ck.on_epoch_end(2, {"loss": 0.3})
        ck.on_epoch_end(3, {"loss": 0.2})
    manifest = load_manifest(LocalBackend(root))
    # w-1 pruned; w-2, the checkpoint the run resumed from, is kept whatever retention says.
    assert [e.path for e in manifest.entries] == ["w-2.npy", "w-3.npy", "w-4.npy"] and not manifest.pending
    assert not os.path.exists(os.path.join(root, "w-1.npy"))
    assert [e.digest.split(":")[0] for e in manifest.entries] == ["sha256", "blake3", "blake3"]
    assert manifest.entries[0].digest == "sha256:" + old["entries"][1]["sha256"]
    assert all(matches(os.path.join(root, e.path), e.size, e.digest) for e in manifest.entries)


def test_verify_checks_each_entry_in_its_own_algorithm_and_names_it(tmp_path):
    root = str(tmp_path / "run")
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 0.5})
    _as_version_1(root)
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss", resume=True) as ck:
        ck.on_epoch_end(1, {"loss": 0.4})
    digests = [e.digest for e in load_manifest(LocalBackend(root)).entries]
    assert [d.split(":")[0] for d in digests] == ["sha256", "blake3"]
    for name in ("w-1.npy", "w-2.npy"):
        with open(os.path.join(root, name), "r+b") as fh:
            fh.seek(-1, 2)
            fh.write(b"\xff")
    result = runner.invoke(app, ["verify", root])
    assert result.exit_code == 1
    bad = sorted(line for line in result.stderr.splitlines() if line.startswith("BAD"))
    assert len(bad) == 2 and "w-1.npy" in bad[0] and " sha256 " in bad[0] and "w-2.npy" in bad[1] and " blake3 " in bad[1]
    assert digests[0].split(":")[1][:12] in bad[0] and digests[1].split(":")[1][:12] in bad[1]


@pytest.mark.parametrize("entry_digest, fragment", [
    ("ab" * 31, "entries.0.digest"),
    ("blake3:" + "g" * 64, "entries.0.digest"),
    ("crc32:" + "0" * 64, "entries.0.digest"),
])
def test_a_manifest_with_a_malformed_digest_is_refused_naming_the_field(entry_digest, fragment):
    text = json.dumps({"format": "ckptcore.manifest", "version": 2, "entries": [
        {"name": "a.npy", "path": "a.npy", "size": 1, "digest": entry_digest}]})
    with pytest.raises(ManifestError, match=fragment) as info:
        Manifest.from_json(text, source="run/manifest")
    assert "run/manifest" in str(info.value) and "64 lowercase hex digits" in str(info.value)


def test_a_version_1_manifest_with_a_malformed_sha256_is_refused_naming_it():
    text = json.dumps({"format": "ckptcore.manifest", "version": 1, "entries": [
        {"name": "a.npy", "path": "a.npy", "size": 1, "sha256": "zz"}]})
    with pytest.raises(ManifestError, match=r"entries\.0\.sha256: version-1 sha256 'zz' is not 64 hex digits"):
        Manifest.from_json(text)


def test_a_version_2_record_with_bare_hex_is_refused():
    """Only a version-1 manifest's digests are read as SHA-256 hex; in version 2 they are malformed."""
    text = json.dumps({"format": "ckptcore.manifest", "version": 2, "entries": [], "pending": [
        {"path": "a.npy", "digest": None, "replaces": "ab" * 32}]})
    with pytest.raises(ManifestError, match=r"pending\.0\.replaces"):
        Manifest.from_json(text)


def test_a_write_function_returning_a_malformed_digest_is_named(tmp_path):
    from ckptcore.digest import Digest, written_digest

    (tmp_path / "f").write_bytes(b"abc")
    with pytest.raises(ValueError, match=r"the write function returned Digest\(size=3, digest='ab'\)"):
        written_digest(Digest(3, "ab"), str(tmp_path / "f"))


def test_verify_without_the_blake3_package_reports_unverified_not_a_traceback(tmp_path, monkeypatch):
    from ckptcore import digest as digest_module

    root = str(tmp_path / "run")
    with Checkpointer(os.path.join(root, "w-{epoch}.npy"), write=_write, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 0.5})
    monkeypatch.setattr(digest_module, "_blake3", None)
    result = runner.invoke(app, ["verify", root])
    assert result.exit_code == 1 and not isinstance(result.exception, ModuleNotFoundError), result.output
    assert "UNVERIFIED" in result.stderr and "pip install blake3" in result.stderr, result.output


def test_a_newer_manifest_version_is_refused_with_upgrade_advice():
    with pytest.raises(ManifestError, match="manifest version 3 is newer than this ckptcore understands .2.; upgrade"):
        Manifest.from_json(json.dumps({"format": "ckptcore.manifest", "version": 3, "entries": []}))


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_holds_nothing_checks_presence_without_reading_a_byte(tmp_path, monkeypatch, request, kind):
    from ckptcore import audit
    from ckptcore.backends.local import LocalBackend

    if kind == "local":
        backend = LocalBackend(str(tmp_path))
        (tmp_path / "a.bin").write_bytes(b"x" * 10)
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_bytes(b"y")
    else:
        pytest.importorskip("fsspec")
        from ckptcore.backends.fsspec import FsspecBackend

        backend = FsspecBackend(f"memory://holds-{tmp_path.name}")
        request.addfinalizer(lambda: backend.fs.rm(backend.locate(""), recursive=True))
        backend.fs.pipe(backend.locate("a.bin"), b"x" * 10)
        backend.fs.pipe(backend.locate("d") + "/f", b"y")

    def no_hashing(*_args, **_kwargs):
        raise AssertionError("holds(None) hashed a checkpoint")

    for name in ("stored_digest", "digest_under", "digest", "stream_digest", "tree_digest"):
        monkeypatch.setattr(audit, name, no_hashing, raising=False)
    assert audit.holds(backend, "a.bin", None) is False
    assert audit.holds(backend, "d", None) is False
    assert audit.holds(backend, "missing.bin", None) is True
