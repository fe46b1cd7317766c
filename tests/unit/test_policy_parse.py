"""Policy documents: parsing, the checks a schema cannot express, and the canonical form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.model import BlockerKind, Consistency, Strategy
from truenas_vmware_coord.domain.policy import (
    CustomAttributeMatch,
    Ladder,
    LadderOptions,
    MatchConditions,
    Policy,
    Scope,
    VssContext,
    parse_ladder,
    parse_policy,
    policy_to_dict,
)

FULL = {
    "id": 4,
    "name": "db servers",
    "description": "power off databases",
    "enabled": False,
    "priority": 20,
    "scope": {"mapping_id": "7"},
    "match": {
        "name_glob": "db-*",
        "name_regex": "db-[0-9]+",
        "moref": "vm-42",
        "instance_uuid": "5012A8C5-6C4E-1B6E-8A8F-2D1F4F6B9C01",
        "folder_glob": "/dc/vm/prod/*",
        "custom_attribute": {"key": "backup", "value": "offline"},
        "guest_family": "linux",
        "has_blocker": ["no_tools", "passthrough"],
    },
    "ladder": ["power_off", "suspend", "crash"],
    "options": {
        "quiesce_timeout_minutes": 5,
        "deadline_seconds": 60,
        "vss_context": "file_system",
        "shutdown_timeout_seconds": 600,
        "hard_power_off": True,
    },
    "requires": "powered_off",
}


def _doc(**changes: Any) -> dict[str, Any]:
    return {"name": "p", "priority": 1, "ladder": ["quiesce", "crash"], **changes}


def test_full_document_parses_into_the_dataclasses() -> None:
    assert parse_policy(FULL) == Policy(
        id=4,
        name="db servers",
        description="power off databases",
        enabled=False,
        priority=20,
        scope=Scope(mapping_id="7"),
        match=MatchConditions(
            name_glob="db-*",
            name_regex="db-[0-9]+",
            moref="vm-42",
            instance_uuid="5012A8C5-6C4E-1B6E-8A8F-2D1F4F6B9C01",
            folder_glob="/dc/vm/prod/*",
            custom_attribute=CustomAttributeMatch("backup", "offline"),
            guest_family="linux",
            has_blocker=(BlockerKind.NO_TOOLS, BlockerKind.PASSTHROUGH),
        ),
        ladder=Ladder(
            rungs=(Strategy.POWER_OFF, Strategy.SUSPEND, Strategy.CRASH),
            options=LadderOptions(5, 60, VssContext.FILE_SYSTEM, 600, True),
            requires=Consistency.POWERED_OFF,
        ),
    )


def test_full_document_round_trips_exactly() -> None:
    assert policy_to_dict(parse_policy(FULL)) == FULL == parse_policy(FULL).to_dict()
    assert parse_policy(json.loads(json.dumps(policy_to_dict(parse_policy(FULL))))) == parse_policy(FULL)


def test_minimal_document_gets_documented_defaults_and_a_valid_canonical_form() -> None:
    policy = parse_policy(_doc())
    assert (policy.enabled, policy.description, policy.scope, policy.id) == (True, "", None, None)
    assert policy.match == MatchConditions()
    assert policy.ladder.options == LadderOptions()
    canonical = policy_to_dict(policy)
    assert "id" not in canonical
    assert canonical["options"] == {
        "quiesce_timeout_minutes": None, "deadline_seconds": None, "vss_context": None,
        "shutdown_timeout_seconds": 300, "hard_power_off": False,
    }
    assert canonical["match"] == {} and canonical["scope"] is None and canonical["requires"] is None
    schemas.validate("policy", canonical)


def test_nulls_for_unset_conditions_are_accepted_and_dropped() -> None:
    policy = parse_policy(_doc(match={"name_glob": None, "custom_attribute": None, "guest_family": None}))
    assert policy.match == MatchConditions()
    assert policy_to_dict(policy)["match"] == {}


def test_whole_floats_are_stored_as_integers() -> None:
    policy = parse_policy(_doc(priority=3.0, options={"quiesce_timeout_minutes": 10.0}))
    assert policy.priority == 3 and isinstance(policy.priority, int)
    assert policy_to_dict(policy)["options"]["quiesce_timeout_minutes"] == 10
    assert isinstance(policy.ladder.options.quiesce_timeout_minutes, int)


@pytest.mark.parametrize(
    ("rungs", "requires", "expected"),
    [
        (["quiesce", "crash"], None, Consistency.QUIESCED),
        (["quiesce", "memory"], None, Consistency.QUIESCED),
        (["crash"], None, Consistency.CRASH),
        (["memory", "crash"], "crash", Consistency.CRASH),
        (["power_off", "suspend"], None, Consistency.POWERED_OFF),
        (["exclude"], None, Consistency.EXCLUDED),
        (["quiesce", "crash"], "quiesced", Consistency.QUIESCED),
    ],
)
def test_required_consistency_is_explicit_or_the_first_rung(
    rungs: list[str], requires: str | None, expected: Consistency
) -> None:
    assert parse_policy(_doc(ladder=rungs, requires=requires)).ladder.required is expected


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        (_doc(ladder=["exclude", "crash"]), "policy.ladder",
         "'exclude' must be the only strategy: an excluded VM is not touched at all"),
        (_doc(ladder=["quiesce", "exclude"]), "policy.ladder",
         "'exclude' must be the only strategy: an excluded VM is not touched at all"),
        (_doc(ladder=["crash", "quiesce"]), "policy.ladder",
         "'crash' always works, so nothing may follow it"),
        (_doc(ladder=["crash"], requires="quiesced"), "policy.requires",
         "'quiesced' cannot be reached: the best strategy listed, 'crash', gives 'crash'"),
        (_doc(ladder=["exclude"], requires="crash"), "policy.requires",
         "'crash' cannot be reached: the best strategy listed, 'exclude', gives 'excluded'"),
        (_doc(match={"name_regex": "db-("}), "policy.match.name_regex",
         "invalid regular expression: missing ): db-("),
        (_doc(match={"name_regex": "a{1001}"}), "policy.match.name_regex",
         "invalid regular expression: invalid repetition size: {1001}"),
        (_doc(match={"name_regex": r"(a)\1"}), "policy.match.name_regex",
         "invalid regular expression: invalid escape sequence: \\1 (backreferences and lookaround "
         "are not supported: they would let a pattern take exponential time)"),
        (_doc(match={"name_glob": "db-[0-9"}), "policy.match.name_glob",
         "invalid wildcard: '[' at position 3 is never closed (write '[[]' for a literal '[')"),
        (_doc(match={"folder_glob": "/dc/[!]"}), "policy.match.folder_glob",
         "invalid wildcard: '[' at position 4 is never closed (write '[[]' for a literal '[')"),
    ],
)
def test_semantic_problems_name_the_field(document: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(document)
    assert caught.value.errors == [(field, message)]


@pytest.mark.parametrize("glob", ["db-[[]1]", "[]]x", "[!]]x", "a[b]c*", "*?"])
def test_closed_brackets_are_valid_globs(glob: str) -> None:
    assert parse_policy(_doc(match={"name_glob": glob})).match.name_glob == glob


def test_schema_and_semantic_problems_use_the_callers_prefix() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(_doc(match={"name_regex": "("}), field="vmware_coord_policy_create")
    assert caught.value.errors[0].field == "vmware_coord_policy_create.match.name_regex"


def test_several_semantic_problems_are_reported_together() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(_doc(ladder=["crash", "memory"], match={"name_regex": "(", "name_glob": "["}))
    assert {f for f, _ in caught.value.errors} == {
        "policy.ladder", "policy.match.name_regex", "policy.match.name_glob"
    }


def test_parse_ladder_reads_the_default_policy_of_the_engine_settings() -> None:
    ladder = parse_ladder({"ladder": ["memory", "crash"], "options": {"deadline_seconds": 30}})
    assert ladder == Ladder((Strategy.MEMORY, Strategy.CRASH), LadderOptions(deadline_seconds=30))
    with pytest.raises(InvalidInput) as caught:
        parse_ladder({"ladder": ["exclude", "crash"]}, field="config.default_policy")
    assert caught.value.errors[0].field == "config.default_policy.ladder"


def test_invalid_input_text_is_readable() -> None:
    one = InvalidInput.single("policy.name", "must not be empty")
    assert str(one) == "policy.name: must not be empty"
    assert isinstance(one, ValueError)
    with pytest.raises(ValueError, match="at least one"):
        InvalidInput([])
