"""``FilepathTemplate`` and ``split_root``: parsing, rendering, escaping, roots of paths and URLs."""

from __future__ import annotations

import posixpath

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptcore import FilepathTemplate, MissingKeyError, TemplateError, split_root


def test_epoch_and_batch_are_one_based():
    template = FilepathTemplate("ck/w-{epoch:02d}-{batch:04d}.npy")
    assert template.render(epoch=0, batch=0) == "w-01-0001.npy"
    assert template.render(epoch=9, batch=122) == "w-10-0123.npy"
    assert template.placeholders == ("epoch", "batch")
    assert not template.is_fixed
    assert FilepathTemplate("ck/w.npy").is_fixed


def test_logs_keys_with_format_specs():
    template = FilepathTemplate("runs/a/w-{epoch:02d}-{val_loss:.3f}-{acc:.1%}-{tag}.keras")
    logs = {"val_loss": np.float32(0.123456), "acc": 0.5, "tag": "x"}
    assert template.render(epoch=2, logs=logs) == "w-03-0.123-50.0%-x.keras"


def test_logs_cannot_shadow_epoch_and_batch():
    template = FilepathTemplate("w-{epoch}.npy")
    assert template.render(epoch=0, logs={"epoch": 99}) == "w-1.npy"


def test_missing_key_names_the_key_and_lists_the_available_ones():
    template = FilepathTemplate("ck/w-{epoch}-{val_loss:.2f}.npy")
    with pytest.raises(MissingKeyError) as info:
        template.render(epoch=0, logs={"loss": 1.0, "accuracy": 0.5})
    err = info.value
    message = str(err)
    assert err.key == "val_loss"
    assert "{val_loss}" in message
    assert "accuracy, epoch, loss" in message
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    with pytest.raises(MissingKeyError, match=r"\(none\)"):
        FilepathTemplate("{loss}.npy").render()


def test_a_value_that_does_not_fit_its_spec():
    with pytest.raises(TemplateError, match=r"val_loss='high'.*'\.3f'"):
        FilepathTemplate("w-{val_loss:.3f}.npy").render(logs={"val_loss": "high"})


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("a/b", "w-a_b.npy"),
        ("a\\b", "w-a_b.npy"),
        ("..", "w-__.npy"),
        ("../../etc/passwd", "w-______etc_passwd.npy"),
        ("/abs", "w-_abs.npy"),
        ("x\x00y", "w-x_y.npy"),
    ],
)
def test_unsafe_values_are_escaped(value, rendered):
    assert FilepathTemplate("root/w-{name}.npy").render(logs={"name": value}) == rendered


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_a_value_that_would_name_the_root_itself_is_refused_or_escaped(value):
    template = FilepathTemplate("root/{name}")
    try:
        rendered = template.render(logs={"name": value})
    except TemplateError as exc:
        assert "component" in str(exc)
    else:
        assert rendered not in ("", ".", "..") and "/" not in rendered


def _stays_under_root(rendered: str) -> bool:
    normal = posixpath.normpath(rendered)
    return (
        not rendered.startswith("/")
        and "\\" not in rendered
        and normal not in (".", "")
        and normal.split("/")[0] != ".."
    )


@settings(max_examples=400, deadline=None)
@given(
    template=st.sampled_from(
        ["ck/{v}", "ck/w-{v}.npy", "ck/{v}/{v}.bin", "ck/{v}{v}", "{v}", "{v}/x.npy", "a/{v}-{epoch}/{v}"]
    ),
    value=st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    | st.text(alphabet="./\\x", max_size=12),
)
def test_rendered_paths_never_leave_the_root(template, value):
    parsed = FilepathTemplate(template)
    try:
        rendered = parsed.render(epoch=0, logs={"v": value})
    except TemplateError:
        return  # refusing is fine; escaping the root is not
    assert _stays_under_root(rendered), rendered
    joined = parsed.join(rendered)
    if parsed.root:
        assert posixpath.normpath(joined).startswith(posixpath.normpath(parsed.root) + "/")


