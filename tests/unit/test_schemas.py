"""The JSON Schema contracts: well-formed, documented on every field, and their validator
reports problems as (field path, plain words)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.model import BlockerKind, Consistency, Strategy
from truenas_vmware_coord.domain.policy import DEFAULT_LADDER, parse_ladder

MINE = ("policy", "endpoint", "config")


def _fields(node: Any, pointer: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema that describes a field: properties, array items and $defs."""
    if not isinstance(node, dict):
        return
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            yield f"{pointer}/{key}/{name}", sub
            yield from _fields(sub, f"{pointer}/{key}/{name}")
    if isinstance(node.get("items"), dict):
        yield f"{pointer}/items", node["items"]
        yield from _fields(node["items"], f"{pointer}/items")


def _documented(schema: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    # A bare {"$ref": ...} inherits its documentation from the definition it points to.
    if set(sub) == {"$ref"} and sub["$ref"].startswith("#/$defs/"):
        return schema["$defs"][sub["$ref"].removeprefix("#/$defs/")]
    return sub


def _field_cases() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, pointer, sub)
        for name in MINE
        for pointer, sub in _fields(schemas.load_schema(name))
    ]


@pytest.mark.parametrize("name", MINE)
def test_schema_is_valid_draft_2020_12_with_an_id(name: str) -> None:
    schema = schemas.load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{schemas.BASE_URI}{name}.json"


FIELD_CASES = pytest.mark.parametrize(
    ("name", "pointer", "sub"), _field_cases(), ids=lambda v: v if isinstance(v, str) else ""
)


@FIELD_CASES
def test_every_field_has_title_description_and_examples(name: str, pointer: str, sub: dict) -> None:
    doc = _documented(schemas.load_schema(name), sub)
    for key in ("title", "description", "examples"):
        assert doc.get(key), f"{name}.json {pointer} lacks {key}"


@FIELD_CASES
def test_every_example_and_default_is_valid_for_its_field(name: str, pointer: str, sub: dict) -> None:
    root = schemas._validator(name, None)
    field = root.evolve(schema={"$ref": f"{root.schema['$id']}{pointer}"})
    doc = _documented(root.schema, sub)
    samples = [*doc.get("examples", []), *(["default"] if "default" in sub else [])]
    for sample in samples:
        value = sub["default"] if sample == "default" else sample
        assert field.is_valid(value), f"{name}.json {pointer}: {value!r} is not valid"


@pytest.mark.parametrize("name", MINE)
def test_top_level_examples_are_valid(name: str) -> None:
    for example in schemas.load_schema(name)["examples"]:
        schemas.validate(name, example)


def test_enums_in_the_policy_schema_match_the_domain_model() -> None:
    defs = schemas.load_schema("policy")
    blockers = defs["properties"]["match"]["properties"]["has_blocker"]["items"]["enum"]
    assert blockers == [k.value for k in BlockerKind]
    assert defs["$defs"]["ladder"]["items"]["enum"] == [s.value for s in Strategy]
    assert defs["$defs"]["requires"]["enum"] == [c.value for c in Consistency] + [None]


def test_config_defaults_give_the_built_in_default_policy() -> None:
    config = schemas.load_schema("config")
    schemas.validate("config", {})
    default = config["properties"]["default_policy"]["default"]
    assert parse_ladder(default, field="config.default_policy") == DEFAULT_LADDER


def test_load_schema_returns_a_private_copy() -> None:
    schemas.load_schema("policy")["title"] = "changed"
    assert schemas.load_schema("policy")["title"] == "VM exception policy"


@pytest.mark.parametrize("name", ["nope", "../policy", "Policy"])
def test_unknown_schema_name_is_refused(name: str) -> None:
    with pytest.raises(KeyError):
        schemas.validate(name, {})


GOOD_POLICY = {"name": "p", "priority": 1, "ladder": ["quiesce"]}

