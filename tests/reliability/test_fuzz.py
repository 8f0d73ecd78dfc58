"""Property tests: the template and the manifest reader raise only their documented errors.

Whatever text a user or a damaged file supplies, ``FilepathTemplate`` raises ``TemplateError``
(``MissingKeyError`` for a missing key) and ``Manifest.from_json`` raises ``ManifestError``;
what they accept never names a path outside the checkpoint root.
"""

from __future__ import annotations

import json
import posixpath

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptcore import FilepathTemplate, Manifest, ManifestError, MissingKeyError, TemplateError

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = "/ckpt-root"

# Pieces that make templates interesting: braces, specs, conversions, separators, dots.
_PIECES = st.sampled_from([
    "{", "}", "{{", "}}", "{epoch}", "{batch}", "{epoch:02d}", "{loss:.3f}", "{loss}", "{x!r}",
    "{0}", "{}", "{a.b}", "{a[0]}", "{epoch:{w}}", "/", "..", ".", "\\", ":", "!", "w-", ".keras",
    "s3://b/", "{epoch:999d}", "{loss:%}", "\x00", "é", " ",
])
TEMPLATES = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(_PIECES, st.text(alphabet="ab./{}:!0d-_", max_size=4)), max_size=8).map("".join),
)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.none(),
    st.text(max_size=30), st.sampled_from(["..", "/", "../..", "a/../b", ".", "", "\\", "\x00"]),
)
LOGS = st.dictionaries(st.one_of(st.sampled_from(["loss", "x", "w", "a"]), st.text(max_size=6)), VALUES, max_size=5)


def _inside_root(relative: str) -> bool:
    full = posixpath.normpath(posixpath.join(ROOT, relative))
    return full.startswith(ROOT + "/")


@FUZZ
@given(TEMPLATES)
def test_any_template_parses_or_raises_template_error(text):
    try:
        template = FilepathTemplate(text)
    except TemplateError:
        return
    assert isinstance(template.root, str) and isinstance(template.relative, str)
    assert all(isinstance(name, str) and name for name in template.placeholders)


@FUZZ
@given(TEMPLATES, st.one_of(st.none(), st.integers(0, 10**6)), st.one_of(st.none(), st.integers(0, 10**6)), LOGS)
def test_rendering_raises_only_template_errors_and_stays_under_the_root(text, epoch, batch, logs):
    try:
        template = FilepathTemplate(text)
    except TemplateError:
        return
    try:
        relative = template.render(epoch, batch, logs)
    except MissingKeyError as exc:
        assert exc.key in template.placeholders
        return
    except TemplateError:
        return
    assert isinstance(relative, str)
    assert "\x00" not in relative
    parts = relative.split("/")
    assert all(part not in ("", ".", "..") for part in parts)
    assert _inside_root(relative), relative


@FUZZ
@given(st.dictionaries(st.sampled_from(["loss", "x"]), st.text(max_size=40), min_size=2))
def test_values_with_separators_never_leave_the_root(logs):
    template = FilepathTemplate("runs/a/{loss}/m-{x}.npy")
    try:
        relative = template.render(0, None, logs)
    except TemplateError:
        return
    assert relative.count("/") == 1, "a value never adds a directory level"
    assert _inside_root(relative)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_ENTRY_KEYS = list(Manifest.model_fields["entries"].annotation.__args__[0].model_fields)  # ManifestEntry
PATHS = st.sampled_from(["a.npy", "d/a.npy", "../x", "/etc/x", ".", "./a", "a/", "a//b", "a/./b", "a\\b", "", "a/.."])
_PLAUSIBLE = {
    "epoch": st.none() | st.integers(-5, 10**9), "batch": st.none() | st.integers(-5, 10**9),
    "global_step": st.integers(-5, 10**12), "metrics": st.dictionaries(st.text(max_size=5), JSON, max_size=3),
    "monitor": st.none() | st.text(max_size=8), "monitor_value": st.none() | st.floats(),
    "is_best": st.booleans(), "size": st.integers(-5, 10**12), "digest": st.none() | st.text(max_size=72),
    "created_at": st.text(max_size=30), "run_id": st.text(max_size=10), "backends": st.lists(st.text(max_size=6)),
}
ENTRY = st.fixed_dictionaries(
    {"name": st.text(max_size=8), "path": PATHS | st.text(alphabet="a./\\", max_size=6)},
    optional={key: _PLAUSIBLE.get(key, JSON) | JSON for key in _ENTRY_KEYS if key not in ("name", "path")},
)
MANIFEST_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "version": JSON | st.integers(-2, 3),
        "entries": st.lists(ENTRY, max_size=4) | JSON,
        "tracker": JSON, "schedule": JSON, "runs": JSON, "updated_at": JSON,
    },
)


def _check_manifest(text) -> None:
    try:
        manifest = Manifest.from_json(text)
    except ManifestError:
        return
    for entry in manifest.entries:
        assert _inside_root(entry.path), f"entry path {entry.path!r} would leave the root"
    again = Manifest.from_json(manifest.to_json())  # what it accepts, it writes back readably
    assert [e.path for e in again.entries] == [e.path for e in manifest.entries]


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_text_or_bytes_read_as_a_manifest_or_raise_manifest_error(data):
    _check_manifest(data)


@FUZZ
@given(st.one_of(MANIFEST_LIKE, JSON))
def test_manifest_shaped_json_reads_or_raises_manifest_error(document):
    _check_manifest(json.dumps(document))


def test_deeply_nested_json_is_a_manifest_error():
    for text in ("[" * 100_000, '{"tracker": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        try:
            Manifest.from_json(text)
        except ManifestError as exc:
            assert "manifest" in str(exc)
        else:  # pragma: no cover - the assertion below fails
            raise AssertionError("a nested document was accepted")


@FUZZ
@given(st.lists(ENTRY, min_size=1, max_size=3))
def test_manifest_entries_read_or_raise_manifest_error(entries):
    _check_manifest(json.dumps({"version": 1, "entries": entries}))
