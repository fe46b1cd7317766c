"""UI field definitions generated from the JSON Schemas, so the UI can never drift from the API.

``forms()`` walks a schema and returns, per form, flat field definitions: the dotted field
path the API names in its validation errors, the label (``title``), help (``description``),
a widget kind, choices, default, bounds and pattern. The web UI extension renders its forms
from the generated file; ``truenas_webui_form()`` gives the endpoint settings in the shape of
a TrueNAS web UI form (fieldsets of fields with tooltips and validators) that a web UI
developer can wire into the stock VMware-Snapshot form.

Regenerate with ``python -m truenas_vmware_coord.schemas.ui_fields ui_extension/generated``;
a test fails when the committed files differ from what the schemas give.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import load_schema

# Which documents the UI edits, and the fields it never shows (read-only or set elsewhere).
FORMS = {"policy": ("policy", {"id"}),
         "endpoint": ("endpoint", {"id", "host", "username"}),
         "config": ("config", {"journal_path"})}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Follow a ``$ref`` (local ``#/$defs/x`` or ``policy.json#/$defs/x``), keeping the referring
    node's own keywords; returns the node and the document it now lives in."""
    ref = node.get("$ref")
    if not ref:
        return node, root
    document, _, pointer = ref.partition("#")
    if document:
        root = load_schema(document.removesuffix(".json"))
    target: Any = root
    for part in pointer.strip("/").split("/") if pointer.strip("/") else ():
        target = target[part]
    resolved, root = _resolve(target, root)
    return {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}, root


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _widget(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    kinds = [k for k in _types(node) if k != "null"]
    items, _ = _resolve(node.get("items", {}), root)
    if "enum" in node:
        return {"widget": "select", "choices": [c for c in node["enum"] if c is not None]}
    if kinds == ["array"] and "enum" in items:
        ordered = node.get("x-ordered", not node.get("uniqueItems", False))
        return {"widget": "ordered_choices" if ordered else "multiselect", "choices": items["enum"]}
    if kinds == ["array"]:
        return {"widget": "list"}
    if kinds == ["boolean"]:
        return {"widget": "checkbox"}
    if kinds in (["integer"], ["number"]):
        return {"widget": "number", "integer": kinds == ["integer"]}
    multiline = node.get("maxLength", 0) > 1024
    return {"widget": "textarea" if multiline else "text"}


def _fields(node: dict[str, Any], root: dict[str, Any], path: str, hidden: set[str],
            required: bool) -> Iterator[dict[str, Any]]:
    """Leaf fields; ``required`` only when the field and every object above it are required
    (a key required inside an optional object is asked for only once that object is used)."""
    node, root = _resolve(node, root)
    props = node.get("properties")
    if props is not None:
        needed = set(node.get("required", ()))
        for name, child in props.items():
            if not path and name in hidden:
                continue
            yield from _fields(child, root, f"{path}.{name}" if path else name, hidden,
                               required and name in needed)
        return
    leaf = path.rsplit(".", 1)[-1]
    field = {"name": path, "label": node.get("title", leaf), "help": node.get("description", ""),
             "required": required, "nullable": "null" in _types(node)}
    field |= _widget(node, root)
    for key in ("default", "minimum", "maximum", "minLength", "maxLength", "pattern"):
        if key in node:
            field[key] = node[key]
    if node.get("examples"):
        field["example"] = node["examples"][0]
    if "x-error-messages" in node:
        field["messages"] = node["x-error-messages"]
    yield field


def form(name: str) -> dict[str, Any]:
    schema_name, hidden = FORMS[name]
    schema = load_schema(schema_name)
    return {"form": name, "schema": schema_name, "title": schema.get("title", name),
            "help": schema.get("description", ""),
            "fields": list(_fields(schema, schema, "", hidden, True))}


def forms() -> dict[str, Any]:
    return {name: form(name) for name in FORMS}


_TRUENAS_TYPES = {"text": "input", "textarea": "textarea", "number": "input", "checkbox": "checkbox",
                  "select": "select", "multiselect": "select", "list": "chip",
                  "ordered_choices": "select"}


def truenas_webui_form() -> dict[str, Any]:
    """The endpoint settings as extra fields of the stock VMware-Snapshot form."""
    fields = []
    for f in form("endpoint")["fields"]:
        entry: dict[str, Any] = {"type": _TRUENAS_TYPES[f["widget"]], "name": f"vmware_coord.{f['name']}",
                                 "placeholder": f["label"], "tooltip": f["help"],
                                 "required": f["required"]}
        if f["widget"] == "number":
            entry["inputType"] = "number"
        if "choices" in f:
            entry["options"] = [{"label": c, "value": c} for c in f["choices"]]
            entry["multiple"] = f["widget"] != "select"
        validators = {k: f[k] for k in ("minimum", "maximum", "pattern", "maxLength") if k in f}
        if validators:
            entry["validation"] = validators
        if "default" in f:
            entry["value"] = f["default"]
        fields.append(entry)
    return {"name": "VMware-Snapshot: VM-consistent coordination",
            "source": "truenas-vmware-coord plugin/schemas/endpoint.json",
            "saveMethod": "vmware_coord.endpoint.update",
            "fieldSets": [{"name": "Certificate and limits", "label": True, "config": fields}]}


GENERATED = {"forms.json": forms, "vmware-snapshot-form.json": truenas_webui_form}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in GENERATED.items()}


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "ui_extension/generated")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
