"""The strategy table is the one place a strategy is defined: everything else reads it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.model import Provider, Strategy
from truenas_vmware_coord.domain.strategies import STRATEGIES, UNDO_BY_KIND
from truenas_vmware_coord.domain.strategies.base import ActionKind
from truenas_vmware_coord.vsphere import privileges

SCHEMAS = Path(schemas.__file__).parent


def _enums(node, path=""):
    if isinstance(node, dict):
        if "enum" in node:
            yield path, node["enum"]
        for key, value in node.items():
            yield from _enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _enums(value, f"{path}/{i}")


def test_one_module_per_strategy() -> None:
    assert list(STRATEGIES) == list(Strategy)
    files = {Path(inspect.getfile(type(m))).stem for m in STRATEGIES.values()}
    assert files == {s.value for s in Strategy}


def test_every_schema_lists_exactly_the_registered_strategies() -> None:
    names = [s.value for s in STRATEGIES]
    found = []
    for path in sorted(SCHEMAS.glob("*.json")):
        for where, values in _enums(json.loads(path.read_text())):
            if "quiesce" in values:
                found.append(where)
                assert [v for v in values if v is not None] == names, f"{path.name}{where}"
    assert len(found) >= 4


def test_the_policy_schema_describes_each_strategy_in_the_registrys_words() -> None:
    items = schemas.load_schema("policy")["$defs"]["ladder"]["items"]
    expected = "; ".join(f"{s.value}: {m.summary}" for s, m in STRATEGIES.items()) + "."
    assert items["description"] == expected


def test_every_journal_kind_is_undone_by_a_strategy_that_makes_it() -> None:
    made = {m.action for m in STRATEGIES.values() if m.action is not None}
    assert made == set(ActionKind) == set(UNDO_BY_KIND)
    for kind, name in UNDO_BY_KIND.items():
        assert STRATEGIES[name].action is kind


def test_strategies_that_act_declare_their_privileges_and_the_check_asks_for_them() -> None:
    for module in STRATEGIES.values():
        # vCenter privileges: for what a strategy asks of VMware; libvirt has no such thing
        assert bool(module.privileges) == (module.action is not None
                                           and Provider.VSPHERE in module.providers), module.name
    assert set(privileges.PRIVILEGES) == {"System.Read"} | {
        p for m in STRATEGIES.values() for p in m.privileges}
    assert "power_off, suspend" in privileges.PRIVILEGES["VirtualMachine.Interact.PowerOn"]
