"""The schema file: which types, relations, roles or attributes a task may extract.

Upstream's format is three lines, each one JSON value (SPEC.md §1.5)::

    ["人物", "地理位置", "组织机构"]      line 1: type list   (NER, EET, SPO strings, EE event types)
    []                                  line 2: role list   (RE relations, KG attributes)
    {}                                  line 3: type -> roles (EE/EEA roles per event type, KG attributes per type)

A pretty-printed JSON object ``{"type_list": [...], "role_list": [...], "type_role_dict": {...}}`` is accepted
too, because people hand-edit schemas. Upstream turned every line into a ``set`` and so iterated in hash order;
we keep the order of the file, which is what makes our test files and random-sort files reproducible.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "schema.json")
>>> write_schema(Schema(types=["人物", "组织机构"]), p)
>>> load_schema(p).types
['人物', '组织机构']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .io import DataError

__all__ = ["Schema", "load_schema", "parse_schema_text", "write_schema", "SCHEMA_KEYS"]

SCHEMA_KEYS = ("type_list", "role_list", "type_role_dict")


@dataclass
class Schema:
    """The three schema lines, in file order."""

    types: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    type_roles: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[object]:
        """The three values as they are written to disk."""
        return [self.types, self.roles, self.type_roles]


def _check(path: str, line: int | None, name: str, value: object, want: str) -> None:
    if want == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise DataError(path, line, name, f"expected a JSON list of strings, got {json.dumps(value, ensure_ascii=False)[:80]}")
    if want == "dict":
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
        if not ok:
            raise DataError(path, line, name, "expected a JSON object mapping each type to a list of strings")


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def load_schema(path: str | os.PathLike) -> Schema:
    """Load a schema file in the three-line form or the JSON-object form; errors name the line."""
    path = str(path)
    if os.path.isdir(path):
        raise DataError(path, None, None, "is a directory; expected a schema file")
    if not os.path.exists(path):
        raise DataError(path, None, None, "schema file not found (omit --schema_path to collect the schema from the data)")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 (byte {exc.start + 1}); save the schema as UTF-8") from None
    return parse_schema_text(text, path)


def parse_schema_text(text: str, source: str = "schema") -> Schema:
    """A schema given as text (a file's content, or typed into a notebook or the widget), in either form.

    ``source`` names it in errors (a file path, or ``schema``).

    >>> parse_schema_text('["person"]\\n[]\\n{}').types
    ['person']
    """
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        unknown = sorted(set(whole) - set(SCHEMA_KEYS))
        if unknown:
            raise DataError(source, None, unknown[0], f"unknown key; a JSON-object schema has only {', '.join(SCHEMA_KEYS)}")
        values = [whole.get("type_list", []), whole.get("role_list", []), whole.get("type_role_dict", {})]
        lines: list[int | None] = [None, None, None]
    else:
        numbered = [(n, s) for n, s in enumerate(text.splitlines(), start=1) if s.strip()]
        if len(numbered) != 3:
            raise DataError(
                source, None, None,
                f"expected three lines (type list, role list, type->roles object) or one JSON object, found {len(numbered)} non-empty lines",
            )
        values, lines = [], []
        for number, line in numbered:
            try:
                values.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise DataError(source, number, SCHEMA_KEYS[len(values)], f"not valid JSON: {reason}") from None
            lines.append(number)
    for name, value, line, want in zip(SCHEMA_KEYS, values, lines, ("list", "list", "dict")):
        _check(source, line, name, value, want)
    types, roles, type_roles = values
    return Schema(_dedupe(types), _dedupe(roles), {k: _dedupe(v) for k, v in type_roles.items()})


def write_schema(schema: Schema, path: str | os.PathLike) -> None:
    """Write the three-line form (what upstream's tools read)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(json.dumps(v, ensure_ascii=False) for v in schema.lines()) + "\n")
