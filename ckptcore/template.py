"""Filepath templates: ``"runs/a/w-{epoch:02d}-{val_loss:.3f}.keras"``.

Placeholders are parsed once, at construction. ``{epoch}`` and ``{batch}`` are 1-based (as in
Keras); ``{step}`` is the global step, the number of batches run in the whole run (across
epochs, continued on resume), unless the logs hold a ``step`` of their own; any other placeholder is looked up in the logs. Rendered values are escaped so that a
metric name or value holding ``/``, ``\\`` or ``..`` can never move a file out of the
checkpoint root.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Mapping

from ckptcore.errors import MissingKeyError, TemplateError
from ckptcore.names import NAME_MAX, RESERVED_DIR, TEMP_MARK, is_reserved_dir, name_bytes, reserved_reason
from ckptcore.scalars import shown

__all__ = ["COUNTERS", "FilepathTemplate", "split_root"]

#: Placeholders the engine fills in itself (whole numbers); every other one comes from the logs.
COUNTERS: tuple[str, ...] = ("epoch", "batch", "step")

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_UNSAFE = re.compile(r"[/\\\x00]")
_NUMBER = re.compile(r"\d+")
#: Placeholders whose values are always ints (1-based), so their format specs are checked early.
_INT_FIELDS = COUNTERS
_SLOT = "\x00"  # stands for a placeholder's value in a template's skeleton


_NUMBER_VALUE = r"[ +-]*(?:[0-9][0-9_,]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?%?|nan|inf)"


def _value_pattern(field: "_Field") -> str:
    """The regular expression a rendered value of ``field`` matches."""
    if field.name is None:
        return ""
    kind = field.spec[-1:] if field.spec else ""
    if field.name in COUNTERS and kind in ("", "d"):
        return r" *[0-9]+"
    if kind and kind in "deEfFgGn%":
        return _NUMBER_VALUE
    return "[^/]*"


@dataclass(frozen=True)
class _Field:
    literal: str
    name: str | None
    spec: str


_ALLOWED = (
    "allowed: named placeholders in balanced braces, such as 'w-{epoch:02d}-{val_loss:.3f}.keras'; "
    "write '{{' or '}}' for a literal brace"
)


def _parse(template: str, filepath: str | None = None) -> tuple[_Field, ...]:
    """Parse ``template``; error messages quote ``filepath`` (the whole template) when given."""
    filepath = template if filepath is None else filepath
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"filepath: {filepath!r} is not a valid template ({exc}); {_ALLOWED}") from exc
    fields = []
    for literal, name, spec, conversion in parts:
        if name is None:
            fields.append(_Field(literal, None, ""))
            continue
        if name == "" or name.isdigit():
            raise TemplateError(
                f"filepath: {filepath!r} has a positional placeholder {{{name}}}; "
                "allowed: named placeholders such as {epoch}, {batch} or a logs key"
            )
        if conversion:
            raise TemplateError(
                f"filepath: {filepath!r} uses a conversion '!{conversion}' in {{{name}}}; "
                "allowed: a name with an optional format spec, such as {val_loss:.3f}"
            )
        if any(c in name for c in ".[]"):
            raise TemplateError(
                f"filepath: {filepath!r} has placeholder {{{name}}} with attribute or index "
                "access; allowed: a plain name such as {epoch} or {val_loss}"
            )
        if "{" in (spec or ""):
            raise TemplateError(
                f"filepath: {filepath!r} nests a placeholder in the format spec of {{{name}}}; "
                "allowed: a literal format spec, such as {val_loss:.3f}"
            )
        if any(len(n) > 3 or int(n) > NAME_MAX for n in _NUMBER.findall(spec or "")):
            raise TemplateError(
                f"filepath: {filepath!r} asks for a width or precision over {NAME_MAX} in "
                f"{{{name}:{spec}}}; allowed: format specs that fit in a file name, such as {{epoch:04d}}"
            )
        fields.append(_Field(literal, name, spec or ""))
    return tuple(fields)


def _check_int_specs(fields: tuple[_Field, ...], filepath: str) -> None:
    """A format spec of ``{epoch}`` or ``{batch}`` must format an int."""
    for field in fields:
        if field.name in _INT_FIELDS and field.spec:
            try:
                format(1, field.spec)
            except ValueError as exc:
                raise TemplateError(
                    f"filepath: {filepath!r}: the format spec {field.spec!r} of {{{field.name}}} cannot "
                    f"format {field.name}, an int ({exc}); allowed: an int spec such as "
                    f"{{{field.name}:04d}} or {{{field.name}:>3}}"
                ) from exc


def _check_names(fields: tuple[_Field, ...], root: str, filepath: str) -> None:
    """Refuse names no save could write: too long, or reserved for ckptcore's own files."""
    skeleton = "".join(f.literal + ("" if f.name is None else _SLOT) for f in fields)
    parts = skeleton.split("/")
    root_parts = [p for p in (root.split("://", 1)[-1]).split("/") if p]
    for part in [*root_parts, *parts]:
        fixed = part.replace(_SLOT, "")
        if name_bytes(fixed) > NAME_MAX:
            what = "the name" if _SLOT not in part else "the fixed text of the name"
            raise TemplateError(
                f"filepath: {filepath!r}: {what} {fixed[:40]!r}... is {name_bytes(fixed)} bytes long; "
                f"allowed: names of at most {NAME_MAX} bytes"
            )
        if is_reserved_dir(part) or part.startswith(TEMP_MARK):
            raise TemplateError(
                f"filepath: {filepath!r} uses the name {fixed!r}: {reserved_reason(part)}; allowed: "
                f"names that are not {RESERVED_DIR!r} and do not start with {TEMP_MARK!r}"
            )
    if _SLOT not in skeleton and reserved_reason(skeleton) is not None:  # manifest.json under the root
        raise TemplateError(
            f"filepath: {filepath!r} names {skeleton!r} directly under its root: {reserved_reason(skeleton)}; "
            "allowed: another name, or a subdirectory"
        )


