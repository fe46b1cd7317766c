"""The plan phase: which VMs a snapshot covers and what each one's policy says (a dry run
is this and nothing more)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence

from ..domain.model import Inventory, Provider
from ..domain.policy import Policy
from ..domain.resolution import resolve
from ..domain.selection import Plan, Scope, build_plan, scope_mappings
from .parts import Parts
from .sessions import close_within, connect_all


def endpoints_for(parts: Parts, dataset: str, recursive: bool, exclude: Iterable[str]) -> list[str]:
    """The endpoints a plan reads: those of the mappings in scope, and every local one."""
    scope = Scope(dataset, recursive, tuple(sorted(set(exclude))))
    return sorted({m.endpoint_id for m in scope_mappings(parts.mappings, scope)} | set(parts.local_endpoints))


def resolved_plan(parts: Parts, dataset: str, recursive: bool, exclude: Iterable[str],
                  inventories: Iterable[Inventory], policies: Sequence[Policy] | None = None) -> Plan:
    """The plan with each VM's policy resolved; ``policies`` replaces the configured ones."""
    plan = build_plan(dataset, inventories=inventories, mappings=parts.mappings, storage=parts.storage(),
                      now=parts.clock(), recursive=recursive, exclude=exclude)
    rules = [p for p in policies if p.enabled] if policies is not None else parts.policies
    defaults = {Provider.LIBVIRT: parts.libvirt_default_ladder}
    vms = tuple(dataclasses.replace(
        v, policy=resolve(v.facts, v.blockers, rules, parts.default_ladder, mapping_ids=v.mapping_ids,
                          defaults=defaults))
        for v in plan.vms)
    return dataclasses.replace(plan, vms=vms)


def plan(parts: Parts, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
         policies: Sequence[Policy] | None = None) -> tuple[Plan, dict[str, str]]:
    """The dry run: what a snapshot of ``dataset`` would do to each VM, changing nothing."""
    deadline = time.monotonic() + parts.config.begin_deadline_s
    sessions, inventories, errors = connect_all(
        parts.connector, endpoints_for(parts, dataset, recursive, exclude), deadline)
    for hv in sessions.values():
        close_within(hv)
    return resolved_plan(parts, dataset, recursive, exclude, inventories.values(), policies), errors
