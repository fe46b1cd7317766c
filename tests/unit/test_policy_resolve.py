"""Resolution: which policy wins for a VM, which rungs survive its blockers, and why."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import factories as f
import pytest
from truenas_vmware_coord.domain.model import Blocker, BlockerKind, Consistency, PowerState, Strategy
from truenas_vmware_coord.domain.policy import DEFAULT_LADDER, Ladder, Policy, parse_ladder, parse_policy
from truenas_vmware_coord.domain.resolution import policy_matches, resolve, select_policy

Q, M, C, P, S, X = (Strategy.QUIESCE, Strategy.MEMORY, Strategy.CRASH, Strategy.POWER_OFF,
                    Strategy.SUSPEND, Strategy.EXCLUDE)

GPU = Blocker(BlockerKind.PASSTHROUGH, "PCI passthrough device 'pcipassthrough-0'")
VGPU = Blocker(BlockerKind.VGPU, "vGPU device 'grid_t4-8q'")
NO_TOOLS = Blocker(BlockerKind.NO_TOOLS, "VMware Tools are not running")
INDEPENDENT = Blocker(BlockerKind.INDEPENDENT_DISK, "'Hard disk 2' is independent_persistent")
FT = Blocker(BlockerKind.FAULT_TOLERANCE, "Fault Tolerance is configured")
CONSOLIDATE = Blocker(BlockerKind.CONSOLIDATION_NEEDED, "")
NO_QUIESCE_CAP = Blocker(BlockerKind.NO_QUIESCE_CAPABILITY, "")
NO_SNAP_CAP = Blocker(BlockerKind.NO_SNAPSHOT_CAPABILITY,
                      "vSphere reports capability.snapshotOperationsSupported = false")
DEEP = Blocker(BlockerKind.DEEP_SNAPSHOT_CHAIN, "33 snapshot level(s) already")


def pol(name: str, priority: int, ladder: list[str], **rest: Any) -> Policy:
    return parse_policy({"name": name, "priority": priority, "ladder": ladder, **rest})


@dataclass(frozen=True)
class Case:
    id: str
    blockers: tuple[Blocker, ...] = ()
    policies: tuple[Policy, ...] = ()
    vm: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    ladder: tuple[Strategy, ...] = (Q, C)
    pruned: tuple[str, ...] = ()
    expected: Consistency = Consistency.QUIESCED
    summary: str | None = None


GPU_HOSTS = pol("gpu-hosts", 10, ["crash"], match={"has_blocker": ["passthrough", "vgpu"]})
QUIESCE_ONLY = pol("must-quiesce", 5, ["quiesce"], match={"name_glob": "app-*"})
MEMORY_APP = pol("app-17", 1, ["memory", "crash"], match={"name_regex": "app-17"})
DB_OFF = pol("db", 30, ["power_off", "suspend", "crash"], match={"name_glob": "db-*"},
             options={"hard_power_off": True})
SCRATCH = pol("scratch", 40, ["exclude"], match={"name_glob": "scratch-*"})

CASES = [
    Case("no policy: default quiesce then crash", summary="quiesce -> crash (default policy)"),
    Case("gpu policy wins for a GPU VM", blockers=(GPU,), policies=(GPU_HOSTS, DB_OFF),
         policy="gpu-hosts", ladder=(C,), expected=Consistency.CRASH,
         summary="crash-consistent (policy 'gpu-hosts')"),
    Case("vgpu matches the same policy (any-of)", blockers=(VGPU,), policies=(GPU_HOSTS,),
         policy="gpu-hosts", ladder=(C,), expected=Consistency.CRASH),
    Case("default ladder loses quiesce to passthrough", blockers=(GPU,), ladder=(C,),
         pruned=("quiesce pruned: PCI passthrough device 'pcipassthrough-0' (default policy)",),
         expected=Consistency.CRASH,
         summary="crash-consistent (default policy); "
                 "quiesce pruned: PCI passthrough device 'pcipassthrough-0' (default policy)"),
    Case("nothing left: crash, said plainly", blockers=(GPU,), policies=(QUIESCE_ONLY,),
         vm={"name": "app-3"}, policy="must-quiesce", ladder=(C,), expected=Consistency.CRASH,
         pruned=("quiesce pruned: PCI passthrough device 'pcipassthrough-0' (policy 'must-quiesce')",),
         summary="crash-consistent: no strategy of the ladder can work for this VM (policy 'must-quiesce'); "
                 "quiesce pruned: PCI passthrough device 'pcipassthrough-0' (policy 'must-quiesce')"),
    Case("no tools prunes quiesce", blockers=(NO_TOOLS,), ladder=(C,), expected=Consistency.CRASH,
         pruned=("quiesce pruned: VMware Tools are not running (default policy)",)),
    Case("no tools keeps a memory snapshot", blockers=(NO_TOOLS,), policies=(MEMORY_APP,),
         vm={"name": "APP-17"}, policy="app-17", ladder=(M, C), expected=Consistency.MEMORY),
    Case("independent disk prunes memory only", blockers=(INDEPENDENT,), policies=(MEMORY_APP,),
         vm={"name": "app-17"}, policy="app-17", ladder=(C,), expected=Consistency.CRASH,
         pruned=("memory pruned: 'Hard disk 2' is independent_persistent; VMware refuses memory "
                 "snapshots of VMs with independent disks (policy 'app-17')",)),
    Case("independent disk keeps quiesce", blockers=(INDEPENDENT,)),
    Case("no tools prunes power_off, suspend remains", blockers=(NO_TOOLS,), policies=(DB_OFF,),
         vm={"name": "db-1"}, policy="db", ladder=(S, C), expected=Consistency.POWERED_OFF,
         pruned=("power_off pruned: VMware Tools are not running: a guest shutdown needs them, and a "
                 "hard power-off would only be crash-consistent (policy 'db')",)),
    Case("fault tolerance prunes suspend, not power_off", blockers=(FT,), policies=(DB_OFF,),
         vm={"name": "db-1"}, policy="db", ladder=(P, C), expected=Consistency.POWERED_OFF,
         pruned=("suspend pruned: Fault Tolerance is configured (policy 'db')",)),
    Case("several blockers on one rung are all named", blockers=(GPU, NO_TOOLS), ladder=(C,),
         expected=Consistency.CRASH,
         pruned=("quiesce pruned: PCI passthrough device 'pcipassthrough-0'; VMware Tools are not "
                 "running (default policy)",)),
    Case("kind words when a blocker has no detail", blockers=(NO_QUIESCE_CAP,), ladder=(C,),
         expected=Consistency.CRASH,
         pruned=("quiesce pruned: VMware reports quiesced snapshots unsupported (default policy)",)),
    Case("no snapshot capability prunes both snapshot rungs", blockers=(NO_SNAP_CAP,), policies=(MEMORY_APP,),
         vm={"name": "app-17"}, policy="app-17", ladder=(C,), expected=Consistency.CRASH,
         pruned=("memory pruned: vSphere reports capability.snapshotOperationsSupported = false "
                 "(policy 'app-17')",)),
    Case("deep chain prunes quiesce", blockers=(DEEP,), ladder=(C,), expected=Consistency.CRASH,
         pruned=("quiesce pruned: 33 snapshot level(s) already (default policy)",)),
    Case("consolidation needed prunes nothing", blockers=(CONSOLIDATE,)),
    Case("powered off VM needs nothing", blockers=(GPU,), vm={"power": PowerState.OFF}, ladder=(),
         expected=Consistency.POWERED_OFF,
         summary="powered off: its disks are consistent as they are, nothing to do (default policy)"),
    Case("suspended VM needs nothing", policies=(DB_OFF,), vm={"name": "db-2", "power": PowerState.SUSPENDED},
         policy="db", ladder=(), expected=Consistency.POWERED_OFF,
         summary="suspended: its disks are consistent as they are, nothing to do (policy 'db')"),
    Case("excluded wins even when powered off", policies=(SCRATCH, DB_OFF),
         vm={"name": "scratch-9", "power": PowerState.OFF}, policy="scratch", ladder=(X,),
         expected=Consistency.EXCLUDED, summary="excluded (policy 'scratch')"),
    Case("excluded running VM ignores its blockers", blockers=(GPU,), policies=(SCRATCH,),
         vm={"name": "scratch-1"}, policy="scratch", ladder=(X,), expected=Consistency.EXCLUDED),
    Case("lowest priority number wins", policies=(DB_OFF, pol("db-first", 29, ["memory"],
         match={"name_glob": "DB-*"})), vm={"name": "db-7"}, policy="db-first", ladder=(M,),
         expected=Consistency.MEMORY),
    Case("disabled policy is skipped", policies=(DB_OFF, pol("off", 1, ["crash"], enabled=False)),
         vm={"name": "db-7"}, policy="db", ladder=(P, S, C), expected=Consistency.POWERED_OFF),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resolution_table(case: Case) -> None:
    vm = f.vm(**case.vm)
    result = resolve(vm, list(case.blockers), list(case.policies))
    assert result.policy == case.policy
    assert result.ladder == case.ladder
    assert tuple(p.reason for p in result.pruned) == case.pruned
    assert result.expected is case.expected
    if case.summary is not None:
        assert result.summary == case.summary
    # Every rung the policy wrote is either kept or pruned with a reason (nothing vanishes).
    kept_or_pruned = set(result.ladder) | {p.rung for p in result.pruned}
    if vm.power_state is PowerState.ON:
        assert set(result.configured) <= kept_or_pruned
    # Deterministic whatever the order the policies come in.
    for order in itertools.permutations(case.policies):
        assert resolve(vm, list(case.blockers), list(order)) == result


def test_every_blocker_at_once_leaves_only_crash() -> None:
    every_blocker = [Blocker(k, "") for k in BlockerKind]
    result = resolve(f.vm("db-1"), every_blocker, [DB_OFF, MEMORY_APP])
    assert result.ladder == (C,)
    assert [p.rung for p in result.pruned] == [P, S]
    assert len(result.pruned[0].reason.split("; ")) == 1  # only NO_TOOLS rules out power_off


def test_caveats_are_noted_when_a_snapshot_is_taken() -> None:
    result = resolve(f.vm(), [INDEPENDENT, CONSOLIDATE], [])
    assert result.notes == (
        "'Hard disk 2' is independent_persistent (its data is only crash-consistent in the ZFS snapshot)",
        "disks need consolidation (a new VMware snapshot adds to that chain)",
    )
    assert resolve(f.vm("db-1"), [INDEPENDENT], [DB_OFF]).notes == ()  # no VMware snapshot


def test_no_caveat_without_a_vmware_snapshot() -> None:
    # Only the unmet default requirement is noted, not the independent-disk caveat.
    assert resolve(f.vm(), [INDEPENDENT, GPU], []).notes == (
        "requires 'quiesced' but can at best be 'crash' (default policy)",)
    crash_by_policy = pol("gpu", 1, ["crash"])
    assert resolve(f.vm(), [INDEPENDENT, GPU], [crash_by_policy]).notes == ()


def test_unmet_requirement_is_flagged_and_noted() -> None:
    strict = pol("strict", 1, ["quiesce", "crash"], requires="quiesced")
    result = resolve(f.vm(), [NO_TOOLS], [strict])
    assert result.required is Consistency.QUIESCED
    assert result.meets_requirement is False
    assert result.notes == ("requires 'quiesced' but can at best be 'crash' (policy 'strict')",)
    assert resolve(f.vm(), [], [strict]).meets_requirement is True
    # A powered-off VM is consistent: it meets even a 'quiesced' requirement.
    assert resolve(f.vm(power=PowerState.OFF), [NO_TOOLS], [strict]).meets_requirement is True


def test_configurable_default_ladder() -> None:
    default = parse_ladder({"ladder": ["memory", "crash"], "options": {"deadline_seconds": 30}})
    result = resolve(f.vm(), [], [], default)
    assert (result.policy, result.policy_label, result.ladder) == (None, "default policy", (M, C))
    assert result.options.deadline_seconds == 30


def test_options_and_ids_of_the_matched_policy_are_carried() -> None:
    stored = pol("db", 30, ["power_off"], id=12, match={"name_glob": "db-*"},
                 options={"shutdown_timeout_seconds": 900, "hard_power_off": True})
    result = resolve(f.vm("db-1"), [], [stored])
    assert (result.policy_id, result.options.shutdown_timeout_seconds, result.options.hard_power_off) == (
        12, 900, True)


def test_to_dict_is_json_and_complete() -> None:
    result = resolve(f.vm("app-17"), [GPU], [MEMORY_APP])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["policy"] == "app-17"
    assert data["configured"] == ["memory", "crash"] and data["ladder"] == ["crash"]
    assert data["pruned"] == [{"rung": "memory", "reason": result.pruned[0].reason}]
    assert data["required"] == "memory" and data["expected"] == "crash"
    assert not data["meets_requirement"]
    assert data["options"]["shutdown_timeout_seconds"] == 300
    assert data["summary"] == result.summary and data["vm_name"] == "app-17"


# --- matching, one condition at a time -------------------------------------------------------

VM = f.vm(
    "DB-01",
    moref="vm-42",
    uuid="5012a8c5-6c4e-1b6e-8a8f-2d1f4f6b9c01",
    folder_path="/DC1/vm/Prod/db",
    guest_family="windows",
    custom_attributes=(("backup", "offline"), ("owner", "")),
)


@pytest.mark.parametrize(
    ("match", "hit"),
    [
        ({}, True),
        ({"name_glob": "db-*"}, True),           # case-insensitive
        ({"name_glob": "db-?"}, False),          # whole name
        ({"name_glob": "DB-0[0-9]"}, True),
        ({"name_regex": "db-\\d+"}, True),
        ({"name_regex": "db"}, False),           # fullmatch, not search
        ({"name_regex": ".*01"}, True),
        ({"name_regex": "(?-i:db)-01"}, False),  # opt back into case
        ({"moref": "vm-42"}, True),
        ({"moref": "VM-42"}, False),
        ({"instance_uuid": "5012A8C5-6C4E-1B6E-8A8F-2D1F4F6B9C01"}, True),
        ({"instance_uuid": "5012a8c5-6c4e-1b6e-8a8f-2d1f4f6b9c02"}, False),
        ({"folder_glob": "/dc1/vm/prod/*"}, True),   # '*' crosses '/'
        ({"folder_glob": "/dc1/vm/test/*"}, False),
        ({"custom_attribute": {"key": "backup", "value": "offline"}}, True),
        ({"custom_attribute": {"key": "backup", "value": "Offline"}}, False),
        ({"custom_attribute": {"key": "backup"}}, True),
        ({"custom_attribute": {"key": "owner"}}, False),  # present but empty
        ({"custom_attribute": {"key": "Backup"}}, False),
        ({"guest_family": "windows"}, True),
        ({"guest_family": "linux"}, False),
        ({"has_blocker": ["passthrough", "vgpu"]}, True),
        ({"has_blocker": ["vgpu"]}, False),
        ({"name_glob": "db-*", "guest_family": "windows", "moref": "vm-42"}, True),
        ({"name_glob": "db-*", "guest_family": "linux", "moref": "vm-42"}, False),  # all must hold
    ],
)
def test_match_conditions(match: dict, hit: bool) -> None:
    assert policy_matches(pol("p", 1, ["crash"], match=match), VM, [GPU]) is hit


@pytest.mark.parametrize(
    ("scope", "mapping_ids", "hit"),
    [
        (None, (), True),
        ({"endpoint_id": f.VC_EP}, (), True),
        ({"endpoint_id": f.ESX_EP}, (), False),
        ({"mapping_id": "7"}, ("3", "7"), True),
        ({"mapping_id": "7"}, ("3",), False),
    ],
)
def test_scope(scope: dict | None, mapping_ids: tuple[str, ...], hit: bool) -> None:
    policy = pol("p", 1, ["crash"], scope=scope)
    assert policy_matches(policy, VM, [], mapping_ids=mapping_ids) is hit
    expected = "p" if hit else None
    assert resolve(VM, [], [policy], mapping_ids=mapping_ids).policy == expected


def test_vm_without_uuid_or_family_does_not_match_those_conditions() -> None:
    bare = f.vm("x", uuid="", guest_family=None)
    assert not policy_matches(pol("p", 1, ["crash"], match={"guest_family": "other"}), bare, [])
    assert not policy_matches(
        pol("p", 1, ["crash"], match={"instance_uuid": "5012a8c5-6c4e-1b6e-8a8f-2d1f4f6b9c01"}), bare, [])


def test_equal_priorities_from_a_careless_caller_still_resolve_deterministically() -> None:
    a, b = pol("b-policy", 5, ["memory"]), pol("a-policy", 5, ["crash"])
    assert select_policy(VM, [], [a, b]) == select_policy(VM, [], [b, a]) == b


def test_default_ladder_constant() -> None:
    assert Ladder((Q, C)) == DEFAULT_LADDER
    assert DEFAULT_LADDER.required is Consistency.QUIESCED


def test_a_backtracking_regex_cannot_hang_a_run() -> None:
    # (a+)+$ takes exponential time in a backtracking engine on "aaaa…!"; RE2 is linear.
    import time
    redos = parse_policy({"name": "redos", "priority": 1, "ladder": ["crash"],
                          "match": {"name_regex": "(a+)+$"}})
    started = time.monotonic()
    assert not policy_matches(redos, f.vm("a" * 20000 + "!"), [])
    assert policy_matches(redos, f.vm("a" * 20000), [])
    assert time.monotonic() - started < 5   # the backtracking engine would take longer than the universe
