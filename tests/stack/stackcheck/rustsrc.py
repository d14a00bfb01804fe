"""Names the app emits, read from its Rust source.

The activity module is the source of truth for activity event fields and
event names. The checks read it instead of keeping their own copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .common import CheckError

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"//[^\n]*")
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_SNAKE_WORD = re.compile(r"^[a-z_][a-z0-9_]*$")
_MACRO_START = re.compile(r"\b[a-z_]+!\s*[\(\[{]")
_MACRO_FIELD = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)\s*=(?!=)")
_MACRO_SHORTHAND = re.compile(r"[%?]([a-z_][a-z0-9_]*)\b")
_STRUCT_FIELD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:\s*[A-Z&(\[]", re.M)
_SPAN_MACRO = re.compile(r"\b(?:trace_|debug_|info_|warn_|error_)?span!\s*\(")
_CAMEL_IDENT = re.compile(r"\b([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)*)\b")


@dataclass
class ModuleNames:
    """Field names and event names found in one module's source files."""

    files: list[Path]
    fields: set[str]
    events: set[str]


def _strip_comments(text: str) -> str:
    return _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", text))


def _macro_bodies(text: str) -> list[str]:
    """Return the argument text of every `name!(...)` macro call."""
    bodies = []
    for match in _MACRO_START.finditer(text):
        depth, start = 0, match.end() - 1
        for index in range(start, len(text)):
            if text[index] in "([{":
                depth += 1
            elif text[index] in ")]}":
                depth -= 1
                if depth == 0:
                    bodies.append(text[start + 1 : index])
                    break
    return bodies


def _top_level_args(body: str) -> list[str]:
    """Split macro arguments at commas outside brackets, so `user_id,` shows as a shorthand field."""
    args, depth, current = [], 0, []
    for char in body:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            args.append("".join(current))
            current = []
        else:
            current.append(char)
    args.append("".join(current))
    return args


def _snake_case(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def activity_files(src: Path) -> list[Path]:
    candidates = [src / "activity.rs"]
    if (src / "activity").is_dir():
        candidates += sorted((src / "activity").rglob("*.rs"))
    files = [path for path in candidates if path.is_file()]
    if not files:
        raise CheckError(
            f"the activity module was not found: expected {src}/activity.rs or {src}/activity/"
        )
    return files


def read_activity_module(src: Path) -> ModuleNames:
    """Collect the names the activity module emits, plus the fields of the spans around it.

    Field names are taken from snake_case string literals, from `name = value`
    and `%name`/`?name` arguments of macro calls (tracing's event macros), and
    from struct fields. Event names are snake_case string literals and enum
    variants converted to snake_case (`LoginFailed` becomes `login_failed`).
    """
    files = activity_files(src)
    fields: set[str] = set()
    events: set[str] = set()
    for path in files:
        text = _strip_comments(path.read_text())
        literals = {value for value in _STRING.findall(text) if _SNAKE_WORD.match(value)}
        fields |= literals
        events |= literals
        for body in _macro_bodies(text):
            fields |= _macro_fields(body)
        fields |= set(_STRUCT_FIELD.findall(_STRING.sub('""', text)))
        events |= {_snake_case(name) for name in _CAMEL_IDENT.findall(_STRING.sub('""', text))}
    span_files, span_names = span_fields(src)
    return ModuleNames(files=files + span_files, fields=fields | span_names, events=events)


def _macro_fields(body: str) -> set[str]:
    """Return the field names of one tracing macro call's arguments."""
    body = _STRING.sub('""', body)
    fields = set(_MACRO_FIELD.findall(body)) | set(_MACRO_SHORTHAND.findall(body))
    fields |= {arg.strip() for arg in _top_level_args(body) if _SNAKE_WORD.match(arg.strip())}
    return fields


def span_fields(src: Path) -> tuple[list[Path], set[str]]:
    """Return the fields of every span the crate opens (`info_span!` and the like).

    The JSON line carries the fields of the event's enclosing spans too, so a
    request span's `request_id` is part of each activity event's line.
    """
    files: list[Path] = []
    fields: set[str] = set()
    for path in sorted(src.rglob("*.rs")):
        text = _strip_comments(path.read_text())
        found = False
        for match in _SPAN_MACRO.finditer(text):
            body = _macro_bodies(text[match.start():])[0]
            fields |= _macro_fields(body) - {"target", "parent", "name"}
            found = True
        if found:
            files.append(path)
    return files, fields


def string_literals(src: Path, exclude: tuple[str, ...] = ()) -> set[str]:
    """Return every string literal in the crate's source files."""
    if not src.is_dir():
        raise CheckError(f"the app's source directory {src} was not found")
    literals: set[str] = set()
    for path in src.rglob("*.rs"):
        if any(part in exclude for part in path.relative_to(src).parts):
            continue
        literals |= set(_STRING.findall(_strip_comments(path.read_text())))
    return literals
