"""Reading request bodies: JSON objects whose fields are checked, each error naming its field.

    body = Fields(await read_json(request), allowed=("query", "k"))
    query = body.text("query", required=True)
    k = body.integer("k", 5, minimum=1)
    options = body.dataclass(Sampling, {"temperature": "temp"})   # a whole dataclass at once
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from rag_core.server.errors import HTTPError

MISSING: Any = object()


async def read_json(request) -> dict:
    """The request's JSON object body (415 unless sent as application/json, 400 if malformed).

    Requiring the JSON content type also keeps other web sites from posting to a local server:
    a browser must ask first (CORS preflight) before sending it cross-site, and is refused.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPError(415, "Send the request body as JSON with the header "
                             "'Content-Type: application/json'.", "Content-Type")
    raw = await request.body()
    if not raw.strip():
        raise HTTPError(400, "The request body is empty; send a JSON object.", "body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"The request body is not valid JSON: {exc}.", "body") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"The request body must be a JSON object, got "
                             f"{_json_type(data)}.", "body")
    return data


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def bad(field: str, problem: str) -> HTTPError:
    """A 400 for field ``field``: ``'k' must be ...``."""
    return HTTPError(400, f"'{field}' {problem}.", field)


class Fields:
    """Typed access to a JSON object's fields; ``allowed`` rejects any other field at once."""

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str] | None = None,
                 prefix: str = ""):
        self.data = data
        self.prefix = prefix
        if allowed is not None:
            allowed = list(allowed)
            for name in data:
                if name not in allowed:
                    raise bad(self.name(name), f"is not a known field (known: "
                                               f"{', '.join(allowed)})")

    def name(self, field: str) -> str:
        return f"{self.prefix}{field}"

    def get(self, field: str, default: Any, required: bool) -> Any:
        value = self.data.get(field, MISSING)
        if value is MISSING or value is None:
            if required:
                raise bad(self.name(field), "is required")
            return default
        return value

    def text(self, field: str, default: str | None = None, *, required: bool = False,
             choices: Iterable[str] | None = None, max_length: int | None = None) -> str | None:
        """A string; never empty (or only spaces) when given."""
        value = self.get(field, default, required)
        if value is default:
            return value
        value = check_type(self.name(field), value, str)
        if not value.strip():
            raise bad(self.name(field), "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise bad(self.name(field), f"is longer than {max_length} characters")
        choices = list(choices) if choices is not None else None
        if choices is not None and value not in choices:
            raise bad(self.name(field), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, field: str, default: int | None = None, *, required: bool = False,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.get(field, default, required)
        if value is default:
            return value
        value = check_type(self.name(field), value, int)
        return _in_range(self.name(field), value, minimum, maximum)

    def number(self, field: str, default: float | None = None, *, required: bool = False,
               minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = self.get(field, default, required)
        if value is default:
            return value
        value = check_type(self.name(field), value, float)
        return _in_range(self.name(field), value, minimum, maximum)

    def flag(self, field: str, default: bool = False) -> bool:
        return check_type(self.name(field), self.get(field, default, False), bool)

    def dataclass(self, cls: type, names: Mapping[str, str] | None = None) -> Any:
        """An instance of dataclass ``cls`` from the fields named like its fields (or renamed by
        ``names``: JSON name -> dataclass field). Values are checked against the field types
        (int, float, str, bool, Literal, X | None, list/tuple of those); a ValueError from the
        dataclass's own checks becomes a 400 too."""
        names = dict(names or {})
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {}
        for field, value in self.data.items():
            target = names.get(field, field if field not in names.values() else None)
            if target in known and value is not None:
                values[target] = check_type(self.name(field), value, hints[target])
        try:
            return cls(**values)
        except ValueError as exc:
            given = {target: field for field, target in names.items() if field in self.data}
            given.update({t: t for t in values if t not in given})
            field = _first_named(str(exc), given)
            raise HTTPError(400, str(exc), self.name(field) if field else None) from None


def _first_named(message: str, fields: Mapping[str, str]) -> str | None:
    """The JSON name of the field (given as dataclass name -> JSON name) that ``message`` names
    first, as a whole word."""
    found = []
    for target, field in fields.items():
        match = re.search(rf"\b{re.escape(target)}\b", message)
        if match:
            found.append((match.start(), field))
    return min(found)[1] if found else None


def _in_range(field: str, value, minimum, maximum):
    if minimum is not None and value < minimum:
        raise bad(field, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise bad(field, f"must be at most {maximum}, got {value}")
    return value


def check_type(field: str, value: Any, hint: Any) -> Any:
    """``value`` if it fits the type hint (ints accepted as floats; lists as tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return check_type(field, value, option)
            except HTTPError as exc:
                problems.append(exc)
        raise problems[0]
    if origin is typing.Literal:
        if value not in args:
            raise bad(field, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list):
            raise bad(field, f"must be an array, got {_json_type(value)}")
        item = args[0] if args else Any
        items = [check_type(f"{field}[{i}]", v, item) for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad(field, f"must be an object, got {_json_type(value)}")
        return value
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(hint)
    if expected is None:
        return value
    if not isinstance(value, expected) or (hint is not bool and isinstance(value, bool)):
        want = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise bad(field, f"must be {want[hint]}, got {_json_type(value)}")
    return float(value) if hint is float else value