ERRORS = [
    # (schema, document, expected field, expected message)
    ("policy", {**GOOD_POLICY, "colour": "red"}, "policy.colour", "unknown field 'colour'"),
    ("policy", {"name": "p", "ladder": ["crash"]}, "policy.priority", "required field is missing"),
    ("policy", {**GOOD_POLICY, "priority": "1"}, "policy.priority", "must be a whole number, not a string"),
    ("policy", {**GOOD_POLICY, "priority": True}, "policy.priority",
     "must be a whole number, not true or false"),
    ("policy", {**GOOD_POLICY, "priority": 0}, "policy.priority", "must be at least 1; got 0"),
    ("policy", {**GOOD_POLICY, "enabled": "yes"}, "policy.enabled", "must be true or false, not a string"),
    ("policy", {**GOOD_POLICY, "ladder": []}, "policy.ladder", "must list at least one strategy"),
    ("policy", {**GOOD_POLICY, "ladder": ["crash", "crash"]}, "policy.ladder",
     "must not list a strategy twice"),
    ("policy", {**GOOD_POLICY, "ladder": ["quiesce", "snap"]}, "policy.ladder.1",
     "must be one of 'quiesce', 'memory', 'crash', 'power_off', 'suspend', 'exclude', 'fsfreeze', "
     "'pause'; got 'snap'"),
    ("policy", {**GOOD_POLICY, "name": ""}, "policy.name", "must not be empty"),
    ("policy", {**GOOD_POLICY, "name": "x" * 65}, "policy.name", "must be at most 64 characters long"),
    ("policy", {**GOOD_POLICY, "name": "bad/name"}, "policy.name",
     "must start with a letter or digit and contain only letters, digits, space, '_', '.', ':' or '-' "
     "(no trailing space)"),
    ("policy", {**GOOD_POLICY, "scope": {}}, "policy.scope",
     "give endpoint_id or mapping_id, or null for everywhere"),
    ("policy", {**GOOD_POLICY, "scope": {"endpoint_id": "a", "mapping_id": "1"}}, "policy.scope",
     "give only one of endpoint_id and mapping_id"),
    ("policy", {**GOOD_POLICY, "match": {"name_glob": 5}}, "policy.match.name_glob",
     "must be a string or null, not a whole number"),
    ("policy", {**GOOD_POLICY, "match": {"custom_attribute": {"value": "x"}}},
     "policy.match.custom_attribute.key", "required field is missing"),
    ("policy", {**GOOD_POLICY, "options": {"quiesce_timeout_minutes": 241}},
     "policy.options.quiesce_timeout_minutes", "must be at most 240; got 241"),
    ("policy", {**GOOD_POLICY, "options": {"quiesce_timeout_minutes": 4}},
     "policy.options.quiesce_timeout_minutes", "must be at least 5; got 4"),
    ("policy", {**GOOD_POLICY, "options": {"vss_context": "ctx_backup"}}, "policy.options.vss_context",
     "must be one of 'application', 'file_system', null; got 'ctx_backup'"),
    ("policy", ["not", "an", "object"], "policy", "must be an object, not a list"),
    ("endpoint", {"host": "https://vc/", "username": "u"}, "endpoint.host",
     "must be a host name or IP address only, such as 'vcenter.example.com' (no 'https://', no path)"),
    ("endpoint", {"host": "vc", "username": "u", "port": 70000}, "endpoint.port",
     "must be at most 65535; got 70000"),
    ("endpoint", {"host": "vc", "username": "u", "tls": {"insecure": True}}, "endpoint.tls.insecure",
     "unknown field 'insecure'"),
    ("endpoint", {"host": "vc", "username": "u", "limits": {"global": 0}}, "endpoint.limits.global",
     "must be at least 1; got 0"),
    ("config", {"limits": {"per_host": "4"}}, "config.limits.per_host",
     "must be a whole number, not a string"),
    ("config", {"journal_path": "journal.sqlite"}, "config.journal_path",
     "must be an absolute file path, such as '/var/db/system/vmware_coord/journal.sqlite'"),
    ("config", {"default_policy": {"ladder": []}}, "config.default_policy.ladder",
     "must list at least one strategy"),
    ("config", {"default_policy": {}}, "config.default_policy.ladder", "required field is missing"),
]


@pytest.mark.parametrize(("name", "document", "field", "message"), ERRORS)
def test_violation_is_reported_with_field_path_and_plain_words(
    name: str, document: Any, field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        schemas.validate(name, document)
    assert (field, message) in caught.value.errors


def test_all_violations_are_collected_sorted_and_prefixed() -> None:
    document = {"name": "", "priority": -1, "ladder": [], "extra": 1}
    with pytest.raises(InvalidInput) as caught:
        schemas.validate("policy", document, field="policy_create")
    fields = [f for f, _ in caught.value.errors]
    assert fields == sorted(fields)
    assert fields == ["policy_create.extra", "policy_create.ladder", "policy_create.name",
                      "policy_create.priority"]
    assert str(caught.value).startswith("4 problems:\n  policy_create.extra: unknown field 'extra'")


def test_validate_against_one_definition() -> None:
    schemas.validate("policy", {"ladder": ["memory"]}, definition="default_policy")
    with pytest.raises(InvalidInput) as caught:
        schemas.validate(
            "policy", {"ladder": ["memory"], "name": "x"}, field="d", definition="default_policy"
        )
    assert caught.value.errors == [("d.name", "unknown field 'name'")]
    with pytest.raises(KeyError):
        schemas.validate("policy", {}, definition="nope")


def test_valid_documents_pass() -> None:
    schemas.validate("policy", GOOD_POLICY)
    schemas.validate("endpoint", {"host": "fe80::1%25eth0", "username": "root", "tls": {
        "sha256_fingerprint": "ab" * 32, "check_hostname": None}})
    schemas.validate("config", {"limits": {"global": 640, "per_host": 1, "per_datastore": 30}})