def _escape(text: str) -> str:
    text = _UNSAFE.sub("_", text)
    return text.replace("..", "__")


def split_root(filepath: str) -> tuple[str, str]:
    """Split a template into its checkpoint root and the part below it.

    The root is the longest directory prefix that holds no placeholder; ``""`` stands for the
    current directory.

    Returns:
        ``(root, rest)`` where ``rest`` is the template relative to the root.
    """
    brace = filepath.find("{")
    fixed = filepath if brace < 0 else filepath[:brace]
    cut = fixed.rfind("/")
    if cut < 0:
        return "", filepath
    root = filepath[:cut]
    if _URL.match(filepath) and len(root) < len(filepath.split("://", 1)[0]) + 3:
        raise TemplateError(
            f"filepath: {filepath!r} has no fixed bucket or root before a placeholder; "
            "allowed: a URL such as 's3://bucket/run/w-{epoch}.keras'"
        )
    if root == "" and filepath.startswith("/"):
        root = "/"
    return root, filepath[cut + 1 :]


class FilepathTemplate:
    """A parsed filepath template.

    Args:
        filepath: The template, a local path or a URL.

    Raises:
        TemplateError: If the template is malformed (unbalanced braces, positional or
            attribute placeholders, conversions), or a directory name is a placeholder
            that could escape the root.
    """

    def __init__(self, filepath: str) -> None:
        if not isinstance(filepath, str) or not filepath.strip():
            raise TemplateError(f"filepath: got {filepath!r}; allowed: a non-empty path or URL string")
        if "\x00" in filepath:
            raise TemplateError(f"filepath: {filepath!r} holds a NUL character; allowed: a path without one")
        self.filepath = filepath
        self.root, self.relative = split_root(filepath)
        self._fields = _parse(self.relative, filepath)
        _parse(self.root, filepath)  # the root must be valid too (it holds no placeholder)
        if self.relative in ("", ".", "..") or self.relative.endswith("/"):
            raise TemplateError(f"filepath: {filepath!r} names a directory; allowed: a file name")
        if ".." in self.relative.split("/"):
            raise TemplateError(
                f"filepath: {filepath!r} climbs out of its root with '..'; allowed: a path that "
                "stays below the directory before the first placeholder"
            )
        _check_names(self._fields, self.root, filepath)
        _check_int_specs(self._fields, filepath)

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholder names, in order."""
        return tuple(f.name for f in self._fields if f.name is not None)

    @property
    def is_fixed(self) -> bool:
        """Whether every save goes to the same name."""
        return not self.placeholders

    def render(self, epoch: int | None = None, batch: int | None = None, logs: Mapping[str, Any] | None = None,
               step: int | None = None) -> str:
        """Render the path of one checkpoint, relative to :attr:`root`.

        Args:
            epoch: 0-based epoch (rendered 1-based), or None.
            batch: 0-based batch (rendered 1-based), or None.
            logs: Metric values.
            step: The global step (batches run so far in the run), or None; a ``step`` key in
                ``logs`` (a loop counting its own steps) takes precedence.

        Raises:
            MissingKeyError: A placeholder has no value; the message lists the keys present.
            TemplateError: A value does not fit its format spec.
        """
        values: dict[str, Any] = dict(logs or {})
        if epoch is not None:
            values["epoch"] = epoch + 1
        if batch is not None:
            values["batch"] = batch + 1
        if step is not None:
            values.setdefault("step", step)  # a loop that logs its own step count keeps it
        out = []
        for field in self._fields:
            out.append(field.literal)
            if field.name is None:
                continue
            if field.name not in values:
                raise MissingKeyError(field.name, list(values))
            value = values[field.name]
            try:
                text = format(value, field.spec)
            except (TypeError, ValueError, OverflowError) as exc:
                raise TemplateError(
                    f"filepath: cannot format {field.name}={shown(value)} with spec "
                    f"{field.spec!r}: {exc}"
                ) from exc
            out.append(_escape(text))
        relative = "".join(out)
        parts = relative.split("/")
        if any(part in ("", ".", "..") for part in parts):
            # An empty or "." value would name the root itself or a directory; ".." and "/" in
            # values are escaped above, so nothing renders outside the root.
            raise TemplateError(
                f"filepath: {self.filepath!r} renders to {relative!r}, which has an empty, '.' "
                "or '..' path component; allowed: values that give every component a name"
            )
        for part in parts:
            if name_bytes(part) > NAME_MAX:
                raise TemplateError(
                    f"filepath: {self.filepath!r} renders the name {part!r} ({name_bytes(part)} bytes), "
                    f"longer than {NAME_MAX} bytes, the limit of a file name; allowed: shorter values "
                    "or format specs"
                )
        reserved = reserved_reason(relative)
        if reserved is None and any(is_reserved_dir(part) for part in parts):
            reserved = reserved_reason(RESERVED_DIR)
        if reserved is not None:
            raise TemplateError(
                f"filepath: {self.filepath!r} renders {relative!r}: {reserved}; allowed: other values"
            )
        return relative

    def matches(self, relative: str) -> bool:
        """Whether ``relative`` could have been rendered from this template.

        ``{epoch}``, ``{batch}`` and ``{step}`` match digits only and a numeric format spec (``{loss:.3f}``)
        a number, so ``model-{epoch}.keras`` does not match ``model-best.keras``.
        """
        pattern = "".join(re.escape(f.literal) + _value_pattern(f) for f in self._fields)
        return re.fullmatch(pattern, relative) is not None

    def join(self, relative: str) -> str:
        """Join a rendered relative path onto the root."""
        if not self.root:
            return relative
        return self.root.rstrip("/") + "/" + relative

    def __repr__(self) -> str:
        return f"FilepathTemplate({self.filepath!r})"
