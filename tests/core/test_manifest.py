"""``Manifest``: entries, one best, JSON round trip, validation on the way in."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ckptcore import MANIFEST_NAME, Manifest, ManifestEntry, ManifestError


def _entry(path: str, **kw) -> ManifestEntry:
    return ManifestEntry(name=path.rsplit("/", 1)[-1], path=path, **kw)


def test_add_replaces_the_same_path_and_keeps_one_best():
    manifest = Manifest()
    manifest.add(_entry("a.npy", is_best=True, monitor_value=1.0))
    manifest.add(_entry("b.npy", is_best=True, monitor_value=0.5))
    manifest.add(_entry("a.npy", epoch=3))
    assert [e.path for e in manifest.entries] == ["b.npy", "a.npy"]
    assert [e.path for e in manifest.entries if e.is_best] == ["b.npy"]
    assert manifest.best().path == "b.npy"
    assert manifest.latest().path == "a.npy"
    assert manifest.get("a.npy").epoch == 3
    assert manifest.get("missing") is None
    manifest.remove("b.npy")
    assert manifest.best() is None
    assert MANIFEST_NAME == ".ckptcore/state/manifest.json", "hidden, under ckptcore's own directory"


def test_json_round_trip_with_non_finite_and_numpy_values():
    manifest = Manifest(runs=["r1"], tracker={"mode": "min", "best": 0.25}, schedule={"batches_run": 7})
    manifest.add(
        _entry(
            "sub/w-1.npy", epoch=1, batch=4, global_step=4, monitor="val_loss",
            monitor_value=math.nan, metrics={"val_loss": math.nan, "acc": np.float32(0.5),
                                             "inf": math.inf, "vec": np.zeros(2)},
            size=10, digest="blake3:" + "ab" * 32, run_id="r1", backends=["local"],
        )
    )
    text = manifest.to_json()
    data = json.loads(text)  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    assert data["entries"][0]["metrics"]["val_loss"] is None
    assert data["entries"][0]["metrics"]["acc"] == 0.5
    back = Manifest.from_json(text)
    entry = back.entries[0]
    assert entry.path == "sub/w-1.npy" and entry.batch == 4 and entry.global_step == 4
    assert entry.monitor_value is None
    assert entry.digest == "blake3:" + "ab" * 32 and entry.size == 10 and entry.backends == ["local"]
    assert back.tracker == {"mode": "min", "best": 0.25}
    assert back.schedule == {"batches_run": 7}
    assert back.runs == ["r1"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"entries": [{"name": "x", "path": "../x"}]}), "entries.0.path"),
        (json.dumps({"entries": [{"name": "x", "path": "/etc/x"}]}), "stay under the root"),
        (json.dumps({"entries": [{"name": "x", "path": "a\\x"}]}), "stay under the root"),
        (json.dumps({"entries": [{"name": "x", "path": ""}]}), "stay under the root"),
        (json.dumps({"entries": [{"path": "x"}]}), "name"),
        (json.dumps({"entries": [{"name": "x", "path": "x", "size": -1}]}), "size"),
        (json.dumps({"format": "ckptcore.manifest", "version": 99}), "newer"),
        (json.dumps({"version": 99}), "not a ckptcore manifest"),
        (json.dumps({"name": "my-dataset", "files": ["a.csv"]}), "not a ckptcore manifest"),
        (json.dumps({"format": "other-tool", "entries": []}), "not a ckptcore manifest"),
        (json.dumps({"entries": "nope"}), "entries"),
    ],
)
def test_invalid_manifests_are_rejected_with_the_source_named(text, fragment):
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(text, source="runs/a/manifest.json")
    assert "runs/a/manifest.json" in str(info.value)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    text = json.dumps({"entries": [{"name": "x", "path": "x", "future": 1}], "extra": {}})
    assert Manifest.from_json(text).entries[0].path == "x"


def test_entry_defaults():
    entry = _entry("x.npy")
    assert entry.created_at and entry.backends == [] and not entry.is_best
    with pytest.raises(ValueError):
        _entry("a/../../x")
