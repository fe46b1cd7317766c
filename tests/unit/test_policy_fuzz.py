"""Fuzzing: any input is either accepted and round-trips, or rejected with field-named errors.

No input may crash the parser, the store or the resolver. Documents come from three sources:
valid ones built from the schema's rules, valid ones mutated (keys dropped, unknown keys
added, values replaced by arbitrary JSON), and arbitrary JSON values.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import factories as f
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.model import Blocker, BlockerKind, Consistency, PowerState, Strategy
from truenas_vmware_coord.domain.policy import parse_ladder, parse_policy, policy_to_dict
from truenas_vmware_coord.domain.resolution import resolve
from truenas_vmware_coord.domain.strategies import STRATEGIES
from truenas_vmware_coord.store.policy_repo import SqlitePolicyRepository

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOP_LEVEL = set(schemas.load_schema("policy")["properties"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9 _.:-]{0,20}[A-Za-z0-9_.:-])?", fullmatch=True)
plain = st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=12)
globs = st.lists(plain | st.sampled_from(["*", "?", "[0-9]", "[!x]"]), min_size=1, max_size=4).map("".join)
regexes = st.lists(plain.map(lambda s: s.replace("-", "\\-")) | st.sampled_from([".*", "\\d+", "(a|b)"]),
                   min_size=1, max_size=3).map("".join)
uuids = st.uuids().map(str)


@st.composite
def ladders(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()) and draw(st.booleans()):
        rungs = ["exclude"]
    else:
        middle = ["quiesce", "memory", "power_off", "suspend"]
        rungs = draw(st.permutations(middle).flatmap(lambda p: st.integers(0, 4).map(lambda n: p[:n])))
        if not rungs or draw(st.booleans()):
            rungs = [*rungs, "crash"]
    best = max(STRATEGIES[Strategy(r)].yields.rank for r in rungs)
    reachable = [c.value for c in Consistency if c.rank <= best]
    out: dict[str, Any] = {"ladder": rungs}
    if draw(st.booleans()):
        out["requires"] = draw(st.sampled_from([*reachable, None]))
    if draw(st.booleans()):
        out["options"] = draw(st.fixed_dictionaries({}, optional={
            "quiesce_timeout_minutes": st.none() | st.integers(5, 240),
            "deadline_seconds": st.none() | st.integers(10, 14400),
            "vss_context": st.sampled_from(["application", "file_system", None]),
            "shutdown_timeout_seconds": st.integers(10, 3600),
            "hard_power_off": st.booleans(),
        }))
    return out


matches = st.fixed_dictionaries({}, optional={
    "name_glob": st.none() | globs,
    "name_regex": st.none() | regexes,
    "moref": st.none() | st.from_regex(r"vm-[0-9]{1,5}", fullmatch=True),
    "instance_uuid": st.none() | uuids,
    "folder_glob": st.none() | globs.map(lambda g: "/dc/vm/" + g),
    "custom_attribute": st.none() | st.fixed_dictionaries(
        {"key": plain}, optional={"value": st.none() | st.text(max_size=10)}),
    "guest_family": st.sampled_from(["windows", "linux", "other", None]),
    "has_blocker": st.lists(st.sampled_from([k.value for k in BlockerKind]), unique=True, max_size=3),
})

valid_documents = st.tuples(
    st.fixed_dictionaries(
        {"name": names.filter(lambda n: len(n) <= 64), "priority": st.integers(1, 1_000_000)},
        optional={
            "description": st.text(max_size=30),
            "enabled": st.booleans(),
            "scope": st.none() | st.sampled_from([{"endpoint_id": f.VC_EP}, {"mapping_id": "7"}]),
            "match": matches,
        },
    ),
    ladders(),
).map(lambda parts: {**parts[0], **parts[1]})


def _paths(value: Any, here: tuple = ()) -> list[tuple]:
    found = [here]
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, (*here, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += _paths(sub, (*here, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    # A private copy: sampled_from hands out the same dicts again, which must stay unchanged.
    document: Any = copy.deepcopy(draw(valid_documents))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        action, value = draw(st.sampled_from(["drop", "replace", "add"])), draw(json_values)
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        target = parent[path[-1]] if path else document
        if action == "add" and isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=8))] = value
        elif action == "drop" and path:
            parent.pop(path[-1])
        elif action == "replace":
            if path:
                parent[path[-1]] = value
            else:
                document = value
    return document


def _accepted_or_named(document: Any) -> None:
    """The property: round-trip if accepted; otherwise every error names a field of the input."""
    try:
        policy = parse_policy(document)
    except InvalidInput as rejected:
        event("rejected")
        assert rejected.errors
        sent = {str(k) for k in document} if isinstance(document, dict) else set()
        for field, message in rejected.errors:
            assert message, field
            # "policy" itself, or a path through a real schema field or a key the caller sent
            assert field == "policy" or any(
                field == f"policy.{key}" or field.startswith(f"policy.{key}.") for key in TOP_LEVEL | sent
            ), (field, message)
        assert str(rejected)
        return
    event("accepted")
    canonical = policy_to_dict(policy)
    assert parse_policy(canonical) == policy
    assert parse_policy(json.loads(json.dumps(canonical))) == policy
    assert policy_to_dict(parse_policy(canonical)) == canonical
    schemas.validate("policy", canonical)


@FUZZ
@given(valid_documents)
def test_generated_valid_documents_are_accepted_and_round_trip(document: dict) -> None:
    policy = parse_policy(document)  # must not raise
    assert policy.name == document["name"]
    _accepted_or_named(document)


@FUZZ
@given(mutated_documents())
def test_mutated_documents_are_accepted_or_rejected_by_field(document: Any) -> None:
    _accepted_or_named(document)


@FUZZ
@given(json_values)
def test_arbitrary_json_is_rejected_by_field(document: Any) -> None:
    _accepted_or_named(document)


@settings(FUZZ, max_examples=100)
@given(st.lists(mutated_documents() | valid_documents, min_size=1, max_size=5))
def test_store_accepts_or_rejects_without_partial_writes(documents: list) -> None:
    with SqlitePolicyRepository() as repo:
        for document in documents:
            before = repo.list()
            try:
                created = repo.create(document)
            except InvalidInput:
                assert repo.list() == before
            else:
                assert repo.get(created.id) == created
                assert len(repo.list()) == len(before) + 1
        priorities = [p.priority for p in repo.list()]
        assert priorities == sorted(set(priorities))


vms = st.builds(
    lambda name, power, family, tools: f.vm(name, power=power, guest_family=family, tools_running=tools),
    plain,
    st.sampled_from(list(PowerState)),
    st.sampled_from(["windows", "linux", None]),
    st.booleans(),
)
blocker_lists = st.lists(st.builds(Blocker, st.sampled_from(list(BlockerKind)), st.text(max_size=10)),
                         max_size=5)


@FUZZ
@given(vms, blocker_lists, st.lists(valid_documents, max_size=4), ladders())
def test_resolution_never_crashes_and_keeps_its_invariants(vm, blockers, documents, default_doc) -> None:
    policies = [parse_policy(d) for d in documents]
    result = resolve(vm, blockers, policies, parse_ladder(default_doc))
    json.dumps(result.to_dict())
    assert result.policy is None or result.policy in {p.name for p in policies}
    if result.ladder == (Strategy.EXCLUDE,):
        assert result.expected is Consistency.EXCLUDED
    elif vm.power_state not in (PowerState.ON, PowerState.PAUSED):   # paused is not off: it runs on
        assert result.ladder == () and result.expected is Consistency.POWERED_OFF
    else:
        assert result.ladder, "a running VM always has something to do, if only crash"
        assert set(result.ladder) <= set(result.configured) | {Strategy.CRASH}
        assert set(result.configured) == set(result.ladder) - {Strategy.CRASH} | {
            p.rung for p in result.pruned} | (set(result.configured) & {Strategy.CRASH})
        assert all(p.reason.startswith(f"{p.rung.value} pruned: ") for p in result.pruned)
        assert result.expected is STRATEGIES[result.ladder[0]].yields
    assert result.meets_requirement == (result.expected.rank >= result.required.rank)
