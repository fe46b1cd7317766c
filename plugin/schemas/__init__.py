"""The JSON Schema contracts (draft 2020-12) and a validator that speaks plain words.

The ``*.json`` files next to this module are the single source of truth for what users
write: the middleware API, the CLI and the UI all validate with (or render from) them.
``validate`` collects *every* schema violation and reports each as a (field path, message)
pair in an ``InvalidInput``; field paths are dotted like middlewared's
(``policy.ladder.1``), with the caller's prefix first.

Checks a schema cannot express (a regular expression compiles, ``exclude`` stands alone...)
live in the domain modules that own the documents.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as _SchemaViolation
from truenas_vmware_coord.domain.errors import FieldError, InvalidInput

BASE_URI = "https://truenas-vmware-coord.invalid/schemas/"
_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_BASIC = frozenset({"type", "minLength"})
_SECONDARY = frozenset({"pattern", "enum"})


def load_schema(name: str) -> dict[str, Any]:
    """The schema document ``<name>.json`` (a private copy: callers may change it)."""
    return copy.deepcopy(_load(name))


def defaults(name: str) -> dict[str, Any]:
    """The ``default`` of each top-level property of schema ``name``: the one place a default
    is written down (dataclasses and the middleware API read theirs from here)."""
    return {k: copy.deepcopy(v["default"]) for k, v in _load(name)["properties"].items() if "default" in v}


def validate(
    name: str, document: Any, *, field: str | None = None, definition: str | None = None
) -> None:
    """Raise ``InvalidInput`` listing every way ``document`` breaks schema ``name``.

    ``field`` prefixes every path (default: the schema name); ``definition`` validates against
    ``#/$defs/<definition>`` of that schema instead of the whole document.
    """
    validator = _validator(name, definition)
    prefix = field if field is not None else name
    violations = list(validator.iter_errors(document))
    # "must not be empty" says it all: don't also complain that "" fails the pattern, or that
    # 5 is not one of the choices after saying it must be a string.
    basic = {tuple(v.absolute_path) for v in violations if v.validator in _BASIC}
    found = {
        fe
        for v in violations
        if not (v.validator in _SECONDARY and tuple(v.absolute_path) in basic)
        for fe in _explain(v, prefix)
    }
    if found:
        raise InvalidInput(sorted(found))


@functools.cache
def _load(name: str) -> dict[str, Any]:
    if not _NAME.fullmatch(name) or not (_DIR / f"{name}.json").is_file():
        raise KeyError(f"no schema named {name!r}")
    return json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _references(schema: dict[str, Any]) -> dict[str, Any]:
    """How cross-file "$ref"s (config.json -> policy.json) resolve: to the files next to us,
    never to the network. jsonschema 4.18+ takes a ``referencing`` registry; the 4.10 that
    TrueNAS 25.10 ships (Debian bookworm's, imported by middlewared before the plugin, so
    whatever else is installed beside the plugin) a ``RefResolver`` with a store."""
    if "registry" not in inspect.signature(Draft202012Validator).parameters:
        from jsonschema import RefResolver
        store = {f"{BASE_URI}{p.stem}.json": _load(p.stem) for p in sorted(_DIR.glob("*.json"))}
        return {"resolver": RefResolver(base_uri=schema["$id"], referrer=schema, store=store)}
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource

    def retrieve(uri: str) -> Resource:
        # Loading lazily keeps one broken schema file from breaking the others.
        if not uri.startswith(BASE_URI) or not uri.endswith(".json"):
            raise NoSuchResource(ref=uri)
        try:
            return Resource.from_contents(_load(uri[len(BASE_URI):-len(".json")]))
        except KeyError:
            raise NoSuchResource(ref=uri) from None

    return {"registry": Registry(retrieve=retrieve)}


@functools.cache
def _validator(name: str, definition: str | None) -> Draft202012Validator:
    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    root = Draft202012Validator(schema, **_references(schema))
    if definition is None:
        return root
    if definition not in schema.get("$defs", {}):
        raise KeyError(f"schema {name!r} has no definition {definition!r}")
    # evolve() keeps the root's resolver, so "#/$defs/..." inside the definition still works.
    return root.evolve(schema={"$ref": f"{schema['$id']}#/$defs/{definition}"})


# --- turning jsonschema's violations into plain words --------------------------------------

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PLAIN_KEY = re.compile(r"[^\s:]*").fullmatch


def _path(prefix: str, parts: Any) -> str:
    return ".".join([prefix, *(str(p) for p in parts)])


def _explain(v: _SchemaViolation, prefix: str) -> Iterator[FieldError]:
    here = _path(prefix, v.absolute_path)
    keyword, expected = v.validator, v.validator_value
    custom = v.schema.get("x-error-messages", {}) if isinstance(v.schema, dict) else {}
    if keyword in custom:
        yield FieldError(here, custom[keyword])
    elif keyword == "additionalProperties":
        known = v.schema.get("properties", {})
        for key in v.instance:
            if key not in known:
                # A key with ':' or white space in it would not read as a field name: it is
                # named in the message only, on its object.
                field = _path(here, [key]) if _PLAIN_KEY(str(key)) else here
                yield FieldError(field, f"unknown field {str(key)!r}")
    elif keyword == "required":
        for key in expected:
            if key not in v.instance:
                yield FieldError(_path(here, [key]), "required field is missing")
    else:
        yield FieldError(here, _message(keyword, expected, v.instance, v.message))


def _message(keyword: str, expected: Any, instance: Any, fallback: str) -> str:
    if keyword == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in wanted)
        return f"must be {words}, not {_kind_of(instance)}"
    if keyword == "enum":
        choices = ", ".join("null" if c is None else repr(c) for c in expected)
        return f"must be one of {choices}; got {_short(instance)}"
    if keyword == "minimum":
        return f"must be at least {expected}; got {instance}"
    if keyword == "maximum":
        return f"must be at most {expected}; got {instance}"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    if keyword == "maxLength":
        return f"must be at most {expected} characters long"
    if keyword == "minItems":
        return "must not be empty" if expected == 1 else f"must have at least {expected} items"
    if keyword == "maxItems":
        return f"must have at most {expected} items"
    if keyword == "uniqueItems":
        return "must not contain the same item twice"
    if keyword == "minProperties":
        return f"must have at least {expected} field(s)"
    if keyword == "maxProperties":
        return f"must have at most {expected} field(s)"
    if keyword == "pattern":
        return f"must match the pattern {expected}"
    return fallback
