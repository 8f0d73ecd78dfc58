"""Checkpoint names: the path rules a manifest entry obeys when read, and the reserved names."""

from __future__ import annotations

import json

import pytest

from ckptcore import Manifest, ManifestError
from ckptcore.manifest import MANIFEST_FORMAT
from ckptcore.names import LEGACY_MANIFEST, NAME_MAX, RESERVED_DIR, TEMP_MARK, path_problem, reserved_reason


def _manifest(name: str, path: str) -> str:
    return json.dumps({"format": MANIFEST_FORMAT, "entries": [{"name": name, "path": path}]})


@pytest.mark.parametrize(
    ("name", "path", "fragment"),
    [
        ("/tmp/pwned.keras", "m.keras", "holds a path separator"),
        ("../../x.keras", "m.keras", "holds a path separator"),
        ("..", "m.keras", "not a name"),
        (".", "m.keras", "not a name"),
        ("", "m.keras", "not a name"),
        ("a\x00.keras", "m.keras", "NUL"),
        ("a\\b.keras", "m.keras", "separator"),
        ("x" * (NAME_MAX + 1), "m.keras", f"over the limit of {NAME_MAX} bytes"),
        ("other.keras", "m.keras", "must be the last component of path"),
        ("m.keras", "a/b/other/m.keras/", "not a name"),
        ("m.keras", f"{RESERVED_DIR}/m.keras", "ckptcore's own directory"),
        ("m.keras", "a/" + "y" * (NAME_MAX + 1) + "/m.keras", "over the limit"),
        (LEGACY_MANIFEST, LEGACY_MANIFEST, "older versions keep the manifest"),
        (f"{TEMP_MARK}1-m.keras", f"{TEMP_MARK}1-m.keras", "temporary files"),
    ],
)
def test_a_manifest_entry_name_is_one_component_and_the_last_of_its_path(name, path, fragment):
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(_manifest(name, path), source="remote/manifest")
    assert fragment in str(info.value) and "remote/manifest" in str(info.value)


def test_valid_names_and_nested_paths_are_read():
    entry = Manifest.from_json(_manifest("m.keras", "e3/m.keras")).entries[0]
    assert (entry.name, entry.path) == ("m.keras", "e3/m.keras")
    assert Manifest.from_json(_manifest("x" * NAME_MAX, "x" * NAME_MAX)).entries[0].name == "x" * NAME_MAX


@pytest.mark.parametrize(
    ("path", "reserved"),
    [
        (f"{RESERVED_DIR}/state/manifest.json", True),
        (RESERVED_DIR, True),
        (f"{TEMP_MARK}abc-m.keras", True),
        (f"run/{TEMP_MARK}abc", True),
        (LEGACY_MANIFEST, True),
        (f"run/{LEGACY_MANIFEST}", False),
        (f"run/{RESERVED_DIR}", False),
        ("m-1.keras", False),
    ],
)
def test_reserved_names(path, reserved):
    assert (reserved_reason(path) is not None) is reserved


@pytest.mark.parametrize("path", ["/abs", "a//b", "a/../b", "./a", "a\\b", "a\x00"])
def test_path_problem_names_what_is_wrong(path):
    assert path_problem(path) is not None


@pytest.mark.parametrize("path", ["MANIFEST.JSON", "Manifest.json", ".CKPTCORE", ".Ckptcore/state/manifest.json"])
def test_reserved_names_in_another_case_are_reserved(path):
    """On a case-insensitive file system (macOS's, Windows' defaults) they are the same files:
    an entry at such a path would let prune or retention delete ckptcore's own."""
    assert reserved_reason(path) is not None
    with pytest.raises(ManifestError, match="reserved"):
        Manifest.from_json(_manifest(path.rsplit("/", 1)[-1], path))


@pytest.mark.parametrize("filepath", ["ckpt/Manifest.json", "ckpt/.CKPTCORE/m-{epoch}.keras"])
def test_a_template_naming_a_reserved_name_in_another_case_is_refused(tmp_path, filepath):
    from ckptcore import Checkpointer, ConfigError

    with pytest.raises(ConfigError, match="older versions keep the manifest|ckptcore's own directory"):
        Checkpointer(str(tmp_path / filepath), write=lambda path: None)


def test_a_rendered_reserved_name_in_another_case_is_refused(tmp_path):
    from ckptcore import Checkpointer, TemplateError

    ck = Checkpointer(str(tmp_path / "{tag}" / "m.npy"), write=lambda path: None, monitor="loss")
    with pytest.raises(TemplateError, match="ckptcore's own directory"):
        ck.on_epoch_end(0, {"tag": ".CkptCore", "loss": 1.0})
    ck.close()