@pytest.mark.parametrize(
    ("filepath", "root", "rest"),
    [
        ("w-{epoch}.keras", "", "w-{epoch}.keras"),
        ("model.keras", "", "model.keras"),
        ("runs/a/w-{epoch:02d}.keras", "runs/a", "w-{epoch:02d}.keras"),
        ("runs/a/{epoch}/model.keras", "runs/a", "{epoch}/model.keras"),
        ("runs/a/e{epoch}/model.keras", "runs/a", "e{epoch}/model.keras"),
        ("runs/a/best.keras", "runs/a", "best.keras"),
        ("/abs/ck/w-{epoch}.npy", "/abs/ck", "w-{epoch}.npy"),
        ("/w-{epoch}.npy", "/", "w-{epoch}.npy"),
        ("s3://bucket/run/w-{epoch}.keras", "s3://bucket/run", "w-{epoch}.keras"),
        ("s3://bucket/w-{epoch}.keras", "s3://bucket", "w-{epoch}.keras"),
        ("gs://b/x/y/{epoch}/m.keras", "gs://b/x/y", "{epoch}/m.keras"),
        ("memory://root/ck/w.keras", "memory://root/ck", "w.keras"),
        ("file:///tmp/ck/w-{epoch}.npy", "file:///tmp/ck", "w-{epoch}.npy"),
    ],
)
def test_split_root(filepath, root, rest):
    assert split_root(filepath) == (root, rest)
    template = FilepathTemplate(filepath)
    assert (template.root, template.relative) == (root, rest)


def test_a_url_needs_a_fixed_bucket():
    with pytest.raises(TemplateError, match="bucket"):
        split_root("s3://{bucket}/w.keras")


def test_join():
    assert FilepathTemplate("ck/w-{epoch}.npy").join("w-1.npy") == "ck/w-1.npy"
    assert FilepathTemplate("w-{epoch}.npy").join("w-1.npy") == "w-1.npy"
    assert FilepathTemplate("s3://b/w-{epoch}.npy").join("w-1.npy") == "s3://b/w-1.npy"
    assert FilepathTemplate("/w-{epoch}.npy").join("w-1.npy") == "/w-1.npy"


@pytest.mark.parametrize(
    ("filepath", "fragment"),
    [
        ("w-{epoch", "not a valid template"),
        ("w-}.npy", "not a valid template"),
        ("ck/w-{}.npy", "positional"),
        ("ck/w-{0}.npy", "positional"),
        ("ck/w-{epoch!s}.npy", "conversion"),
        ("ck/w-{a.b}.npy", "attribute or index"),
        ("ck/w-{a[0]}.npy", "attribute or index"),
        ("ck/w-{a:{b}}.npy", "nests"),
        ("ck/", "directory"),
        ("ck/{epoch}/../x.npy", "'..'"),
        ("", "non-empty"),
    ],
)
def test_malformed_templates(filepath, fragment):
    with pytest.raises(TemplateError) as info:
        FilepathTemplate(filepath)
    message = str(info.value)
    assert fragment in message
    assert repr(filepath) in message, "the message quotes the whole template"
    assert "allowed" in message or fragment in ("'..'", "directory")


def test_matches_tells_which_paths_a_template_could_have_rendered():
    template = FilepathTemplate("runs/m-{epoch:02d}-{loss:.2f}.keras")
    assert template.matches(template.render(epoch=2, logs={"loss": 0.5}))
    assert not template.matches("best.keras")
    assert not template.matches("sub/m-03-0.50.keras")
    assert FilepathTemplate("runs/best.keras").matches("best.keras")


@pytest.mark.parametrize(("template", "path", "expected"), [
    ("model-{epoch}.keras", "model-12.keras", True),
    ("model-{epoch}.keras", "model-best.keras", False),  # another callback's fixed name
    ("m-{epoch:03d}-{batch}.keras", "m-002-7.keras", True),
    ("m-{epoch:02d}-{val_loss:.3f}.keras", "m-03-0.412.keras", True),
    ("m-{epoch:02d}-{val_loss:.3f}.keras", "m-03-nan.keras", True),
    ("m-{epoch:02d}-{val_loss:.3f}.keras", "m-03--inf.keras", True),
    ("m-{epoch:02d}-{val_loss:.3f}.keras", "m-03-best.keras", False),
    ("m-{loss:.2e}.keras", "m-1.23e-04.keras", True),
    ("{tag}/m.keras", "any_thing/m.keras", True),
])
def test_matches_knows_what_a_number_renders_as(template, path, expected):
    assert FilepathTemplate(template).matches(path) is expected
